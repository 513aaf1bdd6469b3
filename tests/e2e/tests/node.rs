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

use druid_test_support::{EtcdCluster, MinioServer, Node, repo_root};

const NS: &str = "demo";
/// The image names the founding manifest pins; no registry serves them
/// here, so the node's containerd knows our images under these names too.
const SEED_BACKUP_IMAGE: &str = "eu.gcr.io/gardener-project/gardener/etcdbrctl:v0.25.0";
const SEED_ETCD_IMAGE: &str = "eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.1.0";
/// Our etcd image of the next etcd minor version
/// (`scripts/build-images.sh --etcd-version` into [`NEXT_IMAGES`]) under
/// another tag of the seed's repository, for an image change that rolls:
/// an upgrade of etcd.
const ROLLED_TAG: &str = "v0.1.0-rolled";
const ROLLED_ETCD_IMAGE: &str = "eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.1.0-rolled";

/// Where `make test` puts the images with the next etcd minor version
/// (`scripts/build-images.sh --profile dev --etcd-version v3.6.17 --out
/// target/images-next`).
const NEXT_IMAGES: &str = "target/images-next";

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
    let mut last: String;
    let mut probes = 0u32;
    loop {
        probes += 1;
        match probe() {
            Ok(Some(v)) => {
                println!("{what}: after {:.1}s", start.elapsed().as_secs_f64());
                return v;
            }
            // Probes that can say what they saw return it as an error.
            Ok(None) => last = format!("probe {probes}: condition not met"),
            Err(e) => last = format!("probe {probes}: {e}"),
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
    namespace_with_secret(
        node,
        ns,
        &[
            ("accessKeyID", minio.access_key()),
            ("secretAccessKey", minio.secret_key()),
            ("region", minio.region()),
            ("endpoint", minio.endpoint()),
            ("s3ForcePathStyle", "true"),
        ],
    );
}

/// Namespace `ns` with the store Secret the founding manifest names
/// (`etcd-backup`), holding `keys`.
fn namespace_with_secret(node: &Node, ns: &str, keys: &[(&str, &str)]) {
    let data: String = keys
        .iter()
        .map(|(k, v)| format!("  {k}: {}\n", serde_json::Value::from(*v)))
        .collect();
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
{data}"#
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

/// What a writer saw.
struct Written {
    /// Every acknowledged write, by number.
    acked: BTreeMap<u64, String>,
    /// Attempts that failed and were retried (Unavailable, a lost
    /// connection, a timeout).
    retried: u64,
    /// Writes given up: an error that is not worth retrying, or retries
    /// that did not succeed within `WRITE_BUDGET`.
    failed: Vec<String>,
    /// The longest time one write took, retries included.
    longest: Duration,
    /// Every write's time, retries included, in order.
    latencies: Vec<Duration>,
}

/// How long the writer retries one write before it counts as failed
/// (kube-apiserver's requests time out after 60 s).
const WRITE_BUDGET: Duration = Duration::from_secs(60);

/// Whether a client retrying like kube-apiserver's etcd client retries
/// this error: the member is unavailable (no leader, leader changed,
/// shutting down), the connection went, or the request timed out. Also
/// `raft proposal dropped` (gRPC Unknown), which kube-apiserver's client
/// does not retry: etcd drops proposals that reach a leader while it
/// hands leadership over (the roll and the cut-over move it before a
/// leader's pod goes, as DEP-07 asks, and etcd does the same when a
/// leader stops). A dropped proposal was never appended, so retrying it
/// is safe. One write met it once in about ten runs (a CI run of the join
/// test). The writers count it as a retry, like Unavailable.
fn retriable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) || (s.code() == tonic::Code::Unknown && s.message() == "raft proposal dropped")
                || (
                    // A connection that broke mid-request: grpc-go (and so
                    // kube-apiserver) sees Unavailable, tonic reports Unknown
                    // with the transport error as its source.
                    s.code() == tonic::Code::Unknown
                        && std::error::Error::source(s)
                            .is_some_and(|e| e.is::<tonic::transport::Error>())
                )
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// A writer that puts `/e2e/<n>` = `value-<n>` one at a time through the
/// client Service, retrying what is retriable, and records every
/// acknowledged write.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Written>,
}

impl Writer {
    fn start(endpoint: String) -> Self {
        Self::start_many(vec![endpoint])
    }

    /// A writer that connects to one of `endpoints` at a time, the next
    /// one after each failed attempt.
    fn start_many(endpoints: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(write_until(endpoints, s))
        });
        Self { stop, handle }
    }

    fn finish(self) -> Written {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

async fn write_until(endpoints: Vec<String>, stop: Arc<AtomicBool>) -> Written {
    let mut out = Written {
        acked: BTreeMap::new(),
        retried: 0,
        failed: Vec::new(),
        longest: Duration::ZERO,
        latencies: Vec::new(),
    };
    let mut client: Option<etcd_client::Client> = None;
    let mut n = 0u64;
    let mut next = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let value = format!("value-{n}");
        let began = Instant::now();
        loop {
            if client.is_none() {
                let endpoint = &endpoints[next % endpoints.len()];
                next += 1;
                let options = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(5));
                client = etcd_client::Client::connect([endpoint.as_str()], Some(options))
                    .await
                    .ok();
            }
            let result = match client.as_mut() {
                Some(c) => c.put(format!("/e2e/{n:08}"), value.clone(), None).await,
                None => Err(etcd_client::Error::InvalidArgs("no connection".into())),
            };
            match result {
                Ok(_) => {
                    out.acked.insert(n, value);
                    break;
                }
                Err(e) if client.is_none() || retriable(&e) => {
                    if began.elapsed() > WRITE_BUDGET {
                        out.failed
                            .push(format!("write {n}: retried for {WRITE_BUDGET:?}: {e}"));
                        break;
                    }
                    out.retried += 1;
                    client = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    out.failed.push(format!("write {n}: {e}"));
                    client = None;
                    break;
                }
            }
        }
        out.longest = out.longest.max(began.elapsed());
        out.latencies.push(began.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

impl Written {
    /// One line for the test's output.
    fn summary(&self) -> String {
        format!(
            "{} writes acknowledged, {} failed, {} retried attempts, p99 write {:.3}s, longest write {:.1}s",
            self.acked.len(),
            self.failed.len(),
            self.retried,
            self.p99().as_secs_f64(),
            self.longest.as_secs_f64()
        )
    }

    /// The 99th percentile of the writes' latencies (retries included).
    fn p99(&self) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let i = (sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1));
        sorted.get(i).copied().unwrap_or_default()
    }

    /// No write was given up, and enough went through to mean something.
    fn assert_no_failed_write(&self, node: &Node, ns: &str) {
        assert!(
            self.acked.len() > 10,
            "the writer got too few writes through"
        );
        assert!(
            self.failed.is_empty(),
            "{} writes failed (first: {:?})\n{}",
            self.failed.len(),
            self.failed.first(),
            node.report(ns)
        );
    }
}

/// Every acknowledged write is there with its value.
fn assert_none_lost(node: &Node, ns: &str, endpoint: &str, acked: &BTreeMap<u64, String>) {
    let read = || {
        with_client(endpoint, async |c| {
            let resp = c
                .get("/e2e/", Some(etcd_client::GetOptions::new().with_prefix()))
                .await?;
            Ok(resp
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        String::from_utf8_lossy(kv.value()).into_owned(),
                    )
                })
                .collect::<BTreeMap<String, String>>())
        })
    };
    // Right after a pod is replaced the client Service can be unreachable
    // from the host for a moment (seen once in CI: "Network is
    // unreachable" just after a member was restored); a client retries,
    // and so does this read. A failed read is not a lost write; one that
    // keeps failing fails the test.
    let started = Instant::now();
    let stored = loop {
        match read() {
            Ok(stored) => break stored,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                println!("reading the writes back failed, retrying: {e}");
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => panic!(
                "cannot read the writes back for 60 s: {e}\n{}",
                node.report(ns)
            ),
        }
    };
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

/// `field` (`status`, `reason`, ...) of Etcd `test`'s condition `type_`
/// ("" before it has one).
fn etcd_condition(node: &Node, ns: &str, type_: &str, field: &str) -> Result<String, String> {
    jsonpath(
        node,
        &["-n", ns, "get", "etcd", "test"],
        &format!(r#"{{.status.conditions[?(@.type=="{type_}")].{field}}}"#),
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
    let _cleanup = Cleanup { node, ns: NS };
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
    // The sidecar's API listens on loopback (for the wrapper) and the pod's
    // IP, not on every interface of the pod.
    let pod_ip = jsonpath(node, &["-n", NS, "get", "pod", "test-0"], "{.status.podIP}").unwrap();
    let mut listening = listening_on(NS, 8080);
    listening.sort();
    let mut expected = vec!["127.0.0.1".to_string(), pod_ip];
    expected.sort();
    assert_eq!(listening, expected, "the sidecar's listening addresses");
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
            let status = etcd_condition(node, NS, "BackupReady", "status")?;
            Ok((status == "True").then_some(()))
        },
    );

    // (a2) On-demand operations as EtcdOpsTasks: the sample as written (a
    // full snapshot), then a defragmentation of the member.
    let sample =
        std::fs::read_to_string(repo_root().join("deploy/samples/etcdopstask.yaml")).unwrap();
    let what = run_ops_task(node, NS, &sample, "test-full-snapshot");
    let taken = what
        .strip_prefix("full snapshot ")
        .and_then(|w| w.split_whitespace().next())
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or_else(|| panic!("the task does not name its snapshot: {what}"));
    assert!(
        bucket(minio, "etcd-test/v2/").iter().any(|o| o == taken),
        "the snapshot the task names ({taken}) is not in the bucket"
    );
    let defrag = ops_task_manifest("test-defrag", "onDemandDefragmentation: {}");
    let what = run_ops_task(node, NS, &defrag, "test-defrag");
    assert!(
        what.starts_with("defragmented (Succeeded)") && what.contains("test-0"),
        "{what}"
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
    let written = writer.finish();
    println!("writer while the pod was away: {}", written.summary());
    // One member: writes wait (or fail) while it is away; only the
    // acknowledged ones count.
    assert!(
        written.acked.len() > 10,
        "the writer got too few writes through"
    );
    let acked = written.acked;
    assert_none_lost(node, NS, &endpoint, &acked);

    // (d) The pod and its volume deleted: the member is rebuilt from the
    // bucket with every write acknowledged before the last delta snapshot.
    // The last delta through an EtcdOpsTask: Succeeded means it is in the
    // bucket (the restore below loses nothing acknowledged before it).
    let before = bucket(minio, "etcd-test/v2/").len();
    let delta = ops_task_manifest("test-delta", "onDemandSnapshot: {type: delta}");
    let what = run_ops_task(node, NS, &delta, "test-delta");
    assert!(what.starts_with("delta snapshot "), "{what}");
    assert!(bucket(minio, "etcd-test/v2/").len() > before, "{what}");
    let lost_at = Instant::now();
    lose_volume_of_test_0(node, NS);
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

    // (h) The Etcd deleted: a final full snapshot goes to the bucket
    // first, then its pods, claims (pvcRetentionPolicy: DeleteAll), leases
    // and the Secret's finalizer go.
    let finals_before = bucket(minio, "etcd-test/v2/")
        .iter()
        .filter(|o| o.ends_with(".final"))
        .count();
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
    let finals: Vec<String> = bucket(minio, "etcd-test/v2/")
        .into_iter()
        .filter(|o| o.ends_with(".final"))
        .collect();
    assert_eq!(
        finals.len(),
        finals_before + 1,
        "no final full snapshot before the volumes went: {finals:?}"
    );
    let taken = jsonpath(
        node,
        &["-n", NS, "get", "events.events.k8s.io"],
        r#"{range .items[?(@.reason=="FinalSnapshotTaken")]}{.note}{end}"#,
    )
    .unwrap();
    assert!(
        finals
            .iter()
            .any(|f| taken.contains(f.rsplit('/').next().unwrap_or(f))),
        "the FinalSnapshotTaken event does not name the snapshot: {taken:?} {finals:?}"
    );
}

/// Asks test-0's sidecar in `ns` for a delta snapshot now.
fn take_delta_snapshot(node: &Node, ns: &str) {
    let pod_ip = jsonpath(node, &["-n", ns, "get", "pod", "test-0"], "{.status.podIP}").unwrap();
    let (status, body) =
        druid_test_support::http_get(&format!("http://{pod_ip}:8080/snapshot/delta")).unwrap();
    assert_eq!(status, 200, "on-demand delta snapshot: {body}");
}

/// An EtcdOpsTask `name` of the Etcd `test` with `config` (one line of
/// YAML flow style).
fn ops_task_manifest(name: &str, config: &str) -> String {
    format!(
        "apiVersion: druid.gardener.cloud/v1alpha1\nkind: EtcdOpsTask\nmetadata:\n  name: {name}\nspec:\n  etcdName: test\n  config:\n    {config}\n"
    )
}

/// Applies the EtcdOpsTask `manifest` (named `name`) in `ns` once the
/// Etcd is Ready, waits until it succeeded, and returns what its
/// `lastOperation` says was done.
fn run_ops_task(node: &Node, ns: &str, manifest: &str, name: &str) -> String {
    wait_for(
        node,
        ns,
        "Etcd test is Ready",
        Duration::from_secs(120),
        || etcd_ready(node, ns),
    );
    node.kubectl_stdin(
        &["-n", ns, "apply", "--validate=strict", "-f", "-"],
        manifest,
    )
    .unwrap();
    let started = Instant::now();
    let state = wait_for(
        node,
        ns,
        &format!("EtcdOpsTask {name} finished"),
        Duration::from_secs(300),
        || {
            let state = jsonpath(
                node,
                &["-n", ns, "get", "etcdopstask", name],
                "{.status.state}",
            )?;
            Ok(["Succeeded", "Failed", "Rejected"]
                .contains(&state.as_str())
                .then_some(state))
        },
    );
    let status = jsonpath(node, &["-n", ns, "get", "etcdopstask", name], "{.status}").unwrap();
    assert_eq!(state, "Succeeded", "EtcdOpsTask {name}: {status}");
    println!(
        "EtcdOpsTask {name}: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    jsonpath(
        node,
        &["-n", ns, "get", "etcdopstask", name],
        "{.status.lastOperation.description}",
    )
    .unwrap()
}

/// Deletes pod `test-0` of `ns` and its claim, and waits until it is Ready
/// on a new volume (restored from the store).
fn lose_volume_of_test_0(node: &Node, ns: &str) {
    let claim = jsonpath(
        node,
        &["-n", ns, "get", "pod", "test-0"],
        "{.spec.volumes[?(@.persistentVolumeClaim)].persistentVolumeClaim.claimName}",
    )
    .unwrap();
    assert!(!claim.is_empty(), "pod test-0 has no claim");
    let claim_uid = jsonpath(node, &["-n", ns, "get", "pvc", &claim], "{.metadata.uid}").unwrap();
    node.kubectl_ok(&["-n", ns, "delete", "pvc", &claim, "--wait=false"])
        .unwrap();
    node.kubectl_ok(&["-n", ns, "delete", "pod", "test-0", "--wait=false"])
        .unwrap();
    wait_for(
        node,
        ns,
        "test-0 is Ready on a new volume",
        Duration::from_secs(300),
        || {
            let uid = jsonpath(node, &["-n", ns, "get", "pvc", &claim], "{.metadata.uid}")?;
            let ready = pod_ready(node, ns, "test-0")?;
            Ok((!uid.is_empty() && uid != claim_uid && ready == "True").then_some(()))
        },
    );
}

/// The founding manifest in namespace `ns` with `replicas` members, its
/// own store prefix, and smaller requests so that three members fit the
/// node.
fn seed_variant(ns: &str, replicas: u32) -> String {
    let seed = std::fs::read_to_string(repo_root().join("deploy/samples/seed-etcd.yaml")).unwrap();
    let variant = seed
        .replace("namespace: demo", &format!("namespace: {ns}"))
        .replace("replicas: 1", &format!("replicas: {replicas}"))
        .replace("storePrefix: etcd-test", &format!("storePrefix: etcd-{ns}"))
        // Only etcd's requests: the sidecar keeps the seed's 500m limit
        // (replacing every `cpu: 500m` once capped it at 100m, and the
        // 1 GiB figures of stops 34-38 were taken so).
        .replace(
            "requests:\n        cpu: 500m\n        memory: 1000Mi",
            "requests:\n        cpu: 100m\n        memory: 200Mi",
        );
    assert!(
        variant.contains(&format!("replicas: {replicas}"))
            && variant.contains(&format!("storePrefix: etcd-{ns}"))
            && variant.contains("cpu: 100m")
            && variant.matches("cpu: 500m").count() == 1,
        "the founding manifest changed shape:\n{variant}"
    );
    variant
}

#[test]
fn three_replicas_form_one_cluster_that_serves_backs_up_and_rebuilds_a_lost_member() {
    const THREE: &str = "three";
    let _serial = serial();
    let (node, minio) = cluster();
    let _cleanup = Cleanup { node, ns: THREE };
    namespace_with_store(node, minio, THREE);
    let applied = Instant::now();
    node.kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &seed_variant(THREE, 3),
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
    let written = writer.finish();
    println!("writer on 3 members: {}", written.summary());
    written.assert_no_failed_write(node, THREE);
    assert_eq!(
        written.retried, 0,
        "a healthy 3-member cluster refused writes"
    );
    assert_none_lost(node, THREE, &endpoint, &written.acked);
    // With DRUID_NODE_PRELOAD_MIB, the operations below run on that much
    // data (the figures of a 3-member cluster with 1 GiB).
    preload(&endpoint);

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
        slow_with_preload(300),
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
    let written = writer.finish();
    println!("writer while test-2 was rebuilt: {}", written.summary());
    written.assert_no_failed_write(node, THREE);
    let acked = written.acked;
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
        slow_with_preload(60),
        || {
            let count = with_client(&format!("http://{member_ip}:2379"), async |c| {
                let options = etcd_client::GetOptions::new().with_serializable();
                Ok(c.get(newest.as_str(), Some(options)).await?.count())
            })?;
            if count == 1 {
                Ok(Some(()))
            } else {
                Err(format!("{newest} not on test-2 yet"))
            }
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

    // (d) Two of three members lost for good (claims and pods deleted):
    // no quorum, and the new pods cannot rejoin a cluster without one.
    // The operator restores the cluster from the backup, with druid's
    // pods killed mid-recovery. Every write up to the last delta snapshot
    // is there afterwards.
    let restore_args = with_operator_args(
        node,
        &[
            "--member-unknown-seconds=5",
            "--member-not-ready-seconds=5",
            "--quorum-loss-recovery-seconds=20",
        ],
    );
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(5));
    let written = writer.finish();
    written.assert_no_failed_write(node, THREE);
    let mut acked = acked;
    acked.extend(written.acked);
    let ip0 = jsonpath(
        node,
        &["-n", THREE, "get", "pod", "test-0"],
        "{.status.podIP}",
    )
    .unwrap();
    // The store must hold the last write's revision, not just one more
    // delta: after a preload the deltas take minutes to catch up (the
    // sidecar's CPU limit), and a recovery before that loses what they
    // have not reached (a 1 GiB run restored revision 16,001 of 107,455,
    // and the operator's report said so).
    let last = with_client(&endpoint, async |c| {
        Ok(c.get("/e2e/", None)
            .await?
            .header()
            .map_or(0, |h| h.revision()))
    })
    .unwrap();
    wait_for(
        node,
        THREE,
        &format!("the store holds the last write (revision {last})"),
        slow_with_preload(120),
        || {
            let _ = druid_test_support::http_get(&format!("http://{ip0}:8080/snapshot/delta"));
            let (_, body) =
                druid_test_support::http_get(&format!("http://{ip0}:8080/snapshot/latest"))?;
            let latest: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            let stored = latest["deltaSnapshots"]
                .as_array()
                .and_then(|d| d.last())
                .unwrap_or(&latest["fullSnapshot"])["lastRevision"]
                .as_i64()
                .unwrap_or(0);
            if stored >= last {
                Ok(Some(()))
            } else {
                Err(format!("the store is at revision {stored}"))
            }
        },
    );
    let lost_at = Instant::now();
    for i in [1, 2] {
        node.kubectl_ok(&[
            "-n",
            THREE,
            "delete",
            "pvc",
            &format!("test-test-{i}"),
            "--wait=false",
        ])
        .unwrap();
    }
    node.kubectl_ok(&[
        "-n",
        THREE,
        "delete",
        "pod",
        "test-1",
        "test-2",
        "--wait=false",
        "--grace-period=0",
        "--force",
    ])
    .unwrap();
    wait_for(
        node,
        THREE,
        "QuorumLost=True",
        Duration::from_secs(300),
        || Ok((etcd_condition(node, THREE, "QuorumLost", "status")? == "True").then_some(())),
    );
    println!(
        "two members lost to QuorumLost: {:.1}s",
        lost_at.elapsed().as_secs_f64()
    );
    wait_for(
        node,
        THREE,
        "the recovery records its first step",
        Duration::from_secs(300),
        || {
            let record = sts_annotation(node, THREE, "quorum-loss-recovery")?;
            Ok((!record.is_empty()).then_some(()))
        },
    );
    println!(
        "two members lost to the recovery's start: {:.1}s",
        lost_at.elapsed().as_secs_f64()
    );
    kill_operator(node).unwrap();
    println!("the operator's pods killed mid-recovery");
    wait_for(
        node,
        THREE,
        "QuorumLost=False/RecoverySucceeded",
        slow_with_preload(600),
        || {
            Ok(
                (etcd_condition(node, THREE, "QuorumLost", "reason")? == "RecoverySucceeded")
                    .then_some(()),
            )
        },
    );
    println!(
        "two members lost to member 0 restored: {:.1}s",
        lost_at.elapsed().as_secs_f64()
    );
    wait_for_members(node, THREE, 3, slow_with_preload(420));
    println!(
        "two members lost to a Ready 3-member cluster again: {:.1}s",
        lost_at.elapsed().as_secs_f64()
    );
    for reason in [
        "QuorumLost",
        "QuorumLossRecoveryStarted",
        "QuorumLossRecoveryRestoring",
        "QuorumLossRecovered",
    ] {
        wait_for_event(node, THREE, reason);
    }
    let message = etcd_condition(node, THREE, "QuorumLost", "message").unwrap();
    println!("QuorumLost: {message}");
    assert!(message.contains("up to revision"), "{message}");
    // test-0 reported its revision until it stopped: every write was in
    // the last delta snapshot, so the report says none is lost.
    assert!(message.contains("no revision is lost"), "{message}");
    let log = node
        .kubectl_ok(&["-n", THREE, "logs", "test-0", "-c", "backup-restore"])
        .unwrap();
    assert!(
        log.contains("restoring from the store"),
        "test-0 was not restored from the store:\n{log}"
    );
    assert_none_lost(node, THREE, &endpoint, &acked);
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(5));
    let written = writer.finish();
    println!("writer after the recovery: {}", written.summary());
    written.assert_no_failed_write(node, THREE);
    acked.extend(written.acked);
    restore_args();

    // (e) Hibernate, lose all three claims while asleep, wake up: the
    // three members restore the same final full snapshot with the same
    // initial cluster, so they form one cluster again, with every write.
    let hibernating = Instant::now();
    patch_etcd(node, THREE, r#"{"spec":{"replicas":0}}"#);
    wait_hibernated(node, THREE);
    println!(
        "hibernation of 3 members (final full snapshot, then 0 replicas): {:.1}s",
        hibernating.elapsed().as_secs_f64()
    );
    node.kubectl_ok(&[
        "-n",
        THREE,
        "delete",
        "pvc",
        "test-test-0",
        "test-test-1",
        "test-test-2",
        "--wait=true",
    ])
    .unwrap();
    let woke = Instant::now();
    patch_etcd(node, THREE, r#"{"spec":{"replicas":3}}"#);
    wait_for_members(node, THREE, 3, slow_with_preload(420));
    println!(
        "wake-up of 3 members without their claims (restored from the final snapshot): {:.1}s",
        woke.elapsed().as_secs_f64()
    );
    assert_one_cluster(node, THREE, &endpoint, 3);
    assert_none_lost(node, THREE, &endpoint, &acked);

    // (f) The Etcd deleted (its claims go with it: DeleteAll) and created
    // again on the same store prefix: member 0 starts alone and restores
    // the earlier cluster's backups, then the others join, with every
    // write (started together without data, they would found an empty
    // cluster).
    let deleting = Instant::now();
    delete_etcd(node, THREE);
    wait_for(
        node,
        THREE,
        "the Etcd object is gone (its finalizer removed)",
        Duration::from_secs(120),
        || {
            let left = node
                .kubectl_ok(&["-n", THREE, "get", "etcd", "-o", "name"])
                .map_err(|e| e.to_string())?;
            Ok(left.trim().is_empty().then_some(()))
        },
    );
    println!(
        "deletion of 3 members with DeleteAll (final full snapshot, pods, claims): {:.1}s",
        deleting.elapsed().as_secs_f64()
    );
    let created = Instant::now();
    node.kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &seed_variant(THREE, 3),
    )
    .unwrap();
    wait_for_members(node, THREE, 3, slow_with_preload(420));
    println!(
        "a new 3-member Etcd on the earlier cluster's backups, to 3 members: {:.1}s",
        created.elapsed().as_secs_f64()
    );
    // This Etcd's events (the first one's stay in the namespace).
    let uid = jsonpath(
        node,
        &["-n", THREE, "get", "etcd", "test"],
        "{.metadata.uid}",
    )
    .unwrap();
    let events = jsonpath(
        node,
        &["-n", THREE, "get", "events"],
        &format!("{{.items[?(@.involvedObject.uid==\"{uid}\")].reason}}"),
    )
    .unwrap();
    for reason in ["StartingMemberZeroFirst", "MemberZeroStarted"] {
        assert!(events.contains(reason), "no {reason} event: {events}");
    }
    let endpoint = client_endpoint(node, THREE);
    assert_one_cluster(node, THREE, &endpoint, 3);
    assert_none_lost(node, THREE, &endpoint, &acked);

    delete_etcd(node, THREE);
}

/// Asserts that the `n` members answer with one cluster ID and that the
/// membership has `n` members.
fn assert_one_cluster(node: &Node, ns: &str, endpoint: &str, n: usize) {
    let ids: std::collections::BTreeSet<String> = member_ips(node, ns, n)
        .iter()
        .map(|ip| {
            with_client(&format!("http://{ip}:2379"), async |c| {
                let s = c.status().await?;
                Ok(format!("{:x}", s.header().map_or(0, |h| h.cluster_id())))
            })
            .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "the members are not one cluster: {ids:?}");
    let members = with_client(endpoint, async |c| {
        Ok(c.member_list().await?.members().len())
    })
    .unwrap();
    assert_eq!(members, n, "the cluster has {members} members, not {n}");
}

/// Restarts the operator with `extra` flags; the returned closure puts
/// the flags of deploy/operator back (and waits for that rollout too).
fn with_operator_args(node: &'static Node, extra: &[&str]) -> impl FnOnce() {
    let original = node
        .kubectl_ok(&[
            "-n",
            "druid-system",
            "get",
            "deployment",
            "druid",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ])
        .unwrap();
    let original: Vec<String> = serde_json::from_str(&original).unwrap();
    let set = move |args: &[String]| {
        replace_in_operator(
            node,
            "/spec/template/spec/containers/0/args",
            serde_json::json!(args),
        )
        .unwrap();
    };
    let mut changed = original.clone();
    changed.extend(extra.iter().map(|a| (*a).to_string()));
    set(&changed);
    move || set(&original)
}

/// Replaces the field at `path` (a JSON pointer) of the operator's
/// Deployment with `value` and waits for the rollout.
fn replace_in_operator(
    node: &Node,
    path: &str,
    value: serde_json::Value,
) -> Result<String, druid_test_support::Error> {
    let patch = serde_json::json!([{ "op": "replace", "path": path, "value": value }]);
    node.kubectl_ok(&[
        "-n",
        "druid-system",
        "patch",
        "deployment",
        "druid",
        "--type=json",
        "-p",
        &patch.to_string(),
    ])?;
    OperatorTemplate::rollout(node)
}

/// Kills both operator pods at once, without grace (`--force`): their
/// successors must resume whatever step was under way.
fn kill_operator(node: &Node) -> Result<(), String> {
    node.kubectl_ok(&[
        "-n",
        "druid-system",
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/name=druid",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ])
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// StatefulSet test's annotation `druid.gardener.cloud/<key>` ("" when
/// it has none).
fn sts_annotation(node: &Node, ns: &str, key: &str) -> Result<String, String> {
    jsonpath(
        node,
        &["-n", ns, "get", "statefulset", "test"],
        &format!(r#"{{.metadata.annotations.druid\.gardener\.cloud/{key}}}"#),
    )
}

/// Merge-patches Etcd `test` in `ns`.
fn patch_etcd(node: &Node, ns: &str, patch: &str) {
    node.kubectl_ok(&[
        "-n",
        ns,
        "patch",
        "etcd",
        "test",
        "--type=merge",
        "-p",
        patch,
    ])
    .unwrap();
}

/// Deletes Etcd `test` in `ns` when dropped, also when the test fails, so
/// that a failed test does not leave its pods on the node for the next.
struct Cleanup {
    node: &'static Node,
    ns: &'static str,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ =
                self.node
                    .kubectl_ok(&["-n", self.ns, "delete", "etcd", "test", "--wait=false"]);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(180) {
                let left = self
                    .node
                    .kubectl_ok(&["-n", self.ns, "get", "pod", "-o", "name"])
                    .unwrap_or_default();
                if left.trim().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Deletes Etcd `test` in `ns` and waits until its pods and claims are
/// gone, so that the next test has the node to itself.
fn delete_etcd(node: &Node, ns: &str) {
    node.kubectl_ok(&["-n", ns, "delete", "etcd", "test", "--wait=false"])
        .unwrap();
    wait_for(
        node,
        ns,
        "the cluster is gone",
        slow_with_preload(300),
        || {
            let left = node
                .kubectl_ok(&["-n", ns, "get", "statefulset,pod,pvc", "-o", "name"])
                .map_err(|e| e.to_string())?;
            if left.trim().is_empty() {
                Ok(Some(()))
            } else {
                Err(format!("still there: {}", left.replace('\n', " ")))
            }
        },
    );
}

/// Runs `f` with an etcd client on `endpoint` on a runtime of its own.
fn with_client<T>(
    endpoint: &str,
    f: impl AsyncFnOnce(&mut etcd_client::Client) -> Result<T, etcd_client::Error>,
) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(60));
        let mut c = etcd_client::Client::connect([endpoint], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        f(&mut c).await.map_err(|e| e.to_string())
    })
}

/// The etcd container's image in pod `pod`.
fn etcd_image(node: &Node, ns: &str, pod: &str) -> Result<String, String> {
    jsonpath(
        node,
        &["-n", ns, "get", "pod", pod],
        r#"{.spec.containers[?(@.name=="etcd")].image}"#,
    )
}

/// Which of test-0..2 run an etcd image that `matches`.
fn pods_whose_image(node: &Node, ns: &str, matches: impl Fn(&str) -> bool) -> Vec<String> {
    (0..3)
        .map(|i| format!("test-{i}"))
        .filter(|p| etcd_image(node, ns, p).is_ok_and(|i| matches(&i)))
        .collect()
}

/// Sets the etcd image's tag back to [`ROLLED_TAG`] and waits (as `what`)
/// until every member of three is updated and ready.
fn roll_to_rolled_tag(node: &Node, ns: &str, what: &str) {
    patch_etcd(
        node,
        ns,
        &format!(r#"{{"spec":{{"etcd":{{"imageVersion":"{ROLLED_TAG}"}}}}}}"#),
    );
    wait_for(node, ns, what, Duration::from_secs(300), || {
        let updated = etcd_condition(node, ns, "AllMembersUpdated", "status")?;
        Ok((updated == "True" && statefulset_settled(node, ns, 3)?).then_some(()))
    });
    wait_for_members(node, ns, 3, Duration::from_secs(180));
}

/// Our etcd image of the next etcd minor version, imported into the node.
struct NextEtcdImage {
    /// Its reference (`ghcr.io/druid-rs/etcd:<version>-etcd3.6.17`).
    reference: String,
    /// The etcd version inside (`3.6.17`).
    etcd_version: String,
}

impl NextEtcdImage {
    /// `3.6`.
    fn minor(&self) -> String {
        let mut parts = self.etcd_version.split('.');
        format!(
            "{}.{}",
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default()
        )
    }

    /// The cluster version etcd reports once every member runs it
    /// (`3.6.0`).
    fn cluster_version(&self) -> String {
        format!("{}.0", self.minor())
    }
}

/// Imports [`NEXT_IMAGES`]'s etcd image into the node.
fn next_etcd_image(node: &Node) -> NextEtcdImage {
    let dir = repo_root().join(NEXT_IMAGES);
    let tar = dir.join("etcd.tar");
    assert!(
        tar.is_file(),
        "{} is missing: build it with scripts/build-images.sh --profile dev --etcd-version v3.6.17 --out {NEXT_IMAGES}",
        tar.display()
    );
    node.import_images(std::slice::from_ref(&tar)).unwrap();
    let reference = std::fs::read_to_string(dir.join("etcd.ref"))
        .unwrap()
        .trim()
        .to_string();
    let etcd_version = reference
        .rsplit_once("-etcd")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("{reference} does not name its etcd version (-etcd<version>)"));
    NextEtcdImage {
        reference,
        etcd_version,
    }
}

/// What the member at `ip` answers on etcd's `/version`: its own version
/// and the cluster's.
fn etcd_versions(ip: &str) -> Result<(String, String), String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect((ip, 2379)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /version HTTP/1.1\r\nHost: {ip}:2379\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| format!("no HTTP body in {answer:?}"))?;
    let json: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| format!("{e}: {body:?}"))?;
    let field = |name: &str| json[name].as_str().unwrap_or_default().to_string();
    Ok((field("etcdserver"), field("etcdcluster")))
}

/// The pod IPs of test-0 .. test-{n-1}.
fn member_ips(node: &Node, ns: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            jsonpath(
                node,
                &["-n", ns, "get", "pod", &format!("test-{i}")],
                "{.status.podIP}",
            )
            .unwrap()
        })
        .collect()
}

/// Each member's database size (bytes), asked of the member itself.
fn db_sizes(ips: &[String]) -> Vec<i64> {
    ips.iter()
        .map(|ip| {
            with_client(&format!("http://{ip}:2379"), async |c| {
                Ok(c.status().await?.db_size())
            })
            .unwrap()
        })
        .collect()
}

/// Waits until all `n` pods of Etcd `test` in `ns` are Ready and the Etcd
/// reports `n` members with one leader and Ready.
fn wait_for_members(node: &Node, ns: &str, n: usize, timeout: Duration) {
    for i in 0..n {
        let pod = format!("test-{i}");
        wait_for(node, ns, &format!("pod {pod} is Ready"), timeout, || {
            let ready = pod_ready(node, ns, &pod)?;
            Ok((ready == "True").then_some(()))
        });
    }
    wait_for(
        node,
        ns,
        &format!("Etcd test is Ready with {n} members and one leader"),
        timeout,
        || {
            etcd_ready(node, ns)?.ok_or("Etcd not Ready")?;
            let roles = jsonpath(
                node,
                &["-n", ns, "get", "etcd", "test"],
                "{.status.members[*].role}",
            )?;
            let leaders = roles.split_whitespace().filter(|r| *r == "Leader").count();
            Ok((roles.split_whitespace().count() == n && leaders == 1).then_some(()))
        },
    );
}

#[test]
fn one_member_scales_to_three_rolls_defragments_scales_to_five_and_back_to_one_without_a_failed_write()
 {
    const SCALE: &str = "scale";
    let _serial = serial();
    let (node, minio) = cluster();
    let _cleanup = Cleanup { node, ns: SCALE };
    namespace_with_store(node, minio, SCALE);
    node.kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &seed_variant(SCALE, 1),
    )
    .unwrap();
    wait_for_members(node, SCALE, 1, Duration::from_secs(300));
    let endpoint = client_endpoint(node, SCALE);

    // (e) Scale 1 -> 3 while the writer runs: each new member joins as a
    // learner and is promoted; no write fails.
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(5));
    scale_out(node, SCALE, 1, 3);
    std::thread::sleep(Duration::from_secs(5));
    let written = writer.finish();
    println!("writer during scale 1 -> 3: {}", written.summary());
    written.assert_no_failed_write(node, SCALE);
    assert_none_lost(node, SCALE, &endpoint, &written.acked);
    let learners = with_client(&endpoint, async |c| {
        let members = c.member_list().await?;
        Ok(members
            .members()
            .iter()
            .filter(|m| m.is_learner())
            .map(|m| m.name().to_string())
            .collect::<Vec<_>>())
    })
    .unwrap();
    assert!(
        learners.is_empty(),
        "still learners after the scale-up: {learners:?}"
    );
    preload(&endpoint);

    // (f) An image change that upgrades etcd to the next minor version
    // (our etcd image built with it, under another tag): the operator
    // replaces the members one at a time, followers first and the leader
    // last (seen on the member leases), each once although the operator
    // is killed after the first, quorum held, no write fails; then every
    // member runs the new version and the cluster moves to it.
    let next = next_etcd_image(node);
    node.tag_image(&next.reference, ROLLED_ETCD_IMAGE).unwrap();
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(3));
    let rolled = Instant::now();
    let mut watch = RollWatch::start(node, SCALE);
    patch_etcd(
        node,
        SCALE,
        &format!(r#"{{"spec":{{"etcd":{{"imageVersion":"{ROLLED_TAG}"}}}}}}"#),
    );
    let mut fewest_ready = 3;
    let mut killed = false;
    wait_for(
        node,
        SCALE,
        "the roll to the new image is done",
        Duration::from_secs(600),
        || {
            watch.sample(node, SCALE)?;
            // The operator killed mid-roll (both replicas, no grace):
            // its successor resumes from the pods and the leases.
            if watch.replaced.len() == 1 && !killed {
                kill_operator(node)?;
                println!("the operator's pods killed after the first member was replaced");
                killed = true;
            }
            let ready = (0..3)
                .filter(|i| pod_ready(node, SCALE, &format!("test-{i}")).is_ok_and(|r| r == "True"))
                .count();
            fewest_ready = fewest_ready.min(ready);
            let updated = etcd_condition(node, SCALE, "AllMembersUpdated", "status")?;
            Ok((watch.replaced.len() == 3
                && updated == "True"
                && statefulset_settled(node, SCALE, 3)?)
            .then_some(()))
        },
    );
    wait_for_members(node, SCALE, 3, Duration::from_secs(180));
    println!(
        "roll of 3 members to a new image: {:.1}s, fewest members ready during it: {fewest_ready}; \
         replaced in order (role last seen): {:?}; leaders seen: {:?}",
        rolled.elapsed().as_secs_f64(),
        watch.replaced,
        watch.leaders
    );
    std::thread::sleep(Duration::from_secs(3));
    let written = writer.finish();
    println!("writer during the roll: {}", written.summary());
    written.assert_no_failed_write(node, SCALE);
    assert!(
        fewest_ready >= 2,
        "quorum lost during the roll: only {fewest_ready} of 3 members ready at one point"
    );
    assert_none_lost(node, SCALE, &endpoint, &written.acked);
    watch.assert_leader_last();
    for i in 0..3 {
        let image = etcd_image(node, SCALE, &format!("test-{i}")).unwrap();
        assert_eq!(
            image, ROLLED_ETCD_IMAGE,
            "test-{i} does not run the new image"
        );
    }
    let operation = jsonpath(
        node,
        &["-n", SCALE, "get", "etcd", "test"],
        "{.status.lastOperation.state} {.status.lastOperation.description}",
    )
    .unwrap();
    assert!(
        operation.starts_with("Succeeded"),
        "lastOperation after the roll: {operation}"
    );
    let ips = member_ips(node, SCALE, 3);
    let upgraded = wait_for(
        node,
        SCALE,
        "the cluster runs and reports the next etcd version",
        Duration::from_secs(60),
        || {
            let versions = ips
                .iter()
                .map(|ip| etcd_versions(ip))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(versions
                .iter()
                .all(|(server, cluster)| {
                    server == &next.etcd_version && *cluster == next.cluster_version()
                })
                .then_some(versions))
        },
    );
    println!("etcd versions after the upgrade (server, cluster): {upgraded:?}");

    // (f2) An image that cannot be pulled: the first member replaced
    // never becomes healthy, the roll stops there with UpdateStalled (the
    // other two keep the quorum and keep serving), and fixing the spec
    // replaces the broken member first.
    let writer = Writer::start(endpoint.clone());
    patch_etcd(
        node,
        SCALE,
        r#"{"spec":{"etcd":{"imageVersion":"v0.0.0-does-not-exist"}}}"#,
    );
    let stalled = wait_for(
        node,
        SCALE,
        "the roll stops at the member that cannot pull its image",
        Duration::from_secs(300),
        || {
            let reason = etcd_condition(node, SCALE, "AllMembersUpdated", "reason")?;
            let message = etcd_condition(node, SCALE, "AllMembersUpdated", "message")?;
            Ok((reason == "UpdateStalled").then_some(message))
        },
    );
    println!("the stalled roll: {stalled}");
    assert!(
        stalled.contains("ErrImagePull") || stalled.contains("ImagePullBackOff"),
        "the condition does not say why: {stalled}"
    );
    // It stays stopped: one member on the broken template, two ready.
    std::thread::sleep(Duration::from_secs(20));
    let broken = pods_whose_image(node, SCALE, |i| i.ends_with("v0.0.0-does-not-exist"));
    let ready = (0..3)
        .filter(|i| pod_ready(node, SCALE, &format!("test-{i}")).is_ok_and(|r| r == "True"))
        .count();
    assert_eq!(
        broken.len(),
        1,
        "the roll went past a member that never became healthy: {broken:?}"
    );
    assert_eq!(ready, 2, "the two members not replaced should stay ready");
    assert!(
        stalled.contains(&broken[0]),
        "the condition does not name {}: {stalled}",
        broken[0]
    );
    wait_for_event(node, SCALE, "UpdateStalled");
    let fixed = Instant::now();
    roll_to_rolled_tag(node, SCALE, "the broken member is replaced after the fix");
    println!(
        "recovery from the stalled roll: {:.1}s",
        fixed.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let written = writer.finish();
    println!("writer during the stalled roll: {}", written.summary());
    written.assert_no_failed_write(node, SCALE);
    assert_none_lost(node, SCALE, &endpoint, &written.acked);

    // (f3) Back to the older etcd (the seed's tag) after the cluster moved
    // on: the first member replaced does not start etcd on its data (its
    // sidecar says why), the roll goes no further, the other two serve
    // without a failed write; forward again, the member comes back.
    let writer = Writer::start(endpoint.clone());
    patch_etcd(
        node,
        SCALE,
        r#"{"spec":{"etcd":{"imageVersion":"v0.1.0"}}}"#,
    );
    let (refused_pod, refusal) = wait_for(
        node,
        SCALE,
        "the member rolled back to the older etcd refuses its data",
        Duration::from_secs(300),
        || {
            for i in 0..3 {
                let pod = format!("test-{i}");
                if etcd_image(node, SCALE, &pod)? != SEED_ETCD_IMAGE {
                    continue;
                }
                let log = node
                    .kubectl_ok(&["-n", SCALE, "logs", &pod, "-c", "backup-restore"])
                    .unwrap_or_default();
                if let Some(line) = log
                    .lines()
                    .find(|l| l.contains("Nothing was changed and etcd is not started"))
                {
                    return Ok(Some((pod, line.to_string())));
                }
            }
            Ok(None)
        },
    );
    println!("{refused_pod} refused: {refusal}");
    assert!(
        refusal.contains(&format!("last run by etcd {}", next.minor()))
            && refusal.contains("this member's etcd is 3.5 (reported by the etcd-wrapper)"),
        "the refusal does not name the versions: {refusal}"
    );
    std::thread::sleep(Duration::from_secs(20));
    let back = pods_whose_image(node, SCALE, |i| i == SEED_ETCD_IMAGE);
    assert_eq!(
        back,
        vec![refused_pod.clone()],
        "the roll went past the member that refused"
    );
    assert_ne!(
        pod_ready(node, SCALE, &refused_pod).as_deref(),
        Ok("True"),
        "the member that refused its data is ready"
    );
    roll_to_rolled_tag(
        node,
        SCALE,
        "the refusing member is replaced by the newer etcd again",
    );
    std::thread::sleep(Duration::from_secs(3));
    let written = writer.finish();
    println!("writer while going back and forth: {}", written.summary());
    written.assert_no_failed_write(node, SCALE);
    assert_none_lost(node, SCALE, &endpoint, &written.acked);

    // (g) Defragmentation on the running 3-member cluster: 96 MiB written
    // and deleted, the history compacted, then a run triggered through a
    // sidecar (it forwards to the leader's): every member's database
    // shrinks and no write fails.
    let value = "x".repeat(1024 * 1024);
    with_client(&endpoint, async |c| {
        for i in 0..96 {
            c.put(format!("/bloat/{i:03}"), value.as_str(), None)
                .await?;
        }
        let deleted = c
            .delete(
                "/bloat/",
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await?;
        let revision = deleted.header().map_or(0, |h| h.revision());
        c.compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await?;
        Ok(())
    })
    .unwrap();
    let ips = member_ips(node, SCALE, 3);
    let bloated = db_sizes(&ips);
    println!("database sizes before defragmentation: {bloated:?}");
    assert!(
        bloated.iter().all(|s| *s > 96 * 1024 * 1024),
        "the members did not grow: {bloated:?}"
    );
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(3));
    let defrag_started = Instant::now();
    // Asked as a user does: the annotation on the Etcd. The operator asks
    // the backup leader's sidecar (whose Role grants nothing on its Etcd)
    // and removes the annotation once answered. The sidecar refuses while
    // a member is not healthy, as it must; on this 2-core node a member can
    // be slow right after 96 MiB of writes, so ask again, as the next
    // maintenance window would.
    let since =
        k8s_openapi::jiff::Timestamp::from_second(k8s_openapi::jiff::Timestamp::now().as_second())
            .unwrap();
    // The members' results since the start, from the Etcd's status.
    let members_defragmented = || -> Vec<String> {
        let out = jsonpath(
            node,
            &["-n", SCALE, "get", "etcd", "test"],
            "{range .status.members[*]}{.lastDefragmentation.time} {.lastDefragmentation.outcome}{\"\\n\"}{end}",
        )
        .unwrap_or_default();
        out.lines()
            .filter(|l| {
                l.split(' ')
                    .next()
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .is_some_and(|t| t >= since)
            })
            .map(ToString::to_string)
            .collect()
    };
    let mut attempt = 0;
    let outcomes = loop {
        attempt += 1;
        patch_etcd(
            node,
            SCALE,
            r#"{"metadata":{"annotations":{"druid.gardener.cloud/defragment":"now"}}}"#,
        );
        wait_for(
            node,
            SCALE,
            "the defragmentation request handled",
            Duration::from_secs(900),
            || {
                let annotations = jsonpath(
                    node,
                    &["-n", SCALE, "get", "etcd", "test"],
                    "{.metadata.annotations}",
                )?;
                Ok((!annotations.contains("druid.gardener.cloud/defragment\"")).then_some(()))
            },
        );
        // The members' results reach the status with the next status sync.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut outcomes = members_defragmented();
        while outcomes.len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(2));
            outcomes = members_defragmented();
        }
        if outcomes.len() == 3 && outcomes.iter().all(|o| o.ends_with("Defragmented"))
            || attempt == 10
        {
            break outcomes;
        }
        println!(
            "defragmentation not done (attempt {attempt}: {outcomes:?}), asking again in 10 s"
        );
        std::thread::sleep(Duration::from_secs(10));
    };
    println!(
        "defragmentation of 3 members: {:.1}s: {outcomes:?}",
        defrag_started.elapsed().as_secs_f64()
    );
    assert!(
        outcomes.len() == 3 && outcomes.iter().all(|o| o.ends_with("Defragmented")),
        "defragmentation did not succeed: {outcomes:?}\n{}",
        node.report(SCALE)
    );
    // The operator published the run's summary as an event on the Etcd.
    wait_for_event(node, SCALE, "DefragmentationSucceeded");
    std::thread::sleep(Duration::from_secs(3));
    let written = writer.finish();
    println!("writer during defragmentation: {}", written.summary());
    written.assert_no_failed_write(node, SCALE);
    assert_none_lost(node, SCALE, &endpoint, &written.acked);
    let defragmented = db_sizes(&ips);
    println!("database sizes after defragmentation: {defragmented:?}");
    for (before, after) in bloated.iter().zip(&defragmented) {
        assert!(
            before - after > 64 * 1024 * 1024,
            "a member's database did not shrink by the 96 MiB deleted: {bloated:?} -> {defragmented:?}"
        );
    }

    // (g2) 3 -> 5 -> 3 while the writer runs: two learners join and are
    // promoted, then the two highest ordinals leave one at a time; the
    // membership, the member leases and the PDB follow the replicas, and
    // no write fails or is lost.
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(3));
    scale_out(node, SCALE, 3, 5);
    let members = |n: usize| {
        let names = with_client(&endpoint, async |c| {
            Ok(c.member_list()
                .await?
                .members()
                .iter()
                .map(|m| (m.name().to_string(), m.is_learner()))
                .collect::<Vec<_>>())
        })
        .unwrap();
        let mut names: Vec<String> = names
            .into_iter()
            .map(|(n, learner)| if learner { format!("{n} (learner)") } else { n })
            .collect();
        names.sort();
        let wanted: Vec<String> = (0..n).map(|i| format!("test-{i}")).collect();
        assert_eq!(names, wanted, "the membership does not match {n} replicas");
    };
    members(5);
    let shrunk = Instant::now();
    patch_etcd(node, SCALE, r#"{"spec":{"replicas":3}}"#);
    // Both operator pods killed once the first member is leaving (its
    // step recorded on the StatefulSet): the new leader resumes the
    // scale-in without a second removal (the membership is checked
    // below).
    let leaving = wait_for(
        node,
        SCALE,
        "the first member is leaving",
        Duration::from_secs(120),
        || {
            let ordinal = sts_annotation(node, SCALE, "scale-in-leaving-ordinal")?;
            Ok((!ordinal.is_empty()).then_some(ordinal))
        },
    );
    kill_operator(node).unwrap();
    println!("the operator's pods killed while ordinal {leaving} was leaving");
    wait_for(
        node,
        SCALE,
        "the scale-in to 3 members is done",
        Duration::from_secs(600),
        || {
            let done = etcd_condition(node, SCALE, "MembersScaledIn", "reason")?;
            let leases = jsonpath(
                node,
                &["-n", SCALE, "get", "lease"],
                "{.items[*].metadata.name}",
            )?;
            let leases: Vec<&str> = leases.split_whitespace().collect();
            Ok((done == "ScaleInSucceeded"
                && statefulset_settled(node, SCALE, 3)?
                && !leases.contains(&"test-3")
                && !leases.contains(&"test-4"))
            .then_some(()))
        },
    );
    wait_for_members(node, SCALE, 3, Duration::from_secs(180));
    println!("scale 5 -> 3: {:.1}s", shrunk.elapsed().as_secs_f64());
    members(3);
    let min_available = jsonpath(
        node,
        &["-n", SCALE, "get", "pdb", "test"],
        "{.spec.minAvailable}",
    )
    .unwrap();
    assert_eq!(
        min_available, "2",
        "the PodDisruptionBudget does not keep a quorum of 3"
    );
    std::thread::sleep(Duration::from_secs(3));
    let written = writer.finish();
    println!("writer during scale 3 -> 5 -> 3: {}", written.summary());
    written.assert_no_failed_write(node, SCALE);
    assert_none_lost(node, SCALE, &endpoint, &written.acked);

    // (h) Scale 3 -> 2 while the writer runs: test-2 leaves after
    // leadership moved off it and its pod stopped gracefully; no write
    // fails or is lost.
    let scale_in = |to: usize| {
        let writer = Writer::start(endpoint.clone());
        std::thread::sleep(Duration::from_secs(3));
        let shrunk = Instant::now();
        patch_etcd(node, SCALE, &format!(r#"{{"spec":{{"replicas":{to}}}}}"#));
        wait_for(
            node,
            SCALE,
            &format!("the scale-in to {to} member(s) is done"),
            Duration::from_secs(600),
            || {
                let done = etcd_condition(node, SCALE, "MembersScaledIn", "reason")?;
                Ok(
                    (done == "ScaleInSucceeded" && statefulset_settled(node, SCALE, to)?)
                        .then_some(()),
                )
            },
        );
        wait_for_members(node, SCALE, to, Duration::from_secs(180));
        println!(
            "scale {} -> {to}: {:.1}s",
            to + 1,
            shrunk.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(3));
        let written = writer.finish();
        println!(
            "writer during scale {} -> {to}: {}",
            to + 1,
            written.summary()
        );
        assert_none_lost(node, SCALE, &endpoint, &written.acked);
        written
    };
    scale_in(2).assert_no_failed_write(node, SCALE);
    // (h') 2 -> 1: test-1 leaves while it runs (the other member alone
    // would have no quorum to remove it once stopped): the write in flight
    // on it, if any, fails with `raft: stopped` (never acknowledged, so
    // never lost); no other write fails.
    let written = scale_in(1);
    assert!(
        written.failed.len() <= 1 && written.failed.iter().all(|f| f.contains("raft: stopped")),
        "writes failed beyond the one in flight on the removed member: {:?}",
        written.failed
    );
    let left = with_client(&endpoint, async |c| {
        Ok(c.member_list()
            .await?
            .members()
            .iter()
            .map(|m| m.name().to_string())
            .collect::<Vec<_>>())
    })
    .unwrap();
    assert_eq!(left, ["test-0"], "the membership does not match 1 replica");
    let claims = jsonpath(
        node,
        &["-n", SCALE, "get", "pvc"],
        "{.items[*].metadata.name}",
    )
    .unwrap();
    assert_eq!(
        claims.split_whitespace().collect::<Vec<_>>(),
        ["test-test-0"],
        "the removed members' claims were not deleted (DeleteAll)"
    );
    let removed = jsonpath(
        node,
        &["-n", SCALE, "get", "events.events.k8s.io"],
        r#"{range .items[?(@.reason=="MemberRemoved")]}{.note}{"\n"}{end}"#,
    )
    .unwrap();
    assert!(
        removed.contains("test-2 left the cluster") && removed.contains("test-1 left the cluster"),
        "no MemberRemoved event for each member: {removed}"
    );

    // (i) Hibernate (replicas 0): a final full snapshot, then no pod, the
    // claim kept; wake up (replicas 1) on the claim with every write.
    let finals = |minio: &MinioServer| {
        bucket(minio, &format!("etcd-{SCALE}/v2/"))
            .into_iter()
            .filter(|o| o.ends_with(".final"))
            .count()
    };
    let finals_before = finals(minio);
    let slept = Instant::now();
    patch_etcd(node, SCALE, r#"{"spec":{"replicas":0}}"#);
    wait_hibernated(node, SCALE);
    println!("hibernation: {:.1}s", slept.elapsed().as_secs_f64());
    assert_eq!(
        finals(minio),
        finals_before + 1,
        "no final full snapshot before hibernation"
    );
    let claims = jsonpath(
        node,
        &["-n", SCALE, "get", "pvc"],
        "{.items[*].metadata.name}",
    )
    .unwrap();
    assert_eq!(claims, "test-test-0", "hibernation lost the claim");
    let woke = Instant::now();
    patch_etcd(node, SCALE, r#"{"spec":{"replicas":1}}"#);
    wait_for_members(node, SCALE, 1, slow_with_preload(300));
    println!(
        "wake-up to a serving member: {:.1}s",
        woke.elapsed().as_secs_f64()
    );
    assert_none_lost(node, SCALE, &endpoint, &written.acked);

    // (j) Hibernate again and lose the claim while asleep: waking up
    // restores the member from the final full snapshot, with every write.
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(3));
    let more = writer.finish();
    more.assert_no_failed_write(node, SCALE);
    patch_etcd(node, SCALE, r#"{"spec":{"replicas":0}}"#);
    wait_hibernated(node, SCALE);
    assert_eq!(
        finals(minio),
        finals_before + 2,
        "no final full snapshot before the second hibernation"
    );
    node.kubectl_ok(&["-n", SCALE, "delete", "pvc", "test-test-0", "--wait=true"])
        .unwrap();
    let woke = Instant::now();
    patch_etcd(node, SCALE, r#"{"spec":{"replicas":1}}"#);
    wait_for_members(node, SCALE, 1, slow_with_preload(300));
    println!(
        "wake-up without the claim (restored from the final snapshot): {:.1}s",
        woke.elapsed().as_secs_f64()
    );
    assert_none_lost(node, SCALE, &endpoint, &written.acked);
    assert_none_lost(node, SCALE, &endpoint, &more.acked);

    delete_etcd(node, SCALE);
}

/// With `DRUID_NODE_PRELOAD_MIB=N` (not set in CI), the scale test's
/// operations run on N MiB of data, written before the roll (for the
/// figures of a cluster with 1 GiB): values of 10 KiB of incompressible
/// bytes (snapshots are as large as the data), by 16 writers at once.
/// Not 1 MiB values: etcd 3.4 keeps its raft log in memory until
/// `snapshot-count` entries (10,000 by default), so 1,024 entries of
/// 1 MiB held about 1 GiB per member, and restarting members were killed
/// at the seed's 4 GiB memory limit while catching up.
fn preload(endpoint: &str) {
    const VALUE: usize = 10 << 10;
    const WRITERS: u64 = 16;
    let mib: u64 = std::env::var("DRUID_NODE_PRELOAD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if mib == 0 {
        return;
    }
    let keys = mib * (1 << 20) / VALUE as u64;
    let started = Instant::now();
    with_client(endpoint, async |c| {
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let mut c = c.clone();
            writers.spawn(async move {
                // xorshift: incompressible.
                let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (w + 1);
                for i in (w..keys).step_by(WRITERS as usize) {
                    let value: Vec<u8> = (0..VALUE / 8)
                        .flat_map(|_| {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            state.to_le_bytes()
                        })
                        .collect();
                    c.put(format!("/preload/{i:07}"), value, None).await?;
                }
                Ok::<_, etcd_client::Error>(())
            });
        }
        while let Some(done) = writers.join_next().await {
            done.expect("a preload writer panicked")?;
        }
        Ok(())
    })
    .unwrap();
    println!(
        "preloaded {mib} MiB ({keys} keys of {VALUE} bytes) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Scales Etcd test in `ns` from `from` to `to` members and waits until
/// they are ready voting members and the StatefulSet settled; prints the
/// time.
fn scale_out(node: &Node, ns: &str, from: usize, to: usize) {
    let started = Instant::now();
    patch_etcd(node, ns, &format!(r#"{{"spec":{{"replicas":{to}}}}}"#));
    wait_for_members(node, ns, to, Duration::from_secs(210 * (to - from) as u64));
    wait_for(
        node,
        ns,
        &format!("the StatefulSet settles at {to} ready replicas"),
        Duration::from_secs(300),
        || Ok(statefulset_settled(node, ns, to)?.then_some(())),
    );
    println!(
        "scale {from} -> {to} to {to} ready voting members: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Waits (a minute at most) for an event with `reason` in `ns`.
fn wait_for_event(node: &Node, ns: &str, reason: &str) {
    wait_for(
        node,
        ns,
        &format!("the {reason} event"),
        Duration::from_secs(60),
        || {
            let reasons = jsonpath(
                node,
                &["-n", ns, "get", "events.events.k8s.io"],
                "{.items[*].reason}",
            )?;
            Ok(reasons.contains(reason).then_some(()))
        },
    );
}

/// `secs`, or 30 minutes on a preloaded cluster (a final full snapshot
/// or a restore of 1 GiB takes minutes: the sidecar's CPU limit bounds
/// it).
fn slow_with_preload(secs: u64) -> Duration {
    let preloaded =
        std::env::var("DRUID_NODE_PRELOAD_MIB").is_ok_and(|m| !m.is_empty() && m != "0");
    Duration::from_secs(if preloaded { 1800 } else { secs })
}

/// Waits until Etcd test in `ns` hibernates: its StatefulSet at 0
/// replicas and no member pod left.
fn wait_hibernated(node: &Node, ns: &str) {
    wait_for(
        node,
        ns,
        "the cluster hibernates: no member pod left",
        slow_with_preload(300),
        || {
            let pods = node
                .kubectl_ok(&["-n", ns, "get", "pod", "-o", "name"])
                .map_err(|e| e.to_string())?;
            let replicas = jsonpath(
                node,
                &["-n", ns, "get", "statefulset", "test"],
                "{.spec.replicas}",
            )?;
            let members = pods
                .lines()
                .filter(|p| {
                    p.strip_prefix("pod/test-")
                        .is_some_and(|o| o.bytes().all(|b| b.is_ascii_digit()))
                })
                .count();
            Ok((replicas == "0" && members == 0).then_some(()))
        },
    );
}

/// Whether StatefulSet test in `ns` has `n` replicas, all ready and of
/// its update revision (not `currentRevision`: the controller leaves it
/// at the first revision under the OnDelete strategy).
fn statefulset_settled(node: &Node, ns: &str, n: usize) -> Result<bool, String> {
    let fields = jsonpath(
        node,
        &["-n", ns, "get", "statefulset", "test"],
        "{.spec.replicas} {.status.replicas} {.status.readyReplicas} {.status.updatedReplicas}",
    )?;
    let f: Vec<&str> = fields.split_whitespace().collect();
    let n = n.to_string();
    Ok(f.len() == 4 && f.iter().all(|v| *v == n))
}

/// What a roll looks like from outside: the order in which the pods were
/// replaced (their UID changed or they vanished) with the role their
/// member lease showed last before, and which members were seen leading.
struct RollWatch {
    initial: BTreeMap<String, String>,
    uids: BTreeMap<String, std::collections::BTreeSet<String>>,
    last_role: BTreeMap<String, String>,
    replaced: Vec<(String, String)>,
    leaders: std::collections::BTreeSet<String>,
}

impl RollWatch {
    fn start(node: &Node, ns: &str) -> Self {
        let mut watch = Self {
            initial: pod_uids(node, ns).unwrap(),
            uids: BTreeMap::new(),
            last_role: BTreeMap::new(),
            replaced: Vec::new(),
            leaders: std::collections::BTreeSet::new(),
        };
        assert_eq!(watch.initial.len(), 3, "{:?}", watch.initial);
        watch.sample(node, ns).unwrap();
        watch
    }

    fn sample(&mut self, node: &Node, ns: &str) -> Result<(), String> {
        let uids = pod_uids(node, ns)?;
        for (pod, uid) in &uids {
            self.uids
                .entry(pod.clone())
                .or_default()
                .insert(uid.clone());
        }
        for (pod, uid) in &self.initial {
            let gone = uids.get(pod) != Some(uid);
            if gone && !self.replaced.iter().any(|(p, _)| p == pod) {
                let role = self.last_role.get(pod).cloned().unwrap_or_default();
                self.replaced.push((pod.clone(), role));
            }
        }
        // Roles before a member's replacement only.
        let roles = jsonpath(
            node,
            &["-n", ns, "get", "lease", "test-0", "test-1", "test-2"],
            "{range .items[*]}{.metadata.name} {.spec.holderIdentity}{\"\\n\"}{end}",
        )?;
        for line in roles.lines() {
            let Some((pod, holder)) = line.split_once(' ') else {
                continue;
            };
            if self.replaced.iter().any(|(p, _)| p == pod) {
                continue;
            }
            let role = holder.rsplit(':').next().unwrap_or_default().to_string();
            if role == "Leader" {
                self.leaders.insert(pod.to_string());
            }
            self.last_role.insert(pod.to_string(), role);
        }
        Ok(())
    }

    /// Each member replaced once, followers first, the leader last.
    fn assert_leader_last(&self) {
        assert_eq!(self.replaced.len(), 3, "{:?}", self.replaced);
        for (pod, uids) in &self.uids {
            assert_eq!(
                uids.len(),
                2,
                "{pod} was not replaced exactly once: {uids:?}"
            );
        }
        for (pod, role) in &self.replaced[..2] {
            assert_eq!(
                role, "Member",
                "{pod} was replaced while its lease said {role:?} (followers go first): {:?}",
                self.replaced
            );
        }
        let last = &self.replaced[2].0;
        assert!(
            self.leaders.contains(last),
            "the last member replaced ({last}) was never seen leading (leaders: {:?}): the leader goes last",
            self.leaders
        );
    }
}

/// The pods of Etcd test in `ns` by name, with their UIDs.
fn pod_uids(node: &Node, ns: &str) -> Result<BTreeMap<String, String>, String> {
    let out = jsonpath(
        node,
        &[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/part-of=test",
        ],
        "{range .items[*]}{.metadata.name} {.metadata.uid}{\"\\n\"}{end}",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        // The members' pods only (not a compaction job's).
        .filter(|(p, _)| {
            p.strip_prefix("test-")
                .is_some_and(|o| o.parse::<u32>().is_ok())
        })
        .map(|(p, u)| (p.to_string(), u.to_string()))
        .collect())
}

/// The node directory that holds every namespace's Local stores (the
/// operator's `--local-store-root` default, `wiring::DEFAULT_LOCAL_ROOT`
/// of the plugin host, which deploy/operator keeps).
const LOCAL_ROOT: &str = "/var/lib/druid/local-backupbuckets";

/// The founding manifest in `ns` with a Local store: container `shared`
/// and prefix `etcd-shared` in every namespace, so that only the
/// namespace keeps two tenants' backups apart.
fn local_variant(ns: &str) -> String {
    let variant = seed_variant(ns, 1)
        .replace("storageProvider: S3", "storageProvider: Local")
        .replace("storageContainer: test", "storageContainer: shared")
        .replace(
            &format!("storePrefix: etcd-{ns}"),
            "storePrefix: etcd-shared",
        )
        .replace("    storeSecret: etcd-backup\n", "");
    assert!(
        variant.contains("storageProvider: Local")
            && variant.contains("storageContainer: shared")
            && !variant.contains("storeSecret"),
        "the founding manifest changed shape:\n{variant}"
    );
    variant
}

/// The objects of `ns`'s Local store, as the node holds them: name → (size,
/// owner uid).
fn local_objects(ns: &str) -> BTreeMap<String, (u64, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = std::path::Path::new(LOCAL_ROOT).join(format!("{ns}/shared/etcd-shared/v2"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with('.')).then_some((name, (m.len(), m.uid())))
        })
        .collect()
}

/// Tenant B's Etcd names its members `main-<pod>` (`memberNamePrefix`).
const PREFIX: &str = "main";

#[test]
fn two_namespaces_local_stores_stay_apart_and_a_member_name_prefix_names_members_and_leases() {
    const A: &str = "tenant-a";
    const B: &str = "tenant-b";
    let _serial = serial();
    let (node, _) = cluster();
    let _cleanup_a = Cleanup { node, ns: A };
    let _cleanup_b = Cleanup { node, ns: B };
    for ns in [A, B] {
        // Left by an earlier run: each tenant starts without backups.
        let _ = std::fs::remove_dir_all(std::path::Path::new(LOCAL_ROOT).join(ns));
        node.kubectl_stdin(
            &["apply", "-f", "-"],
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
        )
        .unwrap();
    }

    // Tenant A: a secret key, in a full snapshot and a delta.
    node.kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &local_variant(A),
    )
    .unwrap();
    wait_for_members(node, A, 1, Duration::from_secs(300));
    let endpoint_a = client_endpoint(node, A);
    with_client(&endpoint_a, async |c| {
        c.put("/tenant-a/secret", "only-a", None).await.map(|_| ())
    })
    .unwrap();
    let ip_a = jsonpath(node, &["-n", A, "get", "pod", "test-0"], "{.status.podIP}").unwrap();
    let objects_a = wait_for(
        node,
        A,
        "tenant A's full snapshot and a delta with its key in its own directory",
        Duration::from_secs(180),
        || {
            let _ = druid_test_support::http_get(&format!("http://{ip_a}:8080/snapshot/delta"));
            let objects = local_objects(A);
            let full = objects.keys().any(|o| o.starts_with("Full-"));
            let delta = objects.keys().any(|o| o.starts_with("Incr-"));
            if full && delta {
                Ok(Some(objects))
            } else {
                Err(format!("{:?}", objects.keys().collect::<Vec<_>>()))
            }
        },
    );
    // The directory was the kubelet's (root's); the init container gave it
    // to the sidecar's user, which wrote every object.
    for (name, (_, uid)) in &objects_a {
        assert_eq!(*uid, 65532, "{name} is not the sidecar user's");
    }

    // Tenant B: the same container and prefix, another namespace. It must
    // start empty: were A's backups visible, its first start would restore
    // them. Its members are named with a prefix: the sidecar reads it from
    // the etcd configuration (the operator passes no flag for it), or it
    // finds no entry of its own there and etcd never starts.
    let variant_b = local_variant(B).replacen(
        "\nspec:\n",
        &format!("\nspec:\n  memberNamePrefix: {PREFIX}\n"),
        1,
    );
    assert!(variant_b.contains("memberNamePrefix"), "{variant_b}");
    node.kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], &variant_b)
        .unwrap();
    wait_for_members(node, B, 1, Duration::from_secs(300));
    let member = format!("{PREFIX}-test-0");
    assert_eq!(
        member_list(&client_endpoint(node, B)).unwrap(),
        [(member.clone(), false)],
        "tenant B's etcd member is not named with its prefix"
    );
    // Its sidecar renews the prefixed member lease (the operator reads the
    // member's role there), and the status names the member so.
    wait_for(
        node,
        B,
        &format!("member lease {member} renewed as Leader"),
        Duration::from_secs(120),
        || {
            let holder = jsonpath(
                node,
                &["-n", B, "get", "lease", &member],
                "{.spec.holderIdentity}",
            )?;
            Ok(holder.ends_with(":Leader").then_some(()))
        },
    );
    assert_eq!(
        jsonpath(
            node,
            &["-n", B, "get", "etcd", "test"],
            "{.status.members[0].name}"
        )
        .unwrap(),
        member
    );
    wait_for(
        node,
        B,
        "tenant B's full snapshot in its own directory",
        Duration::from_secs(180),
        || {
            let objects = local_objects(B);
            Ok(objects.keys().any(|o| o.starts_with("Full-")).then_some(()))
        },
    );
    let endpoint_b = client_endpoint(node, B);
    let seen = with_client(&endpoint_b, async |c| {
        Ok(c.get("/tenant-a/secret", None).await?.kvs().len())
    })
    .unwrap();
    assert_eq!(seen, 0, "tenant B restored tenant A's data");
    // A's objects are all still there, unchanged.
    let after = local_objects(A);
    for (name, meta) in &objects_a {
        assert_eq!(after.get(name), Some(meta), "tenant A's {name} changed");
    }

    delete_etcd(node, B);
    delete_etcd(node, A);
}

/// The IPv4 addresses a sidecar of namespace `ns` listens on at `port`,
/// read from the process's own view of its network namespace
/// (`/proc/<pid>/net/tcp`; the node's processes are this host's).
fn listening_on(ns: &str, port: u16) -> Vec<String> {
    let port_hex = format!("{port:04X}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_sidecar = args.first().is_some_and(|a| a.ends_with("etcdbr"))
            && args.iter().any(|a| a == "server");
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        let in_ns = environ
            .split(|b| *b == 0)
            .any(|e| e == format!("POD_NAMESPACE={ns}").as_bytes());
        if !(is_sidecar && in_ns) {
            continue;
        }
        let tcp = std::fs::read_to_string(dir.join("net/tcp")).unwrap();
        return tcp
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (addr, p) = f.get(1)?.split_once(':')?;
                // State 0A: LISTEN.
                (p == port_hex && f.get(3) == Some(&"0A")).then(|| {
                    let n = u32::from_str_radix(addr, 16).unwrap_or(0);
                    // Little-endian in /proc.
                    std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
                })
            })
            .collect();
    }
    panic!("no etcdbr server process of namespace {ns} on this host");
}

const JOIN: &str = "join";

/// An etcd binary wrapped so that it resolves names with the node's
/// CoreDNS (a mount namespace of its own with another resolv.conf): the
/// source members on the host must reach the pods' peer names.
fn etcd_with_cluster_dns(node: &Node) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = druid_test_support::server_dir("join-source-dns").unwrap();
    let resolv = dir.join("resolv.conf");
    std::fs::write(
        &resolv,
        format!(
            "nameserver {}\nsearch cluster.local\noptions ndots:5\n",
            node.ip()
        ),
    )
    .unwrap();
    let etcd = druid_test_support::find_binary("etcd", "etcd").unwrap();
    let script = dir.join("etcd");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec unshare --mount sh -c 'mount --bind {} /etc/resolv.conf && exec {} \"$@\"' etcd \"$@\"\n",
            resolv.display(),
            etcd.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The etcd member list that `endpoint` reports: (name, is learner).
fn member_list(endpoint: &str) -> Result<Vec<(String, bool)>, String> {
    with_client(endpoint, async |c| {
        Ok(c.member_list()
            .await?
            .members()
            .iter()
            .map(|m| (m.name().to_string(), m.is_learner()))
            .collect())
    })
}

#[test]
fn three_replicas_join_a_cluster_of_plain_processes_and_cut_over_without_a_failed_write() {
    let _serial = serial();
    let (node, minio) = cluster();
    namespace_with_store(node, minio, JOIN);
    let _cleanup = Cleanup { node, ns: JOIN };

    // The source: three plain etcd processes on the host, which the pods
    // reach on the host's address.
    let binary = etcd_with_cluster_dns(node);
    let source = EtcdCluster::start_with("join-source", 3, |i, c| {
        c.name = format!("source-{i}");
        c.ip = node.host_ip().to_string();
        c.binary = Some(binary.clone());
    })
    .unwrap();
    let source_clients = source.client_urls();

    let members_yaml: String = source
        .members()
        .iter()
        .map(|m| {
            format!(
                "      - name: {}\n        peerUrls: [\"{}\"]\n",
                m.name(),
                m.peer_url()
            )
        })
        .collect();
    // The spec's `etcd:` comes first (the status has one too).
    let manifest = seed_variant(JOIN, 3).replacen(
        "  etcd:\n",
        &format!(
            "  etcd:\n    bootstrapWithExistingCluster:\n      clientEndpoints: [{}]\n      members:\n{members_yaml}",
            source_clients
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        1,
    );
    assert!(manifest.contains("bootstrapWithExistingCluster"));
    node.kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], &manifest)
        .unwrap();
    let joined = Instant::now();
    wait_for(
        node,
        JOIN,
        "the client Service exists",
        Duration::from_secs(60),
        || {
            Ok(jsonpath(
                node,
                &["-n", JOIN, "get", "service", "test-client"],
                "{.spec.clusterIP}",
            )
            .ok()
            .filter(|ip| !ip.is_empty())
            .map(|_| ()))
        },
    );
    let endpoint = client_endpoint(node, JOIN);
    // A writer from before the join to after the cut-over: on a source
    // member until it goes, then the next, at last this Etcd's Service.
    let writer = Writer::start_many(
        source_clients
            .iter()
            .cloned()
            .chain([endpoint.clone()])
            .collect(),
    );
    wait_for(
        node,
        JOIN,
        "every member joined the source cluster (BootstrappedWithExistingCluster True)",
        Duration::from_secs(600),
        || {
            let status = etcd_condition(node, JOIN, "BootstrappedWithExistingCluster", "status")?;
            Ok((status == "True").then_some(()))
        },
    );
    println!("joined in {:.0}s", joined.elapsed().as_secs_f64());
    let members = member_list(&source_clients[0]).unwrap();
    assert_eq!(members.len(), 6, "{members:?}");
    assert!(members.iter().all(|(_, learner)| !learner), "{members:?}");
    let recorded = jsonpath(
        node,
        &["-n", JOIN, "get", "etcd", "test"],
        "{.status.bootstrapWithExistingCluster.members[*].name}",
    )
    .unwrap();
    assert_eq!(recorded, "source-0 source-1 source-2");
    // Members of a joined cluster: one cluster ID, no split.
    let mismatch = etcd_condition(node, JOIN, "ClusterIDMismatch", "status").unwrap();
    assert_eq!(mismatch, "False");

    // Clients move to the Etcd's Service before the cut-over: a request
    // in flight on a source member when it is removed can fail ("raft:
    // stopped"), which no retry policy covers.
    let written = writer.finish();
    println!("writer through the join: {}", written.summary());
    written.assert_no_failed_write(node, JOIN);
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(3));

    // The cut-over: removing the source from the spec.
    let cut = Instant::now();
    node.kubectl_ok(&[
        "-n",
        JOIN,
        "patch",
        "etcd",
        "test",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/etcd/bootstrapWithExistingCluster"}]"#,
    ])
    .unwrap();
    wait_for(
        node,
        JOIN,
        "the source members left the cluster (SourceMembersRemoved)",
        Duration::from_secs(600),
        || {
            let reason = etcd_condition(node, JOIN, "BootstrappedWithExistingCluster", "reason")?;
            Ok((reason == "SourceMembersRemoved").then_some(()))
        },
    );
    println!("cut over in {:.0}s", cut.elapsed().as_secs_f64());
    wait_for_members(node, JOIN, 3, Duration::from_secs(420));
    let members = member_list(&endpoint).unwrap();
    let mut names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["test-0", "test-1", "test-2"], "{members:?}");
    // A member of the Etcd leads now: it backs up into the Etcd's own
    // prefix.
    wait_for(
        node,
        JOIN,
        "a full snapshot in the Etcd's prefix",
        Duration::from_secs(180),
        || {
            let objects = bucket(minio, "etcd-join/v2/");
            Ok(objects.iter().any(|o| o.starts_with("Full-")).then_some(()))
        },
    );
    let cut_written = writer.finish();
    println!(
        "writer on the Etcd's Service through the cut-over: {}",
        cut_written.summary()
    );
    cut_written.assert_no_failed_write(node, JOIN);
    // Both wrote `/e2e/<n>` = `value-<n>`: a key always gets the same
    // value, so each writer's acknowledged writes can be checked.
    assert_none_lost(node, JOIN, &endpoint, &written.acked);
    assert_none_lost(node, JOIN, &endpoint, &cut_written.acked);
    // The source processes stopped themselves once removed.
    for m in source.members() {
        assert!(
            with_client(&m.client_url(), async |c| Ok(c.status().await?.leader())).is_err(),
            "source member {} still serves after its removal",
            m.name()
        );
    }
    drop(source);
    delete_etcd(node, JOIN);
}

/// The namespace of the plugins-image test.
const PLUGINS_NS: &str = "plugins";
/// The plugins image it builds: the worked example of a third-party
/// provider (`examples/httpstore-plugin`).
const PLUGINS_IMAGE: &str = "registry.example/httpstore-plugins:0.1.0";

/// Puts the operator Deployment's pod template back as it was when
/// created, and waits for that rollout: the plugins image's patch is
/// undone even when the test fails.
struct OperatorTemplate {
    node: &'static Node,
    template: serde_json::Value,
}

impl OperatorTemplate {
    fn save(node: &'static Node) -> Self {
        let json = node
            .kubectl_ok(&[
                "-n",
                "druid-system",
                "get",
                "deployment",
                "druid",
                "-o",
                "json",
            ])
            .unwrap();
        let deployment: serde_json::Value = serde_json::from_str(&json).unwrap();
        Self {
            node,
            template: deployment["spec"]["template"].clone(),
        }
    }

    fn rollout(node: &Node) -> Result<String, druid_test_support::Error> {
        node.kubectl_ok(&[
            "-n",
            "druid-system",
            "rollout",
            "status",
            "deployment/druid",
            "--timeout=180s",
        ])
    }
}

impl Drop for OperatorTemplate {
    fn drop(&mut self) {
        let _ = replace_in_operator(self.node, "/spec/template", self.template.clone());
    }
}

/// A provider written out of tree reaches pods the way the operator ships
/// plugins: the worked example built with `scripts/build-plugin.sh`, packed
/// into a plugins image by `scripts/build-images.sh --plugins-image`, given
/// to the operator with deploy/patches/plugins-image.yaml. The operator
/// validates and wires the provider from its own copy, each etcd pod gets
/// the image as its `install-plugins` init container, and the sidecar backs
/// up to the provider's store (the small HTTP store of the test support, on
/// the host) with the Secret's own keys (`storeURL`, `token`), and restores
/// a member whose volume is lost from it with no acknowledged write lost.
#[test]
fn a_provider_shipped_in_a_plugins_image_backs_up_and_restores_a_member() {
    let _serial = serial();
    let (node, _minio) = cluster();
    let ns = PLUGINS_NS;
    let _cleanup = Cleanup { node, ns };
    let dir = druid_test_support::server_dir("node-plugins-image").unwrap();

    // (a) The plugins image, as a plugin author builds it.
    let wasm = druid_test_support::httpstore_example_plugin().unwrap();
    let tar = dir.join("httpstore-plugins.tar");
    let built = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/build-images.sh"))
        .args(["--plugins-image", PLUGINS_IMAGE])
        .arg(&tar)
        .arg(&wasm)
        .env("DRUID_IMAGE_PROFILE", "dev")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "scripts/build-images.sh --plugins-image: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    node.import_images(&[tar]).unwrap();

    // (b) The store, where pods reach it, and the operator with the image.
    const TOKEN: &str = "node-plugin-token";
    let root = dir.join("store");
    std::fs::create_dir_all(root.join("backups")).unwrap();
    let store = druid_test_support::HttpStore::start_on(&root, TOKEN, node.host_ip()).unwrap();
    let operator = OperatorTemplate::save(node);
    let patch = std::fs::read_to_string(repo_root().join("deploy/patches/plugins-image.yaml"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("YOUR-PLUGINS-IMAGE", PLUGINS_IMAGE);
    assert!(
        patch.matches(PLUGINS_IMAGE).count() == 2 && patch.contains("name: DRUID_PLUGINS_IMAGE"),
        "deploy/patches/plugins-image.yaml changed shape:\n{patch}"
    );
    node.kubectl_ok(&[
        "-n",
        "druid-system",
        "patch",
        "deployment",
        "druid",
        "--patch",
        &patch,
    ])
    .unwrap();
    OperatorTemplate::rollout(node).unwrap();
    // A pod of the new ReplicaSet (the old ones may still be terminating).
    let operator_pod = node
        .kubectl_ok(&[
            "-n",
            "druid-system",
            "get",
            "pod",
            "-l",
            "app.kubernetes.io/name=druid",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.spec.initContainers[0].name}{"\n"}{end}"#,
        ])
        .unwrap()
        .lines()
        .find_map(|l| l.strip_suffix(" install-plugins").map(str::to_string))
        .expect("no operator pod with the install-plugins init container");
    let installed = node
        .kubectl_ok(&[
            "-n",
            "druid-system",
            "logs",
            &operator_pod,
            "-c",
            "install-plugins",
        ])
        .unwrap();
    assert!(
        installed.contains("installed plugin druid_plugin_httpstore.wasm"),
        "the operator's install-plugins log: {installed}"
    );

    // (c) An Etcd of the new provider, its Secret with the provider's keys.
    let manifest = seed_variant(ns, 1)
        .replace("storageProvider: S3", "storageProvider: HttpStore")
        .replace("storageContainer: test", "storageContainer: backups");
    assert!(
        manifest.contains("storageProvider: HttpStore")
            && manifest.contains("storageContainer: backups")
    );
    namespace_with_secret(node, ns, &[("storeURL", store.url()), ("token", TOKEN)]);
    node.kubectl_stdin(&["apply", "-f", "-"], &manifest)
        .unwrap();
    wait_for(
        node,
        ns,
        "pod test-0 is Ready",
        Duration::from_secs(300),
        || Ok((pod_ready(node, ns, "test-0")? == "True").then_some(())),
    );
    let init = node
        .kubectl_ok(&["-n", ns, "logs", "test-0", "-c", "install-plugins"])
        .unwrap();
    assert!(
        init.contains("installed plugin druid_plugin_httpstore.wasm"),
        "the etcd pod's install-plugins log: {init}"
    );
    let objects = |root: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(root.join(format!("backups/etcd-{ns}/v2")))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for(
        node,
        ns,
        "a full snapshot in the HTTP store",
        Duration::from_secs(180),
        || {
            Ok(objects(&root)
                .iter()
                .any(|o| o.starts_with("Full-"))
                .then_some(()))
        },
    );
    wait_for(
        node,
        ns,
        "Etcd test is Ready",
        Duration::from_secs(120),
        || etcd_ready(node, ns),
    );

    // (d) Writes, a delta snapshot, then the member's volume lost: it is
    // restored from the provider's store with every acknowledged write.
    let endpoint = client_endpoint(node, ns);
    let writer = Writer::start(endpoint.clone());
    std::thread::sleep(Duration::from_secs(5));
    let written = writer.finish();
    println!("writer: {}", written.summary());
    assert!(
        written.acked.len() > 10,
        "the writer got too few writes through"
    );
    take_delta_snapshot(node, ns);
    wait_for(
        node,
        ns,
        "a delta snapshot in the HTTP store",
        Duration::from_secs(60),
        || {
            Ok(objects(&root)
                .iter()
                .any(|o| o.starts_with("Incr-"))
                .then_some(()))
        },
    );
    lose_volume_of_test_0(node, ns);
    assert_none_lost(node, ns, &endpoint, &written.acked);
    let log = node
        .kubectl_ok(&["-n", ns, "logs", "test-0", "-c", "backup-restore"])
        .unwrap();
    assert!(
        log.to_lowercase().contains("restor"),
        "the sidecar's log does not show a restore:\n{log}"
    );
    assert!(
        !log.contains(TOKEN),
        "the store token is in the sidecar's log"
    );

    delete_etcd(node, ns);
    drop(operator);
}
