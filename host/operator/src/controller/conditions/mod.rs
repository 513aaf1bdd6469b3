//! The conditions on an Etcd's status, one file per condition type, each a
//! pure function from what it looks at to what the condition says (a
//! [`Check`]); `status::compute` composes them, and [`stamp`] turns a
//! check into a [`Condition`] with its times.
//!
//! | type | file | written by |
//! |---|---|---|
//! | `SpecValid` | `spec_valid.rs` | the etcd controller |
//! | `Ready` | `ready.rs` | the etcd controller |
//! | `AllMembersReady` | `all_members_ready.rs` | the etcd controller |
//! | `AllMembersUpdated` | `all_members_updated.rs` | the etcd controller |
//! | `DataVolumesReady` | `data_volumes_ready.rs` | the etcd controller |
//! | `BackupReady` | `backup_ready.rs` | the etcd controller |
//! | `ClusterIDMismatch` | `cluster_id_mismatch.rs` | the etcd controller |
//! | `BootstrappedWithExistingCluster` | `bootstrapped_with_existing_cluster.rs` | the etcd controller |
//! | `MembersScaledIn` | `members_scaled_in.rs` | the etcd controller |
//! | `QuorumLost` | `quorum_lost.rs` | the etcd controller |
//! | `LastSnapshotCompactionSucceeded` | `last_snapshot_compaction_succeeded.rs` | the compaction controller |

pub mod all_members_ready;
pub mod all_members_updated;
pub mod backup_ready;
pub mod bootstrapped_with_existing_cluster;
pub mod cluster_id_mismatch;
pub mod data_volumes_ready;
pub mod last_snapshot_compaction_succeeded;
pub mod members_scaled_in;
pub mod quorum_lost;
pub mod ready;
pub mod spec_valid;

use std::time::Duration;

use druid_api::etcd::{Condition, EtcdMemberStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Condition types this operator writes.
pub mod types {
    /// Whether a quorum of members is up (their leases are renewed).
    pub const READY: &str = "Ready";
    /// Whether every member's lease is renewed, for every replica.
    pub const ALL_MEMBERS_READY: &str = "AllMembersReady";
    /// Whether every member runs the StatefulSet's current pod template.
    pub const ALL_MEMBERS_UPDATED: &str = "AllMembersUpdated";
    /// Whether the full and delta snapshot leases were renewed on time.
    pub const BACKUP_READY: &str = "BackupReady";
    /// Whether members report different etcd cluster IDs (a split brain).
    pub const CLUSTER_ID_MISMATCH: &str = "ClusterIDMismatch";
    /// Whether the data volumes' claims show no warning events.
    pub const DATA_VOLUMES_READY: &str = "DataVolumesReady";
    /// Whether the spec and the Secrets it refers to are valid.
    pub const SPEC_VALID: &str = "SpecValid";
    /// Whether the members joined the existing cluster they were to join.
    pub const BOOTSTRAPPED_WITH_EXISTING_CLUSTER: &str = "BootstrappedWithExistingCluster";
    /// How the last scale-in (members removed) went.
    pub const MEMBERS_SCALED_IN: &str = "MembersScaledIn";
    /// Whether a majority of the members is lost, and how the automatic
    /// recovery stands.
    pub const QUORUM_LOST: &str = "QuorumLost";
    /// How the last snapshot compaction (or the full snapshot taken instead)
    /// went: written by the compaction controller only.
    pub const LAST_SNAPSHOT_COMPACTION_SUCCEEDED: &str = "LastSnapshotCompactionSucceeded";
    /// Every type, for the condition metrics (forgotten when the Etcd is
    /// deleted).
    pub const ALL: &[&str] = &[
        READY,
        ALL_MEMBERS_READY,
        ALL_MEMBERS_UPDATED,
        BACKUP_READY,
        CLUSTER_ID_MISMATCH,
        DATA_VOLUMES_READY,
        SPEC_VALID,
        BOOTSTRAPPED_WITH_EXISTING_CLUSTER,
        MEMBERS_SCALED_IN,
        QUORUM_LOST,
        LAST_SNAPSHOT_COMPACTION_SUCCEEDED,
    ];
    /// Types other controllers own: the etcd controller keeps them as they
    /// are (`status::compute`).
    pub const FOREIGN: &[&str] = &[LAST_SNAPSHOT_COMPACTION_SUCCEEDED];
}

/// What a condition says: its status (`True`, `False` or `Unknown`), a
/// CamelCase reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one CamelCase word.
    pub reason: String,
    /// Why, for people.
    pub message: String,
}

impl Check {
    /// A check from its parts.
    pub fn new(status: &str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The condition of `type_` that `check` says, at `now`: its transition
/// time is kept from `previous` while the status stays the same.
pub fn stamp(previous: &[Condition], type_: &str, check: Check, now: Timestamp) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == check.status)
        .and_then(|c| c.last_transition_time.clone())
        .or(Some(Time(now)));
    Condition {
        type_: type_.into(),
        status: check.status,
        last_transition_time,
        last_update_time: Some(Time(now)),
        reason: check.reason,
        message: check.message,
    }
}

/// `Ready` and `AllMembersReady` while there are no members to judge: the
/// cluster is hibernated (0 replicas) or starting (no member renewed its
/// lease yet).
fn without_members(replicas: i32, members: &[EtcdMemberStatus]) -> Option<Check> {
    if replicas == 0 {
        Some(Check::new(
            "Unknown",
            "NotChecked",
            "the cluster is scaled to 0 replicas (hibernated)",
        ))
    } else if members.is_empty() {
        Some(Check::new(
            "Unknown",
            "NoMembersInStatus",
            "no member has renewed its lease yet (the cluster is starting)",
        ))
    } else {
        None
    }
}

/// How long ago `then` was, at `now` (zero for a time in the future).
pub(super) fn age(now: Timestamp, then: Timestamp) -> Duration {
    let ms = now.as_millisecond().saturating_sub(then.as_millisecond());
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
