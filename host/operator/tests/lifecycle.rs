//! Scale-in, the final snapshot before deletion and the roll, against a
//! real kube-apiserver and the real `druid` binary.
//!
//! No kubelet runs here, so no pod and no sidecar either: the operator
//! reaches "the sidecar" at `http://127.0.0.1:{port}`
//! (`--sidecar-url-template`), `{port}` being the Etcd's backup port, where
//! a test either listens with a fake of the sidecar's HTTP API (named as
//! such: it stands in for pods that cannot run here, and answers as the
//! real one does; the real steps run on the real node in
//! `tests/e2e/tests/node.rs`) or lets nothing listen (a sidecar that
//! cannot be reached: a real fault).
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use common::members::{
    claim, claim_kept, etcd, lease_role, member_pod, pod_exists, pod_status, started_staged,
    statefulset, sts_replicas, wait_condition,
};
use common::{
    apply_seed, client, kubectl, ok, operator_with, patch_etcd, wait_for, wait_for_event,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt as _};

fn operator() -> &'static common::Operator {
    operator_with(&["--sidecar-url-template", "{scheme}://127.0.0.1:{port}"])
}

/// The seed in `ns` with `replicas` members and backup port `port`.
fn create_etcd(ns: &str, replicas: u32, port: u16) {
    operator();
    apply_seed(
        ns,
        &[
            ("    port: 8080\n", &format!("    port: {port}\n")),
            ("  replicas: 1\n", &format!("  replicas: {replicas}\n")),
        ],
    );
}

/// Waits until `MembersScaledIn` has `status` and `reason`: its message.
async fn scale_in_condition(ns: &str, status: &str, reason: &str) -> String {
    wait_condition(ns, "MembersScaledIn", status, reason).await
}

/// Asks for the deletion of Etcd `test` in `ns`, without waiting.
fn delete_no_wait(ns: &str) {
    ok(&kubectl(&[
        "-n",
        ns,
        "delete",
        "etcd",
        "test",
        "--wait=false",
    ]));
}

/// Waits until Etcd `test` in `ns` is gone.
async fn wait_gone(ns: &str) {
    wait_for("the Etcd to be gone", || async {
        etcd(ns).await.is_none().then_some(())
    })
    .await;
}

/// A fake of the sidecar's HTTP API (see the module's comment): the
/// scale-in steps, answered with `scale_in_status` (503 as the real one
/// does while another member is unhealthy, or 200 with its report), and
/// `GET /snapshot/full`. It records every request.
struct FakeSidecar {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    scale_in_status: Arc<AtomicU16>,
}

async fn fake_sidecar() -> FakeSidecar {
    use axum::extract::{Path, RawQuery, State};
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    type Shared = (Arc<Mutex<Vec<String>>>, Arc<AtomicU16>);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let scale_in_status = Arc::new(AtomicU16::new(200));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route(
            "/members/scale-in/{step}",
            post(
                |State((requests, status)): State<Shared>,
                 Path(step): Path<String>,
                 RawQuery(query): RawQuery| async move {
                    let query: std::collections::HashMap<String, String> =
                        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                            .into_owned()
                            .collect();
                    let member = query.get("member").cloned().unwrap_or_default();
                    // The member's peer URLs come along (they find a
                    // member that never started); its pod's DNS name is
                    // the first (no member name prefix here).
                    let peers = query.get("peerUrls").cloned().unwrap_or_default();
                    if !peers.starts_with(&format!("http://{member}.test-peer.")) {
                        return (
                            StatusCode::BAD_REQUEST,
                            format!("peerUrls {peers:?} are not {member}'s"),
                        );
                    }
                    requests
                        .lock()
                        .unwrap()
                        .push(format!("{step} {member}"));
                    let code = status.load(Ordering::SeqCst);
                    if code != 200 {
                        return (
                            StatusCode::from_u16(code).unwrap(),
                            format!("member {member} cannot leave: member test-1 does not answer"),
                        );
                    }
                    let outcome = if step == "prepare" { "prepared" } else { "removed" };
                    (
                        StatusCode::OK,
                        serde_json::json!({
                            "member": member,
                            "outcome": outcome,
                            "leader": "test-0",
                            "remaining": ["test-0", "test-1"],
                        })
                        .to_string(),
                    )
                },
            ),
        )
        .route(
            "/snapshot/full",
            get(
                |State((requests, status)): State<Shared>, RawQuery(query): RawQuery| async move {
                    requests
                        .lock()
                        .unwrap()
                        .push(format!("full {}", query.unwrap_or_default()));
                    // One status for both routes: a broken store answers
                    // the snapshot with 500 as the real sidecar does.
                    if status.load(Ordering::SeqCst) != 200 {
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "cannot upload the snapshot: the bucket does not exist".to_string(),
                        );
                    }
                    (
                        StatusCode::OK,
                        r#"{"kind":"Full","snapName":"Full-00000000-00000009-1765000000.gz.final","isFinal":true}"#
                            .to_string(),
                    )
                },
            ),
        )
        .with_state((requests.clone(), scale_in_status.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeSidecar {
        port,
        requests,
        scale_in_status,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_in_waits_while_a_member_is_unhealthy_then_removes_the_highest_ordinal_after_its_pod()
 {
    let ns = "scale-in";
    let sidecar = fake_sidecar().await;
    create_etcd(ns, 3, sidecar.port);
    started_staged(ns, 3, "rev-1").await;
    // No pod from here on, as the steps below expect (the sidecar's
    // answers stand for the members).
    Api::<Pod>::namespaced(client().await, ns)
        .delete("test-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    claim(ns, 2).await;

    // While "test-1 does not answer", nothing changes and the condition
    // says why.
    sidecar.scale_in_status.store(503, Ordering::SeqCst);
    patch_etcd(ns, r#"{"spec":{"replicas":2}}"#);
    let waiting = scale_in_condition(ns, "False", "ScaleInWaiting").await;
    assert!(
        waiting.contains("test-2") && waiting.contains("test-1 does not answer"),
        "{waiting}"
    );
    let sts = statefulset(ns).await.unwrap();
    assert_eq!(sts_replicas(&sts), 3, "shrunk while a member was unhealthy");
    assert!(
        !sidecar
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("remove")),
        "a removal was asked while the prepare step was refused"
    );

    // Healthy again: test-2 is prepared, the StatefulSet shrinks, and
    // once its pod is gone (none exists here) the member is removed; its
    // claim goes
    // (pvcRetentionPolicy: DeleteAll) and the record of the step too.
    sidecar.scale_in_status.store(200, Ordering::SeqCst);
    scale_in_condition(ns, "True", "ScaleInSucceeded").await;
    let removed = wait_for_event(ns, "a MemberRemoved event", |e| {
        e.reason.as_deref() == Some("MemberRemoved")
    })
    .await;
    let removed = removed.message.unwrap_or_default();
    assert!(
        removed.contains("test-2 left the cluster") && removed.contains("test-test-2 is deleted"),
        "{removed}"
    );
    let sts = statefulset(ns).await.unwrap();
    assert_eq!(sts_replicas(&sts), 2);
    assert!(
        !sts.annotations()
            .contains_key("druid.gardener.cloud/scale-in-leaving-ordinal"),
        "the step's record stayed: {:?}",
        sts.annotations()
    );
    assert!(
        !claim_kept(ns, "test-test-2").await,
        "the claim of test-2 stayed"
    );
    let requests = sidecar.requests.lock().unwrap().clone();
    let first_remove = requests.iter().position(|r| r == "remove test-2").unwrap();
    let first_prepare = requests.iter().position(|r| r == "prepare test-2").unwrap();
    assert!(first_prepare < first_remove, "{requests:?}");
    // From 3 members, removed only once its pod is gone (none runs here),
    // after the shrink: never while it runs.
    let removes = requests.iter().filter(|r| *r == "remove test-2").count();
    assert!(removes >= 1, "{requests:?}");
    assert!(
        requests.iter().all(|r| r.ends_with("test-2")),
        "another member was touched: {requests:?}"
    );
    // The member lease of ordinal 2 follows the replicas.
    let leases = kubectl(&["-n", ns, "get", "lease", "-o", "name"]);
    let leases = String::from_utf8_lossy(&leases.stdout).into_owned();
    assert!(!leases.contains("/test-2\n"), "{leases}");
    assert!(leases.contains("/test-1\n"), "{leases}");
    common::delete_etcd(ns, "test").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_keeps_the_claims_until_the_final_snapshot_is_taken_or_knowingly_skipped() {
    // (a) The sidecar cannot be reached: nothing is deleted, a warning says
    // why and how to go on; the annotation lets the deletion proceed.
    let ns = "final-unreachable";
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    create_etcd(ns, 1, unused);
    claim(ns, 0).await;
    delete_no_wait(ns);
    let warning = wait_for_event(ns, "a FinalSnapshotFailed warning", |e| {
        e.reason.as_deref() == Some("FinalSnapshotFailed")
    })
    .await;
    let message = warning.message.unwrap_or_default();
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(
        message.contains("nothing is deleted")
            && message.contains("druid.gardener.cloud/skip-final-snapshot=true"),
        "{message}"
    );
    assert!(
        claim_kept(ns, "test-test-0").await,
        "the claim went without a final snapshot"
    );
    assert!(
        statefulset(ns).await.is_some(),
        "the StatefulSet went without a final snapshot"
    );
    assert!(etcd(ns).await.is_some());
    ok(&kubectl(&[
        "-n",
        ns,
        "annotate",
        "etcd",
        "test",
        "druid.gardener.cloud/skip-final-snapshot=true",
    ]));
    wait_gone(ns).await;
    assert!(
        !claim_kept(ns, "test-test-0").await,
        "the claim stayed (DeleteAll)"
    );

    // (b) The sidecar answers: the final snapshot is asked for (final=true)
    // before anything is deleted, and the event names it.
    let ns = "final-taken";
    let sidecar = fake_sidecar().await;
    create_etcd(ns, 1, sidecar.port);
    claim(ns, 0).await;
    delete_no_wait(ns);
    let taken = wait_for_event(ns, "a FinalSnapshotTaken event", |e| {
        e.reason.as_deref() == Some("FinalSnapshotTaken")
    })
    .await;
    assert!(
        taken
            .message
            .unwrap_or_default()
            .contains("Full-00000000-00000009-1765000000.gz.final"),
    );
    wait_gone(ns).await;
    assert!(
        !claim_kept(ns, "test-test-0").await,
        "the claim stayed (DeleteAll)"
    );
    let requests = sidecar.requests.lock().unwrap().clone();
    assert_eq!(requests, ["full final=true"], "{requests:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hibernation_waits_for_the_final_snapshot_and_keeps_the_claims() {
    let ns = "hibernate";
    let sidecar = fake_sidecar().await;
    create_etcd(ns, 1, sidecar.port);
    claim(ns, 0).await;
    wait_for("the StatefulSet at 1 replica", || async {
        statefulset(ns)
            .await
            .filter(|s| sts_replicas(s) == 1)
            .map(|_| ())
    })
    .await;

    // The store is broken: the member keeps running, and the condition
    // and a warning say why and how to go on.
    sidecar.scale_in_status.store(500, Ordering::SeqCst);
    patch_etcd(ns, r#"{"spec":{"replicas":0}}"#);
    let waiting = scale_in_condition(ns, "False", "ScaleInWaiting").await;
    assert!(
        waiting.contains("the bucket does not exist")
            && waiting.contains("druid.gardener.cloud/skip-final-snapshot=true"),
        "{waiting}"
    );
    assert_eq!(sts_replicas(&statefulset(ns).await.unwrap()), 1);

    // The store works again: the final snapshot, then 0 replicas; the
    // claim stays for the wake-up.
    sidecar.scale_in_status.store(200, Ordering::SeqCst);
    let done = scale_in_condition(ns, "True", "ScaleInSucceeded").await;
    assert!(
        done.contains("Full-00000000-00000009-1765000000.gz.final"),
        "{done}"
    );
    wait_for("the StatefulSet at 0 replicas", || async {
        statefulset(ns)
            .await
            .filter(|s| sts_replicas(s) == 0)
            .map(|_| ())
    })
    .await;
    assert!(
        claim_kept(ns, "test-test-0").await,
        "hibernation deleted the claim"
    );
    let requests = sidecar.requests.lock().unwrap().clone();
    assert!(
        requests.iter().all(|r| r == "full final=true"),
        "{requests:?}"
    );

    // Waking up: the StatefulSet comes back on the same claim.
    patch_etcd(ns, r#"{"spec":{"replicas":1}}"#);
    wait_for("the StatefulSet back at 1 replica", || async {
        statefulset(ns)
            .await
            .filter(|s| sts_replicas(s) == 1)
            .map(|_| ())
    })
    .await;
    assert!(claim_kept(ns, "test-test-0").await);
}

/// The StatefulSet's status as its controller would write it: rolling to
/// `revision` with `updated` of 3 replicas there, all ready (its
/// currentRevision stays at the first one, as under OnDelete).
async fn sts_rolling_to(ns: &str, revision: &str, updated: i32) {
    let sts = statefulset(ns).await.unwrap();
    let status = serde_json::json!({"status": {
        "observedGeneration": sts.metadata.generation, "replicas": 3, "readyReplicas": 3,
        "updatedReplicas": updated, "currentReplicas": 3,
        "currentRevision": "test-old", "updateRevision": revision,
    }});
    Api::<StatefulSet>::namespaced(client().await, ns)
        .patch_status("test", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// Waits until `AllMembersUpdated` has `status` and `reason`: its message.
async fn updated_condition(ns: &str, status: &str, reason: &str) -> String {
    wait_condition(ns, "AllMembersUpdated", status, reason).await
}

/// Waits until pod `test-{i}` was deleted by the roll.
async fn replaced(ns: &str, i: u32) {
    wait_for(&format!("the roll to delete test-{i}"), || async {
        (!pod_exists(ns, i).await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_roll_replaces_followers_first_the_leader_last_waits_for_health_and_stops_at_a_broken_member()
 {
    let ns = "roll";
    let sidecar = fake_sidecar().await;
    create_etcd(ns, 3, sidecar.port);
    let sts = started_staged(ns, 3, "test-old").await;
    let strategy = sts.spec.as_ref().unwrap().update_strategy.clone().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
    for i in 1..3 {
        member_pod(ns, i, "test-old", true, None).await;
    }
    for i in 0..3 {
        lease_role(ns, i, if i == 1 { "Leader" } else { "Member" }).await;
    }
    // A new template: while the sidecar says a member is unhealthy, the
    // roll waits and replaces nothing.
    sidecar.scale_in_status.store(503, Ordering::SeqCst);
    sts_rolling_to(ns, "test-new", 0).await;
    let waiting = updated_condition(ns, "False", "UpdateWaiting").await;
    assert!(
        waiting.contains("test-2") && waiting.contains("test-1 does not answer"),
        "{waiting}"
    );
    assert!(
        pod_exists(ns, 2).await,
        "replaced while the cluster was unhealthy"
    );

    // Healthy: test-2 (a follower, highest ordinal) first; nothing else
    // while it is not back and ready.
    sidecar.scale_in_status.store(200, Ordering::SeqCst);
    replaced(ns, 2).await;
    member_pod(ns, 2, "test-new", false, None).await;
    let progress = updated_condition(ns, "False", "UpdateInProgress").await;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert!(
        pod_exists(ns, 0).await && pod_exists(ns, 1).await,
        "went on before test-2 was ready"
    );
    assert!(progress.contains("of 3 member(s) updated"), "{progress}");
    let operation = etcd(ns)
        .await
        .unwrap()
        .status
        .unwrap()
        .last_operation
        .unwrap();
    assert_eq!(operation.state, "Processing", "{operation:?}");
    // Then test-0, then the leader (the leases renewed, as the sidecars
    // do).
    for i in 0..3 {
        lease_role(ns, i, if i == 1 { "Leader" } else { "Member" }).await;
    }
    pod_status(ns, 2, true, None).await;
    replaced(ns, 0).await;
    member_pod(ns, 0, "test-new", true, None).await;
    replaced(ns, 1).await;
    member_pod(ns, 1, "test-new", true, None).await;
    let order: Vec<String> = {
        let requests = sidecar.requests.lock().unwrap().clone();
        let mut seen = Vec::new();
        for r in requests.into_iter().filter(|r| r.starts_with("prepare")) {
            if !seen.contains(&r) {
                seen.push(r);
            }
        }
        seen
    };
    assert_eq!(
        order,
        ["prepare test-2", "prepare test-0", "prepare test-1"]
    );
    let event = wait_for_event(ns, "a MemberUpdating event for the leader", |e| {
        e.reason.as_deref() == Some("MemberUpdating")
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains("test-1") && m.contains("the leader, replaced last"))
    })
    .await;
    assert!(event.message.unwrap().contains("replacing test-1"));
    sts_rolling_to(ns, "test-new", 3).await;
    updated_condition(ns, "True", "AllMembersUpdated").await;
    wait_for("lastOperation Succeeded", || async {
        let op = etcd(ns).await?.status?.last_operation?;
        (op.state == "Succeeded").then_some(())
    })
    .await;

    // A template whose image cannot be pulled: the first member replaced
    // never becomes ready, and the roll stops there.
    sts_rolling_to(ns, "test-broken", 0).await;
    replaced(ns, 2).await;
    member_pod(ns, 2, "test-broken", false, Some("ImagePullBackOff")).await;
    let stalled = updated_condition(ns, "False", "UpdateStalled").await;
    assert!(
        stalled.contains("test-2") && stalled.contains("ImagePullBackOff"),
        "{stalled}"
    );
    wait_for_event(ns, "an UpdateStalled warning", |e| {
        e.reason.as_deref() == Some("UpdateStalled") && e.type_.as_deref() == Some("Warning")
    })
    .await;
    let before = sidecar.requests.lock().unwrap().len();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert!(
        pod_exists(ns, 0).await && pod_exists(ns, 1).await,
        "the roll went past a broken member"
    );
    assert_eq!(
        sidecar.requests.lock().unwrap().len(),
        before,
        "prepared another member after the stall"
    );

    // The spec fixed (back to the working template): the broken member,
    // outdated and not ready, goes first, without asking the sidecar.
    sts_rolling_to(ns, "test-new", 2).await;
    replaced(ns, 2).await;
    let after: Vec<String> = sidecar.requests.lock().unwrap()[before..].to_vec();
    assert!(
        after.is_empty(),
        "a broken member needs no prepare step: {after:?}"
    );
    // No garbage collector runs here: the pods go by hand.
    for i in 0..3 {
        let _ = Api::<Pod>::namespaced(client().await, ns)
            .delete(&format!("test-{i}"), &Default::default())
            .await;
    }
    common::delete_etcd(ns, "test").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_an_earlier_release_applied_with_rolling_update_turns_on_delete() {
    let ns = "roll-upgrade";
    let sidecar = fake_sidecar().await;
    create_etcd(ns, 1, sidecar.port);
    let sts = wait_for("the StatefulSet", || statefulset(ns)).await;
    // What an earlier release created: the same StatefulSet under the
    // same field manager, with RollingUpdate and a partition (which
    // OnDelete does not allow). Recreated while the spec reconcile is
    // suspended.
    ok(&kubectl(&[
        "-n",
        ns,
        "annotate",
        "etcd",
        "test",
        "druid.gardener.cloud/suspend-etcd-spec-reconcile=true",
    ]));
    let sets = Api::<StatefulSet>::namespaced(client().await, ns);
    sets.delete("test", &Default::default()).await.unwrap();
    wait_for("the StatefulSet gone", || async {
        statefulset(ns).await.is_none().then_some(())
    })
    .await;
    let mut earlier = serde_json::to_value(&sts).unwrap();
    earlier["spec"]["updateStrategy"] =
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
    for field in [
        "managedFields",
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
    ] {
        earlier["metadata"].as_object_mut().unwrap().remove(field);
    }
    earlier.as_object_mut().unwrap().remove("status");
    let applied = sets
        .patch(
            "test",
            &PatchParams::apply("druid").force(),
            &Patch::Apply(&earlier),
        )
        .await
        .unwrap();
    let strategy = applied.spec.unwrap().update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert!(
        strategy.rolling_update.is_some(),
        "the API server did not default it"
    );
    // The next reconcile applies OnDelete without an error.
    ok(&kubectl(&[
        "-n",
        ns,
        "annotate",
        "etcd",
        "test",
        "druid.gardener.cloud/suspend-etcd-spec-reconcile-",
    ]));
    let sts = wait_for("the StatefulSet on OnDelete", || async {
        statefulset(ns).await.filter(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.update_strategy.as_ref())
                .and_then(|u| u.type_.as_deref())
                == Some("OnDelete")
        })
    })
    .await;
    assert!(
        sts.spec
            .unwrap()
            .update_strategy
            .unwrap()
            .rolling_update
            .is_none()
    );
    let errors = etcd(ns).await.unwrap().status.unwrap().last_errors;
    assert!(errors.is_empty(), "{errors:?}");
    common::delete_etcd(ns, "test").await;
}
