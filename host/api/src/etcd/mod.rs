//! The `Etcd` resource as it is written: every field name the founding
//! manifest uses and every name of the upstream operator's current API.
//!
//! These types are deliberately lenient (durations, quantities and cron
//! schedules are strings here) so that an object the API server accepted
//! always deserializes; [`EtcdModel`](crate::EtcdModel) turns a spec into
//! one normalized model and reports what is wrong with it, field by field.
//! These are the wire types: they depend on nothing else in the crate.
//!
//! - this module: the resource (`Etcd`, `EtcdSpec`) and the spec's
//!   cluster-wide settings (store in the founding form, scheduling,
//!   auto-compaction, volume retention);
//! - `etcd_config.rs`: `spec.etcd`, how etcd runs;
//! - `backup.rs`: `spec.backup`, how the sidecar runs and where backups go;
//! - `tls.rs`: Secret references and TLS material;
//! - `status.rs`: `status`, the observed state.
//!
//! Every type is re-exported here, so `druid_api::etcd::X` names each.
#![allow(
    clippy::duplicated_attributes,
    reason = "kube(printcolumn(...)) is repeated once per column"
)]

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Affinity, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
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

// The submodules use the CEL macros above, so they are declared after them.
mod backup;
mod etcd_config;
mod status;
mod tls;

pub use backup::{
    BackupSpec, CompressionPolicy, CompressionSpec, GarbageCollectionPolicy, LeaderElectionSpec,
    SnapshotCompactionSpec, StoreSpec,
};
pub use etcd_config::{
    AdditionalPeerUrls, BootstrapExistingMember, BootstrapWithExistingCluster, ClientService,
    EtcdConfig, FreelistType, InitialClusterState, MetricsLevel, PullPolicy, TrafficDistribution,
};
pub use status::{
    BootstrapJoined, BootstrapJoinedMember, Condition, CrossVersionObjectReference,
    DefragmentationResult, DefragmentationRun, EtcdMemberStatus, EtcdStatus, LastError,
    LastOperation,
};
pub use tls::{CaSecretReference, PeerTlsConfig, SecretReference, TlsConfig};

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
    validation = Rule::new(concat!(
        "!has(self.spec.etcd.bootstrapWithExistingCluster) || self.spec.etcd.bootstrapWithExistingCluster.members.all(m, ",
        "!m.name.startsWith((has(self.spec.memberNamePrefix) ? self.spec.memberNamePrefix + '-' : '') + self.metadata.name + '-'))"
    ))
    .message("spec.etcd.bootstrapWithExistingCluster.members[].name must not start with this Etcd's member names (<memberNamePrefix->name-): the source members' names would collide with its own"),
    validation = Rule::new(concat!(
        "!has(self.spec.etcd.bootstrapWithExistingCluster) || !has(oldSelf.spec.etcd.bootstrapWithExistingCluster) ",
        "|| !has(self.status) || !has(self.status.conditions) ",
        "|| !self.status.conditions.exists(c, c.type == 'BootstrappedWithExistingCluster' && c.status == 'False') ",
        "|| self.spec.etcd.bootstrapWithExistingCluster == oldSelf.spec.etcd.bootstrapWithExistingCluster"
    ))
    .message("spec.etcd.bootstrapWithExistingCluster cannot change while the members are joining the source cluster (condition BootstrappedWithExistingCluster is False)"),
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
    /// The number of etcd members: 1, 3 or 5 in practice. Growing adds
    /// members one at a time (each joins as a learner and is promoted);
    /// shrinking removes them one at a time, highest ordinal first, each
    /// only while the others are healthy; 0 hibernates the cluster.
    #[x_kube(
        validation = Rule::new("self >= 0").message("spec.replicas must not be negative"),
        validation = Rule::new("self <= 9").message("spec.replicas must be at most 9 (etcd advises 3 or 5 members, at most 7)")
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

#[cfg(test)]
mod tests;
