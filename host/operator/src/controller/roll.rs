//! The quorum-aware roll: the StatefulSet's update strategy is `OnDelete`,
//! and the operator replaces the members whose pod runs an older template
//! itself, one at a time, in an order that keeps the quorum (DEP-07):
//!
//! 1. an outdated member that is not ready (crash-looping, not pulling
//!    its image, starting) first: it serves nothing, replacing it cannot
//!    make things worse, and it may be what the new template fixes;
//! 2. then nothing while a replaced member is not back and ready: one
//!    that does not come back (its container cannot start, or it is not
//!    ready after `--update-stall-seconds`) stops the roll with the
//!    condition `AllMembersUpdated` False (`UpdateStalled`) and a warning
//!    event, until it is ready or the spec changes;
//! 3. then one healthy member, followers first and the leader last (the
//!    roles from the member leases): a sidecar first checks that every
//!    other member is a healthy voter and moves leadership off it
//!    (`POST /members/scale-in/prepare`); while it refuses, the roll
//!    waits (`UpdateWaiting`, with the sidecar's reason).
//!
//! The pod is deleted directly (the StatefulSet controller recreates it
//! from the new template), with its UID as precondition. Everything the
//! roll decides comes from the pods, the StatefulSet and the leases, so a
//! restarted operator resumes where it stopped; the prepare step is
//! idempotent. [`decide`] is pure; [`sync`] reads and acts.

use std::time::Duration;

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt as _};

pub use super::conditions::all_members_updated::Roll;
use super::conditions::all_members_updated::{self, statefulset_updated};
use super::conditions::types::ALL_MEMBERS_UPDATED;
use super::sidecar::member_step;
use super::status::Observed;
use super::{Context, conditions};
use crate::names;

/// The event action.
const EVENT_ACTION: &str = "Update";

/// Container states that mean a pod will not become ready by waiting.
const FAILING: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// One member's pod, as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The pod's name.
    pub pod: String,
    /// The pod's UID (the deletion's precondition).
    pub uid: String,
    /// The StatefulSet ordinal.
    pub ordinal: i32,
    /// The pod's `controller-revision-hash`.
    pub revision: String,
    /// Whether the pod is Ready.
    pub ready: bool,
    /// Whether the pod is being deleted.
    pub deleting: bool,
    /// Why a container cannot run (`CrashLoopBackOff: ...`), if one cannot.
    pub failing: Option<String>,
    /// When the pod was created.
    pub created: Option<Timestamp>,
}

impl Member {
    /// The member from its pod (`None` for a pod without an ordinal).
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let name = pod.name_any();
        let ordinal = super::member_pods::ordinal(pod)?;
        let status = pod.status.as_ref();
        let ready = super::member_pods::ready_status(pod) == Some("True");
        let failing = status.and_then(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
                .find_map(|c| {
                    let waiting = c.state.as_ref()?.waiting.as_ref()?;
                    let reason = waiting.reason.as_deref()?;
                    FAILING.contains(&reason).then(|| {
                        let message: String = waiting
                            .message
                            .as_deref()
                            .unwrap_or_default()
                            .chars()
                            .take(300)
                            .collect();
                        format!("container {} is in {reason}: {message}", c.name)
                            .trim_end_matches([':', ' '])
                            .to_string()
                    })
                })
        });
        Some(Self {
            pod: name,
            uid: pod.uid().unwrap_or_default(),
            ordinal,
            revision: pod
                .labels()
                .get("controller-revision-hash")
                .cloned()
                .unwrap_or_default(),
            ready,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            failing,
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        })
    }
}

/// What the roll does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing: the roll is done, or waits (the state says why).
    Nothing(Roll),
    /// Replace this member's pod. A `healthy` one is prepared first
    /// (others healthy, leadership moved off it).
    Replace {
        /// The member.
        member: Member,
        /// Whether it is ready (and must be prepared).
        healthy: bool,
        /// Whether it leads (from its lease).
        leader: bool,
        /// `k of n` members updated, for messages.
        progress: String,
    },
}

/// The next step for a StatefulSet of `replicas` rolling to
/// `update_revision`, given its members' pods, the leading ordinal (if a
/// lease says) and whether the condition says a roll was under way.
pub fn decide(
    replicas: i32,
    update_revision: &str,
    pods: &[Member],
    leader: Option<i32>,
    was_rolling: bool,
    now: Timestamp,
    stall_after: Duration,
) -> Next {
    let members: Vec<&Member> = pods.iter().filter(|m| m.ordinal < replicas).collect();
    let updated = members
        .iter()
        .filter(|m| m.revision == update_revision && !m.deleting)
        .count();
    let progress = format!("{updated} of {replicas} member(s) updated");
    if let Some(m) = members.iter().find(|m| m.deleting) {
        return Next::Nothing(Roll::InProgress(format!(
            "{progress}; waiting for {} to stop (it comes back with the current pod template)",
            m.pod
        )));
    }
    if let Some(missing) = (0..replicas).find(|o| !members.iter().any(|m| m.ordinal == *o)) {
        if !was_rolling && updated == members.len() {
            // A scale-out's new pod, not a roll.
            return Next::Nothing(Roll::Done);
        }
        return Next::Nothing(Roll::InProgress(format!(
            "{progress}; waiting for the StatefulSet to create the pod of ordinal {missing}"
        )));
    }
    let (outdated, current): (Vec<&Member>, Vec<&Member>) =
        members.iter().partition(|m| m.revision != update_revision);
    // 1. Outdated members that serve nothing: failing first, then the
    //    highest ordinal.
    if let Some(m) = outdated
        .iter()
        .filter(|m| !m.ready)
        .max_by_key(|m| (m.failing.is_some(), m.ordinal))
    {
        return Next::Replace {
            member: (*m).clone(),
            healthy: false,
            leader: false,
            progress,
        };
    }
    // 2. Replaced members come back before the next goes.
    if outdated.is_empty() && !was_rolling {
        return Next::Nothing(Roll::Done);
    }
    if let Some(m) = current.iter().find(|m| !m.ready) {
        let age = m
            .created
            .map_or(Duration::ZERO, |c| conditions::age(now, c));
        if let Some(why) = &m.failing {
            return Next::Nothing(Roll::Stalled(format!(
                "{progress}; the roll stopped: {} runs the current pod template but cannot start ({why}); \
                 no other member is replaced until it is ready: fix the spec (the next change replaces it first)",
                m.pod
            )));
        }
        if age > stall_after {
            return Next::Nothing(Roll::Stalled(format!(
                "{progress}; the roll stopped: {} runs the current pod template but is not ready after {}s; \
                 no other member is replaced until it is ready (see its events and logs)",
                m.pod,
                age.as_secs()
            )));
        }
        return Next::Nothing(Roll::InProgress(format!(
            "{progress}; waiting for {} to be ready",
            m.pod
        )));
    }
    if outdated.is_empty() {
        return Next::Nothing(Roll::Done);
    }
    // 3. One healthy member: followers (highest ordinal first), the
    //    leader last.
    let next = outdated
        .iter()
        .max_by_key(|m| (Some(m.ordinal) != leader, m.ordinal));
    match next {
        Some(m) => Next::Replace {
            member: (*m).clone(),
            healthy: true,
            leader: Some(m.ordinal) == leader,
            progress,
        },
        None => Next::Nothing(Roll::Done),
    }
}

/// Whether the Etcd's condition says a roll is under way.
fn was_rolling(etcd: &Etcd) -> bool {
    all_members_updated::rolling(
        etcd.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == ALL_MEMBERS_UPDATED)),
    )
}

/// This reconcile's roll step; `None` when the StatefulSet is not the
/// operator's to roll (absent, or not `OnDelete` yet).
pub async fn sync(
    ctx: &Context,
    etcd: &Etcd,
    model: &EtcdModel,
    observed: &Observed,
) -> Result<Option<Roll>, kube::Error> {
    let Some(sts) = &observed.statefulset else {
        return Ok(None);
    };
    let spec = sts.spec.as_ref();
    let on_delete = spec
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    if !on_delete {
        return Ok(None);
    }
    let rolling = was_rolling(etcd);
    let status = sts.status.as_ref();
    if status.and_then(|s| s.observed_generation) < sts.metadata.generation {
        // Just applied: the StatefulSet's own status is not there yet.
        return Ok(rolling.then(|| {
            Roll::InProgress(
                "waiting for the StatefulSet controller to see the new pod template".into(),
            )
        }));
    }
    // The common case, without listing pods: every replica updated and
    // ready.
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(0);
    if statefulset_updated(sts) && status.and_then(|s| s.ready_replicas).unwrap_or(0) >= replicas {
        return Ok(Some(Roll::Done));
    }
    let Some(update_revision) = status.and_then(|s| s.update_revision.clone()) else {
        return Ok(Some(Roll::Done));
    };
    let members: Vec<Member> = super::member_pods::list(ctx, model, sts)
        .await?
        .iter()
        .filter_map(Member::from_pod)
        .collect();
    let leader = super::status::leader(observed, &ctx.settings)
        .and_then(|name| (0..replicas).find(|o| names::member(model, *o) == name));
    let next = decide(
        replicas,
        &update_revision,
        &members,
        leader,
        rolling,
        Timestamp::now(),
        ctx.settings.update_stall_after,
    );
    Ok(Some(act(ctx, etcd, model, replicas, next).await))
}

/// Carries out `next`: prepares and deletes a pod, or reports.
async fn act(ctx: &Context, etcd: &Etcd, model: &EtcdModel, replicas: i32, next: Next) -> Roll {
    let (ns, name) = (&model.namespace, &model.name);
    let (member, healthy, leader, progress) = match next {
        Next::Nothing(roll) => {
            if let Roll::Stalled(why) = &roll {
                tracing::warn!(etcd = %name, namespace = %ns, %why, "the roll stopped");
                publish(ctx, etcd, EventType::Warning, "UpdateStalled", why, None).await;
            }
            return roll;
        }
        Next::Replace {
            member,
            healthy,
            leader,
            progress,
        } => (member, healthy, leader, progress),
    };
    let member_name = names::member(model, member.ordinal);
    let why = if !healthy {
        format!(
            "it is not ready{}, so it goes first",
            member
                .failing
                .as_ref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        )
    } else if replicas == 1 {
        "the only member: etcd is unavailable until its pod is back".to_string()
    } else {
        match member_step(
            ctx,
            &etcd.uid().unwrap_or_default(),
            model,
            "prepare",
            member.ordinal,
        )
        .await
        {
            None => {
                return Roll::InProgress(format!(
                    "{progress}; {} is next: a sidecar is checking that every other member is a healthy voter{}",
                    member.pod,
                    if leader {
                        " and moving leadership off it"
                    } else {
                        ""
                    }
                ));
            }
            Some(Ok(report)) => {
                let leads = report["leader"].as_str().unwrap_or("another member");
                if leader {
                    format!(
                        "the leader, replaced last: leadership moved to {leads}, and every other member is a healthy voter"
                    )
                } else {
                    format!("a follower: every other member is a healthy voter, and {leads} leads")
                }
            }
            Some(Err(why)) => {
                tracing::info!(etcd = %name, namespace = %ns, member = %member_name, %why, "the roll waits");
                return Roll::Waiting(format!(
                    "{progress}; {} is next but cannot stop yet without risking the quorum: {why}",
                    member.pod
                ));
            }
        }
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(member.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&member.pod, &params).await {
        Ok(_) => {}
        // Gone or replaced meanwhile: the next reconcile sees it.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => {
            return Roll::Waiting(format!(
                "{progress}; cannot delete pod {} to update it: {e}",
                member.pod
            ));
        }
    }
    let message = format!(
        "{progress}; replacing {} with the current pod template: {why}",
        member.pod
    );
    tracing::info!(etcd = %name, namespace = %ns, pod = %member.pod, %message, "roll: pod deleted");
    let pod_ref = k8s_openapi::api::core::v1::ObjectReference {
        uid: Some(member.uid.clone()),
        ..super::pod_ref(ns, &member.pod)
    };
    publish(
        ctx,
        etcd,
        EventType::Normal,
        "MemberUpdating",
        &message,
        Some(pod_ref),
    )
    .await;
    Roll::InProgress(message)
}

async fn publish(
    ctx: &Context,
    etcd: &Etcd,
    type_: EventType,
    reason: &str,
    note: &str,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
) {
    super::publish_related(ctx, etcd, type_, EVENT_ACTION, reason, note, related).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const NEW: &str = "test-new";
    const OLD: &str = "test-old";
    const STALL: Duration = Duration::from_secs(600);

    fn member(ordinal: i32, revision: &str, ready: bool) -> Member {
        Member {
            pod: format!("test-{ordinal}"),
            uid: format!("uid-{ordinal}"),
            ordinal,
            revision: revision.into(),
            ready,
            deleting: false,
            failing: None,
            created: Some(Timestamp::from_second(1_000).unwrap()),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_000 + secs).unwrap()
    }

    fn replaced(next: &Next) -> (&str, bool) {
        match next {
            Next::Replace {
                member, healthy, ..
            } => (member.pod.as_str(), *healthy),
            other => panic!("expected a replacement, got {other:?}"),
        }
    }

    #[test]
    fn followers_go_first_highest_ordinal_first_and_the_leader_last() {
        let mut pods = vec![
            member(0, OLD, true),
            member(1, OLD, true),
            member(2, OLD, true),
        ];
        let mut order = Vec::new();
        for _ in 0..3 {
            let next = decide(3, NEW, &pods, Some(1), true, at(10), STALL);
            let (pod, healthy) = replaced(&next);
            assert!(healthy);
            order.push(pod.to_string());
            let m = pods.iter_mut().find(|m| m.pod == pod).unwrap();
            m.revision = NEW.into();
        }
        assert_eq!(
            order,
            ["test-2", "test-0", "test-1"],
            "the leader (test-1) last"
        );
        assert_eq!(
            decide(3, NEW, &pods, Some(1), true, at(10), STALL),
            Next::Nothing(Roll::Done)
        );
    }

    #[test]
    fn an_outdated_member_that_is_not_ready_goes_first_failing_before_starting() {
        let mut starting = member(0, OLD, false);
        starting.ordinal = 0;
        let mut crashing = member(1, OLD, false);
        crashing.failing = Some("container etcd is in CrashLoopBackOff".into());
        let pods = vec![starting, crashing, member(2, OLD, true)];
        let next = decide(3, NEW, &pods, Some(2), false, at(10), STALL);
        assert_eq!(replaced(&next), ("test-1", false));
    }

    #[test]
    fn nothing_is_replaced_while_a_replaced_member_is_not_back() {
        let pods = vec![
            member(0, OLD, true),
            member(1, NEW, false),
            member(2, NEW, true),
        ];
        let next = decide(3, NEW, &pods, None, true, at(30), STALL);
        let Next::Nothing(Roll::InProgress(m)) = next else {
            panic!("{next:?}")
        };
        assert!(
            m.contains("waiting for test-1 to be ready") && m.contains("2 of 3"),
            "{m}"
        );
        // Deleting, or not recreated yet: wait as well.
        let mut deleting = member(1, OLD, true);
        deleting.deleting = true;
        let pods = vec![member(0, OLD, true), deleting, member(2, NEW, true)];
        assert!(matches!(
            decide(3, NEW, &pods, None, true, at(30), STALL),
            Next::Nothing(Roll::InProgress(_))
        ));
        let pods = vec![member(0, OLD, true), member(2, NEW, true)];
        let Next::Nothing(Roll::InProgress(m)) = decide(3, NEW, &pods, None, true, at(30), STALL)
        else {
            panic!()
        };
        assert!(m.contains("ordinal 1"), "{m}");
    }

    #[test]
    fn a_replaced_member_that_cannot_start_or_stays_unready_stops_the_roll() {
        let mut pulling = member(1, NEW, false);
        pulling.failing = Some("container etcd is in ImagePullBackOff: not found".into());
        let pods = vec![member(0, OLD, true), pulling, member(2, OLD, true)];
        let Next::Nothing(Roll::Stalled(m)) = decide(3, NEW, &pods, None, true, at(5), STALL)
        else {
            panic!()
        };
        assert!(
            m.contains("test-1") && m.contains("ImagePullBackOff"),
            "{m}"
        );
        // Slow: in progress until the stall timeout, stalled after.
        let pods = vec![
            member(0, OLD, true),
            member(1, NEW, false),
            member(2, OLD, true),
        ];
        assert!(matches!(
            decide(3, NEW, &pods, None, true, at(599), STALL),
            Next::Nothing(Roll::InProgress(_))
        ));
        assert!(matches!(
            decide(3, NEW, &pods, None, true, at(601), STALL),
            Next::Nothing(Roll::Stalled(_))
        ));
    }

    #[test]
    fn a_spec_fixed_after_a_stall_replaces_the_broken_member_first() {
        // The image was fixed: the revision is the old one again, and the
        // member that could not pull is now the outdated, unready one.
        let mut pulling = member(1, "test-broken", false);
        pulling.failing = Some("container etcd is in ImagePullBackOff".into());
        let pods = vec![member(0, OLD, true), pulling, member(2, OLD, true)];
        assert_eq!(
            replaced(&decide(3, OLD, &pods, Some(0), true, at(5), STALL)),
            ("test-1", false)
        );
    }

    #[test]
    fn without_a_roll_an_unready_or_new_member_is_not_an_update() {
        // A member restarting on the current template, or a scale-out's
        // new pod: not a roll, the condition stays True.
        let pods = vec![member(0, NEW, true), member(1, NEW, false)];
        assert_eq!(
            decide(2, NEW, &pods, None, false, at(900), STALL),
            Next::Nothing(Roll::Done)
        );
        let pods = vec![member(0, NEW, true)];
        assert_eq!(
            decide(2, NEW, &pods, None, false, at(900), STALL),
            Next::Nothing(Roll::Done)
        );
        // Pods past the replicas (a scale-in's leaving member) are not
        // the roll's.
        let pods = vec![member(0, NEW, true), member(1, OLD, true)];
        assert_eq!(
            decide(1, NEW, &pods, None, false, at(5), STALL),
            Next::Nothing(Roll::Done)
        );
    }

    #[test]
    fn a_pod_is_read_with_its_revision_readiness_and_why_it_cannot_start() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "test-2", "uid": "u2", "labels": {"controller-revision-hash": "test-abc"},
                         "creationTimestamp": "2026-12-05T10:00:00Z"},
            "status": {
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "backup-restore", "ready": true, "restartCount": 0, "image": "b", "imageID": "",
                     "state": {"running": {}}},
                    {"name": "etcd", "ready": false, "restartCount": 0, "image": "e", "imageID": "",
                     "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"e\""}}}
                ]
            }
        }))
        .unwrap();
        let m = Member::from_pod(&pod).unwrap();
        assert_eq!(
            (m.ordinal, m.revision.as_str(), m.ready, m.uid.as_str()),
            (2, "test-abc", false, "u2")
        );
        let failing = m.failing.unwrap();
        assert!(
            failing.contains("etcd") && failing.contains("ImagePullBackOff"),
            "{failing}"
        );
    }
}
