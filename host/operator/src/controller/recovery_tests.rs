//! `decide`'s cases: both witnesses must agree and the loss must last;
//! the guards (disabled, no store, no backup, a node away) hold it back;
//! the recorded phases resume; a Ready condition older than the last
//! recovery starts nothing.

use std::time::Duration;

use druid_api::etcd::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{Timestamp, ToSpan as _};

use super::*;
use crate::controller::conditions::quorum_lost;

/// A guard case: what, how the input changes, what the message says.
type Guard = (&'static str, fn(&mut Input<'_>), &'static str);

fn now() -> Timestamp {
    "2026-12-06T12:00:00Z".parse().unwrap()
}

fn condition(type_: &str, status: &str, reason: &str, secs_ago: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        last_transition_time: Some(Time(now() - secs_ago.seconds())),
        ..Condition::default()
    }
}

fn pod(ordinal: i32, ready: bool) -> PodState {
    PodState {
        name: format!("test-{ordinal}"),
        ordinal,
        ready,
        unreachable: false,
        scheduled: true,
        deleting: false,
    }
}

fn input<'a>(conditions: &'a [Condition], pods: &'a [PodState]) -> Input<'a> {
    static DOWN: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["test-1".into(), "test-2".into()]);
    Input {
        wanted: 3,
        current: 3,
        phase: None,
        conditions,
        pods,
        down: &DOWN,
        disabled: false,
        store: true,
        backed_up: Some(42),
        reported: Some(45),
        after: Duration::from_secs(120),
        now: now(),
    }
}

fn lost_for(secs: i64) -> Vec<Condition> {
    vec![condition(types::READY, "False", "QuorumLost", secs)]
}

#[test]
fn a_majority_down_by_both_witnesses_for_long_enough_starts_the_recovery() {
    let pods = [pod(0, false), pod(1, false), pod(2, false)];
    let conditions = lost_for(121);
    match decide(&input(&conditions, &pods)) {
        Next::Begin(m) => {
            assert!(m.contains("revision 42"), "{m}");
            assert!(
                m.contains("at least 3 revision(s) after the backup are lost"),
                "{m}"
            );
            assert!(
                m.contains("2 of 3 members are down (test-1, test-2;"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Not long enough yet: the condition says when.
    let conditions = lost_for(30);
    match decide(&input(&conditions, &pods)) {
        Next::Nothing(Some(Recovery::Lost(m))) => {
            assert!(m.contains("in 90s"), "{m}");
            assert!(m.contains(names::DISABLE_AUTO_RECOVERY_ANNOTATION), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn either_witness_seeing_a_quorum_is_no_loss() {
    // The pods: two of three Ready (the leases lag).
    let pods = [pod(0, true), pod(1, true), pod(2, false)];
    let conditions = lost_for(600);
    assert_eq!(decide(&input(&conditions, &pods)), Next::Nothing(None));
    // The leases: Ready True (a cluster starting or scaling out has pods
    // that are not Ready yet).
    let pods = [pod(0, false), pod(1, false), pod(2, false)];
    let conditions = vec![condition(types::READY, "True", "Quorate", 600)];
    assert_eq!(decide(&input(&conditions, &pods)), Next::Nothing(None));
    // A single member, or hibernation: nothing to recover here.
    let conditions = lost_for(600);
    let mut one = input(&conditions, &pods);
    one.current = 1;
    assert_eq!(decide(&one), Next::Nothing(None));
    let mut asleep = input(&conditions, &pods);
    asleep.wanted = 0;
    assert_eq!(decide(&asleep), Next::Nothing(None));
}

#[test]
fn the_guards_hold_the_recovery_back_and_say_why() {
    let pods = [pod(0, true), pod(1, false), pod(2, false)];
    let conditions = lost_for(600);
    let cases: [Guard; 3] = [
        (
            "disabled",
            |i| i.disabled = true,
            "disabled by the annotation",
        ),
        ("no store", |i| i.store = false, "no backup store"),
        ("no backup", |i| i.backed_up = None, "no full snapshot"),
    ];
    for (what, change, says) in cases {
        let mut i = input(&conditions, &pods);
        change(&mut i);
        match decide(&i) {
            Next::Nothing(Some(Recovery::Disabled(m) | Recovery::Lost(m))) => {
                assert!(m.contains(says), "{what}: {m}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let mut away = [pod(0, true), pod(1, false), pod(2, false)];
    away[2].unreachable = true;
    match decide(&input(&conditions, &away)) {
        Next::Nothing(Some(Recovery::Lost(m))) => {
            assert!(m.contains("the node of test-2 does not answer"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let mut pending = [pod(0, true), pod(1, false), pod(2, false)];
    pending[1].scheduled = false;
    match decide(&input(&conditions, &pending)) {
        Next::Nothing(Some(Recovery::Lost(m))) => {
            assert!(m.contains("test-1 is not scheduled"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_recorded_phases_resume_whatever_the_conditions_say() {
    let conditions = vec![condition(types::READY, "True", "Quorate", 5)];
    let pods = [pod(0, false)];
    let mut stopping = input(&conditions, &pods);
    stopping.phase = Some(Phase::Stopping);
    assert!(matches!(decide(&stopping), Next::Stopping(m) if m.contains("test-0")));
    stopping.pods = &[];
    assert_eq!(decide(&stopping), Next::DeleteClaims);
    let mut restoring = input(&conditions, &pods);
    restoring.phase = Some(Phase::Restoring);
    assert!(matches!(decide(&restoring), Next::Restoring(_)));
    let back = [pod(0, true)];
    restoring.pods = &back;
    assert!(matches!(decide(&restoring), Next::Finish(m) if m.contains("3 member(s)")));
}

#[test]
fn a_staged_wake_up_holds_one_replica_until_member_0_is_ready() {
    let conditions = vec![condition(types::READY, "Unknown", "NotChecked", 5)];
    let mut waking = input(&conditions, &[]);
    waking.phase = Some(Phase::Waking);
    assert!(matches!(decide(&waking), Next::Waking(m) if m.contains("member 0 restores")));
    let starting = [pod(0, false)];
    waking.pods = &starting;
    assert!(matches!(decide(&waking), Next::Waking(_)));
    let back = [pod(0, true)];
    waking.pods = &back;
    assert!(matches!(decide(&waking), Next::Woken(m) if m.contains("3 member(s)")));
    // A new cluster started staged: the same steps, its own words.
    waking.phase = Some(Phase::Starting);
    assert!(matches!(decide(&waking), Next::Woken(m) if m.contains("member 0 started")));
    waking.pods = &starting;
    assert!(matches!(decide(&waking), Next::Waking(m) if m.contains("starting a new cluster")));
}

#[test]
fn a_new_cluster_of_several_members_with_a_store_is_created_at_0_replicas() {
    let mut etcd = crate::components::fixtures::seed();
    etcd.spec.replicas = 3;
    let model = crate::components::fixtures::model(&etcd);
    assert!(model.store.is_some());
    let (replicas, state) = first_start(&model).unwrap();
    assert_eq!(replicas, 0);
    assert!(
        matches!(state, quorum_lost::Recovery::Waking(m) if m.contains("member 0 starts alone first"))
    );
    // Joining an existing cluster, one member, or no store (nothing to
    // restore): created as the spec says.
    let mut joining = etcd.clone();
    joining.spec.etcd.bootstrap_with_existing_cluster =
        Some(druid_api::etcd::BootstrapWithExistingCluster {
            client_endpoints: vec!["http://10.0.0.1:2379".into()],
            members: vec![druid_api::etcd::BootstrapExistingMember {
                name: "vm-a".into(),
                peer_urls: vec!["http://10.0.0.1:2380".into()],
            }],
        });
    assert_eq!(
        first_start(&crate::components::fixtures::model(&joining)),
        None
    );
    etcd.spec.replicas = 1;
    assert_eq!(
        first_start(&crate::components::fixtures::model(&etcd)),
        None
    );
    etcd.spec.replicas = 3;
    etcd.spec.backup.store = None;
    etcd.spec.store = None;
    assert_eq!(
        first_start(&crate::components::fixtures::model(&etcd)),
        None
    );
}

#[test]
fn a_ready_condition_older_than_the_last_recovery_starts_nothing_and_a_new_loss_does() {
    let pods = [pod(0, true), pod(1, false), pod(2, false)];
    // Lost 600 s ago; recovered 60 s ago; the leases of the members that
    // are joining again have not been renewed yet.
    let conditions = vec![
        condition(types::READY, "False", "QuorumLost", 600),
        condition(types::QUORUM_LOST, "False", quorum_lost::RECOVERED, 60),
    ];
    assert_eq!(decide(&input(&conditions, &pods)), Next::Nothing(None));
    // Quorate in between, lost again since 300 s.
    let conditions = vec![
        condition(types::READY, "False", "QuorumLost", 300),
        condition(types::QUORUM_LOST, "False", quorum_lost::RECOVERED, 900),
    ];
    assert!(matches!(decide(&input(&conditions, &pods)), Next::Begin(_)));
}

#[test]
fn the_quorum_coming_back_by_itself_is_said_once() {
    let pods = [pod(0, true), pod(1, true), pod(2, false)];
    let conditions = vec![
        condition(types::READY, "True", "Quorate", 5),
        condition(types::QUORUM_LOST, "True", quorum_lost::LOST, 100),
    ];
    assert!(matches!(
        decide(&input(&conditions, &pods)),
        Next::Nothing(Some(Recovery::Restored(_)))
    ));
    let conditions = vec![
        condition(types::READY, "True", "Quorate", 5),
        condition(types::QUORUM_LOST, "False", quorum_lost::RESTORED, 5),
    ];
    assert_eq!(decide(&input(&conditions, &pods)), Next::Nothing(None));
    // No word from the leases (0 replicas, or none renewed yet): the last
    // word stays.
    let conditions = vec![
        condition(types::READY, "Unknown", "NotChecked", 5),
        condition(types::QUORUM_LOST, "True", quorum_lost::LOST, 100),
    ];
    assert_eq!(decide(&input(&conditions, &pods)), Next::Nothing(None));
}

#[test]
fn an_unknown_record_is_read_as_stopping() {
    let mut sts = StatefulSet::default();
    assert_eq!(Phase::of(&sts), None);
    sts.metadata.annotations = Some(
        [(
            names::RECOVERY_ANNOTATION.to_string(),
            "garbage".to_string(),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(Phase::of(&sts), Some(Phase::Stopping));
    sts.metadata.annotations = Some(
        [(
            names::RECOVERY_ANNOTATION.to_string(),
            "restoring".to_string(),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(Phase::of(&sts), Some(Phase::Restoring));
    sts.metadata.annotations = Some(
        [(names::RECOVERY_ANNOTATION.to_string(), "waking".to_string())]
            .into_iter()
            .collect(),
    );
    assert_eq!(Phase::of(&sts), Some(Phase::Waking));
    sts.metadata.annotations = Some(
        [(
            names::RECOVERY_ANNOTATION.to_string(),
            "starting".to_string(),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(Phase::of(&sts), Some(Phase::Starting));
}

#[test]
fn the_loss_is_counted_from_the_highest_revision_a_member_reported() {
    assert!(loss(42, Some(50)).contains("at least 8 revision(s)"));
    assert!(loss(42, Some(42)).contains("no revision is lost"));
    assert!(loss(42, Some(40)).contains("no revision is lost"));
    assert!(loss(42, None).contains("unknown"));
}
