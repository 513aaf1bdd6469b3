//! `spec.backup`: how the backup-restore sidecar runs, where backups go,
//! compression, garbage collection, leader election and compaction.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::tls::{SecretReference, TlsConfig};

/// How the backup-restore sidecar runs.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(concat!(
        "!has(self.deltaSnapshotPeriod) || !has(self.garbageCollectionPeriod) || ",
        // Malformed durations get their own message from the field's rule.
        "!self.deltaSnapshotPeriod.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') || ",
        "!self.garbageCollectionPeriod.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') || ",
        "duration(self.garbageCollectionPeriod) > duration(self.deltaSnapshotPeriod)"
    ))
        .message("spec.backup.garbageCollectionPeriod must be longer than spec.backup.deltaSnapshotPeriod")
)]
pub struct BackupSpec {
    /// The sidecar's HTTP port (default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("spec.backup.port must be a port number (1-65535)"))]
    pub port: Option<i32>,
    /// The sidecar image (`repository:tag`); or `imageRepository` and
    /// `imageVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The sidecar image repository (with `imageVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// The sidecar image tag (with `imageRepository`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_version: Option<String>,
    /// Resources of the sidecar container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where backups go; without a store (here or in `spec.store`) no
    /// backups are taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSpec>,
    /// TLS of the sidecar's HTTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Snapshot compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionSpec>,
    /// When full snapshots are taken (cron, five fields; default
    /// `0 */24 * * *`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = cron_rule!("spec.backup.fullSnapshotSchedule"))]
    pub full_snapshot_schedule: Option<String>,
    /// `Exponential` or `LimitBased` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garbage_collection_policy: Option<GarbageCollectionPolicy>,
    /// Full snapshots kept by the `LimitBased` policy (default 7).
    #[serde(
        default,
        rename = "maxBackupsLimitBasedGC",
        skip_serializing_if = "Option::is_none"
    )]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.backup.maxBackupsLimitBasedGC must be at least 1"))]
    pub max_backups_limit_based_gc: Option<i32>,
    /// How often garbage collection runs (default 12h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.backup.garbageCollectionPeriod"))]
    pub garbage_collection_period: Option<String>,
    /// How often delta snapshots are taken (default 20s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.backup.deltaSnapshotPeriod"))]
    pub delta_snapshot_period: Option<String>,
    /// Memory above which a delta snapshot is taken early (default 100Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_snapshot_memory_limit: Option<Quantity>,
    /// How long delta snapshots are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.backup.deltaSnapshotRetentionPeriod"))]
    pub delta_snapshot_retention_period: Option<String>,
    /// Serve Go pprof-style profiling endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_profiling: Option<bool>,
    /// How long one snapshot may take (default 15m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.backup.etcdSnapshotTimeout"))]
    pub etcd_snapshot_timeout: Option<String>,
    /// Backup-leader election among the sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_election: Option<LeaderElectionSpec>,
    /// Offline compaction of snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_compaction: Option<SnapshotCompactionSpec>,
    /// A scratch directory for snapshots being uploaded (default
    /// `/var/etcd/data/temp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapstore_temp_dir: Option<String>,
}

/// Where backups go (the upstream form).
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// The provider (`S3`, `ABS`, `GCS`, `Swift`, `OSS`, `ECS`, `OCS`,
    /// `Local`, an upstream alias such as `aws`, or a plugin's own name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9_-]*$')").message("spec.backup.store.provider must be a provider name such as S3, ABS, GCS, Swift, OSS, ECS, OCS or Local"))]
    pub provider: Option<String>,
    /// The bucket or container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub container: Option<String>,
    /// The key prefix of this cluster's snapshots.
    pub prefix: String,
    /// The Secret with the store credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
    /// A custom endpoint URL of the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self)").message("spec.backup.store.endpointOverride must be a URL, e.g. https://s3.example.com"))]
    pub endpoint_override: Option<String>,
}

/// Snapshot compression.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompressionSpec {
    /// Compress snapshots (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `gzip` (default), `lzw` or `zlib`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<CompressionPolicy>,
}

/// A compression algorithm.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CompressionPolicy {
    /// gzip (`.gz`).
    #[default]
    Gzip,
    /// LZW (`.Z`).
    Lzw,
    /// zlib (`.zlib`).
    Zlib,
}

impl CompressionPolicy {
    /// The spelling of the sidecar flag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Lzw => "lzw",
            Self::Zlib => "zlib",
        }
    }
}

/// Garbage collection policy.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GarbageCollectionPolicy {
    /// Keep hourly, daily and weekly full snapshots, thinning older ones.
    Exponential,
    /// Keep the newest `maxBackupsLimitBasedGC` full snapshots.
    #[default]
    LimitBased,
}

impl GarbageCollectionPolicy {
    /// The spelling of the sidecar flag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exponential => "Exponential",
            Self::LimitBased => "LimitBased",
        }
    }
}

/// Backup-leader election settings.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElectionSpec {
    /// How often the backup leader is re-elected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.backup.leaderElection.reelectionPeriod"))]
    pub reelection_period: Option<String>,
    /// Timeout of the sidecar's connections to etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.backup.leaderElection.etcdConnectionTimeout"))]
    pub etcd_connection_timeout: Option<String>,
}

/// Offline snapshot compaction settings.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCompactionSpec {
    /// Resources of the compaction job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Delta events after which a compaction runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_threshold: Option<i64>,
    /// Delta events after which a full snapshot is taken instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_full_snapshot_threshold: Option<i64>,
}
