//! Uploads: the SDK's [`PartUpload`](druid_plugin_sdk::parts::PartUpload)
//! over OSS's requests (`client::HttpSink`: PutObject for an object that
//! fits in one part, else InitiateMultipartUpload when the first part
//! fills, UploadPart, CompleteMultipartUpload, and AbortMultipartUpload on
//! abort or drop). At most one part is held in memory.

const MIB: u64 = 1 << 20;
/// The smallest part size used (OSS takes parts from 100 KiB; S3
/// gateways from 5 MiB).
pub const MIN_PART_SIZE: u64 = 8 * MIB;
/// The largest part size used (OSS takes up to 5 GiB).
pub const MAX_PART_SIZE: u64 = 512 * MIB;
/// OSS's limit on the number of parts of an upload.
pub const MAX_PARTS: usize = 10_000;

/// The part size for an object of about `size_hint` bytes: at least 8 MiB,
/// large enough for the object to fit in 9,000 parts (leaving room for a
/// hint that is a little low), rounded up to a MiB, at most 512 MiB.
pub fn part_size(size_hint: Option<u64>) -> usize {
    druid_plugin_sdk::parts::part_size(size_hint, 9000, MIN_PART_SIZE, MAX_PART_SIZE)
}
