//! Defaults applied where a spec is silent (the values the Go operator
//! and sidecar use).

/// etcd's backend quota.
pub const QUOTA: &str = "8Gi";
/// The size of a data volume.
pub const STORAGE_CAPACITY: &str = "16Gi";
/// etcd's client port.
pub const CLIENT_PORT: i32 = 2379;
/// etcd's peer port.
pub const SERVER_PORT: i32 = 2380;
/// The etcd wrapper's readiness port.
pub const WRAPPER_PORT: i32 = 9095;
/// The sidecar's HTTP port.
pub const BACKUP_PORT: i32 = 8080;
/// etcd's snapshot count.
pub const SNAPSHOT_COUNT: i64 = 10_000;
/// etcd's initial cluster token.
pub const INITIAL_CLUSTER_TOKEN: &str = "etcd-cluster";
/// The full snapshot schedule.
pub const FULL_SNAPSHOT_SCHEDULE: &str = "0 */24 * * *";
/// The delta snapshot period.
pub const DELTA_SNAPSHOT_PERIOD: &str = "20s";
/// The garbage collection period.
pub const GARBAGE_COLLECTION_PERIOD: &str = "1m";
/// Full snapshots kept by the LimitBased policy.
pub const MAX_BACKUPS: i32 = 7;
/// The delta snapshot memory limit.
pub const DELTA_SNAPSHOT_MEMORY_LIMIT: &str = "100Mi";
/// The timeout of one snapshot.
pub const SNAPSHOT_TIMEOUT: &str = "15m";
/// The timeout of one defragmentation.
pub const DEFRAG_TIMEOUT: &str = "15m";
/// The member lease renewal period.
pub const HEARTBEAT: &str = "10s";
/// The auto-compaction retention.
pub const AUTO_COMPACTION_RETENTION: &str = "30m";
/// The sidecar's scratch directory.
pub const SNAPSTORE_TEMP_DIR: &str = "/var/etcd/data/temp";
/// The CA key of a TLS secret.
pub const CA_KEY: &str = "ca.crt";
