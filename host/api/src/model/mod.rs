//! One normalized model of an Etcd spec: every alias resolved, every
//! default applied, every value parsed. [`EtcdModel::from_etcd`] reports all
//! that is wrong with a spec at once, each error naming the field (or both
//! fields, when two names of one setting disagree) and the fix.
//!
//! - this module: the model's types ([`EtcdModel`] and its parts) and the
//!   errors ([`FieldError`], [`InvalidSpec`]);
//! - [`defaults`]: the values applied where a spec is silent;
//! - `normalize.rs`: [`EtcdModel::from_etcd`]/[`EtcdModel::from_spec`];
//! - `check.rs`: the error collector the normalization fills;
//! - `parse.rs`: [`parse_cron`], [`parse_duration`], [`go_duration`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::etcd::{
    AdditionalPeerUrls, AutoCompactionMode, BootstrapWithExistingCluster, ClientService,
    CompressionPolicy, FreelistType, GarbageCollectionPolicy, InitialClusterState, MetricsLevel,
    PullPolicy, PvcRetentionPolicy, SchedulingConstraints, SnapshotCompactionSpec,
};

mod check;
pub mod defaults;
mod normalize;
mod parse;

pub use parse::{MAX_GO_DURATION, go_duration, parse_cron, parse_duration};

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (or fields, `a` and `b`), as `spec.x.y`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Etcd spec: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidSpec(pub Vec<FieldError>);

/// TLS material of one endpoint, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The Secret with the CA bundle.
    pub ca_secret: String,
    /// The CA bundle's key in it.
    pub ca_key: String,
    /// The Secret with the server certificate (`tls.crt`, `tls.key`).
    pub server_secret: String,
    /// The Secret with a client certificate (`tls.crt`, `tls.key`).
    pub client_secret: Option<String>,
    /// Peer only: skip the SAN check of peer certificates.
    pub skip_client_san_verification: bool,
}

/// The backup store, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The provider as written (the plugin registry resolves aliases).
    pub provider: String,
    /// The field it came from, for messages.
    pub provider_field: &'static str,
    /// The bucket or container.
    pub container: Option<String>,
    /// The key prefix.
    pub prefix: String,
    /// The Secret with the credentials.
    pub secret: Option<String>,
    /// The field naming the secret, for messages.
    pub secret_field: &'static str,
    /// A custom endpoint URL of the store (`endpointOverride`).
    pub endpoint: Option<String>,
}

/// How etcd runs.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdSettings {
    /// The image, when the spec names one (else the operator's default).
    pub image: Option<String>,
    /// The pull policy of both containers.
    pub pull_policy: Option<PullPolicy>,
    /// The backend quota in bytes.
    pub quota_bytes: i64,
    /// The client port.
    pub client_port: i32,
    /// The peer port.
    pub server_port: i32,
    /// The wrapper's readiness port.
    pub wrapper_port: i32,
    /// The metrics level.
    pub metrics: MetricsLevel,
    /// The container's resources.
    pub resources: Option<ResourceRequirements>,
    /// The defragmentation schedule (validated cron), if any.
    pub defrag_schedule: Option<String>,
    /// The defragmentation timeout.
    pub defrag_timeout: Duration,
    /// The member lease renewal period.
    pub heartbeat: Duration,
    /// etcd's snapshot count.
    pub snapshot_count: i64,
    /// Whether etcd serves its gRPC gateway (`--enable-grpc-gateway`).
    pub grpc_gateway: bool,
    /// The initial cluster state.
    pub initial_cluster_state: InitialClusterState,
    /// The initial cluster token.
    pub initial_cluster_token: String,
    /// Client TLS.
    pub client_tls: Option<Tls>,
    /// Peer TLS.
    pub peer_tls: Option<Tls>,
    /// The client Service's extras.
    pub client_service: ClientService,
    /// The bbolt freelist type.
    pub freelist_type: FreelistType,
    /// Extra advertised peer URLs per member.
    pub additional_peer_urls: Vec<AdditionalPeerUrls>,
    /// The source cluster the members join instead of founding one.
    pub existing_cluster: Option<BootstrapWithExistingCluster>,
}

/// How the sidecar runs.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSettings {
    /// The image, when the spec names one (else the operator's default).
    pub image: Option<String>,
    /// The HTTP port.
    pub port: i32,
    /// The container's resources.
    pub resources: Option<ResourceRequirements>,
    /// TLS of the HTTP server.
    pub tls: Option<Tls>,
    /// Compression, if enabled.
    pub compression: Option<CompressionPolicy>,
    /// The full snapshot schedule (validated cron).
    pub full_snapshot_schedule: String,
    /// The garbage collection policy.
    pub garbage_collection_policy: GarbageCollectionPolicy,
    /// Full snapshots kept by LimitBased.
    pub max_backups: i32,
    /// The garbage collection period.
    pub garbage_collection_period: Duration,
    /// The delta snapshot period.
    pub delta_snapshot_period: Duration,
    /// The delta snapshot memory limit in bytes.
    pub delta_snapshot_memory_limit: i64,
    /// How long deltas are kept.
    pub delta_snapshot_retention: Option<Duration>,
    /// Whether the sidecar serves its profiling endpoints.
    pub profiling: bool,
    /// The timeout of one snapshot.
    pub snapshot_timeout: Duration,
    /// Backup-leader re-election period.
    pub reelection_period: Option<Duration>,
    /// Timeout of connections to etcd.
    pub etcd_connection_timeout: Option<Duration>,
    /// Resources and thresholds of snapshot compaction.
    pub compaction: SnapshotCompactionSpec,
    /// The scratch directory.
    pub temp_dir: String,
}

/// The data volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// The storage class (the cluster default when unset).
    pub class: Option<String>,
    /// The size, as written (a Kubernetes quantity).
    pub capacity: String,
    /// The claim template's name.
    pub claim_template: String,
}

/// An Etcd spec, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdModel {
    /// The Etcd's name.
    pub name: String,
    /// The Etcd's namespace; every Secret it names must be in it.
    pub namespace: String,
    /// The number of members.
    pub replicas: i32,
    /// Pod labels from the spec.
    pub labels: BTreeMap<String, String>,
    /// Pod annotations from the spec.
    pub annotations: BTreeMap<String, String>,
    /// How etcd runs: image, quota, ports, TLS, schedules (from
    /// `spec.etcd` and its founding-manifest aliases).
    pub etcd: EtcdSettings,
    /// How the backup-restore sidecar runs: image, port, TLS,
    /// schedules, compression (from `spec.backup`).
    pub backup: BackupSettings,
    /// The backup store; `None`: no backups.
    pub store: Option<Store>,
    /// The data volumes.
    pub storage: Storage,
    /// What happens to the claims on deletion.
    pub pvc_retention: PvcRetentionPolicy,
    /// The pods' priority class.
    pub priority_class_name: Option<String>,
    /// Run the containers as root instead of uid 65532.
    pub run_as_root: bool,
    /// The member name prefix.
    pub member_name_prefix: Option<String>,
    /// Affinity and topology spread.
    pub scheduling: SchedulingConstraints,
    /// Auto-compaction mode.
    pub auto_compaction_mode: AutoCompactionMode,
    /// Auto-compaction retention, as etcd takes it.
    pub auto_compaction_retention: String,
    /// Things that are valid but probably not what the author meant.
    pub warnings: Vec<FieldError>,
}

impl EtcdModel {
    /// The Secrets this Etcd references (store, TLS), sorted, each once.
    pub fn referenced_secrets(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let tls = [&self.etcd.client_tls, &self.etcd.peer_tls, &self.backup.tls];
        for t in tls.into_iter().flatten() {
            names.push(t.ca_secret.clone());
            names.push(t.server_secret.clone());
            names.extend(t.client_secret.clone());
        }
        if let Some(s) = self.store.as_ref().and_then(|s| s.secret.clone()) {
            names.push(s);
        }
        names.sort();
        names.dedup();
        names
    }
}
