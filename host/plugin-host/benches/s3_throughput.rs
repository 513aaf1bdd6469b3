//! Upload and download throughput of the S3 plugin against MinIO on
//! loopback, side by side with MinIO's native client `mc`, with each side's
//! peak RSS; plus plugin instantiation from the precompiled cache and the
//! per-call overhead of a store call.
//!
//! Run: `cargo bench -p druid-plugin-host --bench s3_throughput`
//! (`DRUID_BENCH_SIZES_MIB=256,1024` by default). Each transfer runs in a
//! child process of its own (this binary in child mode, or `mc`), whose
//! peak RSS is read from `/proc/<pid>/status` (VmHWM) while it runs.
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
use druid_test_support::{MinioServer, plugin_components, server_dir};

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

/// The store settings a child gets through its environment.
fn store_config_from_env() -> StoreConfig {
    let var = |k: &str| std::env::var(k).unwrap();
    store_config(
        &var("BENCH_ENDPOINT"),
        &var("BENCH_REGION"),
        &var("BENCH_ACCESS_KEY"),
        &var("BENCH_SECRET_KEY"),
    )
}

fn store_config(endpoint: &str, region: &str, access: &str, secret: &str) -> StoreConfig {
    StoreConfig {
        provider: "S3".into(),
        container: BUCKET.into(),
        prefix: String::new(),
        endpoint: Some(endpoint.into()),
        credentials: [
            ("region", region),
            ("accessKeyID", access),
            ("secretAccessKey", secret),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        local_root: None,
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
    let minio = MinioServer::start().unwrap();
    minio.create_bucket(BUCKET).unwrap();
    let dir = server_dir("bench-s3").unwrap();
    let cache = dir.join("component-cache");
    let me = std::env::current_exe().unwrap();
    let child_cmd = |op: &str, file: &Path, key: &str| {
        let mut c = Command::new(&me);
        c.args(["--child", op])
            .arg(file)
            .arg(key)
            .env("BENCH_ENDPOINT", minio.endpoint())
            .env("BENCH_REGION", minio.region())
            .env("BENCH_ACCESS_KEY", minio.access_key())
            .env("BENCH_SECRET_KEY", minio.secret_key())
            .env("BENCH_PLUGINS", &plugins)
            .env("BENCH_CACHE", &cache);
        c
    };

    // Instantiation from the cache and per-call overhead, in this process.
    let config = store_config(
        minio.endpoint(),
        minio.region(),
        minio.access_key(),
        minio.secret_key(),
    );
    let store = rt.block_on(async { registry(&plugins, &cache).await.store(config).unwrap() });
    let t = Instant::now();
    let host = PluginHost::new(Limits::default())
        .unwrap()
        .with_component_cache(&cache);
    let s3 = host
        .load_file(&plugins.join("druid_plugin_s3.wasm"))
        .unwrap();
    let load = t.elapsed();
    println!(
        "plugin load from the precompiled cache: {:.2} ms ({:?})",
        load.as_secs_f64() * 1e3,
        s3.compiled_from()
    );
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        rt.block_on(host.describe(&s3)).unwrap();
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
    let t = Instant::now();
    for _ in 0..n {
        let out = minio
            .mc()
            .unwrap()
            .args(["stat", &format!("druid/{BUCKET}/tiny")])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let mc_stat = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "head of a 1-byte object through the plugin (fresh store + open + HEAD): {plugin_head:.0} µs per call (mc stat, a process per call: {mc_stat:.0} µs)"
    );

    let sizes: Vec<u64> = std::env::var("DRUID_BENCH_SIZES_MIB")
        .unwrap_or_else(|_| "256,1024".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    println!();
    println!(
        "{:<10} {:<9} {:>12} {:>12} {:>7} {:>14} {:>14}",
        "size", "op", "plugin MiB/s", "mc MiB/s", "ratio", "plugin RSS MiB", "mc RSS MiB"
    );
    for mib in sizes {
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
        let (pu, pu_rss, _) =
            run_measured(child_cmd("upload", &file, &format!("{key}-plugin")), false);
        let mut mc_up = minio.mc().unwrap();
        mc_up
            .arg("cp")
            .arg(&file)
            .arg(format!("druid/{BUCKET}/{key}-mc"));
        let (mu, mu_rss, _) = run_measured(mc_up, false);
        // Each side reads what the other wrote.
        let (pd, pd_rss, got) =
            run_measured(child_cmd("download", &file, &format!("{key}-mc")), true);
        assert_eq!(
            got.trim(),
            bytes.to_string(),
            "the plugin read back the whole object"
        );
        let mut mc_down = minio.mc().unwrap();
        mc_down.args(["cat", &format!("druid/{BUCKET}/{key}-plugin")]);
        let (md, md_rss, _) = run_measured(mc_down, false);
        let row = |op: &str, p: Duration, m: Duration, prss: u64, mrss: u64| {
            println!(
                "{:<10} {:<9} {:>12.0} {:>12.0} {:>7.2} {:>14.1} {:>14.1}",
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
}
