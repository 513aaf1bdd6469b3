//! Automatic recovery from a permanent loss of quorum: a majority of the
//! members is gone (pods crash-looping on lost or corrupt data, claims
//! deleted) and the cluster cannot heal itself.
//!
//! Detection needs two witnesses that agree, for a while:
//! - the `Ready` condition says `QuorumLost`: fewer than a majority of the
//!   members renew their leases (a member is NotReady only after
//!   `member_unknown_after` + `member_not_ready_after` of silence);
//! - fewer than a majority of the members' pods are Ready (a pod's
//!   readiness is a linearizable read through its etcd).
//!
//! Once that has lasted `quorum_loss_recovery_after`, the recovery starts,
//! unless the Etcd carries `druid.gardener.cloud/disable-auto-recovery`,
//! has no backup store or no full snapshot yet, or a member's pod is on a
//! node that does not answer or is not scheduled (those members may come
//! back with their data: the loss is not known to be permanent).
//!
//! The recovery is the runbook people follow by hand, with each step
//! recorded on the StatefulSet ([`names::RECOVERY_ANNOTATION`]) so that a
//! restarted operator resumes it and never repeats an irreversible step:
//! 1. `stopping`: the StatefulSet scales to 0 and the operator deletes
//!    the pods (the StatefulSet controller waits for unready pods to be
//!    Ready before it takes them down); once every pod is gone the
//!    members' claims are deleted (their data is a cluster that cannot
//!    form a quorum again), then
//! 2. `restoring`: the StatefulSet scales to 1; member 0 has no data and
//!    restores the latest full snapshot and its delta snapshots from the
//!    store, as a new single-member cluster; once its pod is Ready,
//! 3. the record goes and the StatefulSet scales back to `spec.replicas`
//!    through the ordinary scale-out (one learner at a time).
//!
//! Every step is an event. The writes after the last delta snapshot are
//! lost: the events and the condition name the revision restored to.

use druid_api::etcd::Condition;
use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt as _};

use super::Context;
use super::conditions::quorum_lost::Recovery;
use super::conditions::{age, types};
use crate::names;

/// The event action.
const EVENT_ACTION: &str = "QuorumLossRecovery";

/// A step recorded on the StatefulSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Scaling to 0; the claims go once no pod is left.
    Stopping,
    /// Member 0 restores from the store.
    Restoring,
    /// Waking up from hibernation without member 0's claim: member 0
    /// restores the final snapshot alone, then the others join (started
    /// together without data, the members would found an empty cluster).
    Waking,
    /// A new cluster of several members with a backup store starts
    /// member 0 alone first, like [`Phase::Waking`]: the store may hold
    /// the backups of an earlier cluster on the same prefix (an Etcd
    /// deleted and created again, a migration), which member 0 restores
    /// when it has no data; members started together without data would
    /// found an empty cluster and ignore them.
    Starting,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Stopping => "stopping",
            Phase::Restoring => "restoring",
            Phase::Waking => "waking",
            Phase::Starting => "starting",
        }
    }

    /// The phase an annotation value records (`None` for no annotation;
    /// an unknown value is read as `stopping`, the step that undoes
    /// nothing).
    fn of(sts: &StatefulSet) -> Option<Self> {
        let value = sts.annotations().get(names::RECOVERY_ANNOTATION)?;
        Some(if value == Phase::Restoring.as_str() {
            Phase::Restoring
        } else if value == Phase::Waking.as_str() {
            Phase::Waking
        } else if value == Phase::Starting.as_str() {
            Phase::Starting
        } else {
            Phase::Stopping
        })
    }
}

/// A member's pod, as detection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    /// Its name.
    pub name: String,
    /// The StatefulSet ordinal.
    pub ordinal: i32,
    /// Ready.
    pub ready: bool,
    /// Its Ready condition is `Unknown`: its node stopped reporting.
    pub unreachable: bool,
    /// Bound to a node.
    pub scheduled: bool,
    /// Being deleted.
    pub deleting: bool,
}

impl PodState {
    /// The state of a StatefulSet pod (`None` without an ordinal).
    pub fn of(pod: &Pod) -> Option<Self> {
        let ordinal = super::member_pods::ordinal(pod)?;
        let ready_status = super::member_pods::ready_status(pod);
        Some(Self {
            name: pod.name_any(),
            ordinal,
            ready: ready_status == Some("True"),
            unreachable: ready_status == Some("Unknown"),
            scheduled: pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()),
            deleting: pod.metadata.deletion_timestamp.is_some(),
        })
    }
}

/// What the decision looks at.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// `spec.replicas`.
    pub wanted: i32,
    /// The StatefulSet's replicas.
    pub current: i32,
    /// The step recorded on the StatefulSet.
    pub phase: Option<Phase>,
    /// The Etcd's conditions before this reconcile.
    pub conditions: &'a [Condition],
    /// The pods of the StatefulSet.
    pub pods: &'a [PodState],
    /// The members whose leases say NotReady (from the status).
    pub down: &'a [String],
    /// The Etcd is annotated to leave recovery to people.
    pub disabled: bool,
    /// The Etcd has a backup store.
    pub store: bool,
    /// The revision the last snapshot (full or delta) holds, from the
    /// snapshot leases; `None` before the first full snapshot.
    pub backed_up: Option<i64>,
    /// The highest etcd revision a member reported on its lease (its
    /// sidecar writes it at each renewal).
    pub reported: Option<i64>,
    /// How long the loss must last before the recovery starts.
    pub after: std::time::Duration,
    /// Now.
    pub now: Timestamp,
}

/// What this reconcile does about a quorum loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do; the condition's new word, if any.
    Nothing(Option<Recovery>),
    /// Start: record `stopping` and scale to 0.
    Begin(String),
    /// Stopping: wait for the pods to go (replicas 0).
    Stopping(String),
    /// Every pod is gone: delete the claims, then record `restoring`.
    DeleteClaims,
    /// Restoring: replicas 1, wait for member 0.
    Restoring(String),
    /// Member 0 is back: drop the record, scale to `spec.replicas`.
    Finish(String),
    /// Waking up: replicas 1, wait for member 0.
    Waking(String),
    /// Woken: member 0 is back; drop the record, scale to `spec.replicas`.
    Woken(String),
}

/// Since when the quorum has been lost, by both witnesses; `None` while
/// either sees a quorum (or the `Ready` condition predates the last
/// recovery: it has not turned since, so it says nothing new).
fn lost_since(input: &Input<'_>) -> Option<Timestamp> {
    let find = |t: &str| input.conditions.iter().find(|c| c.type_ == t);
    let ready = find(types::READY)?;
    if ready.status != "False" || ready.reason != "QuorumLost" {
        return None;
    }
    let since = ready.last_transition_time.as_ref()?.0;
    if let Some(last) = find(types::QUORUM_LOST)
        && last.status == "False"
        && last
            .last_transition_time
            .as_ref()
            .is_some_and(|t| t.0 >= since)
    {
        return None;
    }
    let quorum = input.current / 2 + 1;
    let ready_pods = input
        .pods
        .iter()
        .filter(|p| p.ordinal < input.current && p.ready)
        .count();
    (i32::try_from(ready_pods).unwrap_or(i32::MAX) < quorum).then_some(since)
}

/// Whether the Etcd's last condition says the quorum is lost.
fn was_lost(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == types::QUORUM_LOST && c.status == "True")
}

/// Whether member 0's pod is Ready (a staged start's or a recovery's first
/// member).
fn member_zero_ready(input: &Input<'_>) -> bool {
    input.pods.iter().any(|p| p.ordinal == 0 && p.ready)
}

/// The next step, from what the cluster shows.
pub fn decide(input: &Input<'_>) -> Next {
    match input.phase {
        Some(Phase::Stopping) => {
            let left: Vec<&str> = input.pods.iter().map(|p| p.name.as_str()).collect();
            return if left.is_empty() {
                Next::DeleteClaims
            } else {
                Next::Stopping(format!(
                    "recovering from the quorum loss: waiting for the pods to stop ({})",
                    left.join(", ")
                ))
            };
        }
        Some(phase @ (Phase::Waking | Phase::Starting)) => {
            let (ready, waiting) = if phase == Phase::Waking {
                (
                    "member 0 restored the last backup and is Ready; waking the others up",
                    "waking up without member 0's claim: member 0 restores the last backup (the \
                     final full snapshot) alone first",
                )
            } else {
                (
                    "member 0 started (from the store's latest backup if it holds one) and is \
                     Ready; starting the others",
                    "starting a new cluster: member 0 starts alone first and restores the store's \
                     latest backup if it holds one",
                )
            };
            return if member_zero_ready(input) {
                Next::Woken(format!(
                    "{ready}, joining as learners ({} member(s))",
                    input.wanted
                ))
            } else {
                Next::Waking(waiting.into())
            };
        }
        Some(Phase::Restoring) => {
            return if member_zero_ready(input) {
                Next::Finish(format!(
                    "member 0 is restored and Ready; scaling back out to {} member(s), the others joining as learners",
                    input.wanted
                ))
            } else {
                Next::Restoring(
                    "recovering from the quorum loss: member 0 restores the latest backup (full \
                     snapshot and delta snapshots) as a new single-member cluster"
                        .into(),
                )
            };
        }
        None => {}
    }
    let lost = (input.wanted > 0 && input.current >= 2)
        .then(|| lost_since(input))
        .flatten();
    let Some(since) = lost else {
        // Back only when the leases say so (a StatefulSet at 0 replicas
        // says nothing).
        let quorate = input
            .conditions
            .iter()
            .any(|c| c.type_ == types::READY && c.status == "True");
        return Next::Nothing((was_lost(input.conditions) && quorate).then(|| {
            Recovery::Restored("the quorum is back: a majority of the members is Ready".into())
        }));
    };
    let quorum = input.current / 2 + 1;
    let what = format!(
        "the quorum is lost: {} of {} members are down ({}; no pod is Ready without a quorum), \
         {quorum} must be up",
        input.down.len(),
        input.current,
        input.down.join(", ")
    );
    let runbook = "recover by hand (scale to 0, delete the claims, scale to 1, then back out)";
    if input.disabled {
        return Next::Nothing(Some(Recovery::Disabled(format!(
            "{what}; the automatic recovery is disabled by the annotation {}: remove it to let druid \
             restore from the backup, or {runbook}",
            names::DISABLE_AUTO_RECOVERY_ANNOTATION
        ))));
    }
    if !input.store {
        return Next::Nothing(Some(Recovery::Disabled(format!(
            "{what}; there is no backup store (spec.backup.store) to recover from: {runbook}, \
             accepting that the data is lost"
        ))));
    }
    let Some(revision) = input.backed_up else {
        return Next::Nothing(Some(Recovery::Lost(format!(
            "{what}; no full snapshot is in the store yet, so druid does not recover automatically"
        ))));
    };
    if let Some(p) = input.pods.iter().find(|p| p.unreachable) {
        return Next::Nothing(Some(Recovery::Lost(format!(
            "{what}; the recovery waits: the node of {} does not answer, and the member may come back \
             with its data",
            p.name
        ))));
    }
    if let Some(p) = input.pods.iter().find(|p| !p.scheduled) {
        return Next::Nothing(Some(Recovery::Lost(format!(
            "{what}; the recovery waits: {} is not scheduled to a node",
            p.name
        ))));
    }
    let waited = age(input.now, since);
    if waited < input.after {
        return Next::Nothing(Some(Recovery::Lost(format!(
            "{what} (for {}s); unless the quorum comes back, druid restores the cluster from the backup \
             (revision {revision}) in {}s; annotate the Etcd {} to prevent it",
            waited.as_secs(),
            input.after.saturating_sub(waited).as_secs(),
            names::DISABLE_AUTO_RECOVERY_ANNOTATION
        ))));
    }
    Next::Begin(format!(
        "{what} for {}s: recovering from the backup up to revision {revision} ({}): the StatefulSet \
         scales to 0, the members' claims are deleted, member 0 restores, then the others join",
        waited.as_secs(),
        loss(revision, input.reported)
    ))
}

/// How many revisions a restore up to `backed_up` loses, from the highest
/// revision a member reported (a lower bound: a member reports at each
/// lease renewal, and the members that are gone may have had more).
pub fn loss(backed_up: i64, reported: Option<i64>) -> String {
    match reported {
        Some(n) if n > backed_up => format!(
            "the members last reported revision {n}: at least {} revision(s) after the backup are lost",
            n - backed_up
        ),
        Some(n) => format!("the members last reported revision {n}: no revision is lost"),
        None => "no member reported its revision, so how many revisions are lost is unknown".into(),
    }
}

/// The replicas a new StatefulSet is created with, and the state, when
/// the cluster starts staged (see [`Phase::Starting`]): several members
/// and a backup store. It is created at 0 replicas, and the next
/// reconcile's [`begin_wake`] takes it to 1 with the phase recorded (the
/// record needs the StatefulSet to exist). `None`: created as the spec
/// says (also when the members join an existing cluster: they restore
/// nothing).
pub fn first_start(model: &EtcdModel) -> Option<(i32, Recovery)> {
    (model.replicas > 1 && model.store.is_some() && model.etcd.existing_cluster.is_none()).then(|| {
        (
            0,
            Recovery::Waking(format!(
                "creating the StatefulSet of {} members at 0 replicas: member 0 starts alone first \
                 (it restores the store's latest backup if the store holds one), then the others join",
                model.replicas
            )),
        )
    })
}

/// Starts a staged start when a StatefulSet at 0 replicas goes to several
/// and member 0's claim is gone: a hibernated cluster waking up
/// ([`Phase::Waking`]), or one that never ran (generation 1: its replicas
/// never changed from 0) starting ([`Phase::Starting`]). `Some` with the
/// replicas (1) and the state, else `None` (all members start at once,
/// on their claims).
pub async fn begin_wake(
    ctx: &Context,
    etcd: &Etcd,
    model: &EtcdModel,
    sts: &StatefulSet,
) -> Result<Option<(i32, Recovery)>, kube::Error> {
    let current = super::member_pods::replicas(sts);
    if current != 0 || model.replicas < 2 {
        return Ok(None);
    }
    let claim = format!(
        "{}-{}-0",
        model.storage.claim_template,
        names::statefulset(&model.name)
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &model.namespace);
    if claims.get_metadata_opt(&claim).await?.is_some() {
        return Ok(None);
    }
    let never_ran = sts.metadata.generation == Some(1);
    if never_ran && model.etcd.existing_cluster.is_some() {
        return Ok(None);
    }
    let (phase, reason, m) = if never_ran {
        (
            Phase::Starting,
            "StartingMemberZeroFirst",
            format!(
                "starting {} members: member 0 starts alone first and restores the store's latest \
                 backup if the store holds one (an earlier cluster's on the same prefix), then the \
                 others join (started together without data, they would found an empty cluster)",
                model.replicas
            ),
        )
    } else {
        (
            Phase::Waking,
            "WakingUpFromBackup",
            format!(
                "waking up to {} members without member 0's claim {claim}: member 0 restores the last \
                 backup alone first, then the others join (started together without data, they would \
                 found an empty cluster)",
                model.replicas
            ),
        )
    };
    record(ctx, model, Some(phase), None).await?;
    tracing::info!(etcd = %model.name, namespace = %model.namespace, %claim, phase = phase.as_str(), "staged start: member 0 first");
    publish(ctx, etcd, EventType::Normal, reason, &m).await;
    Ok(Some((1, Recovery::Waking(m))))
}

/// Whether the Etcd's quorum may be lost or a recovery is recorded: then
/// every reconcile takes the spec path, where [`plan`] looks.
pub fn watching(etcd: &Etcd, sts: Option<&StatefulSet>) -> bool {
    sts.is_some_and(|s| Phase::of(s).is_some())
        || etcd.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                (c.type_ == types::READY && c.reason == "QuorumLost")
                    || (c.type_ == types::QUORUM_LOST && c.status == "True")
            })
        })
}

/// [`watching`], with the StatefulSet from the watch cache (none without
/// caches: then only the conditions tell).
pub fn watching_cached(ctx: &Context, etcd: &Etcd) -> bool {
    let sts = ctx.caches.get().and_then(|c| {
        c.statefulset(
            &etcd.namespace().unwrap_or_default(),
            &names::statefulset(&etcd.name_any()),
        )
    });
    watching(etcd, sts.as_ref())
}

/// The replicas and the condition's word of this reconcile's recovery
/// step, or `None` when there is nothing to recover (the scale-in's plan
/// follows then).
pub async fn plan(
    ctx: &Context,
    etcd: &Etcd,
    model: &EtcdModel,
    sts: &StatefulSet,
) -> Result<Option<(i32, Recovery)>, kube::Error> {
    let current = super::member_pods::replicas(sts);
    let phase = Phase::of(sts);
    let conditions = etcd
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    // The pods are listed only when the quorum may be lost.
    if !watching(etcd, Some(sts)) {
        return Ok(None);
    }
    let pods = pods(ctx, model, sts).await?;
    let revision = |l: Option<Lease>| super::compaction::decide::lease_revision(l.as_ref());
    let full_revision =
        revision(lease(ctx, model, &names::full_snapshot_lease(&model.name)).await?);
    let delta_revision =
        revision(lease(ctx, model, &names::delta_snapshot_lease(&model.name)).await?);
    let mut reported: Option<i64> = None;
    for i in 0..current.max(model.replicas) {
        let revision = lease(ctx, model, &names::member(model, i))
            .await?
            .and_then(|l| {
                l.annotations()
                    .get(druid_api::MEMBER_REVISION_ANNOTATION)
                    .and_then(|r| r.parse::<i64>().ok())
            });
        reported = reported.max(revision);
    }
    let down: Vec<String> = etcd
        .status
        .iter()
        .flat_map(|s| s.members.iter())
        .filter(|m| m.status == "NotReady")
        .map(|m| m.name.clone())
        .collect();
    let input = Input {
        wanted: model.replicas,
        current,
        phase,
        conditions,
        pods: &pods,
        down: &down,
        disabled: etcd
            .annotations()
            .contains_key(names::DISABLE_AUTO_RECOVERY_ANNOTATION),
        store: model.store.is_some(),
        backed_up: full_revision.map(|f| f.max(delta_revision.unwrap_or(f))),
        reported,
        after: ctx.settings.quorum_loss_recovery_after,
        now: Timestamp::now(),
    };
    let next = decide(&input);
    let (ns, name) = (&model.namespace, &model.name);
    let restored = input
        .backed_up
        .map_or_else(|| "?".into(), |r| r.to_string());
    Ok(match next {
        Next::Nothing(None) => None,
        Next::Nothing(Some(state)) => {
            if matches!(state, Recovery::Restored(_)) {
                tracing::info!(etcd = %name, namespace = %ns, "the quorum is back without a recovery");
                publish(
                    ctx,
                    etcd,
                    EventType::Normal,
                    "QuorumRestored",
                    &message(&state),
                )
                .await;
            } else if !was_lost(conditions) {
                tracing::warn!(etcd = %name, namespace = %ns, state = %message(&state), "quorum lost");
                publish(
                    ctx,
                    etcd,
                    EventType::Warning,
                    "QuorumLost",
                    &message(&state),
                )
                .await;
            }
            Some((current, state))
        }
        Next::Begin(m) => {
            tracing::warn!(etcd = %name, namespace = %ns, message = %m, "quorum-loss recovery: starting");
            let note = input.backed_up.map(|r| loss(r, input.reported));
            record(ctx, model, Some(Phase::Stopping), note.as_deref()).await?;
            publish(
                ctx,
                etcd,
                EventType::Warning,
                "QuorumLossRecoveryStarted",
                &m,
            )
            .await;
            Some((0, Recovery::Recovering(m)))
        }
        Next::Stopping(m) => {
            // The StatefulSet controller does not take down pods that are
            // not Ready when it scales to 0 (OrderedReady waits for them),
            // and none is Ready without a quorum: the operator deletes
            // them (gracefully; at 0 replicas they are not recreated).
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &model.namespace);
            for p in pods.iter().filter(|p| !p.deleting) {
                tracing::info!(etcd = %name, namespace = %ns, pod = %p.name, "quorum-loss recovery: deleting a member's pod");
                match api
                    .delete(&p.name, &kube::api::DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Some((0, Recovery::Recovering(m)))
        }
        Next::DeleteClaims => {
            let deleted = delete_claims(ctx, model, sts).await?;
            if !deleted.is_empty() {
                let m = format!(
                    "recovering from the quorum loss: the pods stopped; deleting the members' claims ({})",
                    deleted.join(", ")
                );
                publish(
                    ctx,
                    etcd,
                    EventType::Normal,
                    "QuorumLossRecoveryClaimsDeleted",
                    &m,
                )
                .await;
                return Ok(Some((0, Recovery::Recovering(m))));
            }
            let note = sts
                .annotations()
                .get(names::RECOVERY_LOSS_ANNOTATION)
                .cloned();
            record(ctx, model, Some(Phase::Restoring), note.as_deref()).await?;
            let m = format!(
                "recovering from the quorum loss: no claim is left; member 0 restores the backup up to \
                 revision {restored}"
            );
            tracing::info!(etcd = %name, namespace = %ns, "quorum-loss recovery: restoring member 0");
            publish(
                ctx,
                etcd,
                EventType::Normal,
                "QuorumLossRecoveryRestoring",
                &m,
            )
            .await;
            Some((1, Recovery::Recovering(m)))
        }
        Next::Restoring(m) => Some((1, Recovery::Recovering(m))),
        Next::Waking(m) => Some((1, Recovery::Waking(m))),
        Next::Woken(m) => {
            record(ctx, model, None, None).await?;
            tracing::info!(etcd = %name, namespace = %ns, message = %m, "staged start: member 0 is Ready");
            let reason = if phase == Some(Phase::Starting) {
                "MemberZeroStarted"
            } else {
                "WokenUpFromBackup"
            };
            publish(ctx, etcd, EventType::Normal, reason, &m).await;
            Some((model.replicas, Recovery::Woken(m)))
        }
        Next::Finish(m) => {
            let note = sts
                .annotations()
                .get(names::RECOVERY_LOSS_ANNOTATION)
                .map(|n| format!("; {n}"))
                .unwrap_or_default();
            record(ctx, model, None, None).await?;
            let m = format!(
                "recovered from the quorum loss from the backup (up to revision {restored}{note}): {m}"
            );
            tracing::info!(etcd = %name, namespace = %ns, message = %m, "quorum-loss recovery: done");
            publish(ctx, etcd, EventType::Normal, "QuorumLossRecovered", &m).await;
            Some((model.replicas, Recovery::Recovered(m)))
        }
    })
}

fn message(state: &Recovery) -> String {
    match state {
        Recovery::Lost(m)
        | Recovery::Disabled(m)
        | Recovery::Recovering(m)
        | Recovery::Recovered(m)
        | Recovery::Restored(m)
        | Recovery::Waking(m)
        | Recovery::Woken(m) => m.clone(),
    }
}

async fn publish(ctx: &Context, etcd: &Etcd, kind: EventType, reason: &str, note: &str) {
    super::publish(ctx, etcd, kind, EVENT_ACTION, reason, note).await;
}

/// Lease `name` of the Etcd's namespace, from the watch cache (or the API
/// without caches).
async fn lease(ctx: &Context, model: &EtcdModel, name: &str) -> Result<Option<Lease>, kube::Error> {
    super::read_lease(&ctx.client, ctx.caches.get(), &model.namespace, name).await
}

/// The StatefulSet's pods (owned by it).
async fn pods(
    ctx: &Context,
    model: &EtcdModel,
    sts: &StatefulSet,
) -> Result<Vec<PodState>, kube::Error> {
    Ok(super::member_pods::list(ctx, model, sts)
        .await?
        .iter()
        .filter_map(PodState::of)
        .collect())
}

/// Deletes the claims of the StatefulSet's members (any ordinal); the
/// names of those still there (being deleted).
async fn delete_claims(
    ctx: &Context,
    model: &EtcdModel,
    sts: &StatefulSet,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let prefix = format!("{}-{}-", model.storage.claim_template, sts.name_any());
    let mut left = Vec::new();
    for claim in api.list_metadata(&ListParams::default()).await?.items {
        let claim = claim.name_any();
        let ours = claim
            .strip_prefix(&prefix)
            .is_some_and(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()));
        if ours {
            crate::components::delete_if_exists::<PersistentVolumeClaim>(
                &ctx.client,
                &model.namespace,
                &claim,
            )
            .await?;
            left.push(claim);
        }
    }
    Ok(left)
}

/// Records `phase` on the StatefulSet (or, with `None`, removes the
/// record), with what the recovery loses (kept from the start to the
/// report at its end), under its own field manager.
async fn record(
    ctx: &Context,
    model: &EtcdModel,
    phase: Option<Phase>,
    loss: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &model.namespace);
    api.patch(
        &names::statefulset(&model.name),
        &PatchParams {
            field_manager: Some(names::RECOVERY_FIELD_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(serde_json::json!({
            "metadata": { "annotations": {
                names::RECOVERY_ANNOTATION: phase.map(Phase::as_str),
                names::RECOVERY_LOSS_ANNOTATION: loss,
            } }
        })),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
#[path = "recovery_tests.rs"]
mod tests;
