//! What an admitted [`EtcdOpsTask`] asks of the backup leader's sidecar,
//! and what its answer means for the task: pure functions.
//!
//! [`EtcdOpsTask`]: druid_api::EtcdOpsTask

use std::time::Duration;

use druid_api::tasks::{EtcdOpsTaskSpec, SnapshotType};

use crate::controller::sidecar::Answer;

/// A full snapshot's timeout when the task names none (upstream's).
const FULL_TIMEOUT: i32 = 900;
/// A delta snapshot's timeout when the task names none (upstream's).
const DELTA_TIMEOUT: i32 = 60;
/// A defragmentation's timeout when the task names none.
const DEFRAG_TIMEOUT: i32 = 3600;

/// An operation of a task, with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// A full (`delta: false`) or delta snapshot; a full one may be marked
    /// final.
    Snapshot {
        /// A delta snapshot.
        delta: bool,
        /// Marked final (upstream's `.final` suffix).
        is_final: bool,
        /// How long it may take.
        timeout: Duration,
    },
    /// A defragmentation of every member.
    Defragmentation {
        /// How long the run may take.
        timeout: Duration,
    },
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default)).unwrap_or(0))
}

impl Operation {
    /// The operation `spec.config` names (`None`: none this operator
    /// knows; the CRD's rule allows exactly one).
    pub fn of(spec: &EtcdOpsTaskSpec) -> Option<Self> {
        if let Some(s) = &spec.config.on_demand_snapshot {
            let delta = s.type_ == SnapshotType::Delta;
            return Some(Operation::Snapshot {
                delta,
                is_final: !delta && s.is_final == Some(true),
                timeout: if delta {
                    seconds(s.timeout_seconds_delta, DELTA_TIMEOUT)
                } else {
                    seconds(s.timeout_seconds_full, FULL_TIMEOUT)
                },
            });
        }
        spec.config
            .on_demand_defragmentation
            .as_ref()
            .map(|d| Operation::Defragmentation {
                timeout: seconds(d.timeout_seconds, DEFRAG_TIMEOUT),
            })
    }

    /// The metric label of the operation.
    pub fn label(&self) -> &'static str {
        match self {
            Operation::Snapshot { delta: true, .. } => "deltaSnapshot",
            Operation::Snapshot { .. } => "fullSnapshot",
            Operation::Defragmentation { .. } => "defragmentation",
        }
    }

    /// What the operation does, for messages ("take a full snapshot").
    pub fn verb(&self) -> &'static str {
        match self {
            Operation::Snapshot { delta: true, .. } => "take a delta snapshot",
            Operation::Snapshot { is_final: true, .. } => "take a final full snapshot",
            Operation::Snapshot { .. } => "take a full snapshot",
            Operation::Defragmentation { .. } => "defragment the members",
        }
    }

    /// How long it may take, from the moment it started.
    pub fn timeout(&self) -> Duration {
        match self {
            Operation::Snapshot { timeout, .. } | Operation::Defragmentation { timeout } => {
                *timeout
            }
        }
    }

    /// The sidecar's path (and query) that runs it.
    pub fn path(&self) -> &'static str {
        match self {
            Operation::Snapshot { delta: true, .. } => "/snapshot/delta",
            Operation::Snapshot { is_final: true, .. } => "/snapshot/full?final=true",
            Operation::Snapshot { .. } => "/snapshot/full",
            Operation::Defragmentation { .. } => "/defragment",
        }
    }
}

/// What a sidecar's answer means for the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: what was done.
    Done(String),
    /// Failed for good: a `lastErrors` code and why.
    Failed(&'static str, String),
    /// Not done yet, and worth asking again before the deadline: why.
    Retry(String),
}

/// The codes of failed executions.
pub mod codes {
    /// The sidecar refused or failed the operation.
    pub const SIDECAR_FAILED: &str = "ERR_SIDECAR_FAILED";
    /// The operation did not finish within its timeout.
    pub const TIMED_OUT: &str = "ERR_TIMED_OUT";
    /// The Etcd went away (or became invalid) while the task ran.
    pub const ETCD_GONE: &str = "ERR_ETCD_GONE";
}

/// The start of a body for a message (a sidecar's bodies are short, but
/// a proxy's error page need not be).
fn excerpt(body: &str) -> String {
    let body = body.trim();
    let mut s: String = body.chars().take(400).collect();
    if s.len() < body.len() {
        s.push('…');
    }
    s
}

/// What `answer` (from [`Operation::path`] on the backup leader's
/// sidecar) means. Transient refusals (the sidecar's rate limit on
/// on-demand snapshots, a run already in progress, an unreachable or
/// restarting sidecar) are retried until the deadline; anything else that
/// is not a success fails the task.
pub fn outcome(operation: &Operation, answer: Answer) -> Outcome {
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(e) => return Outcome::Retry(format!("the sidecar could not be reached: {e}")),
    };
    match (operation, status) {
        (Operation::Snapshot { delta, .. }, 200) => Outcome::Done(snapshot_done(*delta, &body)),
        (Operation::Defragmentation { .. }, 200) => {
            Outcome::Done(defrag_report("defragmented", &body))
        }
        (_, 429 | 502 | 503 | 504) => Outcome::Retry(format!(
            "the sidecar answered {status} ({}); asking again",
            excerpt(&body)
        )),
        (Operation::Defragmentation { .. }, 409) if !body.trim_start().starts_with('{') => {
            // "a defragmentation run is in progress": wait for it.
            Outcome::Retry(format!("{}; asking again once it ends", excerpt(&body)))
        }
        (Operation::Defragmentation { .. }, _) => Outcome::Failed(
            codes::SIDECAR_FAILED,
            format!(
                "the sidecar answered {status}: {}",
                defrag_report("not defragmented", &body)
            ),
        ),
        (Operation::Snapshot { .. }, _) => Outcome::Failed(
            codes::SIDECAR_FAILED,
            format!("the sidecar answered {status}: {}", excerpt(&body)),
        ),
    }
}

/// A snapshot's success message from the sidecar's JSON (upstream's
/// `brtypes.Snapshot`, or `null` when a delta had nothing to save).
fn snapshot_done(delta: bool, body: &str) -> String {
    let kind = if delta { "delta" } else { "full" };
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Null) => {
            format!("no {kind} snapshot was needed: nothing changed since the last one")
        }
        Ok(v) => {
            let name = v.get("snapName").and_then(|n| n.as_str()).unwrap_or("?");
            let prefix = v.get("prefix").and_then(|n| n.as_str()).unwrap_or("");
            let last = v.get("lastRevision").and_then(serde_json::Value::as_i64);
            let last = last
                .map(|r| format!(" (up to revision {r})"))
                .unwrap_or_default();
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            format!("{kind} snapshot {path} uploaded{last}")
        }
        Err(_) => format!("{kind} snapshot taken ({})", excerpt(body)),
    }
}

/// A defragmentation report's summary (the sidecar's `defrag::Report`:
/// outcome, reason, each member's outcome and reclaimed bytes, duration),
/// or the body's start when it is not one.
fn defrag_report(what: &str, body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return format!("{what}: {}", excerpt(body));
    };
    let Some(outcome) = v.get("outcome").and_then(|o| o.as_str()) else {
        return format!("{what}: {}", excerpt(body));
    };
    let text = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut summary = format!("{what} ({outcome}");
    let reason = text(&v, "reason");
    if !reason.is_empty() {
        summary.push_str(&format!(": {}", excerpt(&reason)));
    }
    summary.push(')');
    let members: Vec<String> = v
        .get("members")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .map(|m| {
            let reclaimed = m
                .get("reclaimedBytes")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            let reason = text(m, "reason");
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(", {}", excerpt(&reason))
            };
            format!(
                "{} {} ({reclaimed} bytes reclaimed{reason})",
                text(m, "name"),
                text(m, "outcome")
            )
        })
        .collect();
    if !members.is_empty() {
        summary.push_str(&format!("; members: {}", members.join("; ")));
    }
    if let Some(d) = v.get("durationSeconds").and_then(serde_json::Value::as_f64) {
        summary.push_str(&format!("; took {d:.1} s"));
    }
    summary
}
