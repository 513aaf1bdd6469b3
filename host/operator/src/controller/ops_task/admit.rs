//! Whether an [`EtcdOpsTask`] may run: a pure decision from the task, its
//! Etcd and the other tasks of that Etcd.

use druid_api::etcd::Condition;
use druid_api::tasks::task_state;
use druid_api::{Etcd, EtcdModel, EtcdOpsTask};
use kube::ResourceExt as _;

use super::Operation;

/// Why a task is not admitted: a `lastErrors` code and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `ERR_*`, as in the task's `status.lastErrors`.
    pub code: &'static str,
    /// What is wrong and how to go on.
    pub message: String,
}

impl Rejection {
    fn new(code: &'static str, message: String) -> Self {
        Self { code, message }
    }
}

/// The codes of [`Rejection`]s.
pub mod codes {
    /// `spec.config` names no operation this operator knows.
    pub const INVALID_CONFIG: &str = "ERR_INVALID_CONFIG";
    /// Another task of the same Etcd has not finished.
    pub const DUPLICATE_TASK: &str = "ERR_DUPLICATE_TASK";
    /// `spec.etcdName` names no Etcd of the namespace.
    pub const ETCD_NOT_FOUND: &str = "ERR_ETCD_NOT_FOUND";
    /// The Etcd is being deleted.
    pub const ETCD_DELETING: &str = "ERR_ETCD_DELETING";
    /// The Etcd is hibernated (`spec.replicas: 0`).
    pub const ETCD_HIBERNATED: &str = "ERR_ETCD_HIBERNATED";
    /// The Etcd's spec is invalid.
    pub const ETCD_INVALID: &str = "ERR_ETCD_INVALID_SPEC";
    /// A snapshot of an Etcd without `spec.backup.store`.
    pub const BACKUP_NOT_ENABLED: &str = "ERR_BACKUP_NOT_ENABLED";
    /// A delta snapshot of an Etcd whose delta snapshots are disabled.
    pub const DELTA_DISABLED: &str = "ERR_DELTA_SNAPSHOTS_DISABLED";
    /// The Etcd's `Ready` condition is not True.
    pub const ETCD_NOT_READY: &str = "ERR_ETCD_NOT_READY";
}

/// Admits `task` to run on `etcd` (`None`: no such Etcd) unless one of
/// `others` (tasks of the namespace) targets the same Etcd, has not
/// finished, and runs already or was created first. Ties (tasks created
/// in the same second) go by name, so of tasks created together exactly
/// one runs.
pub fn admit(
    task: &EtcdOpsTask,
    etcd: Option<&Etcd>,
    others: &[&EtcdOpsTask],
) -> Result<Operation, Rejection> {
    let ns = task.namespace().unwrap_or_default();
    let etcd_name = &task.spec.etcd_name;
    let operation = Operation::of(&task.spec).ok_or_else(|| {
        Rejection::new(
            codes::INVALID_CONFIG,
            "spec.config names no operation this operator knows (onDemandSnapshot or onDemandDefragmentation): create a new task with one of them".into(),
        )
    })?;
    let key = |t: &EtcdOpsTask| (t.metadata.creation_timestamp.clone(), t.name_any());
    if let Some(first) = others
        .iter()
        .filter(|o| o.uid() != task.uid() && o.spec.etcd_name == *etcd_name)
        .filter(|o| {
            !o.status
                .as_ref()
                .and_then(|s| s.state.as_deref())
                .is_some_and(task_state::is_final)
        })
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .find(|o| {
            o.status.as_ref().and_then(|s| s.state.as_deref()) == Some(task_state::IN_PROGRESS)
                || key(o) < key(task)
        })
    {
        return Err(Rejection::new(
            codes::DUPLICATE_TASK,
            format!(
                "the task {} of Etcd {ns}/{etcd_name} has not finished: one task per Etcd runs at a time; create this one again once it has",
                first.name_any()
            ),
        ));
    }
    let Some(etcd) = etcd else {
        return Err(Rejection::new(
            codes::ETCD_NOT_FOUND,
            format!(
                "no Etcd {ns}/{etcd_name} exists (spec.etcdName): name an Etcd of the task's namespace"
            ),
        ));
    };
    if etcd.metadata.deletion_timestamp.is_some() {
        return Err(Rejection::new(
            codes::ETCD_DELETING,
            format!("the Etcd {ns}/{etcd_name} is being deleted"),
        ));
    }
    let model = EtcdModel::from_etcd(etcd).map_err(|e| {
        Rejection::new(
            codes::ETCD_INVALID,
            format!("the Etcd {ns}/{etcd_name} has an invalid spec ({e}): fix it, then create the task again"),
        )
    })?;
    if model.replicas == 0 {
        return Err(Rejection::new(
            codes::ETCD_HIBERNATED,
            format!(
                "the Etcd {ns}/{etcd_name} is hibernated (spec.replicas: 0): no member runs to {}; wake it up first",
                operation.verb()
            ),
        ));
    }
    if let Operation::Snapshot { delta, .. } = &operation {
        if model.store.is_none() {
            return Err(Rejection::new(
                codes::BACKUP_NOT_ENABLED,
                format!(
                    "the Etcd {ns}/{etcd_name} has no backup store (spec.backup.store): a snapshot has nowhere to go"
                ),
            ));
        }
        if *delta && model.backup.delta_snapshot_period.is_zero() {
            return Err(Rejection::new(
                codes::DELTA_DISABLED,
                format!(
                    "the Etcd {ns}/{etcd_name} takes no delta snapshots (spec.backup.deltaSnapshotPeriod is 0): ask for a full snapshot instead"
                ),
            ));
        }
    }
    let ready = etcd
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => Ok(operation),
        other => Err(not_ready_rejection(&ns, etcd_name, other)),
    }
}

fn not_ready_rejection(ns: &str, etcd: &str, ready: Option<&Condition>) -> Rejection {
    let why = ready.map_or_else(
        || "it has no Ready condition yet".to_string(),
        |c| {
            format!(
                "its Ready condition is {} ({}: {})",
                c.status, c.reason, c.message
            )
        },
    );
    Rejection::new(
        codes::ETCD_NOT_READY,
        format!("the Etcd {ns}/{etcd} is not ready ({why}): create the task again once it is"),
    )
}
