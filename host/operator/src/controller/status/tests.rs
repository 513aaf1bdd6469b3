//! The status computation's tests.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::*;
use crate::components::fixtures;

fn lease(name: &str, holder: &str, renewed_secs_ago: i64, now: Timestamp) -> (String, Lease) {
    let mut l = Lease::default();
    l.metadata.name = Some(name.into());
    l.spec = Some(LeaseSpec {
        holder_identity: Some(holder.into()),
        renew_time: Some(MicroTime(
            Timestamp::from_second(now.as_second() - renewed_secs_ago).unwrap(),
        )),
        ..LeaseSpec::default()
    });
    (name.into(), l)
}

/// The status after a reconcile that applied everything, with the default
/// settings.
fn reconciled(etcd: &Etcd, model: &EtcdModel, observed: &Observed, now: Timestamp) -> EtcdStatus {
    compute(
        etcd,
        Some(model),
        observed,
        &SpecOutcome::Reconciled,
        &Settings::default(),
        now,
    )
}

fn cond<'a>(s: &'a EtcdStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn members_show_their_last_defragmentation_from_the_lease() {
    let etcd = fixtures::seed();
    let model = fixtures::model(&etcd);
    let now = Timestamp::now();
    let mut observed = Observed::default();
    let (name, mut l) = lease("test-0", "1a:c1:Leader", 5, now);
    l.metadata.annotations = Some(BTreeMap::from([(
        druid_api::LAST_DEFRAGMENTATION_ANNOTATION.to_string(),
        r#"{"time":"2026-11-30T00:00:05Z","outcome":"Defragmented","reclaimedBytes":1048576,"dbSizeBefore":3145728,"dbSizeAfter":2097152,"durationSeconds":0.5}"#.to_string(),
    )]));
    observed.member_leases.insert(name, l);
    let (name, mut broken) = lease("test-1", "1b:c1:Member", 5, now);
    broken.metadata.annotations = Some(BTreeMap::from([(
        druid_api::LAST_DEFRAGMENTATION_ANNOTATION.to_string(),
        "not json".to_string(),
    )]));
    observed.member_leases.insert(name, broken);
    let s = reconciled(&etcd, &model, &observed, now);
    let d = s.members[0].last_defragmentation.as_ref().unwrap();
    assert_eq!(d.outcome, "Defragmented");
    assert_eq!(d.reclaimed_bytes, 1 << 20);
    assert_eq!(d.duration_seconds, 0.5);
    assert!(
        s.members[1].last_defragmentation.is_none(),
        "an unreadable annotation is ignored"
    );
}

#[test]
fn quorum_follows_the_member_leases() {
    let mut etcd = fixtures::seed();
    etcd.spec.replicas = 3;
    let model = fixtures::model(&etcd);
    let now = Timestamp::now();
    let settings = Settings::default();
    let mut observed = Observed::default();
    observed.member_leases.extend([
        lease("test-0", "1a:c1:Leader", 5, now),
        lease("test-1", "1b:c1:Member", 5, now),
        lease("test-2", "1c:c1:Member", 1000, now),
    ]);
    let s = compute(
        &etcd,
        Some(&model),
        &observed,
        &SpecOutcome::Reconciled,
        &settings,
        now,
    );
    assert_eq!(cond(&s, types::READY).status, "True");
    assert_eq!(cond(&s, types::ALL_MEMBERS_READY).status, "False");
    assert_eq!(s.members[0].role.as_deref(), Some("Leader"));
    assert_eq!(s.members[2].status, "NotReady");

    observed
        .member_leases
        .extend([lease("test-1", "1b:c1:Member", 1000, now)]);
    let s = compute(
        &etcd,
        Some(&model),
        &observed,
        &SpecOutcome::Reconciled,
        &settings,
        now,
    );
    assert_eq!(cond(&s, types::READY).status, "False");
    assert_eq!(cond(&s, types::READY).reason, "QuorumLost");
    assert_eq!(s.etcd.as_ref().unwrap().kind, "StatefulSet");
    assert_eq!(s.observed_generation, Some(1));
}

#[test]
fn invalid_specs_say_why_and_keep_the_observed_generation() {
    let etcd = fixtures::seed();
    let problems = vec![Problem {
        reason: "StoreSecretMissing",
        field: "spec.store.storeSecret".into(),
        message: "Secret demo/etcd-backup does not exist".into(),
    }];
    let s = compute(
        &etcd,
        None,
        &Observed::default(),
        &SpecOutcome::Invalid(problems),
        &Settings::default(),
        Timestamp::now(),
    );
    let c = cond(&s, types::SPEC_VALID);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "StoreSecretMissing")
    );
    assert!(
        c.message.contains("spec.store.storeSecret"),
        "{}",
        c.message
    );
    assert_eq!(s.last_errors[0].code, "ERR_INVALID_SPEC");
    assert_eq!(s.observed_generation, None);
}

#[test]
fn the_compaction_controllers_condition_is_kept_as_it_is() {
    let mut etcd = fixtures::seed();
    let model = fixtures::model(&etcd);
    let now = Timestamp::now();
    let theirs = Condition {
        type_: types::LAST_SNAPSHOT_COMPACTION_SUCCEEDED.into(),
        status: "False".into(),
        last_transition_time: Some(Time(Timestamp::from_second(1_000_000).unwrap())),
        last_update_time: Some(Time(Timestamp::from_second(1_000_000).unwrap())),
        reason: "DeadlineExceeded".into(),
        message: "compaction job test-compactor failed".into(),
    };
    etcd.status = Some(EtcdStatus {
        conditions: vec![theirs.clone()],
        ..EtcdStatus::default()
    });
    let s = reconciled(&etcd, &model, &Observed::default(), now);
    assert_eq!(cond(&s, types::LAST_SNAPSHOT_COMPACTION_SUCCEEDED), &theirs);
    let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    let mut sorted = types.clone();
    sorted.sort_unstable();
    assert_eq!(types, sorted, "conditions stay sorted by type");
    // Never made up when the compaction controller has not written it.
    etcd.status = None;
    let s = reconciled(&etcd, &model, &Observed::default(), now);
    assert!(
        !s.conditions
            .iter()
            .any(|c| c.type_ == types::LAST_SNAPSHOT_COMPACTION_SUCCEEDED)
    );
}

#[test]
fn backup_ready_follows_the_snapshot_leases() {
    let etcd = fixtures::seed();
    let model = fixtures::model(&etcd);
    let now = Timestamp::now();
    let mut observed = Observed::default();
    let s = reconciled(&etcd, &model, &observed, now);
    assert_eq!(cond(&s, types::BACKUP_READY).reason, "NoSnapshotYet");
    observed.full_snapshot_lease = Some(lease("test-full-snap", "100", 3600, now).1);
    observed.delta_snapshot_lease = Some(lease("test-delta-snap", "120", 60, now).1);
    let s = reconciled(&etcd, &model, &observed, now);
    assert_eq!(cond(&s, types::BACKUP_READY).status, "True");
    // Deltas every 300s: 1000s without one is stale.
    observed.delta_snapshot_lease = Some(lease("test-delta-snap", "120", 1000, now).1);
    let s = reconciled(&etcd, &model, &observed, now);
    assert_eq!(cond(&s, types::BACKUP_READY).status, "False");
}

#[test]
fn a_failure_the_sidecar_records_makes_backup_ready_false_until_a_success() {
    let etcd = fixtures::seed();
    let model = fixtures::model(&etcd);
    let now = Timestamp::now();
    let mut observed = Observed {
        full_snapshot_lease: Some(lease("test-full-snap", "100", 3600, now).1),
        ..Observed::default()
    };
    let failed = |failed_secs_ago: i64, renewed_secs_ago: i64| {
        let (_, mut l) = lease("test-delta-snap", "120", renewed_secs_ago, now);
        let at = Timestamp::from_second(now.as_second() - failed_secs_ago).unwrap();
        l.metadata.annotations = Some(BTreeMap::from([
            (
                druid_api::SNAPSHOT_FAILED_AT_ANNOTATION.to_string(),
                at.to_string(),
            ),
            (
                druid_api::SNAPSHOT_FAILURE_ANNOTATION.to_string(),
                "S3 store b/p: store.put: access denied".to_string(),
            ),
        ]));
        l
    };
    let backup_ready = |observed: &Observed| {
        let s = reconciled(&etcd, &model, observed, now);
        cond(&s, types::BACKUP_READY).clone()
    };
    // Renewed 10 s ago (fresh by age), failed 5 s ago: False at once.
    observed.delta_snapshot_lease = Some(failed(5, 10));
    let c = backup_ready(&observed);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "BackupFailed")
    );
    assert!(c.message.contains("access denied"), "{}", c.message);
    assert!(c.message.contains("failed 5s ago"), "{}", c.message);
    // A success after the failure: True again.
    observed.delta_snapshot_lease = Some(failed(20, 3));
    assert_eq!(backup_ready(&observed).status, "True");
    // A broken timestamp is ignored, not a failure.
    let mut l = failed(5, 10);
    l.metadata.annotations.as_mut().unwrap().insert(
        druid_api::SNAPSHOT_FAILED_AT_ANNOTATION.to_string(),
        "yesterday".to_string(),
    );
    observed.delta_snapshot_lease = Some(l);
    assert_eq!(backup_ready(&observed).status, "True");
}

#[test]
fn peer_tls_label_selector_and_cluster_ids_come_from_what_members_report() {
    let etcd = fixtures::seed();
    let model = fixtures::model(&etcd);
    let now = Timestamp::now();
    let mut observed = Observed::default();
    let compute_now = |observed: &Observed| reconciled(&etcd, &model, observed, now);
    let s = compute_now(&observed);
    assert_eq!(s.peer_url_tls_enabled, None);
    assert_eq!(s.label_selector, None);
    assert_eq!(cond(&s, types::CLUSTER_ID_MISMATCH).status, "Unknown");
    for (member, holder, tls) in [
        ("test-0", "1a:c1:Leader", "true"),
        ("test-1", "1b:c1:Member", "true"),
    ] {
        let (name, mut l) = lease(member, holder, 1, now);
        l.metadata.annotations = Some(BTreeMap::from([(
            druid_api::MEMBER_TLS_ENABLED_ANNOTATION.to_string(),
            tls.to_string(),
        )]));
        observed.member_leases.insert(name, l);
    }
    let mut sts = k8s_openapi::api::apps::v1::StatefulSet::default();
    let selector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_string(), "x".to_string())])),
        ..Default::default()
    };
    sts.spec = Some(k8s_openapi::api::apps::v1::StatefulSetSpec {
        selector: selector.clone(),
        ..Default::default()
    });
    observed.statefulset = Some(sts);
    let s = compute_now(&observed);
    assert_eq!(s.peer_url_tls_enabled, Some(true));
    assert_eq!(s.label_selector, Some(selector));
    assert_eq!(cond(&s, types::CLUSTER_ID_MISMATCH).status, "False");
    // One member without TLS, and in a cluster of its own.
    let (name, mut l) = lease("test-2", "2c:c9:Leader", 1, now);
    l.metadata.annotations = Some(BTreeMap::from([(
        druid_api::MEMBER_TLS_ENABLED_ANNOTATION.to_string(),
        "false".to_string(),
    )]));
    observed.member_leases.insert(name, l);
    let s = compute_now(&observed);
    assert_eq!(s.peer_url_tls_enabled, Some(false));
    let c = cond(&s, types::CLUSTER_ID_MISMATCH);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "ClusterIDMismatch")
    );
}

#[test]
fn joining_an_existing_cluster_is_recorded_once_and_stays_true_through_the_cut_over() {
    use crate::controller::conditions::bootstrapped_with_existing_cluster as joined;
    use crate::controller::cut_over::{self, CutOver};
    use druid_api::etcd::{BootstrapExistingMember, BootstrapWithExistingCluster};

    let mut etcd = fixtures::seed();
    etcd.spec.replicas = 3;
    etcd.spec.etcd.bootstrap_with_existing_cluster = Some(BootstrapWithExistingCluster {
        client_endpoints: vec!["http://10.0.0.1:2379".into()],
        members: vec![BootstrapExistingMember {
            name: "source-0".into(),
            peer_urls: vec!["http://10.0.0.1:2380".into()],
        }],
    });
    let model = fixtures::model(&etcd);
    let t0 = Timestamp::now();
    let mut observed = Observed::default();
    observed.member_leases.extend([
        lease("test-0", "1a:c1:Leader", 5, t0),
        lease("test-1", "1b:c1:Member", 5, t0),
    ]);
    let s = reconciled(&etcd, &model, &observed, t0);
    let c = cond(&s, types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", joined::IN_PROGRESS)
    );
    assert!(
        c.message.starts_with("2 of 3 members joined"),
        "{}",
        c.message
    );
    assert!(s.bootstrap_with_existing_cluster.is_none());

    observed
        .member_leases
        .extend([lease("test-2", "1c:c1:Member", 5, t0)]);
    let s = reconciled(&etcd, &model, &observed, t0);
    let c = cond(&s, types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", joined::SUCCEEDED)
    );
    let record = s.bootstrap_with_existing_cluster.clone().unwrap();
    assert_eq!(record.joined_at, Time(t0));
    assert_eq!(record.members[0].name, "source-0");
    assert_eq!(
        cut_over::due(&etcd, &model),
        None,
        "the spec still names the source"
    );

    // Later, with the source removed from the spec: the record stays as it
    // was written, the condition stays True whatever the members show, and
    // a cut-over is due until one finished.
    etcd.status = Some(s);
    etcd.spec.etcd.bootstrap_with_existing_cluster = None;
    let model = fixtures::model(&etcd);
    assert_eq!(
        cut_over::due(&etcd, &model),
        Some(vec!["source-0".to_string()])
    );
    let t1 = Timestamp::from_second(t0.as_second() + 60).unwrap();
    let mut observed = Observed {
        cut_over: Some(CutOver::Waiting("the sidecar answered 503".into())),
        ..Observed::default()
    };
    let s = reconciled(&etcd, &model, &observed, t1);
    let c = cond(&s, types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", joined::SUCCEEDED)
    );
    assert!(
        c.message
            .contains("the cut-over waits: the sidecar answered 503"),
        "{}",
        c.message
    );
    assert_eq!(s.bootstrap_with_existing_cluster.as_ref(), Some(&record));

    observed.cut_over = Some(CutOver::Done("cut over: removed source-0".into()));
    let s = reconciled(&etcd, &model, &observed, t1);
    let c = cond(&s, types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", joined::CUT_OVER)
    );
    etcd.status = Some(s);
    assert_eq!(
        cut_over::due(&etcd, &model),
        None,
        "done once, never asked again"
    );
    let s = reconciled(&etcd, &model, &Observed::default(), t1);
    let c = cond(&s, types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER);
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        (joined::CUT_OVER, "cut over: removed source-0")
    );
}

#[test]
fn an_etcd_that_never_joined_another_cluster_has_no_such_condition() {
    let etcd = fixtures::seed();
    let model = fixtures::model(&etcd);
    let s = reconciled(&etcd, &model, &Observed::default(), Timestamp::now());
    assert!(
        s.conditions
            .iter()
            .all(|c| c.type_ != types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER)
    );
    assert!(s.bootstrap_with_existing_cluster.is_none());
}
