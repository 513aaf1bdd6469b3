//! Tests of the pure parts: decisions, thresholds, job states and failures.
#![allow(clippy::unwrap_used, reason = "tests")]

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::decide::{lease_bytes, lease_revision};
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
