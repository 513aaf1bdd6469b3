//! `status`: the observed state of an Etcd (conditions, members, the
//! last reconcile's errors and operation).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// The pods' label selector, from the StatefulSet (upstream's field;
    /// upstream deprecates it in favour of `selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Whether the members' peer URLs use TLS, as every member's sidecar
    /// reports it on its lease (unset before any reported).
    #[serde(
        default,
        rename = "peerUrlTLSEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub peer_url_tls_enabled: Option<bool>,
    /// The errors of the last reconcile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_errors: Vec<LastError>,
    /// The last operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<LastOperation>,
    /// The source cluster this Etcd joined (`spec.etcd.bootstrapWithExistingCluster`),
    /// written once, when every member had joined it as a voting member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_with_existing_cluster: Option<BootstrapJoined>,
}

/// The record of a join of an existing cluster.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapJoined {
    /// When every member of this Etcd had joined.
    pub joined_at: Time,
    /// The source members at that time (from the spec).
    pub members: Vec<BootstrapJoinedMember>,
}

/// One source member in [`BootstrapJoined`].
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapJoinedMember {
    /// Its etcd name.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
}

/// A reference to an object of any API version.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CrossVersionObjectReference {
    /// Its API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Its kind, e.g. `StatefulSet`.
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
    /// Why the member has that status, from its lease: `LeaseSucceeded`,
    /// `LeaseExpired` or `UnknownGracePeriodExceeded`.
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

/// The summary of a defragmentation run, written by the coordinating
/// sidecar on its member lease
/// ([`crate::LAST_DEFRAGMENTATION_RUN_ANNOTATION`]).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefragmentationRun {
    /// When the run ended (RFC 3339).
    pub time: String,
    /// `Succeeded`, `Refused`, `Failed` or `TimedOut`.
    pub outcome: String,
    /// What happened: why it was refused, and each member's result.
    #[serde(default)]
    pub note: String,
}

/// An error of the last reconcile.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// A code such as `ERR_SYNC_STATEFULSET` or `ERR_INVALID_SPEC`.
    pub code: String,
    /// What went wrong and how to fix it.
    pub description: String,
    /// When the operator saw the error.
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
    /// When the operation last changed its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}
