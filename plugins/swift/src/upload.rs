//! Uploads: the SDK's [`PartUpload`](druid_plugin_sdk::parts::PartUpload)
//! over Swift's requests (`client::HttpSink`): an object that fits in one
//! part is one PUT on `finish`; a larger one is sent as segments
//! `<key>/0000000001`, `<key>/0000000002`… (upstream's names) and made
//! whole by a static large object manifest written last, which lists each
//! segment with its ETag, so a reader never sees a part-written object
//! and Swift checks every segment. At most one part is held in memory.
//! An aborted upload deletes the segments it sent.
//!
//! Upstream writes a dynamic large object (a manifest naming the prefix
//! `<container>/<key>/`) over the same segment names. Both read the same
//! through a GET, and both are deleted with their segments by either
//! implementation (upstream deletes what is below `<key>/`; this plugin
//! deletes a static manifest with its segments, then what is left below
//! `<key>/`). The static form is chosen because its size is in container
//! listings (a dynamic manifest lists as 0 bytes) and it does not depend
//! on the container listing being up to date when read.

const MIB: u64 = 1 << 20;
/// The smallest part (segment) size used.
pub const MIN_PART_SIZE: u64 = 16 * MIB;
/// The largest part size used (Swift takes segments up to 5 GiB; one part
/// is held in memory).
pub const MAX_PART_SIZE: u64 = 512 * MIB;
/// The segments of one manifest: Swift's default `max_manifest_segments`.
pub const MAX_PARTS: usize = 1000;

/// The part size for an object of about `size_hint` bytes: at least
/// 16 MiB, enough for the object to fit in 999 segments (upstream's
/// `size/999`), at most 512 MiB; so up to 16 GiB without a hint and about
/// 500 GiB at the largest.
pub fn part_size(size_hint: Option<u64>) -> usize {
    druid_plugin_sdk::parts::part_size(size_hint, 999, MIN_PART_SIZE, MAX_PART_SIZE)
}

/// What `complete` needs of a sent segment: `<etag> <size>`.
pub fn part_token(etag: &str, size: usize) -> String {
    format!("{etag} {size}")
}

/// A segment's ETag and size from [`part_token`]'s text.
pub fn parse_part(token: &str) -> Option<(String, u64)> {
    let (etag, size) = token.split_once(' ')?;
    Some((etag.to_string(), size.parse().ok()?))
}
