//! The task resources: copying backups between stores, and operations on an
//! Etcd (on-demand snapshots and defragmentation). The operator's
//! `ops_task` controller acts on [`EtcdOpsTask`]s; the copy task's
//! controller comes with a later issue (its type is here so the CRD is
//! installed and manifests apply).
#![allow(
    clippy::duplicated_attributes,
    reason = "kube(printcolumn(...)) is repeated once per column"
)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::etcd::{Condition, StoreSpec};

/// Copies the backups of one store to another.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[kube(
    group = "druid.gardener.cloud",
    version = "v1alpha1",
    kind = "EtcdCopyBackupsTask",
    plural = "etcdcopybackupstasks",
    namespaced,
    status = "EtcdCopyBackupsTaskStatus",
    derive = "PartialEq",
    doc = "Copies the snapshots of one backup store to another.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdCopyBackupsTaskSpec {
    /// Labels of the copy job's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// The store to copy from.
    pub source_store: StoreSpec,
    /// The store to copy to.
    pub target_store: StoreSpec,
    /// Copy only backups younger than this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backup_age: Option<u32>,
    /// Copy at most this many full backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backups: Option<u32>,
    /// Wait for the source's final full snapshot before copying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_final_snapshot: Option<WaitForFinalSnapshot>,
}

/// Waiting for a final snapshot.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
pub struct WaitForFinalSnapshot {
    /// Wait at all.
    pub enabled: bool,
    /// How long (a duration; 0 waits forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The observed state of a copy task.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdCopyBackupsTaskStatus {
    /// `Succeeded` and `Failed`, mirrored from the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// An operation on an Etcd, such as an on-demand snapshot.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[kube(
    group = "druid.gardener.cloud",
    version = "v1alpha1",
    kind = "EtcdOpsTask",
    plural = "etcdopstasks",
    shortname = "eot",
    namespaced,
    status = "EtcdOpsTaskStatus",
    derive = "PartialEq",
    doc = "An operation on an Etcd, such as an on-demand full or delta snapshot.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Etcd", type_ = "string", json_path = ".spec.etcdName"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.lastOperation.type",
        priority = "1"
    ),
    printcolumn(
        name = "TTL",
        type_ = "integer",
        json_path = ".spec.ttlSecondsAfterFinished",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdOpsTaskSpec {
    /// What to do (exactly one operation).
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.config is immutable: create a new task instead"))]
    pub config: EtcdOpsTaskConfig,
    /// Seconds after which a finished task is deleted (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.ttlSecondsAfterFinished is immutable"))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// The Etcd in the task's namespace.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.etcdName is immutable"))]
    pub etcd_name: String,
}

/// The operation of a task.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.onDemandSnapshot) != has(self.onDemandDefragmentation)").message("spec.config must name exactly one operation: onDemandSnapshot or onDemandDefragmentation"))]
pub struct EtcdOpsTaskConfig {
    /// Take a snapshot now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_snapshot: Option<OnDemandSnapshot>,
    /// Defragment every member now, one at a time, the leader last (this
    /// project's addition; upstream's operator knows only snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_defragmentation: Option<OnDemandDefragmentation>,
}

/// An on-demand defragmentation of every member.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OnDemandDefragmentation {
    /// How long the whole run may take in seconds (default 3600, at least
    /// 60); a run still going then is reported failed (the members already
    /// defragmented stay so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 60").message("spec.config.onDemandDefragmentation.timeoutSeconds must be at least 60"))]
    pub timeout_seconds: Option<i32>,
}

/// An on-demand snapshot.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.isFinal) || !self.isFinal || self.type == 'full'").message("spec.config.onDemandSnapshot.isFinal is only allowed for type full"))]
pub struct OnDemandSnapshot {
    /// `full` or `delta`.
    #[serde(rename = "type")]
    pub type_: SnapshotType,
    /// Mark the full snapshot as final (taken before the cluster goes away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_final: Option<bool>,
    /// Timeout of a delta snapshot in seconds (default 60, at least 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 10").message("spec.config.onDemandSnapshot.timeoutSecondsDelta must be at least 10"))]
    pub timeout_seconds_delta: Option<i32>,
    /// Timeout of a full snapshot in seconds (default 900, at least 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 120").message("spec.config.onDemandSnapshot.timeoutSecondsFull must be at least 120"))]
    pub timeout_seconds_full: Option<i32>,
}

/// A snapshot kind.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotType {
    /// A full snapshot.
    #[default]
    Full,
    /// A delta snapshot.
    Delta,
}

/// The states of an ops task (`status.state`), as upstream's.
pub mod task_state {
    /// Created, not admitted yet.
    pub const PENDING: &str = "Pending";
    /// Admitted and running.
    pub const IN_PROGRESS: &str = "InProgress";
    /// Done.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Ran and failed.
    pub const FAILED: &str = "Failed";
    /// Not admitted (the reason is in `lastErrors`).
    pub const REJECTED: &str = "Rejected";

    /// Whether `state` is final (the task is deleted after its TTL).
    pub fn is_final(state: &str) -> bool {
        matches!(state, SUCCEEDED | FAILED | REJECTED)
    }
}

/// The observed state of an ops task.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdOpsTaskStatus {
    /// `Pending`, `InProgress`, `Succeeded`, `Failed` or `Rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// When the task started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// The last errors (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub last_errors: Vec<crate::etcd::LastError>,
    /// The last operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<TaskOperation>,
}

/// The last operation of a task.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskOperation {
    /// `Admit`, `Execution` or `Cleanup`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `InProgress`, `Completed` or `Failed`.
    pub state: String,
    /// What happened.
    #[serde(default)]
    pub description: String,
    /// When the operation last changed its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}
