//! The operator against a real kube-apiserver: the founding manifest applies
//! with strict validation and yields every component with its fields; spec
//! changes and the scale subresource reach the StatefulSet; deletion cleans
//! up; bad input gets a condition and an event naming the field, and no
//! StatefulSet.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::collections::BTreeMap;

use common::{
    client, condition, kubectl, kubectl_stdin, namespace, ok, operator, patch_etcd, seed_in,
    wait_for,
};
use druid_api::Etcd;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

async fn get<K>(ns: &str, name: &str) -> Option<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    Api::<K>::namespaced(client().await, ns)
        .get_opt(name)
        .await
        .unwrap()
}

fn container<'a>(sts: &'a StatefulSet, name: &str) -> &'a k8s_openapi::api::core::v1::Container {
    sts.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_applies_and_yields_every_component_then_scales_changes_and_deletes() {
    operator();
    let ns = "demo";
    namespace(ns, true);
    ok(&kubectl(&[
        "apply",
        "--validate=strict",
        "-f",
        common::seed_path().to_str().unwrap(),
    ]));

    // The StatefulSet, with the seed's fields.
    let sts: StatefulSet = wait_for("the StatefulSet", || get(ns, "test")).await;
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("test-peer"));
    let vct = &spec.volume_claim_templates.as_ref().unwrap()[0];
    let vct_spec = vct.spec.as_ref().unwrap();
    assert_eq!(
        vct_spec.storage_class_name.as_deref(),
        Some("gardener.cloud-fast")
    );
    assert_eq!(
        vct_spec
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "80Gi"
    );
    let pod_meta = spec.template.metadata.as_ref().unwrap();
    let labels = pod_meta.labels.as_ref().unwrap();
    assert_eq!(labels["role"], "test");
    assert_eq!(labels["networking.gardener.cloud/to-dns"], "allowed");
    let annotations = pod_meta.annotations.as_ref().unwrap();
    assert_eq!(annotations["gardener.cloud/role"], "controlplane");
    assert!(annotations.contains_key("checksum/etcd-configmap"));
    let etcd_c = container(&sts, "etcd");
    assert_eq!(
        etcd_c.image.as_deref(),
        Some("eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.1.0")
    );
    assert_eq!(etcd_c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let limits = etcd_c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["cpu"].0, "2500m");
    assert_eq!(limits["memory"].0, "4Gi");
    let br = container(&sts, "backup-restore");
    assert_eq!(
        br.image.as_deref(),
        Some("eu.gcr.io/gardener-project/gardener/etcdbrctl:v0.25.0")
    );
    assert_eq!(
        br.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0,
        "23m"
    );
    let args = br.args.clone().unwrap_or_default().join(" ")
        + " "
        + &br.command.clone().unwrap_or_default().join(" ");
    for want in [
        "--storage-provider=S3",
        "--store-prefix=etcd-test",
        "--schedule=0 */24 * * *",
        "--delta-snapshot-period=300s",
        "--garbage-collection-period=43200s",
        "--garbage-collection-policy=Exponential",
        "--delta-snapshot-memory-limit=1073741824",
        "--defragmentation-schedule=0 */24 * * *",
        "--snapstore-temp-directory=/var/etcd/data/temp",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=30m",
        "--server-port=8080",
        "--embedded-etcd-quota-bytes=8589934592",
    ] {
        assert!(args.contains(want), "sidecar args lack {want}: {args}");
    }
    // Provider wiring from the S3 plugin.
    let env: BTreeMap<String, String> = br
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    assert_eq!(
        env.get("STORAGE_CONTAINER").map(String::as_str),
        Some("test")
    );
    assert!(
        env.keys().any(|k| k.ends_with("_APPLICATION_CREDENTIALS")),
        "{env:?}"
    );
    let volumes = spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .clone()
        .unwrap_or_default();
    assert!(
        volumes.iter().any(
            |v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("etcd-backup")
        ),
        "the store secret is mounted: {volumes:?}"
    );
    // Owner reference to the Etcd.
    let owner = &sts.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Etcd", "test", Some(true))
    );

    // The etcd configuration.
    let cm: ConfigMap = get(ns, "test-config").await.unwrap();
    let conf = &cm.data.as_ref().unwrap()["etcd.conf.yaml"];
    for want in [
        "quota-backend-bytes: 8589934592",
        "initial-cluster-token: new",
        "initial-cluster-state: new",
        "auto-compaction-retention: 30m",
    ] {
        assert!(conf.contains(want), "etcd.conf.yaml lacks {want}:\n{conf}");
    }
    assert!(conf.contains("test-0.test-peer.demo.svc:2380"), "{conf}");
    assert!(conf.contains(":2379"), "{conf}");

    // The other components.
    assert!(get::<ServiceAccount>(ns, "test").await.is_some());
    assert!(
        get::<Role>(ns, "druid.gardener.cloud:etcd:test")
            .await
            .is_some()
    );
    assert!(
        get::<RoleBinding>(ns, "druid.gardener.cloud:etcd:test")
            .await
            .is_some()
    );
    assert!(get::<Lease>(ns, "test-0").await.is_some());
    assert!(get::<Lease>(ns, "test-full-snap").await.is_some());
    assert!(get::<Lease>(ns, "test-delta-snap").await.is_some());
    let pdb: PodDisruptionBudget = get(ns, "test").await.unwrap();
    assert_eq!(
        pdb.spec.as_ref().unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
    // The sidecar's API admits the Etcd's pods and the operator's only.
    let policy: NetworkPolicy = get(ns, "test-backup-restore").await.unwrap();
    let rules = policy.spec.as_ref().unwrap().ingress.clone().unwrap();
    assert!(
        rules.iter().any(|r| r.from.iter().flatten().any(|p| p
            .namespace_selector
            .as_ref()
            .is_some_and(|n| n.match_labels.as_ref().is_some_and(|l| l
                .get("kubernetes.io/metadata.name")
                == Some(&"druid-system".to_string()))))),
        "{rules:?}"
    );
    let client_svc: Service = get(ns, "test-client").await.unwrap();
    assert!(
        client_svc
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.port == 2379)
    );
    let peer: Service = get(ns, "test-peer").await.unwrap();
    assert_eq!(
        peer.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );

    // The status.
    let etcd: Etcd = wait_for("the status", || async {
        get::<Etcd>(ns, "test").await.filter(|e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == e.metadata.generation)
        })
    })
    .await;
    let status = etcd.status.as_ref().unwrap();
    let target = status.etcd.as_ref().unwrap();
    assert_eq!(
        (
            target.api_version.as_deref(),
            target.kind.as_str(),
            target.name.as_str()
        ),
        (Some("apps/v1"), "StatefulSet", "test")
    );
    assert_eq!(condition(&etcd, "SpecValid").unwrap().0, "True");
    assert!(
        status
            .selector
            .as_deref()
            .unwrap()
            .contains("app.kubernetes.io/part-of=test")
    );
    assert!(condition(&etcd, "BackupReady").is_some());

    // Metrics and health.
    let (code, body) =
        druid_test_support::http_get(&format!("{}/metrics", operator().metrics_url)).unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains(r#"druid_reconciles_total{namespace="demo",etcd="test"}"#),
        "{body}"
    );
    assert!(
        body.contains(
            r#"druid_etcd_condition{namespace="demo",etcd="test",condition="SpecValid"} 1"#
        ),
        "{body}"
    );
    assert!(body.contains("druid_leader 1"), "{body}");
    assert_eq!(
        druid_test_support::http_get(&format!("{}/healthz", operator().metrics_url))
            .unwrap()
            .0,
        200
    );

    // The store Secret is protected while the Etcd uses it.
    let secret: Secret = get(ns, "etcd-backup").await.unwrap();
    assert!(
        secret
            .finalizers()
            .iter()
            .any(|f| f == druid_api::FINALIZER)
    );

    // The scale subresource reaches the StatefulSet, the PDB, the leases
    // and the configuration.
    ok(&kubectl(&[
        "-n",
        ns,
        "scale",
        "etcd",
        "test",
        "--replicas=3",
    ]));
    wait_for("3 replicas", || async {
        get::<StatefulSet>(ns, "test")
            .await
            .filter(|s| s.spec.as_ref().unwrap().replicas == Some(3))
    })
    .await;
    let pdb: PodDisruptionBudget = get(ns, "test").await.unwrap();
    assert_eq!(
        pdb.spec.as_ref().unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2))
    );
    assert!(get::<Lease>(ns, "test-2").await.is_some());
    let cm: ConfigMap = get(ns, "test-config").await.unwrap();
    assert!(cm.data.as_ref().unwrap()["etcd.conf.yaml"].contains("test-2.test-peer.demo.svc:2380"));
    let out = kubectl(&[
        "-n",
        ns,
        "get",
        "etcd",
        "test",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3");

    // A spec change reaches the StatefulSet.
    patch_etcd(
        ns,
        r#"{"spec":{"etcd":{"imageVersion":"v0.2.0"},"backup":{"deltaSnapshotPeriod":"120s"}}}"#,
    );
    let sts = wait_for("the new image", || async {
        get::<StatefulSet>(ns, "test").await.filter(|s| {
            container(s, "etcd").image.as_deref()
                == Some("eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.2.0")
        })
    })
    .await;
    let args = container(&sts, "backup-restore")
        .args
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert!(args.contains("--delta-snapshot-period=120s"), "{args}");

    // Deletion removes everything and releases the Secret.
    common::delete_etcd(ns, "test").await;
    assert!(get::<StatefulSet>(ns, "test").await.is_none());
    assert!(get::<ConfigMap>(ns, "test-config").await.is_none());
    assert!(get::<Service>(ns, "test-client").await.is_none());
    assert!(get::<PodDisruptionBudget>(ns, "test").await.is_none());
    assert!(
        get::<NetworkPolicy>(ns, "test-backup-restore")
            .await
            .is_none()
    );
    assert!(get::<Lease>(ns, "test-0").await.is_none());
    assert!(get::<Lease>(ns, "test-full-snap").await.is_none());
    let secret = wait_for("the Secret's finalizer to go", || async {
        get::<Secret>(ns, "etcd-backup")
            .await
            .filter(|s| !s.finalizers().iter().any(|f| f == druid_api::FINALIZER))
    })
    .await;
    assert_eq!(secret.name_any(), "etcd-backup");
}

/// Applies the seed (modified by `edit`) in a fresh namespace and waits for
/// SpecValid=False; returns (reason, message) and checks that nothing else
/// was created and that a Warning event says the same.
async fn rejected(
    ns: &str,
    with_secret: bool,
    edit: impl Fn(String) -> String,
) -> (String, String) {
    operator();
    namespace(ns, with_secret);
    ok(&kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &edit(seed_in(ns)),
    ));
    let etcd: Etcd = wait_for("SpecValid=False", || async {
        get::<Etcd>(ns, "test")
            .await
            .filter(|e| condition(e, "SpecValid").is_some_and(|c| c.0 == "False"))
    })
    .await;
    let (_, reason, message) = condition(&etcd, "SpecValid").unwrap();
    assert!(
        get::<StatefulSet>(ns, "test").await.is_none(),
        "no StatefulSet for an invalid spec"
    );
    assert!(
        get::<ConfigMap>(ns, "test-config").await.is_none(),
        "nothing is applied for an invalid spec"
    );
    let status = etcd.status.as_ref().unwrap();
    assert_eq!(status.last_errors[0].code, "ERR_INVALID_SPEC");
    let events: Vec<Event> = wait_for("a Warning event", || async {
        let evs = Api::<Event>::namespaced(client().await, ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let warnings: Vec<Event> = evs
            .into_iter()
            .filter(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some(reason.as_str())
            })
            .collect();
        (!warnings.is_empty()).then_some(warnings)
    })
    .await;
    assert_eq!(events[0].involved_object.name.as_deref(), Some("test"));
    (reason, message)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_store_secret_is_reported_and_fixing_it_creates_the_cluster() {
    let ns = "bad-secret";
    let (reason, message) = rejected(ns, false, |s| s).await;
    assert_eq!(reason, "StoreSecretMissing");
    assert!(
        message.contains("spec.store.storeSecret") && message.contains("etcd-backup"),
        "{message}"
    );
    // The fix: create the Secret; the cluster follows without any other
    // action (the status sync period retries).
    common::store_secret(ns);
    wait_for("the StatefulSet after the fix", || {
        get::<StatefulSet>(ns, "test")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_secret_without_the_provider_keys_names_them() {
    let ns = "bad-secret-keys";
    operator();
    let (reason, message) = rejected(ns, false, |s| {
        namespace_secret_with(ns, &["--from-literal=accessKeyID=AKIAEXAMPLE"]);
        s
    })
    .await;
    assert_eq!(reason, "InvalidStoreSecret");
    assert!(message.contains("secretAccessKey"), "{message}");
}

fn namespace_secret_with(ns: &str, literals: &[&str]) {
    let mut args = vec!["-n", ns, "create", "secret", "generic", "etcd-backup"];
    args.extend_from_slice(literals);
    ok(&kubectl(&args));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_provider_lists_the_known_ones() {
    let (reason, message) = rejected("bad-provider", true, |s| {
        s.replace("storageProvider: S3", "storageProvider: Dropbox")
    })
    .await;
    assert_eq!(reason, "UnknownProvider");
    assert!(
        message.contains("spec.store.storageProvider") && message.contains("Dropbox"),
        "{message}"
    );
    assert!(
        message.contains("S3") && message.contains("Local"),
        "known providers are listed: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_cron_that_passes_the_schema_is_caught_by_the_operator() {
    let (reason, message) = rejected("bad-cron", true, |s| {
        s.replace(
            "fullSnapshotSchedule: 0 */24 * * *",
            "fullSnapshotSchedule: 61 */24 * * *",
        )
    })
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.backup.fullSnapshotSchedule") && message.contains("61"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_secret_without_the_expected_keys_is_named() {
    let ns = "bad-tls";
    let (reason, message) = rejected(ns, true, |s| {
        ok(&kubectl(&[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "etcd-server-tls",
            "--from-literal=tls.crt=x",
        ]));
        ok(&kubectl(&[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "etcd-client-tls",
            "--from-literal=tls.crt=x",
            "--from-literal=tls.key=y",
        ]));
        s.replace("enableTLS: false", "enableTLS: true")
    })
    .await;
    assert_eq!(reason, "TLSSecretInvalid");
    assert!(
        message.contains("spec.tlsServerSecret")
            && message.contains("tls.key")
            && message.contains("ca.crt"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_aliases_name_both_fields() {
    let (reason, message) = rejected("bad-alias", true, |s| {
        s.replace("    Quota: 8Gi\n", "    Quota: 8Gi\n    quota: 4Gi\n")
    })
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.etcd.quota") && message.contains("spec.etcd.Quota"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_rejects_bad_specs_early_with_a_message_naming_the_field() {
    operator();
    let ns = "cel";
    namespace(ns, true);
    ok(&kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &seed_in(ns),
    ));
    for (patch, field) in [
        (
            r#"{"spec":{"backup":{"fullSnapshotSchedule":"every day"}}}"#,
            "spec.backup.fullSnapshotSchedule",
        ),
        (
            r#"{"spec":{"backup":{"deltaSnapshotPeriod":"5 minutes"}}}"#,
            "spec.backup.deltaSnapshotPeriod",
        ),
        (
            r#"{"spec":{"backup":{"garbageCollectionPeriod":"60s"}}}"#,
            "spec.backup.garbageCollectionPeriod must be longer",
        ),
        (
            r#"{"spec":{"store":{"storageProvider":"S 3"}}}"#,
            "spec.store.storageProvider",
        ),
        (
            r#"{"spec":{"backup":{"store":{"prefix":"p","provider":"S3"}}}}"#,
            "spec.store and spec.backup.store",
        ),
        (
            r#"{"spec":{"storageClass":"other"}}"#,
            "spec.storageClass is immutable",
        ),
        (r#"{"spec":{"replicas":-1}}"#, "spec.replicas"),
        (
            r#"{"spec":{"replicas":2000000000}}"#,
            "spec.replicas must be at most 9",
        ),
    ] {
        let out = kubectl(&[
            "-n",
            ns,
            "patch",
            "etcd",
            "test",
            "--type=merge",
            "-p",
            patch,
        ]);
        assert!(!out.status.success(), "{patch} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{patch}: {err}");
    }
    // Scaling out, in (the operator removes members one at a time) and to
    // zero are all accepted.
    for replicas in ["--replicas=3", "--replicas=1", "--replicas=0"] {
        ok(&kubectl(&["-n", ns, "scale", "etcd", "test", replicas]));
    }
    // Unknown fields are refused by strict validation.
    let out = kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &seed_in(ns)
            .replace("  replicas: 3\n", "  replicas: 3\n  replica: 3\n")
            .replace("  replicas: 1\n", "  replicas: 3\n  replicaz: 1\n"),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_and_reconcile_annotations() {
    operator();
    let ns = "annotations";
    namespace(ns, true);
    ok(&kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &seed_in(ns),
    ));
    wait_for("the StatefulSet", || get::<StatefulSet>(ns, "test")).await;

    // Suspended: a spec change does not reach the StatefulSet, and a
    // Warning event says why.
    ok(&kubectl(&[
        "-n",
        ns,
        "annotate",
        "etcd",
        "test",
        "druid.gardener.cloud/suspend-etcd-spec-reconcile=true",
    ]));
    patch_etcd(ns, r#"{"spec":{"etcd":{"imageVersion":"v9.9.9"}}}"#);
    wait_for("a SpecReconciliationSkipped event", || async {
        Api::<Event>::namespaced(client().await, ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SpecReconciliationSkipped"))
    })
    .await;
    // Several status syncs later the StatefulSet still has the old image.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let sts: StatefulSet = get(ns, "test").await.unwrap();
    assert_eq!(
        container(&sts, "etcd").image.as_deref(),
        Some("eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.1.0")
    );

    // Resumed and asked for a reconcile: the change arrives and the request
    // annotation is removed once done.
    ok(&kubectl(&[
        "-n",
        ns,
        "annotate",
        "etcd",
        "test",
        "druid.gardener.cloud/suspend-etcd-spec-reconcile-",
    ]));
    ok(&kubectl(&[
        "-n",
        ns,
        "annotate",
        "etcd",
        "test",
        "druid.gardener.cloud/operation=reconcile",
    ]));
    wait_for("the new image", || async {
        get::<StatefulSet>(ns, "test").await.filter(|s| {
            container(s, "etcd").image.as_deref()
                == Some("eu.gcr.io/gardener-project/gardener/etcd-wrapper:v9.9.9")
        })
    })
    .await;
    wait_for("the operation annotation to be removed", || async {
        get::<Etcd>(ns, "test").await.filter(|e| {
            !e.annotations()
                .contains_key("druid.gardener.cloud/operation")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_operator_replica_stands_by_while_the_first_leads() {
    operator();
    let port = druid_test_support::free_port().unwrap();
    let dir = druid_test_support::server_dir(&format!("druid-standby-{port}")).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_druid"));
    cmd.env(
        "KUBECONFIG",
        druid_test_support::KubeApiServer::shared().kubeconfig(),
    )
    .args([
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--leader-election-namespace",
        "kube-system",
    ]);
    let standby =
        druid_test_support::ServerProcess::spawn("druid standby", cmd, &dir.join("druid.log"))
            .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the standby's /readyz", || {
        let url = format!("{base}/readyz");
        async move {
            druid_test_support::http_get(&url)
                .ok()
                .filter(|(s, _)| *s == 200)
        }
    })
    .await;
    // Well past a lease duration (15 s) the standby still does not lead.
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    let (_, metrics) = druid_test_support::http_get(&format!("{base}/metrics")).unwrap();
    assert!(metrics.contains("druid_leader 0"), "{metrics}");
    let log = std::fs::read_to_string(standby.log_path()).unwrap();
    assert!(log.contains("waiting for the leader lease"), "{log}");
    assert!(!log.contains("leading: starting the controllers"), "{log}");
    assert!(
        operator()
            .log()
            .contains("leading: starting the controllers")
    );
}

#[test]
fn the_operator_manifests_apply_with_strict_validation() {
    operator();
    let path = druid_test_support::repo_root().join("deploy/operator/druid.yaml");
    ok(&kubectl(&[
        "apply",
        "--validate=strict",
        "-f",
        path.to_str().unwrap(),
    ]));
    assert!(common::operator_can("patch", "etcds/status"));
    assert!(common::operator_can("get", "secrets"));
    // Least privilege: no RBAC escalation, no bulk deletion.
    for (verb, resource) in [
        ("escalate", "roles.rbac.authorization.k8s.io"),
        ("bind", "roles.rbac.authorization.k8s.io"),
        ("deletecollection", "leases.coordination.k8s.io"),
    ] {
        assert!(
            !common::operator_can(verb, resource),
            "the operator may {verb} {resource}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_stays_protected_while_its_etcd_has_an_invalid_spec() {
    operator();
    let ns = "protected";
    namespace(ns, true);
    ok(&kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &seed_in(ns),
    ));
    wait_for("the Secret's finalizer", || async {
        get::<Secret>(ns, "etcd-backup")
            .await
            .filter(|s| s.finalizers().iter().any(|f| f == druid_api::FINALIZER))
    })
    .await;
    // A schedule the schema lets through but the operator refuses.
    patch_etcd(
        ns,
        r#"{"spec":{"backup":{"fullSnapshotSchedule":"61 */24 * * *"}}}"#,
    );
    wait_for("SpecValid=False", || async {
        get::<Etcd>(ns, "test")
            .await
            .filter(|e| condition(e, "SpecValid").is_some_and(|c| c.0 == "False"))
    })
    .await;
    // Several status syncs (2 s) later, the StatefulSet that mounts the
    // Secret is still there, and so is the Secret's protection.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert!(get::<StatefulSet>(ns, "test").await.is_some());
    let secret: Secret = get(ns, "etcd-backup").await.unwrap();
    assert!(
        secret
            .finalizers()
            .iter()
            .any(|f| f == druid_api::FINALIZER),
        "the Secret lost its finalizer while the Etcd still uses it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcds_and_secrets_with_the_legacy_finalizer_get_upstreams_and_are_deleted() {
    operator();
    let legacy = druid_api::LEGACY_FINALIZERS[0];
    let ns = "legacy-finalizer";
    namespace(ns, true);
    // What an earlier release of this operator left: its own finalizer on
    // the Etcd and on the Secret it uses.
    ok(&kubectl(&[
        "-n",
        ns,
        "patch",
        "secret",
        "etcd-backup",
        "--type=merge",
        "-p",
        &format!(r#"{{"metadata":{{"finalizers":["{legacy}"]}}}}"#),
    ]));
    // The founding manifest carries the legacy name too.
    let seed = seed_in(ns);
    assert!(
        seed.contains(&format!("finalizers:\n  - {legacy}\n")),
        "{seed}"
    );
    let out = kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], &seed);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let etcd = wait_for("upstream's finalizer on the Etcd", || async {
        get::<Etcd>(ns, "test")
            .await
            .filter(|e| e.finalizers() == [druid_api::FINALIZER.to_string()])
    })
    .await;
    assert!(!etcd.finalizers().iter().any(|f| f == legacy));
    wait_for("the StatefulSet", || async {
        get::<StatefulSet>(ns, "test").await
    })
    .await;
    wait_for("upstream's finalizer on the Secret", || async {
        get::<Secret>(ns, "etcd-backup")
            .await
            .filter(|s| s.finalizers() == [druid_api::FINALIZER.to_string()])
    })
    .await;
    // The Go operator's name is ours now: deleting works and releases the
    // Secret.
    common::delete_etcd(ns, "test").await;
    wait_for("the Secret released", || async {
        get::<Secret>(ns, "etcd-backup")
            .await
            .filter(|s| s.finalizers().is_empty())
    })
    .await;
}
