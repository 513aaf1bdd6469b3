//! Upload and download throughput of the store plugins against their
//! servers on loopback, each side by side with a native client, with each
//! side's peak RSS: the S3 plugin against MinIO next to MinIO's `mc`, the
//! ABS plugin against Azurite next to Microsoft's Go SDK (`azblob-peer`,
//! tests/peers/azblob), the GCS plugin against fake-gcs-server next to
//! Google's Go client (`gcs-peer`, tests/peers/gcs; both without a token,
//! the emulator's mode), the Swift plugin against Swift with Keystone v3
//! next to OpenStack's `swift` CLI (python-swiftclient, its defaults:
//! 16 MiB SLO segments, uploaded 10 at a time), the OSS plugin against
//! MinIO behind the OSS gateway (tests/peers/oss, a fake OSS that checks
//! each signature with Alibaba's Go SDK) next to that SDK (`oss-peer`,
//! its Uploader and GetObject; upstream uses its older aliyun-oss-go-sdk).
//! The Go peers are the clients upstream's Go sidecar uses (OSS: the
//! current SDK), with their defaults, built by
//! `tests/scripts/install-peer.sh <name>` on first use; the `swift` CLI
//! comes with `tests/scripts/install-swift.sh`.
//! Plus plugin instantiation from the precompiled cache and the per-call
//! overhead of a store call (S3).
//!
//! Run: `cargo bench -p druid-plugin-host --bench store_throughput`
//! (`DRUID_BENCH_STORES=s3,abs,gcs,swift,oss`, `DRUID_BENCH_SIZES_MIB=256,1024` by
//! default). Each transfer runs in a child process of its own (this binary
//! in child mode, or the peer), whose peak RSS is read from
//! `/proc/<pid>/status` (VmHWM) while it runs.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::panic,
    reason = "a bench binary that prints its figures"
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use druid_plugin_host::{Limits, PluginHost, Registry, SnapshotStore, StoreConfig};
use druid_test_support::{
    AzuriteServer, FakeGcsServer, MinioServer, OssGateway, SwiftServer, plugin_components,
    repo_root, server_dir,
};

const CHUNK: usize = 8 << 20;
const BUCKET: &str = "bench";

/// Peak RSS (VmHWM, KiB) of a running process, if readable.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `command`, sampling its peak RSS until it exits.
/// With `capture`, stdout is returned; otherwise it is discarded.
fn run_measured(mut command: Command, capture: bool) -> (Duration, u64, String) {
    let start = Instant::now();
    let stdout = if capture {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = command
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(kib) = vm_hwm(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{command:?} failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    let mut out = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut out).unwrap();
    }
    (elapsed, peak, out)
}

/// The store settings a child gets through its environment: provider,
/// container and endpoint, and the credentials as `key=value` lines.
fn store_config_from_env() -> StoreConfig {
    let var = |k: &str| std::env::var(k).unwrap();
    let credentials = var("BENCH_CREDENTIALS");
    let pairs: Vec<(&str, &str)> = credentials
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    store_config(&var("BENCH_PROVIDER"), &var("BENCH_ENDPOINT"), &pairs)
}

fn store_config(provider: &str, endpoint: &str, credentials: &[(&str, &str)]) -> StoreConfig {
    StoreConfig {
        provider: provider.into(),
        container: BUCKET.into(),
        prefix: String::new(),
        endpoint: Some(endpoint.into()),
        credentials: credentials
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        local_root: None,
    }
}

/// A peer command uploading a file as a key.
type PeerUpload = Box<dyn Fn(&Path, &str) -> Command>;
/// A peer command reading a key.
type PeerDownload = Box<dyn Fn(&str) -> Command>;

/// A store to measure: its plugin's configuration and its native client.
struct Target {
    /// `s3`, `abs`, `gcs` or `swift`.
    name: &'static str,
    provider: &'static str,
    endpoint: String,
    credentials: Vec<(String, String)>,
    /// The peer's name in the table.
    peer: &'static str,
    /// The peer's command uploading `file` as `key`.
    peer_upload: PeerUpload,
    /// The peer's command reading `key` (its stdout is discarded).
    peer_download: PeerDownload,
}

fn s3_target(minio: &'static MinioServer) -> Target {
    minio.create_bucket(BUCKET).unwrap();
    Target {
        name: "s3",
        provider: "S3",
        endpoint: minio.endpoint().to_string(),
        credentials: vec![
            ("region".into(), minio.region().into()),
            ("accessKeyID".into(), minio.access_key().into()),
            ("secretAccessKey".into(), minio.secret_key().into()),
        ],
        peer: "mc",
        peer_upload: Box::new(|file, key| {
            let mut c = minio.mc().unwrap();
            c.arg("cp").arg(file).arg(format!("druid/{BUCKET}/{key}"));
            c
        }),
        peer_download: Box::new(|key| {
            let mut c = minio.mc().unwrap();
            c.args(["cat", &format!("druid/{BUCKET}/{key}")]);
            c
        }),
    }
}

/// The benchmark peer `tests/peers/<name>`, built on first use.
fn peer(name: &str) -> PathBuf {
    let install = repo_root().join("tests/scripts/install-peer.sh");
    let status = Command::new("bash")
        .arg(&install)
        .arg(name)
        .status()
        .unwrap();
    assert!(status.success(), "{} {name} failed", install.display());
    druid_test_support::find_binary(&format!("{name}-peer"), "peer").unwrap()
}

/// The upload and download commands of a Go peer: `args(op, key)` are
/// its arguments, and an upload adds the file.
fn peer_commands(
    peer: PathBuf,
    args: impl Fn(&str, &str) -> Vec<String> + 'static,
) -> (PeerUpload, PeerDownload) {
    let args = std::rc::Rc::new(args);
    let (down_peer, down_args) = (peer.clone(), std::rc::Rc::clone(&args));
    (
        Box::new(move |file, key| {
            let mut c = Command::new(&peer);
            c.args(args("upload", key)).arg(file);
            c
        }),
        Box::new(move |key| {
            let mut c = Command::new(&down_peer);
            c.args(down_args("download", key));
            c
        }),
    )
}

fn abs_target(azurite: &'static AzuriteServer) -> Target {
    azurite.create_container(BUCKET).unwrap();
    let (peer_upload, peer_download) = peer_commands(peer("azblob"), |op, key| {
        vec![
            op.to_string(),
            azurite.endpoint().to_string(),
            azurite.account().to_string(),
            azurite.key().to_string(),
            BUCKET.to_string(),
            key.to_string(),
        ]
    });
    Target {
        name: "abs",
        provider: "ABS",
        endpoint: azurite.endpoint().to_string(),
        credentials: vec![
            ("storageAccount".into(), azurite.account().into()),
            ("storageKey".into(), azurite.key().into()),
        ],
        peer: "Go SDK",
        peer_upload,
        peer_download,
    }
}

fn gcs_target(gcs: &'static FakeGcsServer) -> Target {
    gcs.create_bucket(BUCKET).unwrap();
    let (peer_upload, peer_download) = peer_commands(peer("gcs"), |op, key| {
        vec![
            op.to_string(),
            gcs.endpoint().to_string(),
            BUCKET.to_string(),
            key.to_string(),
        ]
    });
    Target {
        name: "gcs",
        provider: "GCS",
        endpoint: format!("{}/storage/v1/", gcs.endpoint()),
        credentials: Vec::new(),
        peer: "Go client",
        peer_upload,
        peer_download,
    }
}

fn swift_target(swift: &'static SwiftServer) -> Target {
    swift.create_container(BUCKET).unwrap();
    // The `swift` CLI signs in with the same user (one sign-in per
    // command, as the plugin's child process makes one).
    let cli = move || {
        let mut c = Command::new("swift");
        c.args(["--auth-version", "3"])
            .args(["--os-auth-url", swift.auth_url()])
            .args(["--os-username", swift.username()])
            .args(["--os-password", swift.password()])
            .args(["--os-project-name", swift.project()])
            .args(["--os-user-domain-name", swift.domain()])
            .args(["--os-project-domain-name", swift.domain()])
            .args(["--os-region-name", swift.region()]);
        c
    };
    Target {
        name: "swift",
        provider: "Swift",
        endpoint: swift.proxy_url().to_string(),
        credentials: swift
            .store_secret(swift.password())
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        peer: "swift CLI",
        peer_upload: Box::new(move |file, key| {
            let mut c = cli();
            c.args(["upload", "--use-slo", "--segment-size", "16777216"])
                .args(["--object-name", key, BUCKET])
                .arg(file);
            c
        }),
        peer_download: Box::new(move |key| {
            let mut c = cli();
            c.args(["download", BUCKET, key, "--output", "-"]);
            c
        }),
    }
}

fn oss_target(oss: &'static OssGateway) -> Target {
    oss.create_bucket(BUCKET).unwrap();
    let (peer_upload, peer_download) = peer_commands(peer("oss"), |op, key| {
        vec![
            op.to_string(),
            oss.endpoint().to_string(),
            OssGateway::ACCESS_KEY.to_string(),
            oss.secret().to_string(),
            OssGateway::REGION.to_string(),
            BUCKET.to_string(),
            key.to_string(),
        ]
    });
    Target {
        name: "oss",
        provider: "OSS",
        endpoint: oss.endpoint().to_string(),
        credentials: oss
            .store_secret(oss.secret())
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        peer: "Go SDK",
        peer_upload,
        peer_download,
    }
}

async fn registry(plugins: &Path, cache: &Path) -> Registry {
    let host = PluginHost::new(Limits::default())
        .unwrap()
        .with_component_cache(cache);
    Registry::load(Arc::new(host), Some(plugins), &[])
        .await
        .unwrap()
}

/// Child mode: one transfer through the plugin host.
async fn child(op: &str, file: &Path, key: &str) {
    let plugins = PathBuf::from(std::env::var("BENCH_PLUGINS").unwrap());
    let cache = PathBuf::from(std::env::var("BENCH_CACHE").unwrap());
    let store = registry(&plugins, &cache)
        .await
        .store(store_config_from_env())
        .unwrap();
    match op {
        "upload" => {
            let size = std::fs::metadata(file).unwrap().len();
            let mut f = std::fs::File::open(file).unwrap();
            let mut up = store.upload(key, Some(size)).await.unwrap();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                up.write(&buf[..n]).await.unwrap();
            }
            up.finish().await.unwrap();
        }
        "download" => {
            let mut down = store.download(key, None).await.unwrap();
            let mut sink = std::io::sink();
            let mut total = 0u64;
            loop {
                let chunk = down.read(CHUNK as u32).await.unwrap();
                if chunk.is_empty() {
                    break;
                }
                total += chunk.len() as u64;
                sink.write_all(&chunk).unwrap();
            }
            println!("{total}");
        }
        other => panic!("unknown child op {other}"),
    }
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        rt.block_on(child(&args[i + 1], Path::new(&args[i + 2]), &args[i + 3]));
        return;
    }

    let plugins = plugin_components().dir().to_path_buf();
    let dir = server_dir("bench-stores").unwrap();
    let cache = dir.join("component-cache");
    let stores = std::env::var("DRUID_BENCH_STORES").unwrap_or_else(|_| "s3,abs".into());
    let targets: Vec<Target> = stores
        .split(',')
        .map(|s| match s.trim() {
            "s3" => s3_target(Box::leak(Box::new(MinioServer::start().unwrap()))),
            "abs" => abs_target(Box::leak(Box::new(AzuriteServer::start().unwrap()))),
            "gcs" => gcs_target(Box::leak(Box::new(FakeGcsServer::start().unwrap()))),
            "swift" => swift_target(Box::leak(Box::new(SwiftServer::start().unwrap()))),
            "oss" => oss_target(Box::leak(Box::new(OssGateway::start().unwrap()))),
            other => {
                panic!("DRUID_BENCH_STORES: unknown store {other:?} (s3, abs, gcs, swift, oss)")
            }
        })
        .collect();
    let me = std::env::current_exe().unwrap();
    let child_cmd = |target: &Target, op: &str, file: &Path, key: &str| {
        let credentials: Vec<String> = target
            .credentials
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut c = Command::new(&me);
        c.args(["--child", op])
            .arg(file)
            .arg(key)
            .env("BENCH_PROVIDER", target.provider)
            .env("BENCH_ENDPOINT", &target.endpoint)
            .env("BENCH_CREDENTIALS", credentials.join("\n"))
            .env("BENCH_PLUGINS", &plugins)
            .env("BENCH_CACHE", &cache);
        c
    };

    if let Some(s3) = targets.iter().find(|t| t.name == "s3") {
        per_call_overhead(&rt, s3, &plugins, &cache);
    }

    let sizes: Vec<u64> = std::env::var("DRUID_BENCH_SIZES_MIB")
        .unwrap_or_else(|_| "256,1024".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    println!();
    println!(
        "{:<6} {:<10} {:<9} {:>12} {:>12} {:>7} {:>14} {:>14}",
        "store",
        "size",
        "op",
        "plugin MiB/s",
        "peer MiB/s",
        "ratio",
        "plugin RSS MiB",
        "peer RSS MiB"
    );
    for target in &targets {
        for &mib in &sizes {
            let bytes = mib << 20;
            let file = dir.join(format!("object-{mib}"));
            if std::fs::metadata(&file).map(|m| m.len()).ok() != Some(bytes) {
                let mut f = std::fs::File::create(&file).unwrap();
                let block: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + i / 4096) as u8).collect();
                for _ in 0..(bytes / CHUNK as u64) {
                    f.write_all(&block).unwrap();
                }
            }
            let key = format!("object-{mib}");
            let (pu, pu_rss, _) = run_measured(
                child_cmd(target, "upload", &file, &format!("{key}-plugin")),
                false,
            );
            let (mu, mu_rss, _) =
                run_measured((target.peer_upload)(&file, &format!("{key}-peer")), false);
            // Each side reads what the other wrote.
            let (pd, pd_rss, got) = run_measured(
                child_cmd(target, "download", &file, &format!("{key}-peer")),
                true,
            );
            assert_eq!(
                got.trim(),
                bytes.to_string(),
                "the plugin read back the whole object"
            );
            let (md, md_rss, _) =
                run_measured((target.peer_download)(&format!("{key}-plugin")), false);
            let row = |op: &str, p: Duration, m: Duration, prss: u64, mrss: u64| {
                println!(
                    "{:<6} {:<10} {:<9} {:>12.0} {:>12.0} {:>7.2} {:>14.1} {:>14.1}",
                    target.name,
                    format!("{mib} MiB"),
                    op,
                    mib_per_s(bytes, p),
                    mib_per_s(bytes, m),
                    mib_per_s(bytes, p) / mib_per_s(bytes, m),
                    prss as f64 / 1024.0,
                    mrss as f64 / 1024.0
                );
            };
            row("upload", pu, mu, pu_rss, mu_rss);
            row("download", pd, md, pd_rss, md_rss);
        }
        println!("(peer of {}: {})", target.name, target.peer);
    }
}

/// Instantiation from the cache and the per-call overhead of the S3
/// plugin, in this process.
fn per_call_overhead(rt: &tokio::runtime::Runtime, s3: &Target, plugins: &Path, cache: &Path) {
    let credentials: Vec<(&str, &str)> = s3
        .credentials
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let config = store_config(s3.provider, &s3.endpoint, &credentials);
    let store = rt.block_on(async { registry(plugins, cache).await.store(config).unwrap() });
    let t = Instant::now();
    let host = PluginHost::new(Limits::default())
        .unwrap()
        .with_component_cache(cache);
    let plugin = host
        .load_file(&plugins.join("druid_plugin_s3.wasm"))
        .unwrap();
    let load = t.elapsed();
    println!(
        "plugin load from the precompiled cache: {:.2} ms ({:?})",
        load.as_secs_f64() * 1e3,
        plugin.compiled_from()
    );
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        rt.block_on(host.describe(&plugin)).unwrap();
    }
    println!(
        "describe (fresh store + instantiate + call): {:.1} µs per call",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    rt.block_on(store.put("tiny", b"x")).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        rt.block_on(store.head("tiny")).unwrap();
    }
    let plugin_head = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "head of a 1-byte object through the plugin (fresh store + open + HEAD): {plugin_head:.0} µs per call"
    );
}
