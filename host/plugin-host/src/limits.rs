//! The limits every plugin call runs under, and the caps on what a plugin
//! may hand back: one place for every size the host accepts from a plugin.

use std::time::Duration;

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Cap on a plugin instance's linear memory, in bytes.
    pub memory_bytes: usize,
    /// CPU time one call may take before it is interrupted (counted in
    /// epoch ticks during which the plugin ran).
    pub call_cpu_time: Duration,
    /// Wall-clock time one call may take, waiting on I/O included.
    pub call_timeout: Duration,
    /// Largest value a call may return (a listing page, a chunk, a
    /// message), in bytes.
    pub max_return_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            call_cpu_time: Duration::from_secs(10),
            call_timeout: Duration::from_secs(600),
            max_return_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// The limits of the pod-wiring calls (`pod-config`, `check-secret`),
    /// which answer from their inputs alone: a reconcile never waits on a
    /// plugin for more than a few seconds.
    pub fn wiring(&self) -> Self {
        Self {
            call_cpu_time: self.call_cpu_time.min(Duration::from_secs(1)),
            call_timeout: self.call_timeout.min(Duration::from_secs(3)),
            max_return_bytes: self.max_return_bytes.min(1 << 20),
            ..self.clone()
        }
    }
}

/// A store error message from a plugin (and an object key in `head`).
pub(crate) const MAX_MESSAGE: usize = 4 << 10;
/// One log line of a plugin.
pub(crate) const MAX_LOG_LINE: usize = 8 << 10;
/// Objects in one listing page.
pub(crate) const MAX_PAGE_OBJECTS: usize = 10_000;
/// Most objects one listing returns (at about 100 bytes each, 100 MB).
pub(crate) const MAX_LISTED_OBJECTS: usize = 1_000_000;
/// Most pages one listing takes: twice the pages [`MAX_LISTED_OBJECTS`]
/// fills at 1,000 objects a page. A continuation token that never ends
/// (new tokens forever, small or empty pages) stops here, not at the
/// objects cap.
pub(crate) const MAX_LIST_PAGES: usize = 2_000;
/// A key in a listing page (S3, GCS and Azure allow 1,024 characters).
pub(crate) const MAX_KEY: usize = 4 << 10;
/// A `pod-config` refusal.
pub(crate) const MAX_WIRING_MESSAGE: usize = 4 << 10;
/// One problem of a `check-secret` answer.
pub(crate) const MAX_SECRET_PROBLEM: usize = 1 << 10;
/// Problems of a `check-secret` answer (the rest are dropped).
pub(crate) const MAX_SECRET_PROBLEMS: usize = 64;
/// A compactor's error message.
pub(crate) const MAX_COMPACT_MESSAGE: usize = 8 << 10;

/// Cuts `s` to at most `max` bytes on a character boundary (also used by
/// the sidecar for messages it writes to Kubernetes).
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
