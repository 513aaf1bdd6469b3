//! End to end on a real node: the operator runs in the cluster from
//! deploy/operator (its own ServiceAccount and ClusterRole), the founding
//! manifest is applied as-is, and its etcd runs as a real pod (our etcd
//! image with the wrapper, our sidecar image) backing up into MinIO through
//! the S3 plugin. A writer records every acknowledged write; none may be
//! lost.
//!
//! Needs root, what `tests/scripts/install-node.sh` installs and the images
//! of `scripts/build-images.sh` (`make test` does all of it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs,
    reason = "test"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use druid_test_support::{MinioServer, Node, repo_root};

const NS: &str = "demo";
/// The image names the founding manifest pins; no registry serves them
/// here, so the node's containerd knows our images under these names too.
const SEED_BACKUP_IMAGE: &str = "eu.gcr.io/gardener-project/gardener/etcdbrctl:v0.25.0";
const SEED_ETCD_IMAGE: &str = "eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.1.0";

/// One Etcd at a time: the node has two cores, and the tests' clusters
/// together would not fit.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Polls `probe` until it returns `Some`, failing after `timeout` with what
/// it waited for, the last thing it saw and the node's report.
fn wait_for<T>(
    node: &Node,
    ns: &str,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, String>,
) -> T {
    let start = Instant::now();
    let mut last = String::from("not probed yet");
    loop {
        match probe() {
            Ok(Some(v)) => {
                println!("{what}: after {:.1}s", start.elapsed().as_secs_f64());
                return v;
            }
            Ok(None) => {}
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            panic!(
                "{what}: not after {timeout:?} (last: {last})\n{}",
                node.report(ns)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn jsonpath(node: &Node, args: &[&str], path: &str) -> Result<String, String> {
    let mut all: Vec<&str> = args.to_vec();
    let expr = format!("jsonpath={path}");
    all.extend(["-o", &expr]);
    node.kubectl_ok(&all)
        .map(|s| s.trim().to_string())
        .map_err(|e| e.to_string())
}

/// The operator from deploy/operator, as a user installs it.
fn install_operator(node: &Node) {
    node.install_crds(&repo_root().join("deploy/crds")).unwrap();
    let manifest = repo_root().join("deploy/operator/druid.yaml");
    node.kubectl_ok(&[
        "apply",
        "--validate=strict",
        "-f",
        manifest.to_str().unwrap(),
    ])
    .unwrap();
    wait_for(
        node,
        NS,
        "the operator Deployment is available",
        Duration::from_secs(180),
        || {
            let ready = jsonpath(
                node,
                &["-n", "druid-system", "get", "deployment", "druid"],
                "{.status.availableReplicas}",
            )?;
            Ok((ready == "2").then_some(()))
        },
    );
}

/// The node with the operator from deploy/operator, MinIO on the host's
/// address of the node network (pods reach it) with bucket `test`, the
/// founding manifest's storage class, and our images also under the names
/// the manifest pins. Once per test binary.
fn cluster() -> (&'static Node, &'static MinioServer) {
    static MINIO: OnceLock<MinioServer> = OnceLock::new();
    let node = Node::shared();
    let minio = MINIO.get_or_init(|| {
        let minio = MinioServer::start_on(node.host_ip()).unwrap();
        minio.create_bucket("test").unwrap();
        install_operator(node);
        node.kubectl_stdin(
            &["apply", "-f", "-"],
            r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gardener.cloud-fast}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
"#,
        )
        .unwrap();
        node.tag_image(
            &format!("ghcr.io/druid-rs/etcdbr:{}", version()),
            SEED_BACKUP_IMAGE,
        )
        .unwrap();
        node.tag_image(
            &format!("ghcr.io/druid-rs/etcd:{}", version()),
            SEED_ETCD_IMAGE,
        )
        .unwrap();
        minio
    });
    (node, minio)
}

/// Namespace `ns` with the store Secret the founding manifest names,
/// pointing at MinIO.
fn namespace_with_store(node: &Node, minio: &MinioServer, ns: &str) {
    node.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: etcd-backup, namespace: {ns}}}
stringData:
  accessKeyID: "{}"
  secretAccessKey: "{}"
  region: "{}"
  endpoint: "{}"
  s3ForcePathStyle: "true"
"#,
            minio.access_key(),
            minio.secret_key(),
            minio.region(),
            minio.endpoint()
        ),
    )
    .unwrap();
}

/// Objects under `prefix` in bucket `test`, by name.
fn bucket(minio: &MinioServer, prefix: &str) -> Vec<String> {
    let out = minio
        .mc()
        .unwrap()
        .args(["ls", "--recursive", &format!("druid/test/{prefix}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// The client Service's address (the host reaches Services through the
/// node's network).
fn client_endpoint(node: &Node, ns: &str) -> String {
    let ip = jsonpath(
        node,
        &["-n", ns, "get", "service", "test-client"],
        "{.spec.clusterIP}",
    )
    .unwrap();
    format!("http://{ip}:2379")
}

/// A writer that puts `/e2e/<n>` = `<n>` one at a time through the client
/// Service, retrying what fails, and records every acknowledged write.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(BTreeMap<u64, String>, u64)>,
}

impl Writer {
    fn start(endpoint: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut acked = BTreeMap::new();
                let mut failed = 0u64;
                let mut client = None;
                let mut n = 0u64;
                while !s.load(Ordering::SeqCst) {
                    if client.is_none() {
                        let options = etcd_client::ConnectOptions::new()
                            .with_connect_timeout(Duration::from_secs(2))
                            .with_timeout(Duration::from_secs(5));
                        client = etcd_client::Client::connect([endpoint.as_str()], Some(options))
                            .await
                            .ok();
                        if client.is_none() {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                    let Some(c) = client.as_mut() else { continue };
                    let value = format!("value-{n}");
                    match c.put(format!("/e2e/{n:08}"), value.clone(), None).await {
                        Ok(_) => {
                            acked.insert(n, value);
                            n += 1;
                        }
                        Err(_) => {
                            failed += 1;
                            client = None;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (acked, failed)
            })
        });
        Self { stop, handle }
    }

    fn finish(self) -> (BTreeMap<u64, String>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// Every acknowledged write is there with its value.
fn assert_none_lost(node: &Node, ns: &str, endpoint: &str, acked: &BTreeMap<u64, String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored: BTreeMap<String, String> = rt.block_on(async {
        let mut c = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        let resp = c
            .get("/e2e/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .unwrap();
        resp.kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap().to_string(),
                    kv.value_str().unwrap().to_string(),
                )
            })
            .collect()
    });
    let lost: Vec<u64> = acked
        .iter()
        .filter(|(n, v)| stored.get(&format!("/e2e/{n:08}")) != Some(v))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost (first: {:?})\n{}",
        lost.len(),
        acked.len(),
        lost.first(),
        node.report(ns)
    );
}

/// The pod's Ready condition ("True", "False" or "" before it has one).
fn pod_ready(node: &Node, ns: &str, pod: &str) -> Result<String, String> {
    jsonpath(
        node,
        &["-n", ns, "get", "pod", pod],
        r#"{.status.conditions[?(@.type=="Ready")].status}"#,
    )
}

fn etcd_ready(node: &Node, ns: &str) -> Result<Option<()>, String> {
    let ready = jsonpath(node, &["-n", ns, "get", "etcd", "test"], "{.status.ready}")?;
    Ok((ready == "true").then_some(()))
}

#[test]
fn the_founding_manifest_runs_as_pods_and_survives_losing_its_pod_and_its_volume() {
    let _serial = serial();
    let (node, minio) = cluster();
    namespace_with_store(node, minio, NS);

    // (a) The founding manifest, as-is.
    let applied = Instant::now();
    let seed = repo_root().join("deploy/samples/seed-etcd.yaml");
    node.kubectl_ok(&["apply", "--validate=strict", "-f", seed.to_str().unwrap()])
        .unwrap();
    wait_for(
        node,
        NS,
        "pod test-0 is Ready",
        Duration::from_secs(300),
        || {
            let ready = pod_ready(node, NS, "test-0")?;
            Ok((ready == "True").then_some(()))
        },
    );
    wait_for(
        node,
        NS,
        "Etcd test is Ready",
        Duration::from_secs(120),
        || etcd_ready(node, NS),
    );
    println!(
        "kubectl apply to Etcd Ready: {:.1}s",
        applied.elapsed().as_secs_f64()
    );
    let member = wait_for(
        node,
        NS,
        "status.members shows test-0",
        Duration::from_secs(120),
        || {
            let members = jsonpath(
                node,
                &["-n", NS, "get", "etcd", "test"],
                "{.status.members[*].name}",
            )?;
            Ok(members.contains("test-0").then_some(members))
        },
    );
    assert_eq!(member, "test-0");
    wait_for(
        node,
        NS,
        "a full snapshot in the bucket",
        Duration::from_secs(180),
        || {
            let objects = bucket(minio, "etcd-test/v2/");
            Ok(objects.iter().any(|o| o.starts_with("Full-")).then_some(()))
        },
    );

    // Clients are served through the client Service.
    let endpoint = client_endpoint(node, NS);
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(5));

    // A delta snapshot on request (the seed's period is 5 minutes).
    let pod_ip = jsonpath(node, &["-n", NS, "get", "pod", "test-0"], "{.status.podIP}").unwrap();
    wait_for(
        node,
        NS,
        "a delta snapshot in the bucket",
        Duration::from_secs(120),
        || {
            let _ = druid_test_support::http_get(&format!("http://{pod_ip}:8080/snapshot/delta"));
            let objects = bucket(minio, "etcd-test/v2/");
            Ok(objects.iter().any(|o| o.starts_with("Incr-")).then_some(()))
        },
    );
    wait_for(
        node,
        NS,
        "BackupReady=True",
        Duration::from_secs(120),
        || {
            let status = jsonpath(
                node,
                &["-n", NS, "get", "etcd", "test"],
                r#"{.status.conditions[?(@.type=="BackupReady")].status}"#,
            )?;
            Ok((status == "True").then_some(()))
        },
    );

    // (b) The etcd pod deleted: it comes back with its volume, and no
    // acknowledged write is lost.
    let uid = jsonpath(node, &["-n", NS, "get", "pod", "test-0"], "{.metadata.uid}").unwrap();
    let deleted = Instant::now();
    node.kubectl_ok(&["-n", NS, "delete", "pod", "test-0", "--wait=false"])
        .unwrap();
    wait_for(
        node,
        NS,
        "a new pod test-0 is Ready",
        Duration::from_secs(300),
        || {
            let new_uid = jsonpath(node, &["-n", NS, "get", "pod", "test-0"], "{.metadata.uid}")?;
            let ready = pod_ready(node, NS, "test-0")?;
            Ok((new_uid != uid && ready == "True").then_some(()))
        },
    );
    println!(
        "pod deletion to a serving member: {:.1}s",
        deleted.elapsed().as_secs_f64()
    );
    // Let the writer get a few writes through the new pod.
    std::thread::sleep(Duration::from_secs(5));
    let (acked, failed) = writer.finish();
    println!(
        "writer: {} writes acknowledged, {failed} failed attempts while the pod was away",
        acked.len()
    );
    assert!(acked.len() > 10, "the writer got too few writes through");
    assert_none_lost(node, NS, &endpoint, &acked);

    // (d) The pod and its volume deleted: the member is rebuilt from the
    // bucket with every write acknowledged before the last delta snapshot.
    let pod_ip = jsonpath(node, &["-n", NS, "get", "pod", "test-0"], "{.status.podIP}").unwrap();
    let before = bucket(minio, "etcd-test/v2/").len();
    let (status, body) =
        druid_test_support::http_get(&format!("http://{pod_ip}:8080/snapshot/delta")).unwrap();
    assert_eq!(status, 200, "on-demand delta snapshot: {body}");
    wait_for(
        node,
        NS,
        "the last delta snapshot in the bucket",
        Duration::from_secs(60),
        || Ok((bucket(minio, "etcd-test/v2/").len() > before).then_some(())),
    );
    let claim = jsonpath(
        node,
        &["-n", NS, "get", "pod", "test-0"],
        "{.spec.volumes[?(@.persistentVolumeClaim)].persistentVolumeClaim.claimName}",
    )
    .unwrap();
    assert!(!claim.is_empty(), "pod test-0 has no claim");
    let claim_uid = jsonpath(node, &["-n", NS, "get", "pvc", &claim], "{.metadata.uid}").unwrap();
    let lost_at = Instant::now();
    node.kubectl_ok(&["-n", NS, "delete", "pvc", &claim, "--wait=false"])
        .unwrap();
    node.kubectl_ok(&["-n", NS, "delete", "pod", "test-0", "--wait=false"])
        .unwrap();
    wait_for(
        node,
        NS,
        "test-0 is Ready on a new volume",
        Duration::from_secs(300),
        || {
            let uid = jsonpath(node, &["-n", NS, "get", "pvc", &claim], "{.metadata.uid}")?;
            let ready = pod_ready(node, NS, "test-0")?;
            Ok((!uid.is_empty() && uid != claim_uid && ready == "True").then_some(()))
        },
    );
    println!(
        "volume lost to a restored, serving member: {:.1}s",
        lost_at.elapsed().as_secs_f64()
    );
    assert_none_lost(node, NS, &endpoint, &acked);
    let restored = node
        .kubectl_ok(&["-n", NS, "logs", "test-0", "-c", "backup-restore"])
        .unwrap();
    assert!(
        restored.to_lowercase().contains("restor"),
        "the sidecar's log does not show a restore:\n{restored}"
    );

    // (h) The Etcd deleted: its pods, claims (pvcRetentionPolicy:
    // DeleteAll), leases and the Secret's finalizer go.
    node.kubectl_ok(&["-n", NS, "delete", "etcd", "test", "--wait=false"])
        .unwrap();
    wait_for(
        node,
        NS,
        "the Etcd and everything it owned are gone",
        Duration::from_secs(300),
        || {
            let left = node
                .kubectl_ok(&[
                    "-n",
                    NS,
                    "get",
                    "etcd,statefulset,pod,pvc,lease",
                    "-o",
                    "name",
                ])
                .map_err(|e| e.to_string())?;
            if left.trim().is_empty() {
                Ok(Some(()))
            } else {
                Err(format!("still there: {}", left.replace('\n', " ")))
            }
        },
    );
    let finalizers = jsonpath(
        node,
        &["-n", NS, "get", "secret", "etcd-backup"],
        "{.metadata.finalizers}",
    )
    .unwrap();
    assert!(
        !finalizers.contains("druid.gardener.cloud"),
        "the store Secret kept druid's finalizer: {finalizers}"
    );
}

/// The founding manifest with three replicas in namespace `three`, its own
/// store prefix, and smaller requests so that three members fit the node.
fn three_replica_seed() -> String {
    let seed = std::fs::read_to_string(repo_root().join("deploy/samples/seed-etcd.yaml")).unwrap();
    let three = seed
        .replace("namespace: demo", "namespace: three")
        .replace("replicas: 1", "replicas: 3")
        .replace("storePrefix: etcd-test", "storePrefix: etcd-three")
        .replace("cpu: 500m", "cpu: 100m")
        .replace("memory: 1000Mi", "memory: 200Mi");
    assert_ne!(seed, three);
    assert!(three.contains("replicas: 3") && three.contains("storePrefix: etcd-three"));
    three
}

#[test]
fn three_replicas_form_one_cluster_that_serves_backs_up_and_rebuilds_a_lost_member() {
    const THREE: &str = "three";
    let _serial = serial();
    let (node, minio) = cluster();
    namespace_with_store(node, minio, THREE);
    let applied = Instant::now();
    node.kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &three_replica_seed(),
    )
    .unwrap();
    for pod in ["test-0", "test-1", "test-2"] {
        wait_for(
            node,
            THREE,
            &format!("pod {pod} is Ready"),
            Duration::from_secs(420),
            || {
                let ready = pod_ready(node, THREE, pod)?;
                Ok((ready == "True").then_some(()))
            },
        );
    }
    wait_for(
        node,
        THREE,
        "Etcd test is Ready",
        Duration::from_secs(180),
        || etcd_ready(node, THREE),
    );
    println!(
        "kubectl apply of a 3-replica Etcd to Ready: {:.1}s",
        applied.elapsed().as_secs_f64()
    );
    let members = wait_for(
        node,
        THREE,
        "status.members lists three members with one leader",
        Duration::from_secs(180),
        || {
            let names = jsonpath(
                node,
                &["-n", THREE, "get", "etcd", "test"],
                "{.status.members[*].name}",
            )?;
            let roles = jsonpath(
                node,
                &["-n", THREE, "get", "etcd", "test"],
                "{.status.members[*].role}",
            )?;
            let leaders = roles.split_whitespace().filter(|r| *r == "Leader").count();
            Ok((names.split_whitespace().count() == 3 && leaders == 1).then_some(names))
        },
    );
    for pod in ["test-0", "test-1", "test-2"] {
        assert!(members.contains(pod), "{pod} missing from {members}");
    }
    wait_for(
        node,
        THREE,
        "a full snapshot of the 3-member cluster in the bucket",
        Duration::from_secs(180),
        || {
            let objects = bucket(minio, "etcd-three/v2/");
            Ok(objects.iter().any(|o| o.starts_with("Full-")).then_some(()))
        },
    );
    let endpoint = client_endpoint(node, THREE);
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(10));
    let (acked, failed) = writer.finish();
    println!(
        "writer on 3 members: {} writes acknowledged, {failed} failed attempts",
        acked.len()
    );
    assert!(acked.len() > 10, "the writer got too few writes through");
    assert_eq!(failed, 0, "a healthy 3-member cluster refused writes");
    assert_none_lost(node, THREE, &endpoint, &acked);

    // (c) One member's volume and pod deleted while the writer runs: the
    // member is rebuilt (re-added as a learner and promoted) and catches
    // up; quorum holds, so no acknowledged write is lost.
    let writer = Writer::start(endpoint.clone());
    let claim = jsonpath(
        node,
        &["-n", THREE, "get", "pod", "test-2"],
        "{.spec.volumes[?(@.persistentVolumeClaim)].persistentVolumeClaim.claimName}",
    )
    .unwrap();
    let claim_uid = jsonpath(
        node,
        &["-n", THREE, "get", "pvc", &claim],
        "{.metadata.uid}",
    )
    .unwrap();
    let lost_at = Instant::now();
    node.kubectl_ok(&["-n", THREE, "delete", "pvc", &claim, "--wait=false"])
        .unwrap();
    node.kubectl_ok(&["-n", THREE, "delete", "pod", "test-2", "--wait=false"])
        .unwrap();
    wait_for(
        node,
        THREE,
        "test-2 is Ready on a new volume",
        Duration::from_secs(300),
        || {
            let uid = jsonpath(
                node,
                &["-n", THREE, "get", "pvc", &claim],
                "{.metadata.uid}",
            )?;
            let ready = pod_ready(node, THREE, "test-2")?;
            Ok((!uid.is_empty() && uid != claim_uid && ready == "True").then_some(()))
        },
    );
    println!(
        "a member's volume lost to the member serving again: {:.1}s",
        lost_at.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    let (acked, failed) = writer.finish();
    println!(
        "writer while test-2 was rebuilt: {} writes acknowledged, {failed} failed attempts",
        acked.len()
    );
    assert!(acked.len() > 10, "the writer got too few writes through");
    assert_none_lost(node, THREE, &endpoint, &acked);
    // The rebuilt member itself holds the data (a serializable read of its
    // own copy).
    let member_ip = jsonpath(
        node,
        &["-n", THREE, "get", "pod", "test-2"],
        "{.status.podIP}",
    )
    .unwrap();
    let newest = format!("/e2e/{:08}", acked.keys().next_back().copied().unwrap_or(0));
    wait_for(
        node,
        THREE,
        "the rebuilt member holds the newest write",
        Duration::from_secs(60),
        || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut c =
                    etcd_client::Client::connect([format!("http://{member_ip}:2379")], None)
                        .await
                        .map_err(|e| e.to_string())?;
                let resp = c
                    .get(
                        newest.as_str(),
                        Some(etcd_client::GetOptions::new().with_serializable()),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((resp.count() == 1).then_some(()))
            })
        },
    );
    let members = jsonpath(
        node,
        &["-n", THREE, "get", "etcd", "test"],
        "{.status.members[*].name}",
    )
    .unwrap();
    assert_eq!(members.split_whitespace().count(), 3, "{members}");
    // It rejoined the cluster (never a restore from the store, which would
    // found a cluster of its own).
    let log = node
        .kubectl_ok(&["-n", THREE, "logs", "test-2", "-c", "backup-restore"])
        .unwrap();
    assert!(
        log.contains("as a learner"),
        "test-2 did not rejoin as a learner:\n{log}"
    );
    assert!(
        !log.contains("restoring from the store"),
        "test-2 was restored from the store:\n{log}"
    );

    node.kubectl_ok(&["-n", THREE, "delete", "etcd", "test", "--wait=false"])
        .unwrap();
    wait_for(
        node,
        THREE,
        "the 3-member cluster is gone",
        Duration::from_secs(300),
        || {
            let left = node
                .kubectl_ok(&["-n", THREE, "get", "statefulset,pod,pvc", "-o", "name"])
                .map_err(|e| e.to_string())?;
            if left.trim().is_empty() {
                Ok(Some(()))
            } else {
                Err(format!("still there: {}", left.replace('\n', " ")))
            }
        },
    );
}
