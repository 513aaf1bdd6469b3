//! The backup-restore sidecar (`etcdbr`): data validation and restore,
//! full and delta snapshots, garbage collection, defragmentation and the
//! HTTP API the etcd container calls.
//!
//! The pure foundations are compatible with the object-store layout of the
//! upstream sidecar (gardener/etcd-backup-restore) so existing buckets keep
//! working:
//!
//! - [`snapshot_name`]: snapshot object keys (`v2/Full-…`, `v2/Incr-…`, the
//!   legacy `v1/Backup-<ts>/…`, chunks), parsing and writing them;
//! - [`compression`]: gzip, zlib and Go-compatible LZW, chosen by suffix;
//! - [`full`]: the full snapshot format's SHA-256 trailer, checked while
//!   streaming;
//! - [`delta`]: the delta snapshot format (JSON watch events plus SHA-256);
//! - [`gc`]: the `Exponential` and `LimitBased` garbage collection policies.
//!
//! The sidecar builds on them:
//!
//! - [`config`]: upstream-compatible flags;
//! - [`store`]: the bucket layout on top of a provider plugin (all storage
//!   goes through the plugin host);
//! - [`snapshotter`]: full snapshots (cron, on request) and deltas (watch);
//! - [`collector`]: garbage collection against the store;
//! - [`restore`] and [`initializer`]: validation and restore;
//! - [`compaction`]: full snapshot + deltas into one database through the
//!   compactor plugin (restores and `etcdbr compact`);
//! - [`leases`]: snapshot and member lease heartbeats;
//! - [`server`]: the HTTP API and the leadership loop;
//! - [`metrics`]: Prometheus metrics.

pub mod cli;
pub mod collector;
pub mod compaction;
pub mod compression;
pub mod config;
pub mod defrag;
pub mod delta;
pub mod etcd;
pub mod etcd_config;
pub mod full;
pub mod gc;
pub mod initializer;
pub mod k8s;
pub mod leases;
pub mod local_dir;
pub mod metrics;
pub mod restore;
pub mod server;
pub mod snapshot_name;
pub mod snapshotter;
pub mod store;
pub mod tls;

/// The default port of the sidecar's HTTP API, as upstream.
pub const DEFAULT_SERVER_PORT: u16 = 8080;
