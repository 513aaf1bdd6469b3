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

use druid_api::{Etcd, EtcdModel};
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt as _, reflector, watcher};
use kube::{Api, ResourceExt as _};

use crate::components::BuildError;
use crate::controller::Context;
use crate::metrics::NamespaceLabels;
use crate::names;

mod conditions;
pub(crate) mod decide;
mod job;
mod sidecar;
#[cfg(test)]
mod tests;

pub use crate::controller::sidecar::sidecar_url;
use conditions::{current_condition, remove_condition, set_condition};
use decide::observation;
pub use decide::{
    Decision, FullSnapshotCause, Observation, Thresholds, Trigger, decide, thresholds,
};
pub use job::{Failure, JobState, failure, failure_label, job_state};
use job::{delete_job, finish, start_job};
use sidecar::full_snapshot;

/// The field manager of the condition writes.
const FIELD_MANAGER: &str = "druid-compaction";
/// The action of the events this controller publishes.
const EVENT_ACTION: &str = "Compaction";
/// How long the sidecar may take to answer beyond its own snapshot timeout.
pub(crate) const FULL_SNAPSHOT_GRACE: Duration = Duration::from_secs(60);
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
        watcher::Config::default()
            .labels(&names::selector(None, Some(names::component::COMPACTION_JOB)).to_string()),
    )
    .default_backoff()
    .modify(|job| job.managed_fields_mut().clear())
    .reflect(job_writer)
    .touched_objects();
    let snapshot_lease_events = lease_events
        .try_filter(|l| {
            std::future::ready(
                l.labels().get(names::label::COMPONENT).map(String::as_str)
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
