//! Uploads: the SDK's [`PartUpload`](druid_plugin_sdk::parts::PartUpload)
//! over the JSON API's requests (`client::HttpSink`): an object that fits
//! in one part is one simple upload (`uploadType=media`) on `finish`; a
//! larger one is a resumable upload whose parts are sent in order, the
//! last one with the object's size. At most one part is held in memory.
//! An aborted upload cancels its session; a session left behind (the
//! plugin stopped) is never an object, and the service drops it after a
//! week.

const MIB: u64 = 1 << 20;
/// The smallest part size used: Google's Go client's default chunk size
/// (a multiple of the 256 KiB the service wants of every part but the
/// last). Each part is one request, and the emulator's cost per request
/// grows with what it already holds: 8 MiB parts uploaded at half the
/// Go client's rate there.
pub const MIN_PART_SIZE: u64 = 16 * MIB;
/// The largest part size used.
pub const MAX_PART_SIZE: u64 = 512 * MIB;
/// The parts of one upload: the service has no limit (it counts bytes,
/// up to 5 TiB); this bounds the part list kept.
pub const MAX_PARTS: usize = 100_000;

/// The part size for an object of about `size_hint` bytes: at least
/// 16 MiB, rounded up to a MiB (so a multiple of 256 KiB), at most
/// 512 MiB; an object of 5 TiB fits in 10,240 parts at the largest.
pub fn part_size(size_hint: Option<u64>) -> usize {
    druid_plugin_sdk::parts::part_size(size_hint, 10_000, MIN_PART_SIZE, MAX_PART_SIZE)
}
