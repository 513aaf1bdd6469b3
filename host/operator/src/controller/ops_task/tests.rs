#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use druid_api::EtcdOpsTask;
use druid_api::etcd::Condition;
use druid_api::tasks::{EtcdOpsTaskStatus, task_state};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::admit::{admit, codes};
use super::execute::{Operation, Outcome, outcome};
use super::record_error;
use crate::components::fixtures::seed;

/// The sample in deploy/samples, in namespace `ns`, created at `second`.
fn sample(name: &str, second: i64) -> EtcdOpsTask {
    let mut task: EtcdOpsTask = serde_yaml_ng::from_str(include_str!(
        "../../../../../deploy/samples/etcdopstask.yaml"
    ))
    .unwrap();
    task.metadata.name = Some(name.into());
    task.metadata.namespace = Some("default".into());
    task.metadata.uid = Some(format!("uid-{name}"));
    task.metadata.creation_timestamp = Some(Time(Timestamp::from_second(second).unwrap()));
    task
}

fn with_config(mut task: EtcdOpsTask, config: serde_json::Value) -> EtcdOpsTask {
    task.spec.config = serde_json::from_value(config).unwrap();
    task
}

fn in_state(mut task: EtcdOpsTask, state: &str) -> EtcdOpsTask {
    task.status = Some(EtcdOpsTaskStatus {
        state: Some(state.into()),
        ..Default::default()
    });
    task
}

/// The seed Etcd (in `default`) with its Ready condition `ready`.
fn etcd(ready: Option<&str>) -> druid_api::Etcd {
    let mut etcd = seed();
    etcd.metadata.namespace = Some("default".into());
    let conditions = ready
        .map(|status| Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: "Quorate".into(),
            message: "the cluster has quorum".into(),
            ..Default::default()
        })
        .into_iter()
        .collect();
    etcd.status = Some(druid_api::etcd::EtcdStatus {
        conditions,
        ..Default::default()
    });
    etcd
}

fn rejected(
    task: &EtcdOpsTask,
    etcd: Option<&druid_api::Etcd>,
    others: &[&EtcdOpsTask],
) -> (&'static str, String) {
    let r = admit(task, etcd, others).unwrap_err();
    (r.code, r.message)
}

#[test]
fn the_sample_is_a_full_snapshot_with_its_timeout() {
    let task = sample("a", 0);
    let op = Operation::of(&task.spec).unwrap();
    assert_eq!(
        op,
        Operation::Snapshot {
            delta: false,
            is_final: false,
            timeout: Duration::from_secs(900)
        }
    );
    assert_eq!(op.path(), "/snapshot/full");
    assert_eq!(task.spec.etcd_name, "test");
    assert_eq!(task.spec.ttl_seconds_after_finished, Some(3600));
}

#[test]
fn operations_take_upstreams_defaults_and_paths() {
    let delta = with_config(
        sample("a", 0),
        serde_json::json!({"onDemandSnapshot": {"type": "delta"}}),
    );
    let op = Operation::of(&delta.spec).unwrap();
    assert_eq!(op.timeout(), Duration::from_secs(60));
    assert_eq!(
        (op.path(), op.label()),
        ("/snapshot/delta", "deltaSnapshot")
    );
    let full = with_config(
        sample("a", 0),
        serde_json::json!({"onDemandSnapshot": {"type": "full", "isFinal": true}}),
    );
    let op = Operation::of(&full.spec).unwrap();
    assert_eq!(op.timeout(), Duration::from_secs(900));
    assert_eq!(op.path(), "/snapshot/full?final=true");
    // isFinal means nothing for a delta (the CRD refuses it anyway).
    let delta_final = with_config(
        sample("a", 0),
        serde_json::json!({"onDemandSnapshot": {"type": "delta", "isFinal": true, "timeoutSecondsDelta": 30}}),
    );
    let op = Operation::of(&delta_final.spec).unwrap();
    assert_eq!(op.path(), "/snapshot/delta");
    assert_eq!(op.timeout(), Duration::from_secs(30));
    let defrag = with_config(
        sample("a", 0),
        serde_json::json!({"onDemandDefragmentation": {}}),
    );
    let op = Operation::of(&defrag.spec).unwrap();
    assert_eq!((op.path(), op.label()), ("/defragment", "defragmentation"));
    assert_eq!(op.timeout(), Duration::from_secs(3600));
    let none = with_config(sample("a", 0), serde_json::json!({}));
    assert_eq!(Operation::of(&none.spec), None);
    assert_eq!(
        rejected(&none, Some(&etcd(Some("True"))), &[]).0,
        codes::INVALID_CONFIG
    );
}

#[test]
fn a_ready_etcd_with_a_store_is_admitted() {
    let task = sample("a", 0);
    let op = admit(&task, Some(&etcd(Some("True"))), &[&task]).unwrap();
    assert_eq!(op.label(), "fullSnapshot");
}

#[test]
fn each_reason_to_reject_is_named_with_what_to_do() {
    let task = sample("a", 0);
    let (code, message) = rejected(&task, None, &[]);
    assert_eq!(code, codes::ETCD_NOT_FOUND);
    assert!(
        message.contains("default/test") && message.contains("spec.etcdName"),
        "{message}"
    );

    let mut hibernated = etcd(Some("True"));
    hibernated.spec.replicas = 0;
    let (code, message) = rejected(&task, Some(&hibernated), &[]);
    assert_eq!(code, codes::ETCD_HIBERNATED);
    assert!(message.contains("wake it up"), "{message}");

    let mut deleting = etcd(Some("True"));
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    assert_eq!(
        rejected(&task, Some(&deleting), &[]).0,
        codes::ETCD_DELETING
    );

    let mut no_store = etcd(Some("True"));
    no_store.spec.store = None;
    no_store.spec.backup.store = None;
    let (code, message) = rejected(&task, Some(&no_store), &[]);
    assert_eq!(code, codes::BACKUP_NOT_ENABLED, "{message}");
    // A defragmentation needs no store.
    let defrag = with_config(
        sample("d", 0),
        serde_json::json!({"onDemandDefragmentation": {"timeoutSeconds": 600}}),
    );
    assert!(admit(&defrag, Some(&no_store), &[]).is_ok());

    let mut no_deltas = etcd(Some("True"));
    no_deltas.spec.backup.delta_snapshot_period = Some("0s".into());
    let delta = with_config(
        sample("a", 0),
        serde_json::json!({"onDemandSnapshot": {"type": "delta"}}),
    );
    assert_eq!(
        rejected(&delta, Some(&no_deltas), &[]).0,
        codes::DELTA_DISABLED
    );
    assert!(
        admit(&task, Some(&no_deltas), &[]).is_ok(),
        "a full snapshot does not need deltas"
    );

    let (code, message) = rejected(&task, Some(&etcd(Some("False"))), &[]);
    assert_eq!(code, codes::ETCD_NOT_READY);
    assert!(
        message.contains("Ready condition is False (Quorate"),
        "{message}"
    );
    let (code, message) = rejected(&task, Some(&etcd(None)), &[]);
    assert_eq!(code, codes::ETCD_NOT_READY);
    assert!(message.contains("no Ready condition"), "{message}");

    let mut invalid = etcd(Some("True"));
    invalid.spec.replicas = -1;
    assert_eq!(rejected(&task, Some(&invalid), &[]).0, codes::ETCD_INVALID);
}

#[test]
fn one_task_per_etcd_runs_at_a_time() {
    let ready = etcd(Some("True"));
    let first = sample("first", 10);
    let second = sample("second", 20);
    // The older unfinished task goes first; the newer is rejected, naming it.
    let all = [&first, &second];
    assert!(admit(&first, Some(&ready), &all).is_ok());
    let (code, message) = rejected(&second, Some(&ready), &all);
    assert_eq!(code, codes::DUPLICATE_TASK);
    assert!(message.contains("first"), "{message}");
    // Created in the same second: by name, so exactly one runs.
    let a = sample("a", 10);
    let b = sample("b", 10);
    assert!(admit(&a, Some(&ready), &[&a, &b]).is_ok());
    assert!(admit(&b, Some(&ready), &[&a, &b]).is_err());
    // A running task blocks even an older one.
    let running = in_state(sample("later", 30), task_state::IN_PROGRESS);
    assert_eq!(
        rejected(&first, Some(&ready), &[&first, &running]).0,
        codes::DUPLICATE_TASK
    );
    // Finished tasks, tasks being deleted and other Etcds' tasks do not.
    for state in [
        task_state::SUCCEEDED,
        task_state::FAILED,
        task_state::REJECTED,
    ] {
        let done = in_state(sample("done", 0), state);
        assert!(
            admit(&second, Some(&ready), &[&done, &second]).is_ok(),
            "{state}"
        );
    }
    let mut deleting = sample("deleting", 0);
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    assert!(admit(&second, Some(&ready), &[&deleting, &second]).is_ok());
    let mut other = sample("other", 0);
    other.spec.etcd_name = "another".into();
    assert!(admit(&second, Some(&ready), &[&other, &second]).is_ok());
}

fn full() -> Operation {
    Operation::of(&sample("a", 0).spec).unwrap()
}

fn defrag() -> Operation {
    Operation::Defragmentation {
        timeout: Duration::from_secs(60),
    }
}

#[test]
fn a_snapshot_answer_names_the_snapshot_or_why_it_failed() {
    let body = serde_json::json!({
        "kind": "Full", "startRevision": 0, "lastRevision": 42,
        "snapName": "Full-00000000-00000042-1700000000.gz", "prefix": "etcd-test/v2"
    })
    .to_string();
    let Outcome::Done(what) = outcome(&full(), Ok((200, body))) else {
        panic!("not done")
    };
    assert_eq!(
        what,
        "full snapshot etcd-test/v2/Full-00000000-00000042-1700000000.gz uploaded (up to revision 42)"
    );
    let delta = Operation::Snapshot {
        delta: true,
        is_final: false,
        timeout: Duration::from_secs(60),
    };
    let Outcome::Done(what) = outcome(&delta, Ok((200, "null".into()))) else {
        panic!("not done")
    };
    assert!(what.contains("no delta snapshot was needed"), "{what}");
    // Transient: the rate limit, an unreachable sidecar.
    assert!(
        matches!(outcome(&full(), Ok((429, "too soon".into()))), Outcome::Retry(m) if m.contains("too soon"))
    );
    assert!(
        matches!(outcome(&full(), Err("connection refused".into())), Outcome::Retry(m) if m.contains("connection refused"))
    );
    // For good: no store, a failed snapshot.
    assert_eq!(
        outcome(&full(), Ok((405, "no store is configured".into()))),
        Outcome::Failed(
            super::execute::codes::SIDECAR_FAILED,
            "the sidecar answered 405: no store is configured".into()
        )
    );
    let long = "x".repeat(2000);
    let Outcome::Failed(_, message) = outcome(&full(), Ok((500, long))) else {
        panic!("not failed")
    };
    assert!(message.len() < 600 && message.ends_with('…'), "{message}");
}

#[test]
fn a_defragmentation_answer_summarizes_the_report() {
    let report = serde_json::json!({
        "outcome": "Succeeded",
        "members": [
            {"name": "test-0", "outcome": "Defragmented", "reclaimedBytes": 4096},
            {"name": "test-1", "outcome": "Skipped", "reason": "below the threshold", "reclaimedBytes": 0}
        ],
        "nospaceDisarmed": false,
        "durationSeconds": 1.25
    })
    .to_string();
    let Outcome::Done(what) = outcome(&defrag(), Ok((200, report))) else {
        panic!("not done")
    };
    assert_eq!(
        what,
        "defragmented (Succeeded); members: test-0 Defragmented (4096 bytes reclaimed); test-1 Skipped (0 bytes reclaimed, below the threshold); took 1.2 s"
    );
    // A run in progress is waited for; a refusal fails the task.
    assert!(matches!(
        outcome(
            &defrag(),
            Ok((409, "a defragmentation run is in progress".into()))
        ),
        Outcome::Retry(_)
    ));
    let refused = serde_json::json!({"outcome": "Refused", "reason": "member test-1 is not healthy", "members": []}).to_string();
    let Outcome::Failed(_, message) = outcome(&defrag(), Ok((409, refused))) else {
        panic!("not failed")
    };
    assert_eq!(
        message,
        "the sidecar answered 409: not defragmented (Refused: member test-1 is not healthy)"
    );
}

#[test]
fn last_errors_keep_the_newest_three_and_fold_repeats() {
    let mut status = EtcdOpsTaskStatus::default();
    record_error(&mut status, "E", "one");
    record_error(&mut status, "E", "one");
    assert_eq!(status.last_errors.len(), 1);
    for d in ["two", "three", "four"] {
        record_error(&mut status, "E", d);
    }
    let kept: Vec<&str> = status
        .last_errors
        .iter()
        .map(|e| e.description.as_str())
        .collect();
    assert_eq!(kept, ["two", "three", "four"]);
}
