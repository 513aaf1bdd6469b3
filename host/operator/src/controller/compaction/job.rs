//! The compaction Job: starting it, reading its state, and reporting and
//! deleting it when it is finished.

use std::time::Duration;

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt as _};

use super::conditions::set_condition;
use super::decide::{Thresholds, Trigger};
use super::{Compaction, EVENT_ACTION, Error, JOB_REQUEUE, RETRY, reasons, update_jobs_current};
use crate::components::{BuildContext, compaction_job};
use crate::controller::Context;
use crate::controller::validate::{self, Checked};
use crate::metrics::CompactionJobLabels;
use crate::names;

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
pub(super) fn failure_advice(reason: &str, deadline: Duration) -> String {
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

/// Creates the compaction job.
pub(super) async fn start_job(
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
        operator_pods: ctx.settings.operator_pods.clone(),
        plugins_image: ctx.settings.plugins_image.clone(),
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
    crate::controller::publish(
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
pub(super) async fn finish(
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
        crate::controller::publish(
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

pub(super) fn finished_condition_time(job: &Job) -> Option<Time> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Failed" || c.type_ == "Complete") && c.status == "True")?
        .last_transition_time
        .clone()
}

pub(super) fn job_duration(start: Option<&Time>, end: Option<&Time>) -> Option<Duration> {
    let (start, end) = (start?, end?);
    let ms = end
        .0
        .as_millisecond()
        .checked_sub(start.0.as_millisecond())?;
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// The job's pods (for why it failed).
pub(super) async fn job_pods(ctx: &Context, ns: &str, job: &Job) -> Result<Vec<Pod>, kube::Error> {
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
pub(super) async fn delete_job(ctx: &Context, ns: &str, name: &str) -> Result<(), kube::Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    match jobs.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
