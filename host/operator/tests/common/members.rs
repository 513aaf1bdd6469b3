//! Objects of an Etcd named `test` as the controllers that do not run
//! here (StatefulSet controller, kubelet, sidecars) would make them:
//! pods, claims, member leases, and readers of what the operator wrote.
#![allow(dead_code, clippy::unwrap_used, reason = "test harness")]

use druid_api::Etcd;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt as _};

use super::{client, wait_for};

pub async fn statefulset(ns: &str) -> Option<StatefulSet> {
    Api::<StatefulSet>::namespaced(client().await, ns)
        .get_opt("test")
        .await
        .unwrap()
}

pub fn sts_replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1)
}

/// The StatefulSet annotation that records a recovery's (or a staged
/// start's) step.
pub const RECORD: &str = "druid.gardener.cloud/quorum-loss-recovery";

/// Waits until the StatefulSet has `replicas` and the recovery record
/// `record` (`None`: no record).
pub async fn sts_at(ns: &str, replicas: i32, record: Option<&str>) -> StatefulSet {
    wait_for(
        &format!("the StatefulSet at {replicas} replicas, recovery record {record:?}"),
        || async {
            let sts = statefulset(ns).await?;
            (sts_replicas(&sts) == replicas
                && sts.annotations().get(RECORD).map(String::as_str) == record)
                .then_some(sts)
        },
    )
    .await
}

/// Plays a new store-backed cluster's staged start: the StatefulSet
/// comes at 1 replica (recording `starting`); member 0's claim and its
/// Ready pod (of `revision`) appear; the StatefulSet goes to `replicas`.
pub async fn started_staged(ns: &str, replicas: i32, revision: &str) -> StatefulSet {
    sts_at(ns, 1, Some("starting")).await;
    claim(ns, 0).await;
    member_pod(ns, 0, revision, true, None).await;
    sts_at(ns, replicas, None).await
}

pub async fn etcd(ns: &str) -> Option<Etcd> {
    Api::<Etcd>::namespaced(client().await, ns)
        .get_opt("test")
        .await
        .unwrap()
}

/// A claim of ordinal `i` as the StatefulSet controller makes it (none
/// runs here): its name and the StatefulSet's selector labels.
pub async fn claim(ns: &str, i: u32) {
    let sts = wait_for("the StatefulSet", || statefulset(ns)).await;
    let labels = sts
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": { "name": format!("test-test-{i}"), "labels": labels },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": "1Gi" } }
        }
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client().await, ns)
        .create(&PostParams::default(), &pvc)
        .await
        .unwrap();
}

/// Whether claim `name` is there and not being deleted.
pub async fn claim_kept(ns: &str, name: &str) -> bool {
    Api::<PersistentVolumeClaim>::namespaced(client().await, ns)
        .get_opt(name)
        .await
        .unwrap()
        .is_some_and(|c| c.metadata.deletion_timestamp.is_none())
}

/// A member pod of ordinal `i` as the StatefulSet controller makes it
/// (none runs here): the selector's labels, its revision, the owner
/// reference; then its status as a kubelet would report it: Ready, or
/// not, with a container `waiting` for `reason`.
pub async fn member_pod(ns: &str, i: u32, revision: &str, ready: bool, waiting: Option<&str>) {
    member_pod_on(ns, i, revision, ready, waiting, None).await;
}

/// As [`member_pod`], bound to `node` (a pod bound to a node is deleted
/// gracefully: it stays until the kubelet, which does not run here, or
/// the test removes it).
pub async fn member_pod_on(
    ns: &str,
    i: u32,
    revision: &str,
    ready: bool,
    waiting: Option<&str>,
    node: Option<&str>,
) {
    let sts = statefulset(ns).await.unwrap();
    let mut labels = sts
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    labels.insert("controller-revision-hash".into(), revision.into());
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("test-{i}"),
            "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "test",
                                 "uid": sts.uid().unwrap(), "controller": true}],
        },
        "spec": {"containers": [{"name": "etcd", "image": "etcd"}], "nodeName": node},
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(client().await, ns);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pod_status(ns, i, ready, waiting).await;
}

/// The status of pod `test-{i}` as a kubelet reports it: Ready, or not,
/// with its container `waiting` for `reason`.
pub async fn pod_status(ns: &str, i: u32, ready: bool, waiting: Option<&str>) {
    let state = match waiting {
        Some(reason) => {
            serde_json::json!({"waiting": {"reason": reason, "message": "Back-off pulling image \"etcd:broken\""}})
        }
        None => serde_json::json!({"running": {}}),
    };
    let status = serde_json::json!({"status": {
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        "containerStatuses": [{"name": "etcd", "ready": ready, "restartCount": 0, "image": "etcd",
                               "imageID": "", "state": state}],
    }});
    Api::<Pod>::namespaced(client().await, ns)
        .patch_status(
            &format!("test-{i}"),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
        .unwrap();
}

/// Whether pod `test-{i}` exists.
pub async fn pod_exists(ns: &str, i: u32) -> bool {
    Api::<Pod>::namespaced(client().await, ns)
        .get_opt(&format!("test-{i}"))
        .await
        .unwrap()
        .is_some()
}

/// Member lease `test-{i}` renewed now with `role`, as its sidecar does.
pub async fn lease_role(ns: &str, i: u32, role: &str) {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    let patch = serde_json::json!({"spec": {
        "holderIdentity": format!("{i}a{i}:{role}"), "renewTime": now,
    }});
    Api::<Lease>::namespaced(client().await, ns)
        .patch(
            &format!("test-{i}"),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .unwrap();
}

/// Waits until Etcd `test`'s condition `type_` has `status` and `reason`:
/// its message.
pub async fn wait_condition(ns: &str, type_: &str, status: &str, reason: &str) -> String {
    wait_for(&format!("{type_}={status}/{reason}"), || async {
        super::condition(&etcd(ns).await?, type_)
            .filter(|(s, r, _)| s == status && r == reason)
            .map(|(_, _, m)| m)
    })
    .await
}
