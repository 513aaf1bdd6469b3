//! Per-Etcd retry backoff and error-report rate limiting, so that one Etcd
//! that keeps failing costs a bounded, shrinking share of the operator and
//! of the API server.
//!
//! Each failure of an Etcd doubles its retry delay, from a base up to a
//! cap; a success forgets its failures.
//! Its failure is logged at `warn` and published as an event the first
//! time, whenever what fails changes, and at most once per reporting
//! interval while it stays the same (the log line then
//! says how many reports were held back); the rest log at `debug`.
//! Metrics count every failure.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one failure of an Etcd leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Failures in a row, this one included.
    pub count: u32,
    /// When to retry.
    pub retry_in: Duration,
    /// Whether to report it (a `warn` log line, an event).
    pub report: bool,
    /// Reports held back since the last one (when `report`).
    pub held_back: u32,
}

/// The failures of one Etcd since its last success.
#[derive(Debug)]
struct Failures {
    count: u32,
    what: u64,
    reported_at: Instant,
    held_back: u32,
}

/// Failures per Etcd (by UID).
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    report_every: Duration,
    failures: Mutex<HashMap<String, Failures>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            Duration::from_secs(1),
            Duration::from_secs(120),
            Duration::from_secs(300),
        )
    }
}

impl Backoff {
    /// Delays from `base` doubling up to `cap`; an unchanged failure is
    /// reported once per `report_every`.
    pub fn new(base: Duration, cap: Duration, report_every: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            report_every,
            failures: Mutex::default(),
        }
    }

    /// Records a failure of Etcd `key`; `what` identifies the failure
    /// (its code and message), so that a different failure is reported at
    /// once.
    pub fn failed(&self, key: &str, what: &str) -> Failure {
        self.failed_at(key, what, Instant::now())
    }

    fn failed_at(&self, key: &str, what: &str, now: Instant) -> Failure {
        let mut h = DefaultHasher::new();
        what.hash(&mut h);
        let what = h.finish();
        let Ok(mut failures) = self.failures.lock() else {
            // A panic elsewhere poisoned the map: retry late, report.
            return Failure {
                count: 1,
                retry_in: self.cap,
                report: true,
                held_back: 0,
            };
        };
        let f = failures.entry(key.to_string()).or_insert(Failures {
            count: 0,
            what,
            reported_at: now,
            held_back: 0,
        });
        f.count = f.count.saturating_add(1);
        let report = f.count == 1
            || f.what != what
            || now.saturating_duration_since(f.reported_at) >= self.report_every;
        let held_back = f.held_back;
        if report {
            f.what = what;
            f.reported_at = now;
            f.held_back = 0;
        } else {
            f.held_back = f.held_back.saturating_add(1);
        }
        Failure {
            count: f.count,
            retry_in: self.delay(f.count),
            report,
            held_back: if report { held_back } else { 0 },
        }
    }

    /// The retry delay after `count` failures in a row.
    pub fn delay(&self, count: u32) -> Duration {
        let doublings = count.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// Forgets the failures of Etcd `key` (it succeeded, or is gone).
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::from_secs(300),
        )
    }

    #[test]
    fn delays_double_up_to_the_cap_and_a_success_resets_them() {
        let b = backoff();
        let now = Instant::now();
        let delays: Vec<u64> = (0..10)
            .map(|_| b.failed_at("a", "x", now).retry_in.as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        // Another Etcd has its own count.
        assert_eq!(b.failed_at("b", "x", now).retry_in.as_secs(), 1);
        b.succeeded("a");
        assert_eq!(b.failed_at("a", "x", now).retry_in.as_secs(), 1);
        assert_eq!(b.failures.lock().unwrap().len(), 2);
        // Huge counts stay at the cap, never overflow.
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn an_unchanged_failure_is_reported_once_per_interval() {
        let b = backoff();
        let t0 = Instant::now();
        let first = b.failed_at("a", "quota exceeded", t0);
        assert!(first.report);
        let reports: Vec<bool> = (1..=4)
            .map(|i| {
                b.failed_at("a", "quota exceeded", t0 + Duration::from_secs(i))
                    .report
            })
            .collect();
        assert_eq!(reports, [false; 4]);
        // Five minutes on, it is reported again, saying four were held back.
        let later = b.failed_at("a", "quota exceeded", t0 + Duration::from_secs(300));
        assert!(later.report);
        assert_eq!(later.held_back, 4);
        assert_eq!(later.count, 6);
    }

    #[test]
    fn a_different_failure_is_reported_at_once() {
        let b = backoff();
        let t0 = Instant::now();
        assert!(b.failed_at("a", "quota exceeded", t0).report);
        assert!(!b.failed_at("a", "quota exceeded", t0).report);
        let other = b.failed_at("a", "forbidden", t0);
        assert!(other.report);
        assert_eq!(other.held_back, 1);
        // Its delay keeps growing: it is still failing.
        assert_eq!(other.retry_in, Duration::from_secs(4));
    }
}
