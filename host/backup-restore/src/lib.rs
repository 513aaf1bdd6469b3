//! The backup-restore sidecar (`etcdbr`): data validation and restore,
//! full and delta snapshots, garbage collection, defragmentation and the
//! HTTP API the etcd container calls. (Filled by the sidecar issue.)

/// The default port of the sidecar's HTTP API, as upstream.
pub const DEFAULT_SERVER_PORT: u16 = 8080;
