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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use druid_test_support::{MinioServer, Node, repo_root};

const NS: &str = "demo";
/// The image names the founding manifest pins; no registry serves them
/// here, so the node's containerd knows our images under these names too.
const SEED_BACKUP_IMAGE: &str = "eu.gcr.io/gardener-project/gardener/etcdbrctl:v0.25.0";
const SEED_ETCD_IMAGE: &str = "eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.1.0";

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Polls `probe` until it returns `Some`, failing after `timeout` with what
/// it waited for, the last thing it saw and the node's report.
fn wait_for<T>(
    node: &Node,
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
                node.report(NS)
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

/// MinIO on the host's address of the node network (pods reach it), with
/// the seed's bucket, the seed's namespace, its store Secret pointing at
/// MinIO and its storage class.
fn prepare_seed(node: &Node, minio: &MinioServer) {
    minio.create_bucket("test").unwrap();
    node.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: gardener.cloud-fast}}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
---
apiVersion: v1
kind: Secret
metadata: {{name: etcd-backup, namespace: {NS}}}
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
fn client_endpoint(node: &Node) -> String {
    let ip = jsonpath(
        node,
        &["-n", NS, "get", "service", "test-client"],
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
fn assert_none_lost(node: &Node, endpoint: &str, acked: &BTreeMap<u64, String>) {
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
        node.report(NS)
    );
}

fn etcd_ready(node: &Node) -> Result<Option<()>, String> {
    let ready = jsonpath(node, &["-n", NS, "get", "etcd", "test"], "{.status.ready}")?;
    Ok((ready == "true").then_some(()))
}

#[test]
fn the_founding_manifest_runs_as_pods_backs_up_and_survives_a_pod_deletion() {
    let node = Node::shared();
    let minio = MinioServer::start_on(node.host_ip()).unwrap();
    install_operator(node);
    prepare_seed(node, &minio);

    // (a) The founding manifest, as-is.
    let applied = Instant::now();
    let seed = repo_root().join("deploy/samples/seed-etcd.yaml");
    node.kubectl_ok(&["apply", "--validate=strict", "-f", seed.to_str().unwrap()])
        .unwrap();
    wait_for(
        node,
        "pod test-0 is Ready",
        Duration::from_secs(300),
        || {
            let ready = jsonpath(
                node,
                &["-n", NS, "get", "pod", "test-0"],
                r#"{.status.conditions[?(@.type=="Ready")].status}"#,
            )?;
            Ok((ready == "True").then_some(()))
        },
    );
    wait_for(node, "Etcd test is Ready", Duration::from_secs(120), || {
        etcd_ready(node)
    });
    println!(
        "kubectl apply to Etcd Ready: {:.1}s",
        applied.elapsed().as_secs_f64()
    );
    let member = wait_for(
        node,
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
        "a full snapshot in the bucket",
        Duration::from_secs(180),
        || {
            let objects = bucket(&minio, "etcd-test/v2/");
            Ok(objects.iter().any(|o| o.starts_with("Full-")).then_some(()))
        },
    );

    // Clients are served through the client Service.
    let endpoint = client_endpoint(node);
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(5));

    // A delta snapshot on request (the seed's period is 5 minutes).
    let pod_ip = jsonpath(node, &["-n", NS, "get", "pod", "test-0"], "{.status.podIP}").unwrap();
    wait_for(
        node,
        "a delta snapshot in the bucket",
        Duration::from_secs(120),
        || {
            let _ = druid_test_support::http_get(&format!("http://{pod_ip}:8080/snapshot/delta"));
            let objects = bucket(&minio, "etcd-test/v2/");
            Ok(objects.iter().any(|o| o.starts_with("Incr-")).then_some(()))
        },
    );
    wait_for(node, "BackupReady=True", Duration::from_secs(120), || {
        let status = jsonpath(
            node,
            &["-n", NS, "get", "etcd", "test"],
            r#"{.status.conditions[?(@.type=="BackupReady")].status}"#,
        )?;
        Ok((status == "True").then_some(()))
    });

    // (b) The etcd pod deleted: it comes back with its volume, and no
    // acknowledged write is lost.
    let uid = jsonpath(node, &["-n", NS, "get", "pod", "test-0"], "{.metadata.uid}").unwrap();
    let deleted = Instant::now();
    node.kubectl_ok(&["-n", NS, "delete", "pod", "test-0", "--wait=false"])
        .unwrap();
    wait_for(
        node,
        "a new pod test-0 is Ready",
        Duration::from_secs(300),
        || {
            let new_uid = jsonpath(node, &["-n", NS, "get", "pod", "test-0"], "{.metadata.uid}")?;
            let ready = jsonpath(
                node,
                &["-n", NS, "get", "pod", "test-0"],
                r#"{.status.conditions[?(@.type=="Ready")].status}"#,
            )?;
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
    assert_none_lost(node, &endpoint, &acked);
}
