//! The snapshot compaction controller.
//!
//! The backup leader's sidecar records the revision of its last full and
//! last delta snapshot as the holder identity of the leases
//! `<etcd>-full-snap` and `<etcd>-delta-snap`, and the bytes of the deltas
//! uploaded since the full snapshot in the annotation
//! [`druid_api::DELTA_BYTES_SINCE_FULL_ANNOTATION`] of the delta lease. A
//! restore has to download and merge every delta after the full snapshot,
//! so once there are too many events (`eventsThreshold`) or too many bytes
//! of them (an operator setting: events can be large, upstream issue
//! #591), this
//! controller starts the Job `<etcd>-compactor`, which merges them into a
//! new full snapshot. When there are far too many events
//! (`triggerFullSnapshotThreshold`), or the last compaction ran out of time
//! or the last full snapshot request failed, it asks the sidecar for a full
//! snapshot instead (`GET /snapshot/full`).
//!
//! Finished jobs are reported in the condition
//! `LastSnapshotCompactionSucceeded`, an event and metrics, and deleted.
//! [`decide`], [`job_state`] and [`failure`] are pure; [`reconcile`] reads
//! from watch caches and writes only when something is to be done.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use druid_api::etcd::Condition;
use druid_api::{Etcd, EtcdModel};
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt as _, reflector, watcher};
use kube::{Api, ResourceExt as _};

use super::Context;
use super::status::types::LAST_SNAPSHOT_COMPACTION_SUCCEEDED as CONDITION;
use super::validate::{self, Checked};
use crate::components::{BuildContext, BuildError, compaction_job};
use crate::metrics::{CompactionJobLabels, FullSnapshotLabels, NamespaceLabels};
use crate::names;

/// The field manager of the condition writes.
const FIELD_MANAGER: &str = "druid-compaction";
/// The action of the events this controller publishes.
const EVENT_ACTION: &str = "Compaction";
/// How long the sidecar may take to answer beyond its own snapshot timeout.
const FULL_SNAPSHOT_GRACE: Duration = Duration::from_secs(60);
/// How long connecting to the sidecar may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// When to look again at a job being deleted, or after a finished one.
const JOB_REQUEUE: Duration = Duration::from_secs(10);
/// When to retry after a failure (a failed full snapshot request, API
/// trouble).
const RETRY: Duration = Duration::from_secs(60);

/// The default of `--sidecar-url-template`: the sidecar's HTTP API through
/// the client Service.
pub const DEFAULT_SIDECAR_URL_TEMPLATE: &str = "{scheme}://{etcd}-client.{namespace}.svc:{port}";

/// Operator settings of the compaction controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionSettings {
    /// Whether the controller runs.
    pub enabled: bool,
    /// Delta events after which a compaction runs, for Etcds whose spec
    /// sets none (`spec.backup.snapshotCompaction.eventsThreshold`).
    pub events_threshold: i64,
    /// Delta events after which a full snapshot is taken instead, for Etcds
    /// whose spec sets none
    /// (`spec.backup.snapshotCompaction.triggerFullSnapshotThreshold`).
    pub trigger_full_snapshot_threshold: i64,
    /// Bytes of delta snapshots since the last full snapshot after which a
    /// compaction runs, whatever the number of events.
    pub bytes_threshold: u64,
    /// How long one compaction job may run.
    pub active_deadline: Duration,
    /// The sidecar's base URL, with the placeholders `{scheme}` (`http`,
    /// or `https` with backup TLS), `{etcd}`, `{namespace}` and `{port}`
    /// (the backup port); `/snapshot/full` is appended.
    pub sidecar_url_template: String,
    /// Etcds handled at once.
    pub workers: u16,
}

impl Default for CompactionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            events_threshold: 1_000_000,
            trigger_full_snapshot_threshold: 3_000_000,
            bytes_threshold: 1 << 30,
            active_deadline: Duration::from_secs(3 * 3600),
            sidecar_url_template: DEFAULT_SIDECAR_URL_TEMPLATE.into(),
            workers: 3,
        }
    }
}

impl CompactionSettings {
    /// Checks the settings (at start-up); the error says which is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.events_threshold <= 0 {
            return Err(format!(
                "the compaction events threshold must be positive, got {}",
                self.events_threshold
            ));
        }
        if self.trigger_full_snapshot_threshold <= 0 {
            return Err(format!(
                "the full snapshot threshold must be positive, got {}",
                self.trigger_full_snapshot_threshold
            ));
        }
        if self.bytes_threshold == 0 {
            return Err("the compaction bytes threshold must be positive".into());
        }
        if self.active_deadline < Duration::from_secs(1) {
            return Err("the compaction job's active deadline must be at least 1s".into());
        }
        let sample = sidecar_url(&self.sidecar_url_template, "http", "etcd", "ns", 8080);
        if !(sample.starts_with("http://") || sample.starts_with("https://")) {
            return Err(format!(
                "the sidecar URL template {:?} must start with {{scheme}}://, http:// or https://",
                self.sidecar_url_template
            ));
        }
        Ok(())
    }
}

/// Reasons of the `LastSnapshotCompactionSucceeded` condition.
pub mod reasons {
    /// The compaction job succeeded.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The sidecar took a full snapshot instead of a compaction.
    pub const FULL_SNAPSHOT_TAKEN: &str = "FullSnapshotTakenSuccessfully";
    /// The sidecar could not be asked for a full snapshot, or failed it.
    pub const ERROR_TRIGGERING_FULL_SNAPSHOT: &str = "ErrorTriggeringFullSnapshot";
    /// The job ran longer than its active deadline.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// The job failed and no pod says why.
    pub const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
    /// The scheduler preempted the pod.
    pub const PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";
    /// The pod was deleted because of a node taint.
    pub const DELETION_BY_TAINT_MANAGER: &str = "DeletionByTaintManager";
    /// The pod was evicted through the eviction API (a drain).
    pub const EVICTION_BY_EVICTION_API: &str = "EvictionByEvictionAPI";
    /// The kubelet stopped the pod (node pressure, shutdown).
    pub const TERMINATION_BY_KUBELET: &str = "TerminationByKubelet";
    /// The compactor exited with an error.
    pub const PROCESS_FAILURE: &str = "ProcessFailure";
    /// Nothing tells why the job failed.
    pub const UNKNOWN: &str = "Unknown";
    /// The Etcd's compaction settings are invalid: nothing runs.
    pub const INVALID_SETTINGS: &str = "InvalidCompactionSettings";
}

/// Why a reconcile failed (retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The job could not be built.
    #[error("cannot build the compaction job: {0}")]
    Build(#[from] BuildError),
    /// The reconcile panicked (a bug); contained to this Etcd.
    #[error(
        "the compaction reconcile panicked: {0} (a bug in druid: please report it with the Etcd's spec)"
    )]
    Panicked(String),
}

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
    /// Below the thresholds.
    Wait {
        /// Delta events since the last full snapshot.
        events: i64,
    },
    /// Start a compaction job.
    Compact {
        /// Delta events since the last full snapshot.
        events: i64,
        /// Why.
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

/// Where a compaction job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Pending or running.
    Active,
    /// Its `Complete` condition is True.
    Succeeded,
    /// Its `Failed` condition is True.
    Failed {
        /// The condition's reason (`DeadlineExceeded`,
        /// `BackoffLimitExceeded`, ...).
        reason: Option<String>,
        /// The condition's message.
        message: Option<String>,
    },
}

/// The job's state from its conditions.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return JobState::Succeeded,
            "Failed" => {
                return JobState::Failed {
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                };
            }
            _ => {}
        }
    }
    JobState::Active
}

/// Why a job failed: a condition reason and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One of [`reasons`].
    pub reason: &'static str,
    /// What happened, for the condition message.
    pub detail: String,
}

/// Why a job failed, from its `Failed` condition and its pods: a deadline,
/// else the newest pod's `DisruptionTarget` condition (preemption, taint,
/// eviction, kubelet), else its container's non-zero exit, else the job's
/// reason.
pub fn failure(job_reason: Option<&str>, job_message: Option<&str>, pods: &[Pod]) -> Failure {
    let job_detail = || {
        job_message
            .filter(|m| !m.is_empty())
            .map_or_else(|| "no message".to_string(), ToString::to_string)
    };
    if job_reason == Some(reasons::DEADLINE_EXCEEDED) {
        return Failure {
            reason: reasons::DEADLINE_EXCEEDED,
            detail: job_detail(),
        };
    }
    let newest = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if let Some(pod) = newest {
        let name = pod.name_any();
        let status = pod.status.as_ref();
        let disruption = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
        if let Some(c) = disruption {
            let reason = c.reason.as_deref().unwrap_or_default();
            let known = [
                reasons::PREEMPTION_BY_SCHEDULER,
                reasons::DELETION_BY_TAINT_MANAGER,
                reasons::EVICTION_BY_EVICTION_API,
                reasons::TERMINATION_BY_KUBELET,
            ]
            .into_iter()
            .find(|r| *r == reason);
            let message = c.message.as_deref().unwrap_or("no message");
            return Failure {
                reason: known.unwrap_or(reasons::UNKNOWN),
                detail: format!("pod {name} was disrupted ({reason}: {message})"),
            };
        }
        let terminated = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .find(|t| t.exit_code != 0);
        if let Some(t) = terminated {
            return Failure {
                reason: reasons::PROCESS_FAILURE,
                detail: format!(
                    "the compactor in pod {name} exited with code {}{}{}",
                    t.exit_code,
                    t.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                    t.message
                        .as_deref()
                        .filter(|m| !m.is_empty())
                        .map(|m| format!(": {}", m.trim()))
                        .unwrap_or_default()
                ),
            };
        }
    }
    if job_reason == Some(reasons::BACKOFF_LIMIT_EXCEEDED) {
        return Failure {
            reason: reasons::BACKOFF_LIMIT_EXCEEDED,
            detail: format!("{} (no pod is left to say why)", job_detail()),
        };
    }
    Failure {
        reason: reasons::UNKNOWN,
        detail: format!(
            "the job failed ({}: {}) and no pod says why",
            job_reason.unwrap_or("no reason"),
            job_detail()
        ),
    }
}

/// The `failureReason` metric label of a condition reason (upstream's
/// values).
pub fn failure_label(reason: &str) -> &'static str {
    match reason {
        reasons::SUCCEEDED => "none",
        reasons::PREEMPTION_BY_SCHEDULER => "preempted",
        reasons::DELETION_BY_TAINT_MANAGER
        | reasons::EVICTION_BY_EVICTION_API
        | reasons::TERMINATION_BY_KUBELET => "evicted",
        reasons::DEADLINE_EXCEEDED => "deadlineExceeded",
        reasons::PROCESS_FAILURE => "processFailure",
        _ => "unknown",
    }
}

/// What to tell the user after a failed job.
fn failure_advice(reason: &str, deadline: Duration) -> String {
    match reason {
        reasons::DEADLINE_EXCEEDED => format!(
            "it did not finish within its active deadline of {}s and was stopped. The next trigger asks the backup-restore sidecar for a full snapshot instead; if this repeats, give the job more resources (spec.backup.snapshotCompaction.resources) or raise the operator's --compaction-active-deadline",
            deadline.as_secs()
        ),
        reasons::PREEMPTION_BY_SCHEDULER
        | reasons::DELETION_BY_TAINT_MANAGER
        | reasons::EVICTION_BY_EVICTION_API
        | reasons::TERMINATION_BY_KUBELET => {
            "the cluster stopped its pod; nothing is wrong with the snapshots, and the next trigger starts a new job".into()
        }
        reasons::PROCESS_FAILURE => {
            "check the store (credentials, reachability) and that the job's memory fits the database (spec.backup.snapshotCompaction.resources); the next trigger starts a new job".into()
        }
        _ => "check the job's events and the store; the next trigger starts a new job".into(),
    }
}

/// The sidecar's base URL from the template.
pub fn sidecar_url(template: &str, scheme: &str, etcd: &str, namespace: &str, port: i32) -> String {
    template
        .replace("{scheme}", scheme)
        .replace("{etcd}", etcd)
        .replace("{namespace}", namespace)
        .replace("{port}", &port.to_string())
}

/// The controller's shared state.
pub struct Compaction {
    ctx: Arc<Context>,
    jobs: reflector::Store<Job>,
    /// UIDs of finished jobs already reported but not yet deleted (so a
    /// failed deletion does not count a job twice).
    reported: Mutex<HashSet<String>>,
}

/// Runs the controller until `shutdown` resolves. `lease_events` are the
/// operator's lease watch (its cache is in `ctx.caches`): snapshot lease
/// changes trigger a look at their Etcd.
pub async fn run(
    ctx: Arc<Context>,
    lease_events: impl Stream<Item = Result<Lease, watcher::Error>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (etcd_store, etcd_writer) = reflector::store();
    let etcd_events = watcher(
        Api::<Etcd>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(etcd_writer)
    .applied_objects()
    .predicate_filter(spec_or_deletion, PredicateConfig::default());
    let (job_store, job_writer) = reflector::store();
    let job_events = watcher(
        Api::<Job>::all(client),
        watcher::Config::default().labels(&format!(
            "app.kubernetes.io/managed-by={},app.kubernetes.io/component={}",
            names::MANAGED_BY,
            names::component::COMPACTION_JOB
        )),
    )
    .default_backoff()
    .modify(|job| job.managed_fields_mut().clear())
    .reflect(job_writer)
    .touched_objects();
    let snapshot_lease_events = lease_events
        .try_filter(|l| {
            std::future::ready(
                l.labels()
                    .get("app.kubernetes.io/component")
                    .map(String::as_str)
                    == Some(names::component::SNAPSHOT_LEASE),
            )
        })
        .predicate_filter(snapshot_revision, PredicateConfig::default());
    let workers = ctx.settings.compaction.workers.max(1);
    let state = Arc::new(Compaction {
        ctx,
        jobs: job_store,
        reported: Mutex::default(),
    });
    tracing::info!(
        settings = ?state.ctx.settings.compaction,
        "snapshot compaction controller started"
    );
    Controller::for_stream(etcd_events, etcd_store)
        .owns_stream(job_events)
        .owns_stream(snapshot_lease_events)
        .with_config(kube::runtime::controller::Config::default().concurrency(workers))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "compaction controller");
            }
        })
        .await;
}

/// An Etcd's spec and deletion: status writes trigger nothing.
fn spec_or_deletion(etcd: &Etcd) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    etcd.metadata.generation.hash(&mut h);
    etcd.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// A snapshot lease's revision and bytes: renewals without a new snapshot
/// trigger nothing.
fn snapshot_revision(lease: &Lease) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_ref())
        .hash(&mut h);
    lease
        .annotations()
        .get(druid_api::DELTA_BYTES_SINCE_FULL_ANNOTATION)
        .hash(&mut h);
    Some(h.finish())
}

/// Retries after an error.
pub fn error_policy(etcd: Arc<Etcd>, error: &Error, _state: Arc<Compaction>) -> Action {
    tracing::warn!(etcd = %etcd.name_any(), namespace = ?etcd.namespace(), error = %error, "compaction reconcile failed; retrying");
    Action::requeue(RETRY)
}

/// Looks at one Etcd: its compaction job if there is one, else its
/// snapshot leases. A panic (a bug) fails this Etcd's reconcile only.
pub async fn reconcile(etcd: Arc<Etcd>, state: Arc<Compaction>) -> Result<Action, Error> {
    super::contain::catch_async(Box::pin(reconcile_one(etcd, state)))
        .await
        .unwrap_or_else(|panic| Err(Error::Panicked(panic)))
}

async fn reconcile_one(etcd: Arc<Etcd>, state: Arc<Compaction>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let ns = etcd.namespace().unwrap_or_default();
    let name = etcd.name_any();
    let job_name = names::compaction_job(&name);
    let job = state
        .jobs
        .get(&reflector::ObjectRef::new(&job_name).within(&ns))
        .map(|j| (*j).clone());
    let model = EtcdModel::from_etcd(&etcd);

    let no_store = model.as_ref().is_ok_and(|m| m.store.is_none());
    if etcd.metadata.deletion_timestamp.is_some() || no_store {
        if job.is_some() {
            tracing::info!(etcd = %name, namespace = %ns, job = %job_name, deleting = etcd.metadata.deletion_timestamp.is_some(), "deleting the compaction job: the Etcd is being deleted or has no store");
            delete_job(ctx, &ns, &job_name).await?;
        }
        update_jobs_current(&state, &ns);
        return Ok(Action::await_change());
    }
    let Ok(model) = model else {
        // The etcd controller reports the invalid spec.
        tracing::debug!(etcd = %name, namespace = %ns, "invalid spec: no compaction decision");
        return Ok(Action::await_change());
    };

    if let Some(job) = job {
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(Action::requeue(JOB_REQUEUE));
        }
        match job_state(&job) {
            JobState::Active => {
                update_jobs_current(&state, &ns);
                return Ok(Action::await_change());
            }
            finished => {
                finish(&state, &etcd, &job, finished).await?;
                update_jobs_current(&state, &ns);
                return Ok(Action::requeue(JOB_REQUEUE));
            }
        }
    }

    let last = current_condition(&etcd);
    let thresholds = match thresholds(&model, &ctx.settings.compaction) {
        Ok(t) => t,
        Err(problem) => {
            let message = format!("{problem}; no compaction runs until it is fixed");
            let changed = set_condition(
                ctx,
                &ns,
                &name,
                "False",
                reasons::INVALID_SETTINGS,
                &message,
            )
            .await?;
            if changed {
                tracing::warn!(etcd = %name, namespace = %ns, %problem, "invalid compaction settings: no compaction runs");
                super::publish(
                    ctx,
                    &etcd,
                    EventType::Warning,
                    EVENT_ACTION,
                    reasons::INVALID_SETTINGS,
                    &message,
                )
                .await;
            } else {
                tracing::debug!(etcd = %name, namespace = %ns, %problem, "invalid compaction settings (already reported)");
            }
            return Ok(Action::await_change());
        }
    };
    if last
        .as_ref()
        .is_some_and(|c| c.reason == reasons::INVALID_SETTINGS)
    {
        tracing::info!(etcd = %name, namespace = %ns, "compaction settings are valid again");
        remove_condition(ctx, &ns, &name, reasons::INVALID_SETTINGS).await?;
    }

    let obs = observe_cached(ctx, &ns, &name).await?;
    let last_reason = last.as_ref().map(|c| c.reason.as_str());
    let decision = decide(&obs, &thresholds, last_reason);
    record_events(ctx, &ns, &decision);
    if matches!(decision, Decision::NoSnapshots | Decision::Wait { .. }) {
        tracing::debug!(etcd = %name, namespace = %ns, ?decision, "no compaction due");
        return Ok(Action::await_change());
    }
    // About to act: confirm with the API server's copies, as the caches
    // may lag behind (a job that just finished updated the full lease).
    let fresh = observe_api(ctx, &ns, &name).await?;
    let decision = decide(&fresh, &thresholds, last_reason);
    record_events(ctx, &ns, &decision);
    match decision {
        Decision::NoSnapshots | Decision::Wait { .. } => Ok(Action::await_change()),
        Decision::Compact { events, trigger } => {
            start_job(&state, &etcd, &model, events, trigger, &thresholds).await
        }
        Decision::FullSnapshot { events, cause } => {
            full_snapshot(ctx, &etcd, &model, events, &cause).await
        }
    }
}

fn record_events(ctx: &Context, ns: &str, decision: &Decision) {
    let events = match decision {
        Decision::NoSnapshots => return,
        Decision::Wait { events }
        | Decision::Compact { events, .. }
        | Decision::FullSnapshot { events, .. } => *events,
    };
    ctx.metrics
        .compaction
        .num_delta_events
        .get_or_create(&NamespaceLabels {
            etcd_namespace: ns.to_string(),
        })
        .set(events);
}

/// Compaction jobs running in `ns`, from the cache.
fn update_jobs_current(state: &Compaction, ns: &str) {
    let running = state
        .jobs
        .state()
        .iter()
        .filter(|j| {
            j.namespace().as_deref() == Some(ns)
                && j.metadata.deletion_timestamp.is_none()
                && job_state(j) == JobState::Active
        })
        .count();
    state
        .ctx
        .metrics
        .compaction
        .jobs_current
        .get_or_create(&NamespaceLabels {
            etcd_namespace: ns.to_string(),
        })
        .set(i64::try_from(running).unwrap_or(i64::MAX));
}

fn current_condition(etcd: &Etcd) -> Option<Condition> {
    etcd.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION)
        .cloned()
}

/// A snapshot lease's revision: `None` before the first snapshot; a holder
/// that is no number is logged and treated as no snapshot.
fn lease_revision(lease: Option<&Lease>) -> Option<i64> {
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

fn lease_bytes(lease: Option<&Lease>) -> Option<u64> {
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

fn observation(full: Option<&Lease>, delta: Option<&Lease>) -> Observation {
    Observation {
        full_revision: lease_revision(full),
        delta_revision: lease_revision(delta),
        delta_bytes: lease_bytes(delta),
    }
}

async fn observe_cached(ctx: &Context, ns: &str, etcd: &str) -> Result<Observation, kube::Error> {
    let Some(caches) = ctx.caches.get() else {
        return observe_api(ctx, ns, etcd).await;
    };
    caches.ready().await;
    let full = caches.lease(ns, &names::full_snapshot_lease(etcd));
    let delta = caches.lease(ns, &names::delta_snapshot_lease(etcd));
    Ok(observation(full.as_ref(), delta.as_ref()))
}

async fn observe_api(ctx: &Context, ns: &str, etcd: &str) -> Result<Observation, kube::Error> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), ns);
    let full = api.get_opt(&names::full_snapshot_lease(etcd)).await?;
    let delta = api.get_opt(&names::delta_snapshot_lease(etcd)).await?;
    Ok(observation(full.as_ref(), delta.as_ref()))
}

/// Creates the compaction job.
async fn start_job(
    state: &Compaction,
    etcd: &Etcd,
    model: &EtcdModel,
    events: i64,
    trigger: Trigger,
    t: &Thresholds,
) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let ns = &model.namespace;
    let job_name = names::compaction_job(&model.name);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    if jobs.get_metadata_opt(&job_name).await?.is_some() {
        // The cache has not seen it yet: its events will come.
        return Ok(Action::requeue(JOB_REQUEUE));
    }
    let wiring = match validate::references(ctx, etcd, model).await? {
        Checked::Ok { wiring, .. } => wiring,
        Checked::Problems(problems) => {
            // The etcd controller reports them (SpecValid); retry later.
            tracing::warn!(etcd = %model.name, namespace = %ns, problems = ?problems.iter().map(ToString::to_string).collect::<Vec<_>>(), "a compaction is due, but the Etcd's store or Secrets are not usable");
            return Ok(Action::requeue(RETRY));
        }
    };
    let bctx = BuildContext {
        etcd_image: ctx.settings.etcd_image.clone(),
        backup_image: ctx.settings.backup_image.clone(),
        store_wiring: wiring,
    };
    let job = compaction_job::build(etcd, model, &bctx, ctx.settings.compaction.active_deadline)?;
    let pp = PostParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match jobs.create(&pp, &job).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(JOB_REQUEUE)),
        Err(e) => return Err(e.into()),
    }
    let why = match trigger {
        Trigger::Events => format!(
            "{events} delta events since the last full snapshot (threshold {})",
            t.events
        ),
        Trigger::Bytes(b) => format!(
            "{b} bytes of delta snapshots since the last full snapshot (threshold {}; {events} events)",
            t.bytes
        ),
    };
    tracing::info!(etcd = %model.name, namespace = %ns, job = %job_name, events, ?trigger, "compaction job created");
    super::publish(
        ctx,
        etcd,
        EventType::Normal,
        EVENT_ACTION,
        "CompactionJobCreated",
        &format!("started compaction job {job_name}: {why}"),
    )
    .await;
    update_jobs_current(state, ns);
    Ok(Action::await_change())
}

/// Reports a finished job, then deletes it.
async fn finish(
    state: &Compaction,
    etcd: &Etcd,
    job: &Job,
    finished: JobState,
) -> Result<(), Error> {
    let ctx = &state.ctx;
    let ns = etcd.namespace().unwrap_or_default();
    let name = etcd.name_any();
    let job_name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let already = state
        .reported
        .lock()
        .map(|r| r.contains(&uid))
        .unwrap_or(false);
    if !already {
        let started = job.status.as_ref().and_then(|s| s.start_time.as_ref());
        let (status, reason, message) = match &finished {
            JobState::Succeeded => {
                let duration = job_duration(
                    started,
                    job.status.as_ref().and_then(|s| s.completion_time.as_ref()),
                );
                (
                    "True",
                    reasons::SUCCEEDED,
                    format!(
                        "compaction job {job_name} succeeded{}: the full snapshot and the deltas after it are compacted into a new full snapshot",
                        duration
                            .map(|d| format!(" after {}s", d.as_secs()))
                            .unwrap_or_default()
                    ),
                )
            }
            JobState::Failed { reason, message } => {
                let pods = job_pods(ctx, &ns, job).await?;
                let f = failure(reason.as_deref(), message.as_deref(), &pods);
                (
                    "False",
                    f.reason,
                    format!(
                        "compaction job {job_name} failed: {}; {}",
                        f.detail,
                        failure_advice(f.reason, ctx.settings.compaction.active_deadline)
                    ),
                )
            }
            JobState::Active => return Ok(()),
        };
        set_condition(ctx, &ns, &name, status, reason, &message).await?;
        let labels = CompactionJobLabels {
            succeeded: status == "True",
            failure_reason: failure_label(reason),
            etcd_namespace: ns.clone(),
        };
        ctx.metrics
            .compaction
            .jobs_total
            .get_or_create(&labels)
            .inc();
        let finished_at = match &finished {
            JobState::Succeeded => job.status.as_ref().and_then(|s| s.completion_time.clone()),
            _ => finished_condition_time(job),
        };
        if let Some(d) = job_duration(started, finished_at.as_ref()) {
            ctx.metrics
                .compaction
                .job_duration
                .get_or_create(&labels)
                .observe(d.as_secs_f64());
        }
        if status == "True" {
            tracing::info!(etcd = %name, namespace = %ns, job = %job_name, "compaction job succeeded");
        } else {
            tracing::warn!(etcd = %name, namespace = %ns, job = %job_name, reason, %message, "compaction job failed");
        }
        super::publish(
            ctx,
            etcd,
            if status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            EVENT_ACTION,
            if status == "True" {
                "CompactionSucceeded"
            } else {
                "CompactionFailed"
            },
            &message,
        )
        .await;
        if let Ok(mut r) = state.reported.lock() {
            r.insert(uid.clone());
        }
    }
    delete_job(ctx, &ns, &job_name).await?;
    if let Ok(mut r) = state.reported.lock() {
        r.remove(&uid);
    }
    Ok(())
}

fn finished_condition_time(job: &Job) -> Option<Time> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Failed" || c.type_ == "Complete") && c.status == "True")?
        .last_transition_time
        .clone()
}

fn job_duration(start: Option<&Time>, end: Option<&Time>) -> Option<Duration> {
    let (start, end) = (start?, end?);
    let ms = end
        .0
        .as_millisecond()
        .checked_sub(start.0.as_millisecond())?;
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// The job's pods (for why it failed).
async fn job_pods(ctx: &Context, ns: &str, job: &Job) -> Result<Vec<Pod>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = match job.uid() {
        Some(uid) => format!("batch.kubernetes.io/controller-uid={uid}"),
        None => format!("batch.kubernetes.io/job-name={}", job.name_any()),
    };
    Ok(pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Deletes the job and, first, its pods (foreground propagation).
async fn delete_job(ctx: &Context, ns: &str, name: &str) -> Result<(), kube::Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    match jobs.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Asks the sidecar for a full snapshot and reports how it went.
async fn full_snapshot(
    ctx: &Context,
    etcd: &Etcd,
    model: &EtcdModel,
    events: i64,
    cause: &FullSnapshotCause,
) -> Result<Action, Error> {
    let ns = &model.namespace;
    let name = &model.name;
    let scheme = if model.backup.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = sidecar_url(
        &ctx.settings.compaction.sidecar_url_template,
        scheme,
        name,
        ns,
        model.backup.port,
    );
    let url = format!("{}/snapshot/full", base.trim_end_matches('/'));
    let why = match cause {
        FullSnapshotCause::TooManyEvents => format!(
            "{events} delta events since the last full snapshot, at least the full snapshot threshold"
        ),
        FullSnapshotCause::LastAttempt(r) => format!(
            "{events} delta events since the last full snapshot, and the last attempt ended with {r}"
        ),
    };
    tracing::info!(etcd = %name, namespace = %ns, %url, events, ?cause, "asking the sidecar for a full snapshot instead of a compaction");
    let timeout = model.backup.snapshot_timeout + FULL_SNAPSHOT_GRACE;
    let result = match ca_bundle(ctx, model, &url).await {
        Ok(ca) => request_full_snapshot(url.clone(), ca, timeout).await,
        Err(e) => Err(e),
    };
    let succeeded = result.is_ok();
    ctx.metrics
        .compaction
        .full_snapshot_triggered
        .get_or_create(&FullSnapshotLabels {
            succeeded: succeeded.to_string(),
            etcd_namespace: ns.clone(),
        })
        .inc();
    match result {
        Ok(()) => {
            let message = format!("the backup-restore sidecar took a full snapshot ({why})");
            tracing::info!(etcd = %name, namespace = %ns, events, "full snapshot taken");
            set_condition(
                ctx,
                ns,
                name,
                "True",
                reasons::FULL_SNAPSHOT_TAKEN,
                &message,
            )
            .await?;
            super::publish(
                ctx,
                etcd,
                EventType::Normal,
                EVENT_ACTION,
                "FullSnapshotTaken",
                &message,
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            let message = format!(
                "could not get a full snapshot from the backup-restore sidecar: {e}. It was asked for because of {why}; the deltas stay uncompacted until it works: check that the Etcd's pods run and their sidecar serves on port {} (a restore meanwhile merges every delta). Retried at the next delta snapshot or within {}s",
                model.backup.port,
                RETRY.as_secs()
            );
            tracing::warn!(etcd = %name, namespace = %ns, error = %e, "cannot trigger a full snapshot");
            if set_condition(
                ctx,
                ns,
                name,
                "False",
                reasons::ERROR_TRIGGERING_FULL_SNAPSHOT,
                &message,
            )
            .await?
            {
                super::publish(
                    ctx,
                    etcd,
                    EventType::Warning,
                    EVENT_ACTION,
                    reasons::ERROR_TRIGGERING_FULL_SNAPSHOT,
                    &message,
                )
                .await;
            }
            Ok(Action::requeue(RETRY))
        }
    }
}

/// The CA bundle that verifies the sidecar's HTTPS certificate
/// (`spec.backup.tls.tlsCASecretRef`), for an `https` URL.
async fn ca_bundle(ctx: &Context, model: &EtcdModel, url: &str) -> Result<Option<Vec<u8>>, String> {
    let Some(tls) = model
        .backup
        .tls
        .as_ref()
        .filter(|_| url.starts_with("https://"))
    else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let secret = secrets
        .get_opt(&tls.ca_secret)
        .await
        .map_err(|e| {
            format!(
                "cannot read the CA Secret {}/{}: {e}",
                model.namespace, tls.ca_secret
            )
        })?
        .ok_or_else(|| {
            format!(
                "the CA Secret {}/{} (spec.backup.tls.tlsCASecretRef) does not exist",
                model.namespace, tls.ca_secret
            )
        })?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(&tls.ca_key))
        .map(|b| Some(b.0.clone()))
        .ok_or_else(|| {
            format!(
                "the CA Secret {}/{} has no key {:?} (spec.backup.tls.tlsCASecretRef.dataKey)",
                model.namespace, tls.ca_secret, tls.ca_key
            )
        })
}

/// `GET <url>` on a blocking thread (ureq with rustls; `ca` is the PEM
/// bundle to trust for HTTPS). Any answer but 2xx is an error with the
/// status and the start of the body.
async fn request_full_snapshot(
    url: String,
    ca: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The sidecar is in the cluster: never through a proxy.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(timeout));
        if let Some(pem) = ca {
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(
                    "the CA bundle (spec.backup.tls.tlsCASecretRef) holds no PEM certificate"
                        .to_string(),
                );
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        let agent: ureq::Agent = config.build().into();
        let mut resp = agent
            .get(&url)
            .call()
            .map_err(|e| format!("GET {url} failed: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        Err(format!(
            "GET {url} answered {status}: {}",
            body.trim().chars().take(300).collect::<String>()
        ))
    })
    .await
    .map_err(|e| format!("the request task failed: {e}"))?
}

/// Sets the condition unless it already says the same; `Ok(true)` if it
/// was written.
async fn set_condition(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Result<bool, kube::Error> {
    update_conditions(ctx, ns, name, |conditions| {
        let old = conditions.iter().find(|c| c.type_ == CONDITION);
        if old.is_some_and(|c| c.status == status && c.reason == reason && c.message == message) {
            return None;
        }
        let now = Time(Timestamp::now());
        let transition = old
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        let mut out: Vec<Condition> = conditions
            .iter()
            .filter(|c| c.type_ != CONDITION)
            .cloned()
            .collect();
        out.push(Condition {
            type_: CONDITION.into(),
            status: status.into(),
            last_transition_time: Some(transition),
            last_update_time: Some(now),
            reason: reason.into(),
            message: message.into(),
        });
        out.sort_by(|a, b| a.type_.cmp(&b.type_));
        Some(out)
    })
    .await
}

/// Removes the condition if it has `reason`.
async fn remove_condition(
    ctx: &Context,
    ns: &str,
    name: &str,
    reason: &str,
) -> Result<bool, kube::Error> {
    update_conditions(ctx, ns, name, |conditions| {
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
    })
    .await
}

/// Rewrites the Etcd's conditions with `change` (`None`: nothing to do),
/// on a fresh read and with its resourceVersion as a precondition, so that
/// the etcd controller's conditions are never overwritten with a stale
/// copy (nor ours by it: it writes with the same precondition). Retried on
/// conflicts.
async fn update_conditions(
    ctx: &Context,
    ns: &str,
    name: &str,
    change: impl Fn(&[Condition]) -> Option<Vec<Condition>>,
) -> Result<bool, kube::Error> {
    let api: Api<Etcd> = Api::namespaced(ctx.client.clone(), ns);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(etcd) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let current = etcd
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let Some(conditions) = change(current) else {
            return Ok(false);
        };
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": etcd.resource_version() },
            "status": { "conditions": conditions },
        });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch_status(name, &pp, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => {
                tracing::debug!(etcd = %name, namespace = %ns, attempt, "the Etcd changed while its compaction condition was written; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };

    use super::*;
    use crate::components::fixtures;

    const T: Thresholds = Thresholds {
        events: 1000,
        full_snapshot: 3000,
        bytes: 1 << 20,
    };

    fn obs(full: i64, delta: i64, bytes: Option<u64>) -> Observation {
        Observation {
            full_revision: Some(full),
            delta_revision: Some(delta),
            delta_bytes: bytes,
        }
    }

    #[test]
    fn below_every_threshold_waits() {
        assert_eq!(
            decide(&obs(100, 1099, None), &T, None),
            Decision::Wait { events: 999 }
        );
        assert_eq!(
            decide(&obs(100, 1099, Some((1 << 20) - 1)), &T, None),
            Decision::Wait { events: 999 }
        );
    }

    #[test]
    fn without_both_revisions_nothing_is_compared() {
        let mut o = obs(0, 5000, None);
        o.full_revision = None;
        assert_eq!(decide(&o, &T, None), Decision::NoSnapshots);
        let mut o = obs(0, 5000, None);
        o.delta_revision = None;
        assert_eq!(decide(&o, &T, None), Decision::NoSnapshots);
    }

    #[test]
    fn the_events_threshold_starts_a_job() {
        assert_eq!(
            decide(&obs(100, 1100, None), &T, None),
            Decision::Compact {
                events: 1000,
                trigger: Trigger::Events
            }
        );
        // A successful last run changes nothing.
        assert_eq!(
            decide(&obs(100, 1100, None), &T, Some(reasons::SUCCEEDED)),
            Decision::Compact {
                events: 1000,
                trigger: Trigger::Events
            }
        );
        assert_eq!(
            decide(
                &obs(100, 1100, None),
                &T,
                Some(reasons::FULL_SNAPSHOT_TAKEN)
            ),
            Decision::Compact {
                events: 1000,
                trigger: Trigger::Events
            }
        );
    }

    #[test]
    fn the_bytes_threshold_starts_a_job_with_few_events() {
        assert_eq!(
            decide(&obs(100, 110, Some(1 << 20)), &T, None),
            Decision::Compact {
                events: 10,
                trigger: Trigger::Bytes(1 << 20)
            }
        );
    }

    #[test]
    fn bytes_without_a_delta_after_the_full_snapshot_are_stale() {
        assert_eq!(
            decide(&obs(200, 200, Some(5 << 30)), &T, None),
            Decision::Wait { events: 0 }
        );
        // A delta lease behind the full lease (a full snapshot just taken).
        assert_eq!(
            decide(&obs(300, 200, Some(5 << 30)), &T, None),
            Decision::Wait { events: 0 }
        );
    }

    #[test]
    fn the_full_snapshot_threshold_asks_for_a_full_snapshot() {
        assert_eq!(
            decide(&obs(0, 3000, None), &T, None),
            Decision::FullSnapshot {
                events: 3000,
                cause: FullSnapshotCause::TooManyEvents
            }
        );
        // Also when it is below the events threshold.
        let t = Thresholds { events: 5000, ..T };
        assert_eq!(
            decide(&obs(0, 3000, None), &t, None),
            Decision::FullSnapshot {
                events: 3000,
                cause: FullSnapshotCause::TooManyEvents
            }
        );
    }

    #[test]
    fn a_deadline_or_a_failed_full_snapshot_turns_the_next_compaction_into_a_full_snapshot() {
        for reason in [
            reasons::DEADLINE_EXCEEDED,
            reasons::ERROR_TRIGGERING_FULL_SNAPSHOT,
        ] {
            assert_eq!(
                decide(&obs(0, 1500, None), &T, Some(reason)),
                Decision::FullSnapshot {
                    events: 1500,
                    cause: FullSnapshotCause::LastAttempt(reason.into())
                }
            );
            assert_eq!(
                decide(&obs(0, 50, Some(1 << 21)), &T, Some(reason)),
                Decision::FullSnapshot {
                    events: 50,
                    cause: FullSnapshotCause::LastAttempt(reason.into())
                }
            );
            // ... but only once a compaction is due.
            assert_eq!(
                decide(&obs(0, 500, None), &T, Some(reason)),
                Decision::Wait { events: 500 }
            );
        }
        // Other failures retry the job.
        assert_eq!(
            decide(&obs(0, 1500, None), &T, Some(reasons::PROCESS_FAILURE)),
            Decision::Compact {
                events: 1500,
                trigger: Trigger::Events
            }
        );
    }

    #[test]
    fn thresholds_come_from_the_spec_else_the_operator() {
        let settings = CompactionSettings::default();
        let mut etcd = fixtures::seed();
        let t = thresholds(&fixtures::model(&etcd), &settings).unwrap();
        assert_eq!(
            t,
            Thresholds {
                events: 1_000_000,
                full_snapshot: 3_000_000,
                bytes: 1 << 30
            }
        );
        etcd.spec.backup.snapshot_compaction = Some(druid_api::etcd::SnapshotCompactionSpec {
            events_threshold: Some(10),
            trigger_full_snapshot_threshold: Some(20),
            resources: None,
        });
        let t = thresholds(&fixtures::model(&etcd), &settings).unwrap();
        assert_eq!((t.events, t.full_snapshot), (10, 20));
    }

    #[test]
    fn thresholds_that_are_not_positive_name_the_field() {
        let mut etcd = fixtures::seed();
        etcd.spec.backup.snapshot_compaction = Some(druid_api::etcd::SnapshotCompactionSpec {
            events_threshold: Some(-5),
            trigger_full_snapshot_threshold: Some(0),
            resources: None,
        });
        let e = thresholds(&fixtures::model(&etcd), &CompactionSettings::default()).unwrap_err();
        assert!(
            e.contains("spec.backup.snapshotCompaction.eventsThreshold is -5"),
            "{e}"
        );
        assert!(
            e.contains("spec.backup.snapshotCompaction.triggerFullSnapshotThreshold is 0"),
            "{e}"
        );
    }

    #[test]
    fn operator_settings_are_checked() {
        assert!(CompactionSettings::default().check().is_ok());
        let bad = CompactionSettings {
            events_threshold: 0,
            ..CompactionSettings::default()
        };
        assert!(bad.check().unwrap_err().contains("events threshold"));
        let bad = CompactionSettings {
            sidecar_url_template: "{etcd}:{port}".into(),
            ..CompactionSettings::default()
        };
        assert!(bad.check().unwrap_err().contains("{scheme}://"));
    }

    #[test]
    fn the_sidecar_url_follows_the_template() {
        assert_eq!(
            sidecar_url(
                DEFAULT_SIDECAR_URL_TEMPLATE,
                "https",
                "main",
                "shoot--a",
                8080
            ),
            "https://main-client.shoot--a.svc:8080"
        );
        assert_eq!(
            sidecar_url("http://127.0.0.1:{port}", "https", "main", "x", 9999),
            "http://127.0.0.1:9999"
        );
    }

    fn job_with(conditions: Vec<(&str, &str, Option<&str>)>) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .into_iter()
                        .map(|(t, s, r)| JobCondition {
                            type_: t.into(),
                            status: s.into(),
                            reason: r.map(Into::into),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn job_states_follow_the_conditions() {
        assert_eq!(job_state(&Job::default()), JobState::Active);
        assert_eq!(
            job_state(&job_with(vec![("SuccessCriteriaMet", "True", None)])),
            JobState::Active
        );
        assert_eq!(
            job_state(&job_with(vec![
                ("SuccessCriteriaMet", "True", None),
                ("Complete", "True", None)
            ])),
            JobState::Succeeded
        );
        assert_eq!(
            job_state(&job_with(vec![
                ("FailureTarget", "True", Some("DeadlineExceeded")),
                ("Failed", "True", Some("DeadlineExceeded"))
            ])),
            JobState::Failed {
                reason: Some("DeadlineExceeded".into()),
                message: None
            }
        );
        assert_eq!(
            job_state(&job_with(vec![("Complete", "False", None)])),
            JobState::Active
        );
    }

    fn pod(disruption: Option<&str>, exit: Option<i32>, created: i64) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(format!("test-compactor-{created}"));
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        p.status = Some(PodStatus {
            conditions: disruption.map(|r| {
                vec![PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some(r.into()),
                    message: Some("evicted for a drain".into()),
                    ..PodCondition::default()
                }]
            }),
            container_statuses: exit.map(|code| {
                vec![ContainerStatus {
                    name: "compactor".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            reason: Some("Error".into()),
                            message: Some("store unreachable".into()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]
            }),
            ..PodStatus::default()
        });
        p
    }

    #[test]
    fn a_deadline_wins_over_the_pods() {
        let f = failure(
            Some("DeadlineExceeded"),
            Some("Job was active longer than specified deadline"),
            &[pod(None, Some(137), 1)],
        );
        assert_eq!(f.reason, reasons::DEADLINE_EXCEEDED);
        assert!(f.detail.contains("longer than specified deadline"));
    }

    #[test]
    fn pod_disruptions_name_their_cause() {
        for reason in [
            reasons::PREEMPTION_BY_SCHEDULER,
            reasons::DELETION_BY_TAINT_MANAGER,
            reasons::EVICTION_BY_EVICTION_API,
            reasons::TERMINATION_BY_KUBELET,
        ] {
            let f = failure(
                Some("BackoffLimitExceeded"),
                None,
                &[pod(Some(reason), Some(143), 1)],
            );
            assert_eq!(f.reason, reason);
            assert!(f.detail.contains("evicted for a drain"), "{}", f.detail);
        }
        let f = failure(None, None, &[pod(Some("SomethingNew"), None, 1)]);
        assert_eq!(f.reason, reasons::UNKNOWN);
        assert!(f.detail.contains("SomethingNew"));
    }

    #[test]
    fn a_non_zero_exit_is_a_process_failure_of_the_newest_pod() {
        let f = failure(
            Some("BackoffLimitExceeded"),
            None,
            &[
                pod(Some(reasons::PREEMPTION_BY_SCHEDULER), None, 1),
                pod(None, Some(2), 5),
            ],
        );
        assert_eq!(f.reason, reasons::PROCESS_FAILURE);
        assert!(f.detail.contains("test-compactor-5"), "{}", f.detail);
        assert!(
            f.detail.contains("code 2 (Error): store unreachable"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn without_pods_the_job_reason_is_used() {
        assert_eq!(
            failure(
                Some("BackoffLimitExceeded"),
                Some("Job has reached the specified backoff limit"),
                &[]
            )
            .reason,
            reasons::BACKOFF_LIMIT_EXCEEDED
        );
        assert_eq!(failure(None, None, &[]).reason, reasons::UNKNOWN);
        assert_eq!(
            failure(Some("PodFailurePolicy"), None, &[pod(None, Some(0), 1)]).reason,
            reasons::UNKNOWN
        );
    }

    #[test]
    fn metric_labels_are_upstreams() {
        assert_eq!(failure_label(reasons::SUCCEEDED), "none");
        assert_eq!(failure_label(reasons::PREEMPTION_BY_SCHEDULER), "preempted");
        assert_eq!(failure_label(reasons::EVICTION_BY_EVICTION_API), "evicted");
        assert_eq!(failure_label(reasons::TERMINATION_BY_KUBELET), "evicted");
        assert_eq!(
            failure_label(reasons::DEADLINE_EXCEEDED),
            "deadlineExceeded"
        );
        assert_eq!(failure_label(reasons::PROCESS_FAILURE), "processFailure");
        assert_eq!(failure_label(reasons::BACKOFF_LIMIT_EXCEEDED), "unknown");
    }

    #[test]
    fn lease_values_are_read_and_bad_ones_ignored() {
        let lease = |holder: Option<&str>, bytes: Option<&str>| {
            let mut l = Lease::default();
            l.metadata.name = Some("test-delta-snap".into());
            l.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: holder.map(Into::into),
                ..Default::default()
            });
            if let Some(b) = bytes {
                l.metadata.annotations = Some(std::collections::BTreeMap::from([(
                    druid_api::DELTA_BYTES_SINCE_FULL_ANNOTATION.to_string(),
                    b.to_string(),
                )]));
            }
            l
        };
        assert_eq!(lease_revision(Some(&lease(Some("1234"), None))), Some(1234));
        assert_eq!(lease_revision(Some(&lease(Some(""), None))), None);
        assert_eq!(lease_revision(Some(&lease(Some("abc"), None))), None);
        assert_eq!(lease_revision(Some(&lease(None, None))), None);
        assert_eq!(lease_revision(None), None);
        assert_eq!(lease_bytes(Some(&lease(None, Some("2048")))), Some(2048));
        assert_eq!(lease_bytes(Some(&lease(None, Some("2Gi")))), None);
    }
}
