//! The `Etcd` resource as it is written: every field name the founding
//! manifest uses and every name of the upstream operator's current API.
//!
//! These types are deliberately lenient (durations, quantities and cron
//! schedules are strings here) so that an object the API server accepted
//! always deserializes; [`crate::model`] turns a spec into one normalized
//! model and reports what is wrong with it, field by field.
#![allow(
    clippy::duplicated_attributes,
    reason = "kube(printcolumn(...)) is repeated once per column"
)]

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CEL: a Go duration such as `300s`, `5m` or `1h30m`.
macro_rules! duration_rule {
    ($field:literal) => {
        Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$')").message(concat!(
            $field,
            " must be a duration such as 300s, 5m or 1h30m"
        ))
    };
}

/// CEL: a five-field cron schedule (minute hour day-of-month month
/// day-of-week) or an @-shorthand. Value ranges are checked by the operator.
macro_rules! cron_rule {
    ($field:literal) => {
        Rule::new(concat!(
            "self.matches('^\\\\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|",
            "([*0-9A-Za-z?LW#/,-]+\\\\s+){4}[*0-9A-Za-z?LW#/,-]+)\\\\s*$')"
        ))
        .message(concat!(
            $field,
            " must be a cron schedule of five fields (minute hour day-of-month month day-of-week), e.g. '0 */24 * * *'"
        ))
    };
}

/// An etcd cluster with its backup-restore sidecar.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[kube(
    group = "druid.gardener.cloud",
    version = "v1alpha1",
    kind = "Etcd",
    plural = "etcds",
    namespaced,
    status = "EtcdStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An etcd cluster run as a StatefulSet whose pods hold etcd and the backup-restore sidecar.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(
        name = "Quorate",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "AllMembersReady",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"AllMembersReady\")].status"
    ),
    printcolumn(
        name = "BackupReady",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"BackupReady\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        priority = "1"
    ),
    printcolumn(
        name = "CurrentReplicas",
        type_ = "integer",
        json_path = ".status.currentReplicas",
        priority = "1"
    ),
    printcolumn(
        name = "ReadyReplicas",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        priority = "1"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.store) || !has(self.backup) || !has(self.backup.store)")
        .message("spec.store and spec.backup.store both configure the backup store: keep only one (spec.backup.store is the current name)"),
    validation = Rule::new("has(oldSelf.storageClass) == has(self.storageClass)")
        .message("spec.storageClass cannot be added or removed after creation (the StatefulSet's volume claims are immutable)"),
    validation = Rule::new("has(oldSelf.memberNamePrefix) == has(self.memberNamePrefix)")
        .message("spec.memberNamePrefix cannot be added or removed after creation")
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    /// Deprecated and unused; accepted so that older manifests apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Labels added to the pods (and the pod template) of the cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the pods (and the pod template) of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// How etcd runs.
    #[serde(default)]
    pub etcd: EtcdConfig,
    /// How the backup-restore sidecar runs and where backups go.
    #[serde(default)]
    pub backup: BackupSpec,
    /// Settings that both etcd and the sidecar use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_config: Option<SharedConfig>,
    /// Affinity and topology spread of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_constraints: Option<SchedulingConstraints>,
    /// The number of etcd members: 1, 3 or 5 in practice. It can grow, or be
    /// set to 0 to hibernate the cluster; it cannot shrink otherwise.
    #[x_kube(
        validation = Rule::new("self >= 0").message("spec.replicas must not be negative"),
        validation = Rule::new("self <= 9").message("spec.replicas must be at most 9 (etcd advises 3 or 5 members, at most 7)"),
        validation = Rule::new("self == 0 || self >= oldSelf").message("spec.replicas can only grow or be set to 0 (hibernation): removing members from a running cluster is not supported")
    )]
    pub replicas: i32,
    /// The priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// The storage class of the data volumes (immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.storageClass is immutable (the StatefulSet's volume claims cannot change)"))]
    pub storage_class: Option<String>,
    /// The size of each data volume (default 16Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_capacity: Option<Quantity>,
    /// The name of the volume claim template (default: the Etcd's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.volumeClaimTemplate is immutable"))]
    pub volume_claim_template: Option<String>,
    /// A prefix of the etcd member names (immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.memberNamePrefix is immutable"))]
    pub member_name_prefix: Option<String>,
    /// Run the containers as root (default: as uid 65532).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_root: Option<bool>,
    /// What happens to the data volumes when the Etcd is deleted:
    /// `RetainAll` (default) keeps them, `DeleteAll` deletes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_retention_policy: Option<PvcRetentionPolicy>,
    /// The backup store, in the founding manifest's form (the same as
    /// `spec.backup.store`; set only one of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<LegacyStoreSpec>,
    /// Name of a Secret with the client certificate etcd's clients use
    /// (`tls.crt`, `tls.key`, `ca.crt`); used when `spec.etcd.enableTLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_secret: Option<String>,
    /// Name of a Secret with etcd's server certificate (`tls.crt`,
    /// `tls.key`, `ca.crt`); used when `spec.etcd.enableTLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_secret: Option<String>,
}

impl EtcdSpec {
    /// Every Secret name the spec mentions (store and TLS, in any of their
    /// spellings), whether or not the spec is valid and the Secret used.
    /// What keeps a Secret protected: a spec that does not normalize (a
    /// typo in a schedule) still refers to the Secrets its running
    /// StatefulSet mounts.
    pub fn secret_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let tls = [self.etcd.client_url_tls.as_ref(), self.backup.tls.as_ref()];
        for t in tls.into_iter().flatten() {
            names.insert(t.tls_ca_secret_ref.name.clone());
            names.insert(t.server_tls_secret_ref.name.clone());
            names.extend(t.client_tls_secret_ref.as_ref().map(|r| r.name.clone()));
        }
        if let Some(t) = &self.etcd.peer_url_tls {
            names.insert(t.tls_ca_secret_ref.name.clone());
            names.insert(t.server_tls_secret_ref.name.clone());
        }
        names.extend(self.tls_server_secret.clone());
        names.extend(self.tls_client_secret.clone());
        names.extend(self.store.as_ref().and_then(|s| s.store_secret.clone()));
        names.extend(
            self.backup
                .store
                .as_ref()
                .and_then(|s| s.secret_ref.as_ref())
                .map(|r| r.name.clone()),
        );
        names.retain(|n| !n.is_empty());
        names
    }
}

/// What happens to the data volumes when the Etcd is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PvcRetentionPolicy {
    /// Keep the claims (and the data) after the Etcd is deleted.
    #[default]
    RetainAll,
    /// Delete the claims once the cluster is gone.
    DeleteAll,
}

/// The backup store in the founding manifest's form.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LegacyStoreSpec {
    /// The provider (`S3`, `ABS`, `GCS`, `Swift`, `OSS`, `ECS`, `OCS`,
    /// `Local`, or an upstream alias such as `aws`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9_-]*$')").message("spec.store.storageProvider must be a provider name such as S3, ABS, GCS, Swift, OSS, ECS, OCS or Local"))]
    pub storage_provider: Option<String>,
    /// The bucket or container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_container: Option<String>,
    /// The key prefix of this cluster's snapshots in the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_prefix: Option<String>,
    /// The Secret (in the Etcd's namespace) with the store credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_secret: Option<String>,
}

/// How etcd runs.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdConfig {
    /// The backend quota (`quota-backend-bytes`), default 8Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quantity>,
    /// The founding manifest's spelling of `quota`; set only one of them.
    #[serde(default, rename = "Quota", skip_serializing_if = "Option::is_none")]
    pub quota_legacy: Option<Quantity>,
    /// The etcd container image (`repository:tag`); or use
    /// `imageRepository` and `imageVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The etcd image repository (with `imageVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// The etcd image tag (with `imageRepository`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_version: Option<String>,
    /// The image pull policy of both containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// The founding manifest's place for the data volume size; the same as
    /// `spec.storageCapacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_capacity: Option<Quantity>,
    /// The founding manifest's place for the storage class; the same as
    /// `spec.storageClass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Serve clients over TLS with `spec.tlsServerSecret` and
    /// `spec.tlsClientSecret` (the founding manifest's form of
    /// `clientUrlTls`).
    #[serde(default, rename = "enableTLS", skip_serializing_if = "Option::is_none")]
    pub enable_tls: Option<bool>,
    /// `new` (default) or `existing`: the etcd initial cluster state of a
    /// first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cluster_state: Option<InitialClusterState>,
    /// The etcd initial cluster token (default: `etcd-cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cluster_token: Option<String>,
    /// `basic` (default) or `extensive` etcd metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsLevel>,
    /// Resources of the etcd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The client port (default 2379).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("spec.etcd.clientPort must be a port number (1-65535)"))]
    pub client_port: Option<i32>,
    /// The peer port (default 2380).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("spec.etcd.serverPort must be a port number (1-65535)"))]
    pub server_port: Option<i32>,
    /// The port of the etcd wrapper's readiness endpoint (default 9095).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("spec.etcd.wrapperPort must be a port number (1-65535)"))]
    pub wrapper_port: Option<i32>,
    /// When the sidecar defragments etcd (cron, five fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = cron_rule!("spec.etcd.defragmentationSchedule"))]
    pub defragmentation_schedule: Option<String>,
    /// How long one defragmentation may take (default 15m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.etcd.etcdDefragTimeout"))]
    pub etcd_defrag_timeout: Option<String>,
    /// How often the sidecar renews its member lease (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.etcd.heartbeatDuration"))]
    pub heartbeat_duration: Option<String>,
    /// etcd `snapshot-count` (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<i64>,
    /// Enable etcd's gRPC gateway.
    #[serde(
        default,
        rename = "enableGRPCGateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_grpc_gateway: Option<bool>,
    /// TLS for client connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url_tls: Option<TlsConfig>,
    /// TLS for peer connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_url_tls: Option<PeerTlsConfig>,
    /// Extra labels, annotations and traffic distribution of the client
    /// Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_service: Option<ClientService>,
    /// Accepted for compatibility; unused (as upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretReference>,
    /// bbolt freelist type: `array` (default) or `map`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_bbolt_freelist_type: Option<FreelistType>,
    /// Extra peer URLs each member advertises.
    #[serde(
        default,
        rename = "additionalAdvertisePeerURLs",
        skip_serializing_if = "Option::is_none"
    )]
    pub additional_advertise_peer_urls: Option<Vec<AdditionalPeerUrls>>,
}

/// Image pull policy.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// etcd's initial cluster state.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialClusterState {
    /// A new cluster.
    #[default]
    New,
    /// Joining an existing cluster.
    Existing,
}

/// etcd's metrics level.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// The default metrics.
    #[default]
    Basic,
    /// Also histograms per gRPC method.
    Extensive,
}

/// bbolt freelist type.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FreelistType {
    /// Array freelist (the safe default).
    #[default]
    Array,
    /// Hash-map freelist.
    Map,
}

/// A reference to a Secret.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
pub struct SecretReference {
    /// The Secret's name.
    pub name: String,
    /// Its namespace (default: the Etcd's; other namespaces are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a CA bundle in a Secret.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretReference {
    /// The Secret's name.
    pub name: String,
    /// Its namespace (default: the Etcd's; other namespaces are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The key holding the CA bundle (default `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key: Option<String>,
}

/// TLS material for one endpoint: a CA, a server certificate and optionally
/// a client certificate (Secrets with `tls.crt` and `tls.key`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// The CA bundle.
    #[serde(rename = "tlsCASecretRef")]
    pub tls_ca_secret_ref: CaSecretReference,
    /// The server certificate.
    #[serde(rename = "serverTLSSecretRef")]
    pub server_tls_secret_ref: SecretReference,
    /// The client certificate.
    #[serde(
        default,
        rename = "clientTLSSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_tls_secret_ref: Option<SecretReference>,
}

/// Peer TLS.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerTlsConfig {
    /// The CA bundle.
    #[serde(rename = "tlsCASecretRef")]
    pub tls_ca_secret_ref: CaSecretReference,
    /// The peer server certificate.
    #[serde(rename = "serverTLSSecretRef")]
    pub server_tls_secret_ref: SecretReference,
    /// Accepted for compatibility; peers use no client certificate.
    #[serde(
        default,
        rename = "clientTLSSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_tls_secret_ref: Option<SecretReference>,
    /// Skip the SAN check of peer client certificates.
    #[serde(
        default,
        rename = "skipClientSANVerification",
        skip_serializing_if = "Option::is_none"
    )]
    pub skip_client_san_verification: Option<bool>,
}

/// The client Service's extras.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientService {
    /// Extra annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Extra labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `PreferSameZone`, `PreferSameNode` or `PreferClose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<TrafficDistribution>,
}

/// Service traffic distribution.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficDistribution {
    /// Prefer endpoints in the same zone.
    PreferSameZone,
    /// Prefer endpoints on the same node.
    PreferSameNode,
    /// Prefer close endpoints.
    PreferClose,
}

/// Extra peer URLs of one member.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalPeerUrls {
    /// The member (pod) name, e.g. `etcd-main-0`.
    pub member_name: String,
    /// The URLs.
    pub urls: Vec<String>,
}

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

/// Settings both etcd and the sidecar use.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SharedConfig {
    /// `periodic` (default) or `revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_compaction_mode: Option<AutoCompactionMode>,
    /// The retention of auto-compaction (default `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_compaction_retention: Option<String>,
}

/// etcd auto-compaction mode.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoCompactionMode {
    /// By time.
    #[default]
    Periodic,
    /// By revision count.
    Revision,
}

impl AutoCompactionMode {
    /// The etcd flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Periodic => "periodic",
            Self::Revision => "revision",
        }
    }
}

/// Pod scheduling constraints.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingConstraints {
    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
}

/// The observed state of an Etcd.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdStatus {
    /// The generation whose spec was last reconciled successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The StatefulSet that runs the cluster (a target for autoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<CrossVersionObjectReference>,
    /// Conditions, sorted by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The members, from their leases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<EtcdMemberStatus>,
    /// Replicas of the StatefulSet at the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// Ready replicas of the StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Replicas of the StatefulSet (the scale subresource's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Whether the StatefulSet is fully rolled out and ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// The label selector of the pods, as a string (for the scale
    /// subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The errors of the last reconcile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_errors: Vec<LastError>,
    /// The last operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<LastOperation>,
}

/// A reference to an object of any API version.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CrossVersionObjectReference {
    /// Its API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// A condition of an Etcd.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type (`Ready`, `AllMembersReady`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// When the condition was last computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// A CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// What it means and what to do.
    #[serde(default)]
    pub message: String,
}

/// A member of the cluster, from its lease.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMemberStatus {
    /// The member (lease) name.
    pub name: String,
    /// The etcd member ID (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `Leader` or `Member`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `Ready`, `NotReady` or `Unknown`.
    pub status: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The member's last defragmentation, from its lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_defragmentation: Option<DefragmentationResult>,
}

/// What the last defragmentation did to a member.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefragmentationResult {
    /// When the run handled the member (RFC 3339).
    pub time: String,
    /// `Defragmented`, `Skipped` or `Failed`.
    pub outcome: String,
    /// Why it was skipped or failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Bytes reclaimed.
    #[serde(default)]
    pub reclaimed_bytes: i64,
    /// Database size before, in bytes.
    #[serde(default)]
    pub db_size_before: i64,
    /// Database size after, in bytes.
    #[serde(default)]
    pub db_size_after: i64,
    /// How long the member was defragmenting, in seconds.
    #[serde(default)]
    pub duration_seconds: f64,
}

/// An error of the last reconcile.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// A code such as `ERR_SYNC_STATEFULSET` or `ERR_INVALID_SPEC`.
    pub code: String,
    /// What went wrong and how to fix it.
    pub description: String,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
}

/// The last operation on an Etcd.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastOperation {
    /// `Create`, `Reconcile` or `Delete`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `Processing`, `Succeeded`, `Error` or `Requeue`.
    pub state: String,
    /// What happened.
    #[serde(default)]
    pub description: String,
    /// An ID of the reconcile run.
    #[serde(default, rename = "runID")]
    pub run_id: String,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::Etcd;

    #[test]
    fn secret_names_are_read_from_every_spelling_valid_or_not() {
        let mut etcd: Etcd =
            serde_yaml_ng::from_str(include_str!("../../../deploy/samples/seed-etcd.yaml"))
                .unwrap();
        // Invalid for the model (a cron out of range): the names still count.
        etcd.spec.backup.full_snapshot_schedule = Some("61 * * * *".into());
        let names: Vec<String> = etcd.spec.secret_names().into_iter().collect();
        assert_eq!(names, ["etcd-backup", "etcd-client-tls", "etcd-server-tls"]);
    }
}
