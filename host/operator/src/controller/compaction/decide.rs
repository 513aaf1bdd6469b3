//! What to do for one Etcd, from its snapshot leases and thresholds: pure.

use druid_api::EtcdModel;
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt as _;

use super::{CompactionSettings, reasons};

/// The thresholds that apply to one Etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Events that start a compaction.
    pub events: i64,
    /// Events that ask for a full snapshot instead.
    pub full_snapshot: i64,
    /// Bytes of deltas that start a compaction.
    pub bytes: u64,
}

/// The Etcd's thresholds: its spec's, else the operator's. A spec value
/// that is not positive is an error naming the field.
pub fn thresholds(model: &EtcdModel, settings: &CompactionSettings) -> Result<Thresholds, String> {
    let spec = &model.backup.compaction;
    let mut problems = Vec::new();
    for (field, value) in [
        ("eventsThreshold", spec.events_threshold),
        (
            "triggerFullSnapshotThreshold",
            spec.trigger_full_snapshot_threshold,
        ),
    ] {
        if let Some(v) = value
            && v <= 0
        {
            problems.push(format!(
                "spec.backup.snapshotCompaction.{field} is {v}: it must be a positive number of events (or unset for the operator's default)"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Thresholds {
        events: spec.events_threshold.unwrap_or(settings.events_threshold),
        full_snapshot: spec
            .trigger_full_snapshot_threshold
            .unwrap_or(settings.trigger_full_snapshot_threshold),
        bytes: settings.bytes_threshold,
    })
}

/// What the snapshot leases say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observation {
    /// The revision of the last full snapshot.
    pub full_revision: Option<i64>,
    /// The revision of the last delta snapshot.
    pub delta_revision: Option<i64>,
    /// Bytes of delta snapshots since the last full snapshot.
    pub delta_bytes: Option<u64>,
}

/// Why a compaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The events reached the events threshold.
    Events,
    /// The deltas' bytes reached the bytes threshold.
    Bytes(u64),
}

/// Why a full snapshot is asked for instead of a compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullSnapshotCause {
    /// The events reached the full snapshot threshold.
    TooManyEvents,
    /// The last attempt ended with this reason (`DeadlineExceeded`,
    /// `ErrorTriggeringFullSnapshot`).
    LastAttempt(String),
}

/// What to do for an Etcd without a running compaction job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No full or delta snapshot revision yet: nothing to compare.
    NoSnapshots,
    /// The deltas are below every threshold: nothing to do yet.
    Wait {
        /// Delta events since the last full snapshot.
        events: i64,
    },
    /// Start a compaction job.
    Compact {
        /// Delta events since the last full snapshot.
        events: i64,
        /// Which threshold the deltas reached.
        trigger: Trigger,
    },
    /// Ask the sidecar for a full snapshot.
    FullSnapshot {
        /// Delta events since the last full snapshot.
        events: i64,
        /// Why not a compaction.
        cause: FullSnapshotCause,
    },
}

/// The decision, from the leases, the thresholds and the reason of the
/// current `LastSnapshotCompactionSucceeded` condition.
///
/// events = delta revision − full revision (never below 0). A compaction is
/// due when events ≥ the events threshold, or when there are deltas after
/// the full snapshot and their bytes reach the bytes threshold (a bytes
/// annotation with no delta after the full snapshot is stale). A due
/// compaction becomes a full snapshot request when events ≥ the full
/// snapshot threshold or the last attempt ran out of time or could not get
/// a full snapshot.
pub fn decide(obs: &Observation, t: &Thresholds, last_reason: Option<&str>) -> Decision {
    let (Some(full), Some(delta)) = (obs.full_revision, obs.delta_revision) else {
        return Decision::NoSnapshots;
    };
    let events = delta.saturating_sub(full).max(0);
    if events >= t.full_snapshot {
        return Decision::FullSnapshot {
            events,
            cause: FullSnapshotCause::TooManyEvents,
        };
    }
    let bytes = obs.delta_bytes.filter(|b| events > 0 && *b >= t.bytes);
    let trigger = match bytes {
        _ if events >= t.events => Trigger::Events,
        Some(b) => Trigger::Bytes(b),
        None => return Decision::Wait { events },
    };
    match last_reason {
        Some(r)
            if r == reasons::DEADLINE_EXCEEDED || r == reasons::ERROR_TRIGGERING_FULL_SNAPSHOT =>
        {
            Decision::FullSnapshot {
                events,
                cause: FullSnapshotCause::LastAttempt(r.to_string()),
            }
        }
        _ => Decision::Compact { events, trigger },
    }
}

/// A snapshot lease's revision: `None` before the first snapshot; a holder
/// that is no number is logged and treated as no snapshot.
pub(crate) fn lease_revision(lease: Option<&Lease>) -> Option<i64> {
    let lease = lease?;
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    if holder.is_empty() {
        return None;
    }
    match holder.parse::<i64>() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(lease = %lease.name_any(), namespace = ?lease.namespace(), %holder, error = %e, "snapshot lease holder is not a revision");
            None
        }
    }
}

pub(super) fn lease_bytes(lease: Option<&Lease>) -> Option<u64> {
    let lease = lease?;
    let text = lease
        .annotations()
        .get(druid_api::DELTA_BYTES_SINCE_FULL_ANNOTATION)?;
    match text.trim().parse::<u64>() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(lease = %lease.name_any(), namespace = ?lease.namespace(), value = %text, error = %e, "ignoring an unreadable delta bytes annotation");
            None
        }
    }
}

pub(super) fn observation(full: Option<&Lease>, delta: Option<&Lease>) -> Observation {
    Observation {
        full_revision: lease_revision(full),
        delta_revision: lease_revision(delta),
        delta_bytes: lease_bytes(delta),
    }
}
