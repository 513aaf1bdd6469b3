//! Scale-in: `spec.replicas` below the StatefulSet's replicas (and above
//! 0, which hibernates) removes members one at a time, highest ordinal
//! first. Each step spans reconciles and survives an operator restart:
//!
//! 1. a sidecar checks that every other member is a healthy voting member
//!    and moves leadership off the leaving one
//!    (`POST /members/scale-in/prepare`); from 2 members it also removes
//!    it from the etcd membership while it still runs
//!    (`POST /members/scale-in/remove`: stopped first, the other member
//!    alone would have no quorum to remove it); while a step refuses,
//!    nothing changes and the `MembersScaledIn` condition says why;
//! 2. the StatefulSet is annotated with the leaving ordinal
//!    ([`names::SCALE_IN_ANNOTATION`], the durable record of the step) and
//!    shrunk by one, with the member lease, the PDB and the configuration;
//! 3. once the leaving pod is gone, the member is removed from the
//!    membership (from 3 members or more its pod stopped gracefully first,
//!    so that its clients see Unavailable, which they retry elsewhere, and
//!    the others keep a quorum; from 2 this confirms the earlier removal
//!    and takes out a learner that re-added itself when its etcd exited
//!    before the pod stopped); only then is the annotation dropped, and
//!    the member's claim deleted if `pvcRetentionPolicy` is `DeleteAll`
//!    (kept with `RetainAll`).
//!
//! `spec.replicas: 0` hibernates: a final full snapshot, then the
//! StatefulSet goes to 0 and the claims stay ([`hibernate`]).

use druid_api::etcd::PvcRetentionPolicy;
use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt as _};

pub use super::conditions::members_scaled_in::ScaleIn;
use super::conditions::quorum_lost::Recovery;
use super::conditions::types::MEMBERS_SCALED_IN;
use super::sidecar::member_step as step;
use super::{Context, final_snapshot};
use crate::names;

/// The event action.
const EVENT_ACTION: &str = "ScaleIn";

/// The event action of hibernation.
const HIBERNATE_ACTION: &str = "Hibernate";

/// What the spec reconcile applies: the replicas for the StatefulSet and
/// its companions, and how the scale-in stands (`None` when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The replicas to build the components for.
    pub replicas: i32,
    /// The scale-in's state, for the condition and the requeue.
    pub scale_in: Option<ScaleIn>,
    /// How a quorum loss stands, for the condition and the requeue
    /// (`None` when there is none).
    pub recovery: Option<Recovery>,
}

/// The ordinal a StatefulSet's annotation records as leaving.
fn leaving(sts: &StatefulSet) -> Option<i32> {
    sts.annotations()
        .get(names::SCALE_IN_ANNOTATION)
        .and_then(|v| v.parse().ok())
}

/// Whether the Etcd's status says a scale-in is under way
/// (`MembersScaledIn` False).
fn was_scaling_in(etcd: &Etcd) -> bool {
    etcd.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == MEMBERS_SCALED_IN && c.status == "False")
    })
}

/// Takes this reconcile's scale-in step, if one is due.
pub async fn plan(ctx: &Context, etcd: &Etcd, model: &EtcdModel) -> Result<Plan, kube::Error> {
    let wanted = model.replicas;
    let unchanged = Plan {
        replicas: wanted,
        scale_in: None,
        recovery: None,
    };
    // From the API, not the watch cache: the steps recorded on the
    // StatefulSet by the previous reconcile (a leaving ordinal, a
    // recovery's phase) and the replicas it applied decide this one, and
    // the cache may not have them yet. Only reconciles that apply the
    // spec come here (not the status syncs in between).
    let sts = Api::<StatefulSet>::namespaced(ctx.client.clone(), &model.namespace)
        .get_opt(&names::statefulset(&model.name))
        .await?;
    let Some(sts) = sts else {
        // A new cluster of several members with a store starts member 0
        // first (it may have backups to restore).
        return Ok(match super::recovery::first_start(model) {
            Some((replicas, starting)) => Plan {
                replicas,
                scale_in: None,
                recovery: Some(starting),
            },
            None => unchanged,
        });
    };
    // A quorum loss comes before anything else: no member can be removed
    // (or added) without a quorum.
    if let Some((replicas, recovery)) = super::recovery::plan(ctx, etcd, model, &sts).await? {
        return Ok(Plan {
            replicas,
            scale_in: None,
            recovery: Some(recovery),
        });
    }
    let current = super::member_pods::replicas(&sts);
    // A removal under way finishes first, whatever the spec says now.
    if let Some(ordinal) = leaving(&sts) {
        let scale_in = match finish_removal(ctx, etcd, model, ordinal).await? {
            // More members to remove: the next one at the next reconcile.
            ScaleIn::Done(m) if wanted > 0 && wanted < current => ScaleIn::InProgress(m),
            state => state,
        };
        // At most the leaving ordinal: a shrink that did not happen (the
        // apply failed after the annotation) happens now.
        return Ok(Plan {
            replicas: current.min(ordinal),
            scale_in: Some(scale_in),
            recovery: None,
        });
    }
    if wanted == 0 {
        return hibernate(ctx, etcd, model, current).await;
    }
    if let Some((replicas, waking)) = super::recovery::begin_wake(ctx, etcd, model, &sts).await? {
        return Ok(Plan {
            replicas,
            scale_in: None,
            recovery: Some(waking),
        });
    }
    if wanted >= current {
        // The last step's status write may have been lost (a conflict):
        // a condition still saying "in progress" learns that it is done.
        if wanted == current && was_scaling_in(etcd) {
            return Ok(Plan {
                replicas: wanted,
                scale_in: Some(ScaleIn::Done(format!(
                    "the scale-in is done: {wanted} member(s), as spec.replicas asks"
                ))),
                recovery: None,
            });
        }
        return Ok(unchanged);
    }
    let ordinal = current - 1;
    let member = names::member(model, ordinal);
    // Prepared (the others healthy, leadership moved). From 3 members or
    // more, the member's pod stops first and it leaves the membership
    // after (a graceful stop: its clients' requests in flight finish or
    // fail as Unavailable, which clients retry elsewhere; the others keep
    // a quorum meanwhile). From 2, it leaves while it runs: stopped first,
    // the other alone would have no quorum to remove it.
    let stop_first = current >= 3;
    let uid = etcd.uid().unwrap_or_default();
    let ready = match step(ctx, &uid, model, "prepare", ordinal).await {
        Some(Ok(report)) if stop_first => Some(Ok(report)),
        Some(Ok(_)) => step(ctx, &uid, model, "remove", ordinal).await,
        other => other,
    };
    let Some(ready) = ready else {
        // The sidecar works on it (a leadership move, a removal): the
        // next reconcile picks its answer up.
        return Ok(Plan {
            replicas: current,
            scale_in: Some(ScaleIn::InProgress(format!(
                "scaling in from {current} to {wanted} members: a sidecar is checking that {member} can leave \
                 without risking the quorum{}",
                if stop_first {
                    ""
                } else {
                    ", and removing it from the cluster"
                }
            ))),
            recovery: None,
        });
    };
    match ready {
        Ok(report) => {
            annotate(ctx, model, Some(ordinal)).await?;
            let message = format!(
                "scaling in from {current} to {wanted} members: {member} {} (leadership is with {}); \
                 the StatefulSet shrinks to {ordinal} replicas",
                if stop_first {
                    "is leaving: its pod stops, then it leaves the cluster"
                } else {
                    "left the cluster"
                },
                report["leader"].as_str().unwrap_or("another member")
            );
            super::publish_related(
                ctx,
                etcd,
                EventType::Normal,
                EVENT_ACTION,
                "ScaleInStep",
                &message,
                Some(pod_ref(model, ordinal)),
            )
            .await;
            tracing::info!(etcd = %model.name, namespace = %model.namespace, %member, from = current, to = wanted, "scale-in: shrinking the StatefulSet by one");
            Ok(Plan {
                replicas: ordinal,
                scale_in: Some(ScaleIn::InProgress(message)),
                recovery: None,
            })
        }
        Err(why) => {
            let message = format!(
                "scaling in from {current} to {wanted} members waits: {member} cannot leave yet without \
                 risking the quorum: {why}"
            );
            tracing::info!(etcd = %model.name, namespace = %model.namespace, %member, %why, "scale-in waits");
            Ok(Plan {
                replicas: current,
                scale_in: Some(ScaleIn::Waiting(message)),
                recovery: None,
            })
        }
    }
}

/// Hibernation (`spec.replicas: 0`) of a running cluster: a final full
/// snapshot first, then the StatefulSet goes to 0 replicas; the claims
/// stay (waking up starts the members on them; the snapshot is what a
/// member restores from if its claim is lost). While the snapshot fails,
/// the members keep running, unless the Etcd is annotated to skip it.
async fn hibernate(
    ctx: &Context,
    etcd: &Etcd,
    model: &EtcdModel,
    current: i32,
) -> Result<Plan, kube::Error> {
    let asleep = |message: Option<String>| Plan {
        replicas: 0,
        scale_in: message.map(ScaleIn::Done),
        recovery: None,
    };
    if current == 0 || model.store.is_none() {
        return Ok(asleep(None));
    }
    let (ns, name) = (&model.namespace, &model.name);
    let taken = match final_snapshot::take(ctx, &etcd.uid().unwrap_or_default(), model).await {
        Some(taken) => taken,
        // Knowingly without it: no waiting for it either.
        None if final_snapshot::skipped(etcd) => Err("it had not finished".to_string()),
        None => {
            return Ok(Plan {
                replicas: current,
                scale_in: Some(ScaleIn::InProgress(format!(
                    "hibernating: the backup leader's sidecar is taking the final full snapshot; the StatefulSet \
                     scales from {current} to 0 replicas once it is in the store"
                ))),
                recovery: None,
            });
        }
    };
    match taken {
        Ok(snapshot) => {
            let message = format!(
                "hibernating: the final full snapshot is in the store ({snapshot}); the StatefulSet \
                 scales from {current} to 0 replicas and the data volumes stay"
            );
            tracing::info!(etcd = %name, namespace = %ns, %snapshot, "hibernating after the final full snapshot");
            super::publish(
                ctx,
                etcd,
                EventType::Normal,
                HIBERNATE_ACTION,
                "HibernationSnapshotTaken",
                &message,
            )
            .await;
            Ok(asleep(Some(message)))
        }
        Err(why) if final_snapshot::skipped(etcd) => {
            let message = format!(
                "hibernating without a final full snapshot, as the annotation {} asks ({why})",
                names::SKIP_FINAL_SNAPSHOT_ANNOTATION
            );
            tracing::warn!(etcd = %name, namespace = %ns, %why, "hibernating without a final snapshot");
            super::publish(
                ctx,
                etcd,
                EventType::Warning,
                HIBERNATE_ACTION,
                "HibernationSnapshotSkipped",
                &message,
            )
            .await;
            Ok(asleep(Some(message)))
        }
        Err(why) => {
            let message = format!(
                "hibernation waits: the final full snapshot failed: {why}; the members keep running until it \
                 succeeds (retried). To hibernate without it, annotate the Etcd {}=true",
                names::SKIP_FINAL_SNAPSHOT_ANNOTATION
            );
            tracing::info!(etcd = %name, namespace = %ns, %why, "hibernation waits for the final snapshot");
            super::publish(
                ctx,
                etcd,
                EventType::Warning,
                HIBERNATE_ACTION,
                "HibernationSnapshotFailed",
                &message,
            )
            .await;
            Ok(Plan {
                replicas: current,
                scale_in: Some(ScaleIn::Waiting(message)),
                recovery: None,
            })
        }
    }
}

/// Step 3 for `ordinal`: once its pod is gone, the member is out of the
/// membership (again), the annotation goes and the claim follows the
/// retention policy.
async fn finish_removal(
    ctx: &Context,
    etcd: &Etcd,
    model: &EtcdModel,
    ordinal: i32,
) -> Result<ScaleIn, kube::Error> {
    let member = names::member(model, ordinal);
    let pod = names::pod(&names::statefulset(&model.name), ordinal);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &model.namespace);
    if pods.get_metadata_opt(&pod).await?.is_some() {
        return Ok(ScaleIn::InProgress(format!(
            "{member} is leaving: waiting for its pod {pod} to stop"
        )));
    }
    let report = match step(
        ctx,
        &etcd.uid().unwrap_or_default(),
        model,
        "remove",
        ordinal,
    )
    .await
    {
        Some(Ok(r)) => r,
        None => {
            return Ok(ScaleIn::InProgress(format!(
                "{member}'s pod stopped; a sidecar is removing it from the cluster"
            )));
        }
        Some(Err(why)) => {
            tracing::info!(etcd = %model.name, namespace = %model.namespace, %member, %why, "scale-in: the removal waits");
            return Ok(ScaleIn::Waiting(format!(
                "{member}'s pod stopped, but its removal from the cluster cannot be confirmed yet: {why}"
            )));
        }
    };
    let claim = format!(
        "{}-{}-{ordinal}",
        model.storage.claim_template,
        names::statefulset(&model.name)
    );
    let claim_note = if model.pvc_retention == PvcRetentionPolicy::DeleteAll {
        crate::components::delete_if_exists::<PersistentVolumeClaim>(
            &ctx.client,
            &model.namespace,
            &claim,
        )
        .await?;
        format!("its claim {claim} is deleted (pvcRetentionPolicy: DeleteAll)")
    } else {
        format!("its claim {claim} is kept (pvcRetentionPolicy: RetainAll)")
    };
    annotate(ctx, model, None).await?;
    let outcome = report["outcome"].as_str().unwrap_or("removed");
    let message = format!(
        "{member} left the cluster ({}); {claim_note}; members now: {}",
        if outcome == "absent" {
            "removed while it ran, and its pod stopped"
        } else {
            "its pod stopped, then it was removed"
        },
        report["remaining"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    super::publish_related(
        ctx,
        etcd,
        EventType::Normal,
        EVENT_ACTION,
        "MemberRemoved",
        &message,
        Some(pod_ref(model, ordinal)),
    )
    .await;
    tracing::info!(etcd = %model.name, namespace = %model.namespace, %member, %message, "scale-in: member removed");
    Ok(ScaleIn::Done(message))
}

/// A reference to the pod of `ordinal`, the related object of its events
/// (one event per member, not one series for all).
fn pod_ref(model: &EtcdModel, ordinal: i32) -> k8s_openapi::api::core::v1::ObjectReference {
    super::pod_ref(
        &model.namespace,
        &names::pod(&names::statefulset(&model.name), ordinal),
    )
}

/// Sets (or, with `None`, removes) the StatefulSet's record of the leaving
/// ordinal. A merge patch under its own field manager: the spec's apply
/// does not own the annotation and leaves it alone.
async fn annotate(
    ctx: &Context,
    model: &EtcdModel,
    ordinal: Option<i32>,
) -> Result<(), kube::Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let value = ordinal.map(|o| o.to_string());
    api.patch(
        &names::statefulset(&model.name),
        &PatchParams {
            field_manager: Some(names::SCALE_IN_FIELD_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(serde_json::json!({
            "metadata": { "annotations": { names::SCALE_IN_ANNOTATION: value } }
        })),
    )
    .await?;
    Ok(())
}
