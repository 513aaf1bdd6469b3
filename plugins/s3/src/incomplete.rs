//! Multipart uploads that nobody will finish: a sidecar killed mid-upload,
//! or a plugin instance stopped at its CPU-time limit, cannot abort its
//! upload, and S3 keeps (and bills) the parts until someone does.
//!
//! Finding them needs ListMultipartUploads by prefix, which not every S3
//! server offers (MinIO lists only the uploads of one exact key). So each
//! multipart upload leaves a small marker object while it runs:
//! `.druid-incomplete-uploads/<key>/<digest of the upload ID>` at the
//! bucket's root (outside every store prefix, so no snapshot listing sees
//! it), holding the upload ID. Finishing or aborting the upload deletes the
//! marker. Before each new multipart upload, the plugin aborts the uploads
//! of markers older than the expiry (default 24 h, the secret's
//! `incompleteUploadExpirySeconds`) and deletes those markers.
//!
//! The marker names and the staleness rule are pure and tested natively.

use std::time::Duration;

/// Where the markers live in the bucket.
pub const MARKER_ROOT: &str = ".druid-incomplete-uploads/";

/// How old a marker must be before its upload counts as abandoned: a day,
/// as MinIO's own expiry of stale uploads (a snapshot upload takes
/// minutes; the margin covers slow links).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// The most markers one sweep looks at (the rest wait for the next).
pub const MAX_PER_SWEEP: u32 = 100;

/// FNV-1a, 64 bits: a short, stable name for an upload ID (which may hold
/// characters a key should not).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The marker of upload `upload_id` of `key`.
pub fn marker_key(key: &str, upload_id: &str) -> String {
    format!("{MARKER_ROOT}{key}/{:016x}", fnv1a64(upload_id.as_bytes()))
}

/// The object key a marker stands for; `None` for a name that is not a
/// marker.
pub fn key_of_marker(marker: &str) -> Option<&str> {
    let rest = marker.strip_prefix(MARKER_ROOT)?;
    let (key, digest) = rest.rsplit_once('/')?;
    (digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit()) && !key.is_empty())
        .then_some(key)
}

/// Whether a marker last modified at `modified` (Unix seconds) is past
/// `expiry` at `now`. A marker without a time is not touched.
pub fn is_stale(modified: Option<i64>, now: i64, expiry: Duration) -> bool {
    let expiry = i64::try_from(expiry.as_secs()).unwrap_or(i64::MAX);
    modified.is_some_and(|m| now.saturating_sub(m) >= expiry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_key_and_nothing_else_is_one() {
        let m = marker_key(
            "etcd-main/v2/Full-00000000-00000010-1700000000.gz",
            "a/b+c==",
        );
        assert!(m.starts_with(MARKER_ROOT));
        assert_eq!(
            key_of_marker(&m),
            Some("etcd-main/v2/Full-00000000-00000010-1700000000.gz")
        );
        assert_ne!(
            m,
            marker_key("etcd-main/v2/Full-00000000-00000010-1700000000.gz", "other")
        );
        for not_a_marker in [
            "etcd-main/v2/Full-00000000-00000010-1700000000.gz",
            ".druid-incomplete-uploads/",
            ".druid-incomplete-uploads/key/not-hex-digest!",
            ".druid-incomplete-uploads//0123456789abcdef",
        ] {
            assert_eq!(key_of_marker(not_a_marker), None, "{not_a_marker}");
        }
    }

    #[test]
    fn only_markers_past_the_expiry_are_stale() {
        let day = Duration::from_secs(86_400);
        assert!(is_stale(Some(1_000), 1_000 + 86_400, day));
        assert!(!is_stale(Some(1_000), 1_000 + 86_399, day));
        assert!(!is_stale(None, i64::MAX, day));
        assert!(is_stale(Some(5), 5, Duration::ZERO));
    }
}
