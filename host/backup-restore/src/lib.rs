//! The backup-restore sidecar (`etcdbr`): data validation and restore,
//! full and delta snapshots, garbage collection, defragmentation and the
//! HTTP API the etcd container calls.
//!
//! Modules by concern, each depending only on the ones listed before it
//! (formats at the bottom, the server at the top):
//!
//! - [`formats`]: the object-store formats shared with the upstream sidecar
//!   (gardener/etcd-backup-restore), so existing buckets keep working:
//!   snapshot names and keys, compression, the full snapshot's trailer and
//!   the delta format;
//! - [`config`]: upstream-compatible flags; [`metrics`]: Prometheus metrics;
//! - [`store`]: the bucket layout on top of a provider plugin (all storage
//!   goes through the plugin host), and preparing a Local store's directory;
//! - [`etcd`]: connecting to etcd, this member's etcd configuration, a
//!   temporary etcd and `etcdctl snapshot restore`;
//! - [`k8s`]: the sidecar's Etcd and its snapshot and member leases;
//! - [`snapshot`]: full snapshots (cron, on request) and deltas (watch);
//! - [`gc`]: the garbage collection policies and running them;
//! - [`compaction`]: full snapshot + deltas into one database through the
//!   compactor plugin (restores and `etcdbr compact`);
//! - [`restore`]: validation of the data directory and restore;
//! - [`defrag`]: defragmentation without downtime;
//! - [`server`]: the HTTP API, forwarding to the leader, the leadership
//!   loop and maintenance;
//! - [`cli`]: the subcommands.

pub mod cli;
pub mod compaction;
pub mod config;
pub mod defrag;
pub mod etcd;
pub mod formats;
pub mod gc;
pub mod k8s;
pub mod metrics;
pub mod restore;
pub mod server;
pub mod snapshot;
pub mod store;

/// The default port of the sidecar's HTTP API, as upstream.
pub const DEFAULT_SERVER_PORT: u16 = 8080;
