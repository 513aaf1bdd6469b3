//! `LastSnapshotCompactionSucceeded`: how the last snapshot compaction (or
//! the full snapshot taken instead) went. Only the compaction controller
//! writes it (`compaction/conditions.rs`, with these functions); the etcd
//! controller keeps it as it is.

use druid_api::Etcd;
use druid_api::etcd::Condition;
use k8s_openapi::jiff::Timestamp;

use super::types::LAST_SNAPSHOT_COMPACTION_SUCCEEDED as CONDITION;
use super::{Check, stamp};

/// The condition on `etcd`'s status, if any.
pub fn current(etcd: &Etcd) -> Option<Condition> {
    etcd.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION)
        .cloned()
}

/// `conditions` with this condition saying `check` at `now`, sorted by
/// type; `None` when it already says that.
pub fn set(conditions: &[Condition], check: Check, now: Timestamp) -> Option<Vec<Condition>> {
    let old = conditions.iter().find(|c| c.type_ == CONDITION);
    if old.is_some_and(|c| {
        c.status == check.status && c.reason == check.reason && c.message == check.message
    }) {
        return None;
    }
    let mut out: Vec<Condition> = conditions
        .iter()
        .filter(|c| c.type_ != CONDITION)
        .cloned()
        .collect();
    out.push(stamp(conditions, CONDITION, check, now));
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    Some(out)
}

/// `conditions` without this condition if it has `reason`; `None`
/// otherwise.
pub fn remove(conditions: &[Condition], reason: &str) -> Option<Vec<Condition>> {
    conditions
        .iter()
        .any(|c| c.type_ == CONDITION && c.reason == reason)
        .then(|| {
            conditions
                .iter()
                .filter(|c| c.type_ != CONDITION)
                .cloned()
                .collect()
        })
}
