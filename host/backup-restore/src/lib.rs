//! The backup-restore sidecar (`etcdbr`): data validation and restore,
//! full and delta snapshots, garbage collection, defragmentation and the
//! HTTP API the etcd container calls.
//!
//! So far this crate holds the pure foundations, compatible with the
//! object-store layout of the upstream sidecar (gardener/etcd-backup-restore)
//! so existing buckets keep working:
//!
//! - [`snapshot_name`]: snapshot object keys (`v2/Full-…`, `v2/Incr-…`, the
//!   legacy `v1/Backup-<ts>/…`, chunks), parsing and writing them;
//! - [`compression`]: gzip, zlib and Go-compatible LZW, chosen by suffix;
//! - [`full`]: the full snapshot format's SHA-256 trailer, checked while
//!   streaming;
//! - [`delta`]: the delta snapshot format (JSON watch events plus SHA-256);
//! - [`gc`]: the `Exponential` and `LimitBased` garbage collection policies.
//!
//! The servers, the snapshotter and the restorer build on these.

pub mod compression;
pub mod delta;
pub mod full;
pub mod gc;
pub mod snapshot_name;

/// The default port of the sidecar's HTTP API, as upstream.
pub const DEFAULT_SERVER_PORT: u16 = 8080;
