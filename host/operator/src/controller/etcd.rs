//! The etcd controller's reconcile, top to bottom:
//!
//! 1. deletion (finalizer `druid.gardener.cloud/etcd-druid`): delete every
//!    component of the table, the StatefulSet first, handle the claims per
//!    `pvcRetentionPolicy`, drop the finalizer;
//! 2. the spec, unless suspended or not requested: normalize and validate
//!    it, check what it refers to, build every component of the component
//!    table (`components::table`), then apply them stage by stage, deleting
//!    what a pruned component no longer builds (nothing is written for an
//!    invalid spec);
//! 3. the roll (`roll`): members whose pod runs an older template are
//!    replaced one at a time, the leader last, while the others are
//!    healthy;
//! 4. the status, always: from the StatefulSet, the leases and the volumes,
//!    written only when it changed;
//! 5. requeue after the status sync period, or, after a failure, after
//!    this Etcd's backoff (`backoff`: doubling up to a cap, failures
//!    reported once per interval while unchanged).

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::{Duration, Instant};

use druid_api::{Etcd, EtcdModel, FINALIZER, InvalidSpec};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt as _};

use super::conditions;
use super::conditions::quorum_lost::Recovery;
use super::scale_in::{self, ScaleIn};
use super::spec::publish;
use super::status::{self, SpecOutcome};
use super::{Context, contain, defrag, final_snapshot, finalizers, spec};
use crate::components;
use crate::components::table::Stage;
use crate::metrics::{ErrorLabels, EtcdLabels};
use crate::names;

/// How soon a reconcile with a scale-in under way comes back for its next
/// step.
const SCALE_IN_RECHECK: Duration = Duration::from_secs(3);

/// How soon a reconcile comes back while the quorum is lost and the
/// recovery has not started (to start it on time, or to see the quorum
/// back).
const QUORUM_LOSS_RECHECK: Duration = Duration::from_secs(10);

/// How soon a reconcile with a roll under way comes back to see whether
/// the replaced member is back.
const ROLL_RECHECK: Duration = Duration::from_secs(5);

/// Reconcile failures that are retried with backoff (API trouble); spec
/// problems are not errors here, they are reported on the status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer flow failed.
    #[error("{0}")]
    Finalizer(String),
    /// Deletion waits for objects to go away.
    #[error("waiting for {0} to be deleted")]
    Deleting(String),
    /// The final full snapshot before the data volumes are deleted failed:
    /// the deletion waits (retried with backoff).
    #[error("{0}")]
    FinalSnapshot(String),
    /// The backup leader's sidecar is taking the final full snapshot: the
    /// deletion looks again soon.
    #[error("waiting for the final full snapshot, which the backup leader's sidecar is taking")]
    FinalSnapshotPending,
    /// The reconcile panicked (a bug); contained to this Etcd.
    #[error("the reconcile panicked: {0} (a bug in druid: please report it with the Etcd's spec)")]
    Panicked(String),
}

/// Retries after an error with this Etcd's backoff; the error is logged at
/// `warn` when the backoff says to report it, else at `debug`.
pub fn error_policy(etcd: Arc<Etcd>, error: &Error, ctx: Arc<Context>) -> Action {
    let (name, namespace) = (etcd.name_any(), etcd.namespace());
    let failure = ctx
        .backoff
        .failed(&etcd.uid().unwrap_or_default(), &error.to_string());
    let held_back = failure.held_back;
    match error {
        Error::Deleting(_) | Error::FinalSnapshotPending => {
            let what = error.to_string();
            if failure.report {
                tracing::info!(etcd = %name, ?namespace, %what, held_back, "deletion in progress");
            } else {
                tracing::debug!(etcd = %name, ?namespace, %what, "deletion in progress");
            }
            Action::requeue(Duration::from_secs(2))
        }
        Error::Panicked(_) => {
            let retry_in = failure.retry_in.max(Duration::from_secs(60));
            if failure.report {
                tracing::error!(etcd = %name, ?namespace, %error, ?retry_in, held_back, "reconcile panicked; the other Etcds are not affected");
            } else {
                tracing::debug!(etcd = %name, ?namespace, %error, ?retry_in, "reconcile panicked");
            }
            Action::requeue(retry_in)
        }
        e => {
            let retry_in = failure.retry_in;
            if failure.report {
                tracing::warn!(etcd = %name, ?namespace, error = %e, failures = failure.count, ?retry_in, held_back, "reconcile failed; retrying with backoff");
            } else {
                tracing::debug!(etcd = %name, ?namespace, error = %e, failures = failure.count, ?retry_in, "reconcile failed");
            }
            Action::requeue(retry_in)
        }
    }
}

/// Reconciles one Etcd.
pub async fn reconcile(etcd: Arc<Etcd>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let namespace = etcd.namespace().unwrap_or_default();
    let name = etcd.name_any();
    ctx.metrics
        .reconciles
        .get_or_create(&EtcdLabels {
            namespace: namespace.clone(),
            etcd: name.clone(),
        })
        .inc();
    let api: Api<Etcd> = Api::namespaced(ctx.client.clone(), &namespace);
    match finalizers::migrate(&api, &etcd).await? {
        finalizers::Migration::None => {}
        finalizers::Migration::Rewritten => return Ok(Action::requeue(Duration::from_secs(1))),
        finalizers::Migration::CleanUpLegacy => {
            let action = Box::pin(cleanup(&etcd, &ctx)).await?;
            finalizers::remove_legacy(&api, &etcd).await?;
            return Ok(action);
        }
    }
    let result = contain::catch_async(finalizer(&api, FINALIZER, etcd, |event| async {
        match event {
            Event::Apply(etcd) => Box::pin(apply(&etcd, &ctx)).await,
            Event::Cleanup(etcd) => Box::pin(cleanup(&etcd, &ctx)).await,
        }
    }))
    .await;
    ctx.metrics
        .reconcile_duration
        .observe(start.elapsed().as_secs_f64());
    match result {
        Ok(result) => result.map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        }),
        Err(panic) => {
            ctx.metrics
                .reconcile_errors
                .get_or_create(&ErrorLabels {
                    namespace,
                    etcd: name,
                    code: "ERR_PANIC".into(),
                })
                .inc();
            Err(Error::Panicked(panic))
        }
    }
}

/// Steps 2 to 4 for a live Etcd.
async fn apply(etcd: &Etcd, ctx: &Arc<Context>) -> Result<Action, Error> {
    let name = etcd.name_any();
    let namespace = etcd.namespace().unwrap_or_default();
    // A bug on some spec must fail this Etcd with a message, not the
    // operator: the model and the spec reconcile are contained here (where
    // the status can still say so), the rest by `reconcile`.
    let model = contain::catch(|| EtcdModel::from_etcd(etcd)).unwrap_or_else(|panic| {
        Err(InvalidSpec(vec![druid_api::FieldError {
            field: "spec".into(),
            message: format!(
                "the operator failed on this spec: {panic} (a bug in druid: please report it with the spec)"
            ),
        }]))
    });
    // Defragmentation requests and run events, whatever the spec outcome.
    if let Ok(model) = &model {
        defrag::sync(ctx, etcd, model).await;
    }

    let mut applied_sts = None;
    let mut scale_step = None;
    let mut recovery_step: Option<Recovery> = None;
    let outcome = if etcd.annotations().contains_key(names::SUSPEND_ANNOTATION) {
        // What was applied before may have been changed meanwhile: once
        // resumed, the spec is applied again at once.
        if let Ok(mut applied) = ctx.applied.lock() {
            applied.remove(&etcd.uid().unwrap_or_default());
        }
        publish(
            ctx,
            etcd,
            EventType::Warning,
            "SpecReconciliationSkipped",
            &format!(
                "spec reconcile is suspended by the annotation {}: remove it to resume",
                names::SUSPEND_ANNOTATION
            ),
        )
        .await;
        SpecOutcome::Suspended
    } else if !spec_reconcile_wanted(etcd, ctx) {
        SpecOutcome::NotRequested
    } else if spec_up_to_date(etcd, ctx)
        && !super::recovery::watching_cached(ctx, etcd)
        && statefulset_exists(ctx, &namespace, &name).await?
    {
        SpecOutcome::UpToDate
    } else {
        // A scale-in's step decides the replicas the components are built
        // for (one member fewer at a time).
        let scaled = match &model {
            Ok(m) => {
                let plan = scale_in::plan(ctx, etcd, m).await?;
                scale_step = plan.scale_in;
                recovery_step = plan.recovery;
                Ok(EtcdModel {
                    replicas: plan.replicas,
                    ..m.clone()
                })
            }
            Err(e) => Err(e),
        };
        let outcome = match contain::catch_async(Box::pin(spec::reconcile_spec(
            etcd,
            scaled.as_ref().map_err(|e| *e),
            ctx,
        )))
        .await
        {
            Ok(Ok((o, sts))) => {
                applied_sts = sts;
                o
            }
            Ok(Err(e)) => SpecOutcome::Failed {
                code: "ERR_KUBERNETES_API".into(),
                message: e.to_string(),
            },
            Err(panic) => {
                tracing::error!(etcd = %name, %namespace, %panic, "the spec reconcile panicked; reported on the Etcd");
                SpecOutcome::Failed {
                    code: "ERR_INTERNAL".into(),
                    message: format!(
                        "the operator failed while reconciling this spec: {panic} (a bug in druid: please report it with the spec)"
                    ),
                }
            }
        };
        let key = etcd.uid().unwrap_or_default();
        if let Ok(mut applied) = ctx.applied.lock() {
            // A scale-in or a recovery under way is not up to date: its
            // next step is taken at the next reconcile.
            let scaling = scale_step.as_ref().is_some_and(ScaleIn::is_under_way)
                || recovery_step.as_ref().is_some_and(Recovery::is_under_way);
            if matches!(outcome, SpecOutcome::Reconciled) && !scaling {
                applied.insert(key, (Instant::now(), etcd.metadata.generation));
            } else {
                applied.remove(&key);
            }
        }
        outcome
    };

    // The status, always.
    let mut observed =
        status::observe(&ctx.client, ctx.caches.get(), etcd, model.as_ref().ok()).await?;
    if let Ok(model) = &model {
        observed.cut_over = super::cut_over::sync(ctx, etcd, model).await;
    }
    let recovering = matches!(
        recovery_step,
        Some(Recovery::Recovering(_) | Recovery::Waking(_))
    );
    let watching_loss = matches!(recovery_step, Some(Recovery::Lost(_)));
    let scaling = scale_step.as_ref().is_some_and(ScaleIn::is_under_way) || recovering;
    observed.scale_in = scale_step;
    observed.recovery = recovery_step;
    // The StatefulSet just applied is newer than the watch cache's copy.
    if let Some(sts) = applied_sts
        && observed
            .statefulset
            .as_ref()
            .is_none_or(|o| o.metadata.generation < sts.metadata.generation)
    {
        observed.statefulset = Some(sts);
    }
    // The roll of the members to the current pod template, one at a time
    // (not while a scale-in or a recovery is under way, nor while the
    // quorum is lost, nor while suspended).
    if let Ok(model) = &model
        && !scaling
        && !watching_loss
        && matches!(
            outcome,
            SpecOutcome::Reconciled | SpecOutcome::UpToDate | SpecOutcome::NotRequested
        )
    {
        observed.roll = super::roll::sync(ctx, etcd, model, &observed).await?;
    }
    let rolling = matches!(
        observed.roll,
        Some(super::roll::Roll::InProgress(_) | super::roll::Roll::Waiting(_))
    );
    let new_status = status::compute(
        etcd,
        model.as_ref().ok(),
        &observed,
        &outcome,
        &ctx.settings,
        Timestamp::now(),
    );
    // Failures back off and are reported at a bounded rate; anything else
    // is a success that forgets them.
    let key = etcd.uid().unwrap_or_default();
    let failure = match &outcome {
        SpecOutcome::Failed { code, message } => {
            Some(ctx.backoff.failed(&key, &format!("{code}: {message}")))
        }
        SpecOutcome::Invalid(problems) => Some(
            ctx.backoff.failed(
                &key,
                &problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ),
        _ => {
            ctx.backoff.succeeded(&key);
            None
        }
    };
    super::report::outcome(ctx, etcd, &outcome, failure, &new_status).await;
    let previous = etcd.status.clone().unwrap_or_default();
    if !status_equal(&previous, &new_status) {
        let api: Api<Etcd> = Api::namespaced(ctx.client.clone(), &namespace);
        // The resourceVersion read is a precondition: the status is written
        // whole (conditions are one list), so a condition another
        // controller wrote since (LastSnapshotCompactionSucceeded) must not
        // be overwritten with the copy read before it.
        let patch = serde_json::json!({
            "apiVersion": druid_api::api_version(),
            "kind": "Etcd",
            "metadata": { "resourceVersion": etcd.resource_version() },
            "status": new_status,
        });
        match api
            .patch_status(
                &name,
                &PatchParams::apply(names::FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::debug!(etcd = %name, %namespace, "the Etcd changed while its status was computed; recomputing");
                // Recomputed whole: what this reconcile did (a scale-in
                // step) is only on the status once a write succeeds.
                if let Ok(mut applied) = ctx.applied.lock() {
                    applied.remove(&key);
                }
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(e) => return Err(e.into()),
        }
    }

    // A reconcile that was asked for and done: drop the request.
    if matches!(outcome, SpecOutcome::Reconciled) {
        let requested = reconcile_requests(etcd);
        if !requested.is_empty() {
            let nulls: BTreeMap<&str, Option<&str>> =
                requested.into_iter().map(|a| (a, None)).collect();
            let api: Api<Etcd> = Api::namespaced(ctx.client.clone(), &namespace);
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "metadata": { "annotations": nulls } })),
            )
            .await?;
        }
    }
    Ok(match (&outcome, failure) {
        (SpecOutcome::Failed { .. }, Some(f)) => Action::requeue(f.retry_in),
        _ if scaling => Action::requeue(SCALE_IN_RECHECK),
        _ if watching_loss => Action::requeue(QUORUM_LOSS_RECHECK),
        _ if rolling => Action::requeue(ROLL_RECHECK),
        _ => Action::requeue(ctx.settings.status_sync_period),
    })
}

/// The reconcile-request annotations (`druid.gardener.cloud/operation` or
/// its legacy spelling, set to `reconcile`) the Etcd carries.
fn reconcile_requests(etcd: &Etcd) -> Vec<&'static str> {
    [
        names::OPERATION_ANNOTATION,
        names::LEGACY_OPERATION_ANNOTATION,
    ]
    .into_iter()
    .filter(|a| etcd.annotations().get(*a).map(String::as_str) == Some(names::OPERATION_RECONCILE))
    .collect()
}

/// Whether this reconcile applies the spec: always unless the operator runs
/// in manual mode, where only a never-reconciled Etcd or one annotated
/// `druid.gardener.cloud/operation: reconcile` is.
fn spec_reconcile_wanted(etcd: &Etcd, ctx: &Context) -> bool {
    if !ctx.settings.manual_reconcile {
        return true;
    }
    spec::observed_generation(etcd).is_none() || !reconcile_requests(etcd).is_empty()
}

/// Whether this generation's components were applied recently enough (and
/// the StatefulSet is there): then a status sync only reads. A spec change,
/// a requested reconcile, a missing StatefulSet or the resync period applies
/// everything again.
fn spec_up_to_date(etcd: &Etcd, ctx: &Context) -> bool {
    if !reconcile_requests(etcd).is_empty()
        || spec::observed_generation(etcd) != etcd.metadata.generation
    {
        return false;
    }
    let Ok(applied) = ctx.applied.lock() else {
        return false;
    };
    applied
        .get(&etcd.uid().unwrap_or_default())
        .is_some_and(|(at, generation)| {
            *generation == etcd.metadata.generation && at.elapsed() < ctx.settings.resync_period
        })
}

async fn statefulset_exists(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error> {
    let sts = names::statefulset(name);
    Ok(match ctx.caches.get() {
        Some(c) => {
            c.ready().await;
            c.statefulset(namespace, &sts).is_some()
        }
        None => Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace)
            .get_metadata_opt(&sts)
            .await?
            .is_some(),
    })
}

/// Deletion: everything the operator created goes (owner references would
/// do it too, but only after the Etcd is gone, and the claims need the
/// StatefulSet's pods gone first), then the claims per pvcRetentionPolicy.
async fn cleanup(etcd: &Etcd, ctx: &Context) -> Result<Action, Error> {
    let c = &ctx.client;
    let ns = etcd.namespace().unwrap_or_default();
    let name = etcd.name_any();
    let model = EtcdModel::from_etcd(etcd).ok();
    // While the pods still run: the final full snapshot, if the claims
    // are to be deleted. Nothing is deleted while it fails.
    match final_snapshot::before_claims_go(ctx, etcd, model.as_ref()).await? {
        final_snapshot::Gate::Open => {}
        final_snapshot::Gate::Closed(why) => return Err(Error::FinalSnapshot(why)),
        final_snapshot::Gate::Pending => return Err(Error::FinalSnapshotPending),
    }
    // The StatefulSet first, and wait until its pods are gone, so that no
    // member writes to a volume that is about to be deleted.
    let sts_left = spec::delete(ctx, &ns, &name, &components::table::STATEFULSET).await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.clone(), &ns);
    let pod_selector = names::selector(Some(&name), None).to_string();
    let pods_left = pods
        .list(&ListParams::default().labels(&pod_selector))
        .await?
        .items
        .len();
    if !sts_left.is_empty() || pods_left > 0 {
        return Err(Error::Deleting(format!(
            "StatefulSet {ns}/{name} and its {pods_left} pod(s)"
        )));
    }

    let delete_claims = model
        .as_ref()
        .is_some_and(|m| m.pvc_retention == druid_api::etcd::PvcRetentionPolicy::DeleteAll);
    if delete_claims {
        // The final full snapshot was taken above (or is not needed, or
        // skipped on request), and the StatefulSet's pods are gone.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), &ns);
        for pvc in claims
            .list(&ListParams::default().labels(&pod_selector))
            .await?
            .items
        {
            let n = pvc.name_any();
            tracing::info!(etcd = %name, namespace = %ns, claim = %n, "deleting data volume claim (pvcRetentionPolicy: DeleteAll)");
            components::delete_if_exists::<PersistentVolumeClaim>(c, &ns, &n).await?;
        }
    }

    // Then every other component, in the reverse of the apply order.
    let mut left = Vec::new();
    for component in components::table::ALL.iter().rev() {
        if component.stage != Stage::Last {
            left.extend(spec::delete(ctx, &ns, &name, component).await?);
        }
    }
    if !left.is_empty() {
        return Err(Error::Deleting(left.join(", ")));
    }
    super::secrets::release(ctx, &ns, &name).await?;
    if let Ok(mut applied) = ctx.applied.lock() {
        applied.remove(&etcd.uid().unwrap_or_default());
    }
    ctx.backoff.succeeded(&etcd.uid().unwrap_or_default());
    ctx.metrics.forget(&ns, &name, conditions::types::ALL);
    publish(
        ctx,
        etcd,
        EventType::Normal,
        "Deleted",
        "every component is deleted; removing the finalizer",
    )
    .await;
    Ok(Action::await_change())
}

/// Statuses equal but for timestamps of computation (so an unchanged
/// cluster causes no writes).
fn status_equal(a: &druid_api::EtcdStatus, b: &druid_api::EtcdStatus) -> bool {
    fn strip(s: &druid_api::EtcdStatus) -> druid_api::EtcdStatus {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_update_time = None;
        }
        for e in &mut s.last_errors {
            e.observed_at = None;
        }
        if let Some(o) = &mut s.last_operation {
            o.last_update_time = None;
        }
        s
    }
    strip(a) == strip(b)
}
