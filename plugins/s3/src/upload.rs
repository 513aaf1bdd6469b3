//! Uploads: the SDK's [`PartUpload`](druid_plugin_sdk::parts::PartUpload)
//! over S3's requests (`client::HttpSink`: PutObject for an object that
//! fits in one part, else CreateMultipartUpload when the first part fills,
//! UploadPart, CompleteMultipartUpload, and AbortMultipartUpload on abort
//! or drop), with S3's part sizes. At most one part is held in memory.

const MIB: u64 = 1 << 20;
/// The smallest part size used (S3's minimum is 5 MiB).
pub const MIN_PART_SIZE: u64 = 8 * MIB;
/// The largest part size used.
pub const MAX_PART_SIZE: u64 = 512 * MIB;
/// S3's limit on the number of parts of an upload.
pub const MAX_PARTS: usize = 10_000;

/// The part size for an object of about `size_hint` bytes: at least 8 MiB,
/// large enough for the object to fit in 9,000 parts (leaving room for a
/// hint that is a little low), rounded up to a MiB, at most 512 MiB.
pub fn part_size(size_hint: Option<u64>) -> usize {
    druid_plugin_sdk::parts::part_size(size_hint, 9000, MIN_PART_SIZE, MAX_PART_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_parts_are_8_to_512_mib_for_9000_parts() {
        assert_eq!(part_size(None), 8 << 20);
        // 100 GiB / 9000 = 11.38 MiB, rounded up to 12 MiB.
        assert_eq!(part_size(Some(100 << 30)), 12 << 20);
        assert_eq!(part_size(Some(10 << 40)), 512 << 20);
    }
}
