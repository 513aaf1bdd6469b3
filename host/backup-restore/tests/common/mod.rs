//! Test harness: real etcd processes (druid-test-support's), the real
//! `etcdbr` binary and real stores (MinIO, a local directory).
#![allow(dead_code, reason = "each test binary uses a part of the harness")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use druid_test_support::{
    EtcdCluster, EtcdMember, EtcdMemberConfig, MinioServer, ServerProcess, free_port, server_dir,
};
use etcd_client::{Client, GetOptions};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A key as etcd serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// An etcd client of a member (druid-test-support, which starts the
/// members, does not depend on etcd-client).
pub trait EtcdClient {
    /// A client of this member alone.
    async fn client(&self) -> Client;
}

impl EtcdClient for EtcdMember {
    async fn client(&self) -> Client {
        Client::connect([self.client_url()], None).await.unwrap()
    }
}

/// Starts a single etcd member on 127.0.0.1 in a fresh directory.
pub fn start_etcd(label: &str) -> EtcdMember {
    EtcdMemberConfig::new(label).unwrap().start().unwrap()
}

/// Starts `n` members of one cluster on 127.0.0.1, 127.0.0.2, … so that
/// their sidecars can share one port, as in a pod network; `extra` etcd
/// flags go to every member.
pub fn start_members(label: &str, n: usize, extra: &[String]) -> Vec<EtcdMember> {
    EtcdCluster::start_with(label, n, |i, member| {
        member.ip = format!("127.0.0.{}", i + 1);
        member.extra_args = extra.to_vec();
    })
    .unwrap()
    .into_members()
}

/// The index in `members` of the member that leads.
pub async fn leader_index(client: &mut Client, members: &[EtcdMember]) -> usize {
    let leader = client.status().await.unwrap().leader();
    let list = client.member_list().await.unwrap();
    let name = list
        .members()
        .iter()
        .find(|m| m.id() == leader)
        .unwrap()
        .name()
        .to_string();
    members.iter().position(|m| m.name() == name).unwrap()
}

/// The members' client URLs joined with commas.
pub fn client_urls(members: &[EtcdMember]) -> String {
    members
        .iter()
        .map(EtcdMember::client_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// Every key etcd holds and its current revision.
pub async fn dump(client: &mut Client) -> (BTreeMap<Vec<u8>, Kv>, i64) {
    // Beyond tonic's 4 MiB default: some tests hold megabytes of values.
    let resp = client
        .kv_client()
        .max_decoding_message_size(1 << 30)
        .get(vec![0u8], Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    let revision = resp.header().unwrap().revision();
    let kvs = resp
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                Kv {
                    value: kv.value().to_vec(),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                    version: kv.version(),
                    lease: kv.lease(),
                },
            )
        })
        .collect();
    (kvs, revision)
}

/// Writes `count` values of 48 KiB that do not compress (a xorshift
/// stream) as `/registry/big/NNNN`, then 150 small keys `/registry/kNNNN`:
/// a database of `count` × 48 KiB that a compressed snapshot cannot
/// shrink, so a store gets an object of about that size.
pub async fn put_incompressible(client: &mut Client, count: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        let value: Vec<u8> = (0..48 << 10)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        client
            .put(format!("/registry/big/{i:04}"), value, None)
            .await
            .unwrap();
    }
    for i in 0..150 {
        client
            .put(format!("/registry/k{i:04}"), format!("value {i}"), None)
            .await
            .unwrap();
    }
}

/// The flags of `etcdbr restore` that make `target` the restored member:
/// its data directory, a scratch directory beside it, its name, cluster,
/// token and peer URL.
pub fn restore_flags(target: &EtcdMemberConfig) -> Vec<String> {
    vec![
        format!("--data-dir={}", target.data_dir.display()),
        format!(
            "--restoration-temp-snapshots-dir={}",
            target.dir.join("work").display()
        ),
        format!("--name={}", target.name),
        format!("--initial-cluster={}", target.initial_cluster()),
        format!("--initial-cluster-token={}", target.token),
        format!("--initial-advertise-peer-urls={}", target.peer_url()),
    ]
}

/// Runs `etcdbr <args>` with the store's flags, the test plugins and the
/// etcd binaries; returns its output.
pub fn etcdbr(store: &Store, args: &[String]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etcdbr"));
    c.args(args);
    tools(&mut c);
    store.args(&mut c);
    output_within(
        c,
        Duration::from_secs(600),
        &format!("etcdbr {}", args.join(" ")),
    )
}

/// Restores a new member `label` with `run` (given the `etcdbr restore`
/// arguments), starts it, and returns what it serves.
pub async fn restore_and_dump(
    label: &str,
    run: impl FnOnce(&[String]) -> std::process::Output,
) -> (BTreeMap<Vec<u8>, Kv>, i64) {
    let target = EtcdMemberConfig::new(label).unwrap();
    let mut args = vec!["restore".to_string()];
    args.extend(restore_flags(&target));
    let out = run(&args);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdbr restore: {log}");
    let restored = target.start().unwrap();
    let mut c = restored.client().await;
    dump(&mut c).await
}

/// Runs `etcdbr <args> <store>` with the plugins of `plugins` (the test
/// plugins when none) and `env` set (e.g. the store secret's variable);
/// `store` are the store flags. `snapshot` runs no etcd tool, so it gets
/// only the plugins and their cache; other commands the etcd binaries too.
pub fn etcdbr_with(
    plugins: Option<&Path>,
    store: &[String],
    env: &[(&str, &Path)],
    args: &[String],
) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etcdbr"));
    c.args(args).args(store);
    for (name, value) in env {
        c.env(name, value);
    }
    let plugins = plugins.unwrap_or_else(|| druid_test_support::plugin_components().dir());
    if args.first().is_some_and(|a| a == "snapshot") {
        c.arg(format!("--plugins-dir={}", plugins.display()))
            .arg(format!(
                "--plugin-cache-dir={}",
                druid_test_support::cache_dir()
                    .join("plugin-cache")
                    .display()
            ))
            .env("NO_COLOR", "1");
    } else {
        druid_test_support::etcdbr_tool_flags_with_plugins(&mut c, plugins).unwrap();
    }
    output_within(
        c,
        Duration::from_secs(300),
        &format!("etcdbr {}", args.join(" ")),
    )
}

/// Runs `c` to completion, killing it and failing the test (naming `what`
/// and its stderr so far) if it runs longer than `deadline`.
pub fn output_within(mut c: Command, deadline: Duration, what: &str) -> std::process::Output {
    use std::io::Read as _;
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    // Drain both pipes on threads so a chatty child never blocks.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "{what}: still running after {deadline:?}, killed; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The flags and environment every `etcdbr` under test gets: the test
/// plugins, their compile cache, the etcd binaries, plain logs and no pod.
fn tools(c: &mut Command) {
    druid_test_support::etcdbr_tool_flags(c).unwrap();
}

/// A store for the sidecar.
pub enum Store {
    /// A MinIO bucket.
    Minio {
        bucket: String,
        creds: PathBuf,
        endpoint: String,
    },
    /// A local directory (`<root>/<container>`).
    Local { root: PathBuf, container: String },
}

impl Store {
    /// A fresh MinIO bucket.
    pub fn minio(label: &str) -> Store {
        let minio = MinioServer::shared();
        Self::minio_with(label, minio.secret_key(), minio.endpoint())
    }

    /// A fresh MinIO bucket, reached through `endpoint` with `secret_key`
    /// (MinIO's own access key).
    pub fn minio_with(label: &str, secret_key: &str, endpoint: &str) -> Store {
        let minio = MinioServer::shared();
        let bucket = format!("etcdbr-{label}-{}", std::process::id()).to_lowercase();
        minio.create_bucket(&bucket).unwrap();
        let creds = server_dir(&format!("creds-{bucket}")).unwrap();
        std::fs::write(creds.join("region"), minio.region()).unwrap();
        std::fs::write(creds.join("accessKeyID"), minio.access_key()).unwrap();
        std::fs::write(creds.join("secretAccessKey"), secret_key).unwrap();
        Store::Minio {
            bucket,
            creds,
            endpoint: endpoint.to_string(),
        }
    }

    /// A fresh local directory store.
    pub fn local(label: &str) -> Store {
        let root = server_dir(&format!("local-store-{label}-{}", free_port().unwrap())).unwrap();
        let container = "backups".to_string();
        std::fs::create_dir_all(root.join(&container)).unwrap();
        Store::Local { root, container }
    }

    /// Adds the store's flags and environment to an `etcdbr` command.
    pub fn args(&self, c: &mut Command) {
        match self {
            Store::Minio {
                bucket,
                creds,
                endpoint,
            } => {
                c.arg("--storage-provider=S3")
                    .arg(format!("--store-container={bucket}"))
                    .arg(format!("--store-endpoint-override={endpoint}"))
                    .env("AWS_APPLICATION_CREDENTIALS", creds);
            }
            Store::Local { root, container } => {
                druid_test_support::local_store_flags(c, root, container);
            }
        }
    }

    /// Adds the store's flags and environment to an `etcdbr copy`
    /// command as its source (`--source-*`, `SOURCE_*`).
    pub fn source_args(&self, c: &mut Command) {
        match self {
            Store::Minio {
                bucket,
                creds,
                endpoint,
            } => {
                c.arg("--source-storage-provider=S3")
                    .arg(format!("--source-store-container={bucket}"))
                    .arg(format!("--source-store-endpoint-override={endpoint}"))
                    .env("SOURCE_AWS_APPLICATION_CREDENTIALS", creds);
            }
            Store::Local { root, container } => {
                c.arg("--source-storage-provider=Local")
                    .arg(format!("--source-store-container={container}"))
                    .env("SOURCE_LOCAL_STORE_ROOT", root);
            }
        }
    }

    /// Every object key in the store below `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        match self {
            Store::Minio { bucket, .. } => {
                let out = MinioServer::shared()
                    .mc()
                    .unwrap()
                    .args(["ls", "--recursive", &format!("druid/{bucket}/{prefix}")])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.split_whitespace().last())
                    .map(|k| format!("{prefix}{k}").replace("//", "/"))
                    .collect()
            }
            Store::Local { root, container } => {
                let mut out = Vec::new();
                walk(&root.join(container), &root.join(container), &mut out);
                out.into_iter().filter(|k| k.starts_with(prefix)).collect()
            }
        }
    }

    /// Reads an object.
    pub fn read(&self, key: &str) -> Vec<u8> {
        match self {
            Store::Minio { bucket, .. } => {
                let out = MinioServer::shared()
                    .mc()
                    .unwrap()
                    .args(["cat", &format!("druid/{bucket}/{key}")])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "mc cat {key}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
            Store::Local { root, container } => {
                std::fs::read(root.join(container).join(key)).unwrap()
            }
        }
    }

    /// Writes an object.
    pub fn write(&self, key: &str, data: &[u8]) {
        match self {
            Store::Minio { bucket, .. } => {
                let tmp = server_dir("mc-upload")
                    .unwrap()
                    .join(format!("obj-{}", free_port().unwrap()));
                std::fs::write(&tmp, data).unwrap();
                let out = MinioServer::shared()
                    .mc()
                    .unwrap()
                    .args([
                        "cp",
                        tmp.to_str().unwrap(),
                        &format!("druid/{bucket}/{key}"),
                    ])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "mc cp {key}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Store::Local { root, container } => {
                let p = root.join(container).join(key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }
        }
    }

    /// Deletes an object.
    pub fn remove(&self, key: &str) {
        match self {
            Store::Minio { bucket, .. } => {
                let out = MinioServer::shared()
                    .mc()
                    .unwrap()
                    .args(["rm", &format!("druid/{bucket}/{key}")])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "mc rm {key}");
            }
            Store::Local { root, container } => {
                std::fs::remove_file(root.join(container).join(key)).unwrap();
            }
        }
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(base, &p, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

/// GET with a long timeout (snapshots and defragmentation take longer
/// than the 2 s of `druid_test_support::http_get`), through curl.
pub fn http_get_long(url: &str) -> Result<(u16, String), String> {
    https_get(url, None)
}

/// What curl trusts for HTTPS, and the client certificate and key it
/// presents (sidecars with `--client-ca-file`).
pub struct CurlTls {
    pub ca: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// GET through curl, with `tls` for HTTPS; waits up to 10 minutes for the
/// answer (snapshots, defragmentation).
pub fn https_get(url: &str, tls: Option<&CurlTls>) -> Result<(u16, String), String> {
    curl_get(url, tls, 600)
}

/// GET for a probe inside a wait loop: 5 s at most, so the loop's own
/// deadline holds even when a server accepts and never answers.
pub fn probe_get(url: &str, tls: Option<&CurlTls>) -> Result<(u16, String), String> {
    curl_get(url, tls, 5)
}

/// POST with an empty body through curl (member operations wait for the
/// cluster to settle: up to 3 minutes): the status and the body.
pub fn http_post(url: &str) -> (u16, String) {
    curl(url, None, 180, true).unwrap_or_else(|e| panic!("{e}"))
}

fn curl_get(url: &str, tls: Option<&CurlTls>, max_seconds: u32) -> Result<(u16, String), String> {
    curl(url, tls, max_seconds, false)
}

fn curl(
    url: &str,
    tls: Option<&CurlTls>,
    max_seconds: u32,
    post: bool,
) -> Result<(u16, String), String> {
    let mut c = Command::new("curl");
    let max = max_seconds.to_string();
    c.args(["-sS", "--max-time", max.as_str(), "-w", "\n%{http_code}"]);
    if post {
        c.args(["-X", "POST"]);
    }
    if let Some(tls) = tls {
        c.arg("--cacert").arg(&tls.ca);
        if let Some((cert, key)) = &tls.client {
            c.arg("--cert").arg(cert).arg("--key").arg(key);
        }
    }
    let out = c.arg(url).output().map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').ok_or("no status")?;
    Ok((
        code.trim()
            .parse()
            .map_err(|_| format!("status {code:?}"))?,
        body.to_string(),
    ))
}

/// A running `etcdbr server`.
pub struct Sidecar {
    pub process: ServerProcess,
    pub url: String,
    pub dir: PathBuf,
    /// What to trust (and present) when the API serves TLS.
    pub tls: Option<CurlTls>,
}

/// Options of a sidecar under test.
pub struct SidecarOptions<'a> {
    pub etcd: &'a EtcdMember,
    /// Client URLs of the whole cluster (defaults to the member's).
    pub service_endpoints: Option<String>,
    pub store: &'a Store,
    pub prefix: &'a str,
    pub delta_period: &'a str,
    pub schedule: &'a str,
    pub extra: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Bind address (defaults to the etcd member's IP).
    pub port: Option<u16>,
}

impl<'a> SidecarOptions<'a> {
    pub fn new(etcd: &'a EtcdMember, store: &'a Store, prefix: &'a str) -> Self {
        SidecarOptions {
            etcd,
            service_endpoints: None,
            store,
            prefix,
            delta_period: "1s",
            // Never during a test: full snapshots are requested explicitly.
            schedule: "0 0 1 1 *",
            extra: Vec::new(),
            env: Vec::new(),
            port: None,
        }
    }
}

impl Sidecar {
    pub fn start(o: &SidecarOptions<'_>) -> Sidecar {
        let port = o.port.unwrap_or_else(|| free_port().unwrap());
        let dir = server_dir(&format!("etcdbr-sidecar-{}-{port}", o.etcd.ip())).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_etcdbr"));
        c.arg("server")
            .arg(format!("--server-port={port}"))
            .arg(format!("--server-address={}", o.etcd.ip()))
            .arg(format!("--endpoints={}", o.etcd.client_url()))
            .arg(format!("--store-prefix={}", o.prefix))
            .arg(format!("--schedule={}", o.schedule))
            .arg(format!("--delta-snapshot-period={}", o.delta_period))
            .arg("--garbage-collection-period=0s")
            .arg("--reelection-period=1s")
            .arg(format!("--data-dir={}", o.etcd.data_dir().display()))
            .arg(format!("--name={}", o.etcd.name()))
            .arg(format!(
                "--initial-cluster={}",
                o.etcd.config().initial_cluster()
            ))
            .arg(format!("--initial-cluster-token={}", o.etcd.config().token))
            .arg(format!(
                "--initial-advertise-peer-urls={}",
                o.etcd.peer_url()
            ))
            .arg(format!(
                "--snapstore-temp-directory={}",
                dir.join("tmp").display()
            ))
            .arg(format!(
                "--restoration-temp-snapshots-dir={}",
                dir.join("restore").display()
            ));
        tools(&mut c);
        if let Some(s) = &o.service_endpoints {
            c.arg(format!("--service-endpoints={s}"));
        }
        o.store.args(&mut c);
        c.args(&o.extra);
        for (k, v) in &o.env {
            c.env(k, v);
        }
        let process =
            ServerProcess::spawn(&format!("etcdbr {port}"), c, &dir.join("etcdbr.log")).unwrap();
        let flag = |name: &str| {
            o.extra
                .iter()
                .find_map(|a| a.strip_prefix(name))
                .map(PathBuf::from)
        };
        let tls = flag("--server-cert=").map(|ca| CurlTls {
            ca,
            client: flag("--api-client-cert=").zip(flag("--api-client-key=")),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}:{port}", o.etcd.ip());
        let probe = format!("{url}/metrics");
        process
            .wait_ready(Duration::from_secs(120), || {
                let (code, body) = probe_get(&probe, tls.as_ref())?;
                if code == 200 {
                    Ok(true)
                } else {
                    Err(format!("GET {probe}: HTTP {code}: {body}"))
                }
            })
            .unwrap();
        Sidecar {
            process,
            url,
            dir,
            tls,
        }
    }

    /// GET `path`, waiting out the on-demand rate limit (429) as a
    /// well-behaved client does.
    pub fn get(&self, path: &str) -> (u16, String) {
        let start = Instant::now();
        loop {
            let (code, body) = self.get_once(path);
            if code != 429 {
                return (code, body);
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "GET {path}: still rate-limited after 120 s: {body}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// GET `path` once, giving up after `max_seconds` (an error then).
    pub fn get_within(&self, path: &str, max_seconds: u32) -> Result<(u16, String), String> {
        curl_get(
            &format!("{}{path}", self.url),
            self.tls.as_ref(),
            max_seconds,
        )
    }

    /// GET `path` once, whatever the answer.
    pub fn get_once(&self, path: &str) -> (u16, String) {
        https_get(&format!("{}{path}", self.url), self.tls.as_ref()).unwrap()
    }

    /// Waits until `/healthz` says 200 (this member leads and the
    /// snapshotter runs).
    pub fn wait_leading(&self) {
        self.process
            .wait_ready(Duration::from_secs(60), || {
                let (code, body) = probe_get(&format!("{}/healthz", self.url), self.tls.as_ref())?;
                if code == 200 {
                    Ok(true)
                } else {
                    Err(format!(
                        "/healthz (this member leads and snapshots): HTTP {code}: {body}"
                    ))
                }
            })
            .unwrap();
    }

    /// Waits until the store holds a full snapshot. With an empty store the
    /// snapshotter takes one when it starts, which may be after `/healthz`
    /// says 200: writes before it land in it, not in a delta.
    pub fn wait_full_snapshot(&self) {
        let start = Instant::now();
        while self.latest()["fullSnapshot"].is_null() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no full snapshot in the store after 60 s:\n{}",
                self.process.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs initialization through the HTTP API as etcd-wrapper does and
    /// returns the final status.
    pub fn initialize(&self, mode: &str) -> String {
        let start = Instant::now();
        loop {
            let (code, status) = self.get("/initialization/status");
            assert_eq!(code, 200, "GET /initialization/status: {status}");
            match status.as_str() {
                "New" => {
                    let (code, body) = self.get(&format!("/initialization/start?mode={mode}"));
                    assert_eq!(code, 200, "GET /initialization/start?mode={mode}: {body}");
                }
                "Progress" => {}
                done => return done.to_string(),
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "initialization (mode {mode}) did not finish within 300 s; last status {status}; sidecar log:\n{}",
                self.process.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `/snapshot/latest` answer.
    pub fn latest(&self) -> serde_json::Value {
        let (code, body) = self.get("/snapshot/latest");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The last revision the store covers, from `/snapshot/latest`.
    pub fn store_revision(&self) -> i64 {
        let latest = self.latest();
        latest["deltaSnapshots"]
            .as_array()
            .and_then(|d| d.last())
            .or(latest.get("fullSnapshot"))
            .and_then(|s| s["lastRevision"].as_i64())
            .unwrap_or(0)
    }

    /// Waits until the store covers `revision`.
    pub fn wait_store_revision(&self, revision: i64) {
        let start = Instant::now();
        while self.store_revision() < revision {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the store did not reach revision {revision} (at {}):\n{}",
                self.store_revision(),
                self.process.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// The sidecar's log file.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.process.log_path().to_path_buf()
    }
}

/// A client of the shared test kube-apiserver.
pub async fn kube_client() -> kube::Client {
    let server = druid_test_support::KubeApiServer::shared();
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

pub async fn create_lease(api: &Api<Lease>, name: &str) {
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {}
    }))
    .unwrap();
    api.create(&PostParams::default(), &lease).await.unwrap();
}

pub async fn holder(api: &Api<Lease>, name: &str) -> String {
    api.get(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default()
}

pub async fn wait_holder(api: &Api<Lease>, name: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let h = holder(api, name).await;
        if ok(&h) {
            return h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "lease {name} holder {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The annotations of a lease.
pub async fn lease_annotations(
    api: &Api<Lease>,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    api.get(name)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default()
}

/// A fresh namespace for leases, and the Lease API in it.
pub async fn lease_namespace(label: &str) -> (String, Api<Lease>) {
    let namespace = format!("etcdbr-{label}-{}", std::process::id());
    let kube = kube_client().await;
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
    Api::<Namespace>::all(kube.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let leases = Api::namespaced(kube, &namespace);
    (namespace, leases)
}

/// Seconds since a lease was renewed.
pub async fn lease_age(api: &Api<Lease>, name: &str) -> i64 {
    let renewed = api
        .get(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.renew_time)
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    k8s_openapi::jiff::Timestamp::now().as_second() - renewed
}

/// Checks that every delta of a `/snapshot/latest` answer starts right
/// after the snapshot before it; returns the last revision the set covers.
pub fn continuous_end(latest: &serde_json::Value) -> i64 {
    let mut prev = latest["fullSnapshot"]["lastRevision"].as_i64().unwrap();
    for d in latest["deltaSnapshots"].as_array().unwrap() {
        assert_eq!(
            d["startRevision"].as_i64(),
            Some(prev + 1),
            "gap in {latest}"
        );
        prev = d["lastRevision"].as_i64().unwrap();
    }
    prev
}

/// A store secret as the pod mounts it: `dir/name` holding one file per
/// key.
pub fn secret_dir(dir: &Path, name: &str, keys: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    for (key, value) in keys {
        std::fs::write(path.join(key), value).unwrap();
    }
    path
}
