//! The recovery from a permanent quorum loss, against a real
//! kube-apiserver and the real `druid` binary (with short thresholds).
//!
//! No kubelet, StatefulSet controller or sidecar runs here: the test makes
//! the pods, claims and leases as they would (`common::members`), and
//! removes what they would remove (pods, the claims' protection
//! finalizer). The recovery on real pods, with the data restored from the
//! store, runs on the real node in `tests/e2e/tests/node.rs`.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::time::Duration;

use common::members::{
    RECORD, claim, etcd, lease_role, member_pod_on, pod_status, statefulset, sts_at, sts_replicas,
    wait_condition,
};
use common::{
    annotate_etcd, client, condition, kubectl_stdin, namespace, ok, operator_with, patch_etcd,
    seed_in, wait_for, wait_for_event,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt as _};

const DISABLE: &str = "druid.gardener.cloud/disable-auto-recovery";

fn operator() -> &'static common::Operator {
    operator_with(&[
        "--sidecar-url-template",
        "{scheme}://127.0.0.1:{port}",
        "--member-unknown-seconds",
        "1",
        "--member-not-ready-seconds",
        "1",
        "--quorum-loss-recovery-seconds",
        "4",
    ])
}

/// The full snapshot lease as the backup leader's sidecar renews it after
/// a snapshot of `revision`.
async fn full_snapshot_at(ns: &str, revision: i64) {
    let lease = wait_for("the full snapshot lease", || async {
        Api::<Lease>::namespaced(client().await, ns)
            .get_opt("test-full-snap")
            .await
            .unwrap()
    })
    .await;
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    Api::<Lease>::namespaced(client().await, ns)
        .patch(
            &lease.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {
                "holderIdentity": revision.to_string(), "renewTime": now,
            }})),
        )
        .await
        .unwrap();
}

/// Member lease `test-{i}` renewed now, while it exists (the operator
/// deletes the member leases when the StatefulSet goes to 0 replicas).
async fn renew(ns: &str, i: u32) {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    let _ = Api::<Lease>::namespaced(client().await, ns)
        .patch(
            &format!("test-{i}"),
            &PatchParams::default(),
            // Its etcd is at revision 47, newer than the backup's 42.
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"druid.gardener.cloud/revision": "47"}},
                "spec": {"holderIdentity": format!("{i}a{i}:Member"), "renewTime": now},
            })),
        )
        .await;
}

/// test-0's sidecar, renewing its lease every half second while the
/// task runs.
fn renew_lease_0(ns: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            renew(ns, 0).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Waits for an event with `reason`: its note.
async fn event(ns: &str, reason: &str) -> String {
    wait_for_event(ns, &format!("the {reason} event"), |e| {
        e.reason.as_deref() == Some(reason)
    })
    .await
    .message
    .unwrap_or_default()
}

/// Waits until every pod of the namespace is being deleted, then removes
/// them as their kubelet would once their containers stopped (none runs
/// here).
async fn pods_stopped(ns: &str) {
    let pods = Api::<Pod>::namespaced(client().await, ns);
    let deleting = wait_for("every pod to be deleted", || async {
        let all = pods.list(&ListParams::default()).await.unwrap().items;
        all.iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(all)
    })
    .await;
    for p in deleting {
        pods.delete(&p.name_any(), &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
}

/// Waits until the claims are gone, removing the protection finalizer of
/// claims being deleted (the controller that removes it does not run
/// here).
async fn claims_deleted(ns: &str) {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client().await, ns);
    wait_for("the claims to be deleted", || async {
        let left = claims.list(&ListParams::default()).await.unwrap().items;
        for c in &left {
            if c.metadata.deletion_timestamp.is_some() && !c.finalizers().is_empty() {
                claims
                    .patch(
                        &c.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                    )
                    .await
                    .unwrap();
            }
        }
        left.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_majority_is_restored_from_the_backup_one_recorded_step_at_a_time_unless_disabled() {
    let ns = "recovery";
    operator();
    namespace(ns, true);
    let yaml = seed_in(ns).replacen("  replicas: 1\n", "  replicas: 3\n", 1);
    ok(&kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &yaml,
    ));
    // A new cluster of 3 with a store starts member 0 alone (the store
    // may hold an earlier cluster's backups, which member 0 restores);
    // the others follow once it is Ready.
    sts_at(ns, 1, Some("starting")).await;
    let m = event(ns, "StartingMemberZeroFirst").await;
    assert!(
        m.contains("starting 3 members: member 0 starts alone first"),
        "{m}"
    );
    claim(ns, 0).await;
    member_pod_on(ns, 0, "rev-1", false, None, Some("node-a")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    sts_at(ns, 1, Some("starting")).await;
    pod_status(ns, 0, true, None).await;
    sts_at(ns, 3, None).await;
    let m = event(ns, "MemberZeroStarted").await;
    assert!(m.contains("starting the others"), "{m}");

    // Auto-recovery disabled first: the loss is reported, nothing done.
    annotate_etcd(ns, &format!("{DISABLE}=true"));
    for i in 1..3 {
        claim(ns, i).await;
        member_pod_on(ns, i, "rev-1", true, None, Some("node-a")).await;
    }
    for i in 0..3 {
        lease_role(ns, i, if i == 0 { "Leader" } else { "Member" }).await;
    }
    full_snapshot_at(ns, 42).await;
    wait_for("Ready=True", || async {
        condition(&etcd(ns).await?, "Ready")
            .filter(|(s, _, _)| s == "True")
            .map(|_| ())
    })
    .await;

    // test-1 and test-2 are lost for good (their data is gone, they crash
    // before etcd starts): their leases are no longer renewed. test-0's
    // sidecar keeps renewing its lease; no pod is Ready (a linearizable
    // read needs the quorum).
    let renewing = renew_lease_0(ns);
    for i in 0..3 {
        pod_status(ns, i, false, (i > 0).then_some("CrashLoopBackOff")).await;
    }
    let m = wait_condition(ns, "QuorumLost", "True", "AutoRecoveryDisabled").await;
    assert!(
        m.contains("2 of 3 members are down (test-1, test-2;"),
        "{m}"
    );
    assert!(m.contains(DISABLE), "{m}");
    event(ns, "QuorumLost").await;
    // Longer than the recovery would wait: still 3 replicas, no record.
    tokio::time::sleep(Duration::from_secs(8)).await;
    sts_at(ns, 3, None).await;
    assert_eq!(
        condition(&etcd(ns).await.unwrap(), "QuorumLost").unwrap().1,
        "AutoRecoveryDisabled"
    );

    // Enabled: after the wait, the recovery's steps, each recorded.
    annotate_etcd(ns, &format!("{DISABLE}-"));
    sts_at(ns, 0, Some("stopping")).await;
    let started = event(ns, "QuorumLossRecoveryStarted").await;
    assert!(started.contains("revision 42"), "{started}");
    assert!(started.contains("at least 5 revision(s)"), "{started}");
    // The operator deletes the pods (the StatefulSet controller would
    // not take down unready ones) and waits for them to stop.
    wait_for(
        "QuorumLost says the recovery waits for the pods",
        || async {
            condition(&etcd(ns).await?, "QuorumLost").filter(|(s, r, m)| {
                s == "True"
                    && r == "RecoveryInProgress"
                    && m.contains("waiting for the pods to stop")
            })
        },
    )
    .await;
    // The claims stay while a pod exists.
    let claims = Api::<PersistentVolumeClaim>::namespaced(client().await, ns);
    assert_eq!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    pods_stopped(ns).await;
    claims_deleted(ns).await;
    sts_at(ns, 1, Some("restoring")).await;
    event(ns, "QuorumLossRecoveryRestoring").await;
    // Member 0 restored: the record goes and the cluster scales back out.
    renewing.abort();
    member_pod_on(ns, 0, "rev-1", true, None, Some("node-a")).await;
    let renewing = renew_lease_0(ns);
    sts_at(ns, 3, None).await;
    let m = wait_condition(ns, "QuorumLost", "False", "RecoverySucceeded").await;
    assert!(m.contains("up to revision 42"), "{m}");
    assert!(
        m.contains("the members last reported revision 47: at least 5 revision(s)"),
        "{m}"
    );
    event(ns, "QuorumLossRecovered").await;
    // The Ready condition still says QuorumLost (the other members'
    // leases are stale until they join): it predates the recovery, so no
    // second one starts.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let sts = statefulset(ns).await.unwrap();
    assert_eq!(sts_replicas(&sts), 3);
    assert!(sts.annotations().get(RECORD).is_none());
    assert_eq!(
        condition(&etcd(ns).await.unwrap(), "QuorumLost").unwrap().1,
        "RecoverySucceeded"
    );

    // Hibernate (without the final snapshot: no sidecar runs here), lose
    // member 0's claim, wake up to 3: member 0 wakes alone first.
    annotate_etcd(ns, "druid.gardener.cloud/skip-final-snapshot=true");
    patch_etcd(ns, r#"{"spec":{"replicas":0}}"#);
    sts_at(ns, 0, None).await;
    renewing.abort();
    let pods = Api::<Pod>::namespaced(client().await, ns);
    for p in pods.list(&ListParams::default()).await.unwrap() {
        pods.delete(&p.name_any(), &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    claim(ns, 1).await;
    claim(ns, 2).await;
    patch_etcd(ns, r#"{"spec":{"replicas":3}}"#);
    sts_at(ns, 1, Some("waking")).await;
    let m = event(ns, "WakingUpFromBackup").await;
    assert!(m.contains("without member 0's claim test-test-0"), "{m}");
    member_pod_on(ns, 0, "rev-1", false, None, Some("node-a")).await;
    // Not before member 0 is Ready.
    tokio::time::sleep(Duration::from_secs(4)).await;
    sts_at(ns, 1, Some("waking")).await;
    pod_status(ns, 0, true, None).await;
    let renewing = renew_lease_0(ns);
    sts_at(ns, 3, None).await;
    event(ns, "WokenUpFromBackup").await;
    // A wake-up is no quorum loss: the condition keeps its last word.
    let e = etcd(ns).await.unwrap();
    assert_eq!(
        condition(&e, "QuorumLost").unwrap().1,
        "RecoverySucceeded",
        "{}",
        serde_json::to_string_pretty(&e.status).unwrap()
    );
    renewing.abort();
}
