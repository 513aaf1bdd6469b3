//! The `EtcdOpsTask` controller: on-demand full and delta snapshots and
//! defragmentation of an Etcd, one task per Etcd at a time, as upstream's
//! (its states, `lastOperation` and `lastErrors`, finalizer and TTL).
//!
//! A task goes Pending → InProgress → Succeeded | Failed, or Pending →
//! Rejected:
//!
//! 1. the finalizer `druid.gardener.cloud/etcd-ops-task` is added; the
//!    state becomes `Pending` (`lastOperation` Admit);
//! 2. admission ([`admit::admit`]): the Etcd exists, is not being deleted
//!    or hibernated, has a valid spec, a store for a snapshot (and delta
//!    snapshots for a delta), its `Ready` condition is True, and no other
//!    unfinished task of the same Etcd came first. Else `Rejected`, with
//!    the reason in `lastErrors` and a Warning event on the task;
//! 3. execution: the backup leader's sidecar is asked through the client
//!    Service (`POST /snapshot/full[?final=true]`, `/snapshot/delta`,
//!    `/defragment`), within the operation's timeout counted from
//!    `startedAt`; a request that outlasts a few seconds goes on in the
//!    background and a later reconcile picks its answer up, so a slow
//!    snapshot holds no worker ([`crate::controller::sidecar::request`]).
//!    Transient refusals (the sidecar's rate limit, a run in progress, an
//!    unreachable sidecar) are asked again until the deadline
//!    ([`execute::outcome`]);
//! 4. a finished task is deleted `ttlSecondsAfterFinished` (default 3600)
//!    after its last transition; the finalizer goes with it.

pub mod admit;
pub mod execute;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use druid_api::etcd::LastError;
use druid_api::tasks::{EtcdOpsTaskStatus, TaskOperation, task_state};
use druid_api::{Etcd, EtcdModel, EtcdOpsTask};
use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt as _, reflector, watcher};
use kube::{Api, Resource as _, ResourceExt as _};

pub use execute::{Operation, Outcome};

use super::Context;
use super::contain;
use super::sidecar::{base_url, request};
use crate::metrics::OpsTaskLabels;

/// The finalizer on every task this controller handles (upstream's).
pub const FINALIZER: &str = "druid.gardener.cloud/etcd-ops-task";

/// Tasks handled at once (upstream's default workers; a task holds its
/// worker for a few seconds at most).
const WORKERS: u16 = 3;

/// How soon a running task is looked at again.
const RECHECK: Duration = Duration::from_secs(5);

/// Seconds a finished task is kept when its spec says nothing (upstream's).
const DEFAULT_TTL_SECONDS: i32 = 3600;

/// `lastErrors` kept per task (upstream keeps 3; the CRD allows 10).
const KEPT_ERRORS: usize = 3;

/// The event action of this controller's events.
const EVENT_ACTION: &str = "EtcdOpsTask";

/// A reconcile's failure (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("EtcdOpsTask: API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("EtcdOpsTask: finalizer: {0}")]
    Finalizer(String),
    /// A bug met on this task (contained: the other tasks go on).
    #[error(
        "EtcdOpsTask: the controller failed on this task: {0} (a bug in druid: please report it with the task)"
    )]
    Panicked(String),
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let api = Api::<EtcdOpsTask>::all(ctx.client.clone());
    let (store, writer) = reflector::store();
    // Our own status writes change neither generation, finalizers nor
    // deletion: running tasks are looked at again by requeue.
    let events = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|t| t.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(lifecycle, PredicateConfig::default());
    Controller::for_stream(events, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(WORKERS))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "etcdopstask controller");
            }
        })
        .await;
}

/// What makes a task worth a reconcile: its generation, finalizers and
/// deletion.
fn lifecycle(task: &EtcdOpsTask) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    task.metadata.generation.hash(&mut h);
    task.finalizers().hash(&mut h);
    task.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

fn error_policy(task: Arc<EtcdOpsTask>, error: &Error, ctx: Arc<Context>) -> Action {
    let failure = ctx
        .backoff
        .failed(&task.uid().unwrap_or_default(), &error.to_string());
    if failure.report {
        tracing::warn!(task = %task.name_any(), namespace = ?task.namespace(), %error, retry_in = ?failure.retry_in, "EtcdOpsTask reconcile failed; retrying with backoff");
    }
    Action::requeue(failure.retry_in)
}

/// Reconciles one task.
pub async fn reconcile(task: Arc<EtcdOpsTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = task.namespace().unwrap_or_default();
    let api: Api<EtcdOpsTask> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = contain::catch_async(Box::pin(finalizer(&api, FINALIZER, task, |event| async {
        match event {
            Finalizer::Apply(task) => Box::pin(step(&ctx, &api, &task)).await,
            // Nothing to undo: a request in flight finishes on its own.
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })))
    .await;
    match result {
        Ok(Ok(action)) => Ok(action),
        Ok(Err(kube::runtime::finalizer::Error::ApplyFailed(e))) => Err(e),
        Ok(Err(other)) => Err(Error::Finalizer(other.to_string())),
        Err(panic) => Err(Error::Panicked(panic)),
    }
}

/// One step of the task's state machine.
async fn step(ctx: &Context, api: &Api<EtcdOpsTask>, task: &EtcdOpsTask) -> Result<Action, Error> {
    let status = task.status.clone().unwrap_or_default();
    match status.state.as_deref() {
        None => {
            let status = transition(
                &status,
                task_state::PENDING,
                ("Admit", "InProgress", "waiting for admission".into()),
            );
            write(api, task, &status).await?;
            admit_step(ctx, api, task, status).await
        }
        Some(task_state::PENDING) => admit_step(ctx, api, task, status).await,
        Some(task_state::IN_PROGRESS) => execute_step(ctx, api, task, status).await,
        Some(state) if task_state::is_final(state) => cleanup_step(api, task, &status).await,
        Some(other) => {
            let message = format!(
                "unknown state {other:?} in status.state: the task cannot go on; create a new one"
            );
            finish(
                ctx,
                api,
                task,
                status,
                task_state::FAILED,
                ("Execution", Err(("ERR_UNKNOWN_STATE", message))),
            )
            .await
        }
    }
}

/// Pending: admit, or reject.
async fn admit_step(
    ctx: &Context,
    api: &Api<EtcdOpsTask>,
    task: &EtcdOpsTask,
    status: EtcdOpsTaskStatus,
) -> Result<Action, Error> {
    let namespace = task.namespace().unwrap_or_default();
    // Read from the API, not a cache: a task must not be rejected for an
    // Etcd a cache has not seen yet, nor run next to one it has not seen.
    let etcd = Api::<Etcd>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&task.spec.etcd_name)
        .await?;
    let others = api.list(&ListParams::default()).await?.items;
    let others: Vec<&EtcdOpsTask> = others.iter().collect();
    match admit::admit(task, etcd.as_ref(), &others) {
        Ok(operation) => {
            let mut status = transition(
                &status,
                task_state::IN_PROGRESS,
                (
                    "Execution",
                    "InProgress",
                    format!("asking the backup leader's sidecar to {}", operation.verb()),
                ),
            );
            status.started_at = Some(Time(Timestamp::now()));
            write(api, task, &status).await?;
            tracing::info!(task = %task.name_any(), %namespace, etcd = %task.spec.etcd_name, operation = operation.label(), "EtcdOpsTask admitted");
            execute_step(ctx, api, task, status).await
        }
        Err(rejection) => {
            let rejected = ("Admit", Err((rejection.code, rejection.message)));
            finish(ctx, api, task, status, task_state::REJECTED, rejected).await
        }
    }
}

/// InProgress: ask the sidecar (or look at the answer), within the
/// deadline.
async fn execute_step(
    ctx: &Context,
    api: &Api<EtcdOpsTask>,
    task: &EtcdOpsTask,
    status: EtcdOpsTaskStatus,
) -> Result<Action, Error> {
    let gone = |message: String| ("Execution", Err((execute::codes::ETCD_GONE, message)));
    let Some(operation) = Operation::of(&task.spec) else {
        let message = "spec.config names no operation this operator knows".to_string();
        let invalid = ("Execution", Err((admit::codes::INVALID_CONFIG, message)));
        return finish(ctx, api, task, status, task_state::FAILED, invalid).await;
    };
    let started = status
        .started_at
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let timeout = operation.timeout();
    let elapsed = Timestamp::now().duration_since(started);
    let left = SignedDuration::try_from(timeout)
        .unwrap_or(SignedDuration::MAX)
        .checked_sub(elapsed)
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero());
    let Some(left) = left else {
        let last = status
            .last_errors
            .last()
            .map(|e| format!(" (last: {})", e.description))
            .unwrap_or_default();
        let message = format!(
            "the sidecar did not {} within {} s{last}",
            operation.verb(),
            timeout.as_secs()
        );
        let failed = ("Execution", Err((execute::codes::TIMED_OUT, message)));
        return finish(ctx, api, task, status, task_state::FAILED, failed).await;
    };
    let namespace = task.namespace().unwrap_or_default();
    let etcd_name = &task.spec.etcd_name;
    let etcd = Api::<Etcd>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(etcd_name)
        .await?;
    let model = match etcd.as_ref().map(EtcdModel::from_etcd) {
        Some(Ok(model)) => model,
        Some(Err(e)) => {
            let message = format!(
                "the Etcd {namespace}/{etcd_name}'s spec became invalid while the task ran: {e}"
            );
            return finish(ctx, api, task, status, task_state::FAILED, gone(message)).await;
        }
        None => {
            let message =
                format!("the Etcd {namespace}/{etcd_name} was deleted while the task ran");
            return finish(ctx, api, task, status, task_state::FAILED, gone(message)).await;
        }
    };
    let url = format!("{}{}", base_url(ctx, &model), operation.path());
    let uid = task.uid().unwrap_or_default();
    let Some(answer) = request(ctx, &model, (&uid, "ops task"), true, url, left).await else {
        return Ok(Action::requeue(RECHECK));
    };
    match execute::outcome(&operation, answer) {
        Outcome::Done(what) => {
            finish(
                ctx,
                api,
                task,
                status,
                task_state::SUCCEEDED,
                ("Execution", Ok(what)),
            )
            .await
        }
        Outcome::Failed(code, message) => {
            finish(
                ctx,
                api,
                task,
                status,
                task_state::FAILED,
                ("Execution", Err((code, message))),
            )
            .await
        }
        Outcome::Retry(why) => {
            tracing::info!(task = %task.name_any(), %namespace, etcd = %etcd_name, %why, "EtcdOpsTask: asking the sidecar again");
            let mut next = status.clone();
            record_error(&mut next, "ERR_SIDECAR_NOT_READY", &why);
            if next.last_errors.last().map(|e| &e.description)
                != status.last_errors.last().map(|e| &e.description)
            {
                write(api, task, &next).await?;
            }
            Ok(Action::requeue(RECHECK.min(left)))
        }
    }
}

/// A finished task: deleted once its TTL has passed since it finished.
async fn cleanup_step(
    api: &Api<EtcdOpsTask>,
    task: &EtcdOpsTask,
    status: &EtcdOpsTaskStatus,
) -> Result<Action, Error> {
    let ttl = task
        .spec
        .ttl_seconds_after_finished
        .unwrap_or(DEFAULT_TTL_SECONDS)
        .max(0);
    let finished = status
        .last_transition_time
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let due = finished + SignedDuration::from_secs(i64::from(ttl));
    let now = Timestamp::now();
    if now < due {
        let wait = Duration::try_from(due.duration_since(now)).unwrap_or(RECHECK);
        return Ok(Action::requeue(wait.max(Duration::from_secs(1))));
    }
    tracing::info!(task = %task.name_any(), namespace = ?task.namespace(), ttl, "EtcdOpsTask finished; deleting it after its TTL");
    match api.delete(&task.name_any(), &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// `status` moved to `state`, with `lastOperation` (type, state,
/// description) and the transition time.
fn transition(
    status: &EtcdOpsTaskStatus,
    state: &str,
    (type_, op_state, description): (&str, &str, String),
) -> EtcdOpsTaskStatus {
    let now = Time(Timestamp::now());
    EtcdOpsTaskStatus {
        state: Some(state.into()),
        last_transition_time: Some(now.clone()),
        last_operation: Some(TaskOperation {
            type_: type_.into(),
            state: op_state.into(),
            description,
            last_update_time: Some(now),
        }),
        ..status.clone()
    }
}

/// Appends an error to `lastErrors`, keeping the newest [`KEPT_ERRORS`];
/// the same error again only refreshes its time.
fn record_error(status: &mut EtcdOpsTaskStatus, code: &str, description: &str) {
    let now = Some(Time(Timestamp::now()));
    if let Some(last) = status
        .last_errors
        .last_mut()
        .filter(|e| e.code == code && e.description == description)
    {
        last.observed_at = now;
        return;
    }
    status.last_errors.push(LastError {
        code: code.into(),
        description: description.into(),
        observed_at: now,
    });
    let extra = status.last_errors.len().saturating_sub(KEPT_ERRORS);
    status.last_errors.drain(..extra);
}

/// The end of a task: `state` with the operation's outcome (what was done,
/// or an error code and why), its event, metric and log line.
async fn finish(
    ctx: &Context,
    api: &Api<EtcdOpsTask>,
    task: &EtcdOpsTask,
    status: EtcdOpsTaskStatus,
    state: &str,
    (op_type, result): (&str, Result<String, (&str, String)>),
) -> Result<Action, Error> {
    let label = Operation::of(&task.spec).map_or("unknown", |o| o.label());
    let name = task.name_any();
    let namespace = task.namespace().unwrap_or_default();
    let etcd = &task.spec.etcd_name;
    let (op_state, description, event_type) = match &result {
        Ok(what) => ("Completed", what.clone(), EventType::Normal),
        Err((_, why)) => ("Failed", why.clone(), EventType::Warning),
    };
    let mut next = transition(&status, state, (op_type, op_state, description.clone()));
    if let Err((code, why)) = &result {
        record_error(&mut next, code, why);
        tracing::warn!(task = %name, %namespace, %etcd, code, error = %why, state, "EtcdOpsTask did not succeed");
    } else {
        tracing::info!(task = %name, %namespace, %etcd, %description, "EtcdOpsTask succeeded");
    }
    write(api, task, &next).await?;
    ctx.metrics
        .ops_tasks
        .get_or_create(&OpsTaskLabels {
            namespace,
            operation: label.into(),
            state: state.into(),
        })
        .inc();
    let ev = Event {
        type_: event_type,
        reason: state.into(),
        note: Some(description.chars().take(1000).collect()),
        action: EVENT_ACTION.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &task.object_ref(&())).await {
        tracing::debug!(error = %e, "cannot publish event");
    }
    cleanup_step(api, task, &next).await
}

/// Writes `status` (a merge patch of the status subresource).
async fn write(
    api: &Api<EtcdOpsTask>,
    task: &EtcdOpsTask,
    status: &EtcdOpsTaskStatus,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &task.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
