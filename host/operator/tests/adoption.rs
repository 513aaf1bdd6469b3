//! Switching from the Go operator: the objects it leaves for a 3-member
//! Etcd (tests/data/go-operator-objects.yaml, written from the notes on
//! upstream's components) are adopted by this operator, reconciled in
//! place and deleted.
//!
//! Adopted in place means: every object keeps its name and UID (nothing is
//! recreated, so no pod restarts for it and no claim is lost), the
//! StatefulSet keeps its immutable fields (selector, service name, claim
//! template) and rolls one member at a time, the leases keep what the Go
//! sidecar wrote, and the Etcd keeps upstream's finalizer. Deleting the
//! Etcd then removes what it owns and, as under the Go operator, keeps the
//! data volume claims.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs, reason = "test")]

mod common;

use std::collections::BTreeMap;

use common::{client, condition, kubectl_stdin, ok, seed_in, wait_for};
use druid_api::Etcd;
use druid_test_support::{KubeApiServer, repo_root};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, ResourceExt as _};

const NS: &str = "adopt";

/// Kind and name of every object in the fixture, with its UID.
async fn uids(objects: &[(GroupVersionKind, String)]) -> BTreeMap<String, String> {
    let c = client().await;
    let mut out = BTreeMap::new();
    for (gvk, name) in objects {
        let api: Api<DynamicObject> =
            Api::namespaced_with(c.clone(), NS, &ApiResource::from_gvk(gvk));
        if let Some(o) = api.get_opt(name).await.unwrap() {
            out.insert(format!("{}/{name}", gvk.kind), o.uid().unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_go_operators_objects_are_adopted_in_place_and_deleted() {
    // The Go operator's state first, with no operator of ours running.
    KubeApiServer::shared()
        .install_crds(&repo_root().join("deploy/crds"))
        .unwrap();
    common::namespace(NS, true);
    let etcd = seed_in(NS)
        .replace("replicas: 1\n", "replicas: 3\n")
        .replace(
            "  - druid.gardener.cloud/etcd\n",
            "  - druid.gardener.cloud/etcd-druid\n",
        )
        // Upstream keeps the claims when an Etcd is deleted.
        .replace("  pvcRetentionPolicy: DeleteAll\n", "");
    ok(&kubectl_stdin(&["create", "-f", "-"], &etcd));
    let etcds: Api<Etcd> = Api::namespaced(client().await, NS);
    let created = etcds.get("test").await.unwrap();
    let owner = format!(
        r#"[{{"apiVersion": "druid.gardener.cloud/v1alpha1", "kind": "Etcd", "name": "test", "uid": "{}", "controller": true, "blockOwnerDeletion": true}}]"#,
        created.uid().unwrap()
    );
    // The status the Go operator wrote.
    etcds
        .patch_status(
            "test",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "observedGeneration": created.metadata.generation,
                "ready": true,
                "replicas": 3,
                "readyReplicas": 3,
                "currentReplicas": 3,
                "selector": "app.kubernetes.io/managed-by=etcd-druid,app.kubernetes.io/part-of=test",
                "etcd": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "test"},
            }})),
        )
        .await
        .unwrap();
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/go-operator-objects.yaml"),
    )
    .unwrap()
    .replace("${NS}", NS)
    .replace("${OWNER}", &owner);
    ok(&kubectl_stdin(
        &["create", "--field-manager=etcd-druid", "-f", "-"],
        &fixture,
    ));
    let objects: Vec<(GroupVersionKind, String)> = serde_yaml_ng::Deserializer::from_str(&fixture)
        .map(|d| {
            let v: serde_json::Value = serde::Deserialize::deserialize(d).unwrap();
            let (group, version) = v["apiVersion"]
                .as_str()
                .unwrap()
                .rsplit_once('/')
                .map_or(("", v["apiVersion"].as_str().unwrap()), |(g, v)| (g, v));
            (
                GroupVersionKind::gvk(group, version, v["kind"].as_str().unwrap()),
                v["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(objects.len(), 16, "the fixture's objects");
    let before = uids(&objects).await;
    assert_eq!(before.len(), objects.len());
    let leases: Api<Lease> = Api::namespaced(client().await, NS);
    let holders = |l: Vec<Lease>| -> BTreeMap<String, Option<String>> {
        l.into_iter()
            .map(|l| (l.name_any(), l.spec.and_then(|s| s.holder_identity)))
            .collect()
    };
    let holders_before = holders(leases.list(&Default::default()).await.unwrap().items);

    // Our operator starts and adopts them.
    let op = common::operator();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client().await, NS);
    let sts = wait_for("the StatefulSet reconciled by this operator", || async {
        statefulsets.get_opt("test").await.unwrap().filter(|s| {
            s.managed_fields()
                .iter()
                .any(|m| m.manager.as_deref() == Some("druid"))
        })
    })
    .await;
    let adopted = wait_for("the Etcd reconciled without errors", || async {
        etcds.get_opt("test").await.unwrap().filter(|e| {
            e.status.as_ref().is_some_and(|s| {
                s.last_errors.is_empty() && s.observed_generation == e.metadata.generation
            }) && condition(e, "SpecValid").is_some_and(|c| c.0 == "True")
        })
    })
    .await;
    let status = adopted.status.clone().unwrap();
    assert!(status.last_errors.is_empty(), "{:?}", status.last_errors);

    // Nothing was recreated: same names, same UIDs.
    let after = uids(&objects).await;
    assert_eq!(
        after, before,
        "an object of the Go operator was recreated or lost"
    );
    // The StatefulSet's immutable fields are upstream's; ours now run.
    let spec = sts.spec.clone().unwrap();
    assert_eq!(spec.service_name.as_deref(), Some("test-peer"));
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector.match_labels.unwrap(),
        BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_string(),
                "etcd-druid".to_string()
            ),
            ("app.kubernetes.io/part-of".to_string(), "test".to_string()),
        ])
    );
    let templates: Vec<String> = spec
        .volume_claim_templates
        .unwrap()
        .iter()
        .map(|t| t.name_any())
        .collect();
    assert_eq!(templates, ["test"]);
    // The operator rolls the members itself (one at a time, the leader
    // last): OnDelete, without the Go operator's RollingUpdate settings.
    let strategy = spec.update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
    assert!(strategy.rolling_update.is_none(), "{strategy:?}");
    let pod = spec.template.spec.unwrap();
    let images: Vec<String> = pod
        .containers
        .iter()
        .filter_map(|c| c.image.clone())
        .collect();
    // The images the spec names, not those the Go operator had running.
    assert_eq!(
        images,
        [
            "eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.1.0",
            "eu.gcr.io/gardener-project/gardener/etcdbrctl:v0.25.0"
        ],
        "the pod template was not rebuilt from the spec"
    );
    // No container keeps a probe with two handlers, no mount path twice.
    for c in &pod.containers {
        if let Some(p) = &c.readiness_probe {
            let handlers = [
                p.http_get.is_some(),
                p.exec.is_some(),
                p.tcp_socket.is_some(),
                p.grpc.is_some(),
            ];
            assert_eq!(
                handlers.iter().filter(|h| **h).count(),
                1,
                "{}: {p:?}",
                c.name
            );
        }
        let mut paths: Vec<&str> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.trim_end_matches('/'))
            .collect();
        let n = paths.len();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), n, "{}: a mount path twice", c.name);
    }
    // The leases keep what the Go sidecar wrote.
    let holders_after = holders(leases.list(&Default::default()).await.unwrap().items);
    for (name, holder) in &holders_before {
        assert_eq!(holders_after.get(name), Some(holder), "lease {name}");
    }
    // Upstream's finalizer, and only it.
    assert_eq!(adopted.finalizers(), ["druid.gardener.cloud/etcd-druid"]);

    // Deleted by this operator: what the Etcd owns goes, the claims stay.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client().await, NS);
    let claim_uids: Vec<String> = claims
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.uid().unwrap())
        .collect();
    assert_eq!(claim_uids.len(), 3);
    common::delete_etcd(NS, "test").await;
    assert!(statefulsets.get_opt("test").await.unwrap().is_none());
    let left: Vec<String> = claims
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(|c| c.uid().unwrap())
        .collect();
    assert_eq!(left, claim_uids, "the data volume claims were not kept");
    assert_eq!(op.exited(), None);
}
