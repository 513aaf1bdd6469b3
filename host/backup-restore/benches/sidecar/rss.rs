//! The `rss` scenario: the sidecar's memory while etcd takes a steady write load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use druid_backup_restore::formats::names::{Snapshot, SnapshotKind};
use druid_test_support::{ServerProcess, free_port, http_get, server_dir};

use crate::common::*;

// ---------------------------------------------------------------- rss

pub(crate) fn rss_scenario(b: &Bench, rt: &tokio::runtime::Runtime) {
    wait_for_quiet_machine();
    b.warm_plugin_cache();
    let secs = env_u64("DRUID_BENCH_LOAD_SECS", 60);
    let rate = env_u64("DRUID_BENCH_LOAD_RATE", 10_000);
    let tasks = env_u64("DRUID_BENCH_LOAD_TASKS", 64);
    let prefix = "rss";

    let etcd = b.etcd("rss", None).start().unwrap();
    let port = free_port().unwrap();
    let sidecar_dir = server_dir(&format!("etcdbr-sidecar-{port}")).unwrap();
    // Extra flags for experiments; the delta period defaults to 10 s.
    let mut extra: Vec<String> = std::env::var("DRUID_BENCH_SIDECAR_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    if !extra
        .iter()
        .any(|a| a.starts_with("--delta-snapshot-period"))
    {
        extra.push("--delta-snapshot-period=10s".into());
    }
    let mut c = b.etcdbr("server", prefix);
    c.arg(format!("--server-port={port}"))
        .arg("--server-address=127.0.0.1")
        .arg(format!("--endpoints={}", etcd.client_url()))
        .arg("--schedule=0 0 1 1 *")
        .args(&extra)
        .arg(format!("--data-dir={}", etcd.data_dir().display()))
        .arg(format!("--name={}", etcd.name()))
        .arg(format!(
            "--initial-cluster={}",
            etcd.config().initial_cluster()
        ))
        .arg(format!("--initial-cluster-token={}", etcd.config().token))
        .arg(format!("--initial-advertise-peer-urls={}", etcd.peer_url()))
        .arg(format!(
            "--snapstore-temp-directory={}",
            sidecar_dir.join("tmp").display()
        ))
        .arg(format!(
            "--restoration-temp-snapshots-dir={}",
            sidecar_dir.join("restore").display()
        ))
        .arg(format!("--etcd-binary={}", b.etcd.display()))
        .arg(format!("--etcdctl-binary={}", b.restore_tool.display()));
    let sidecar =
        ServerProcess::spawn("etcdbr server", c, &sidecar_dir.join("etcdbr.log")).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    sidecar
        .wait_ready(Duration::from_secs(120), || {
            Ok(http_get(&format!("{url}/healthz"))?.0 == 200)
        })
        .unwrap();
    let store_revision = || -> i64 {
        let Ok((200, body)) = http_get(&format!("{url}/snapshot/latest")) else {
            return 0;
        };
        let latest: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        latest["deltaSnapshots"]
            .as_array()
            .and_then(|d| d.last())
            .or(latest.get("fullSnapshot"))
            .and_then(|s| s["lastRevision"].as_i64())
            .unwrap_or(0)
    };
    // The initial full snapshot of the empty etcd is in the store.
    let t = Instant::now();
    while !b
        .snapshots(prefix)
        .iter()
        .any(|s| s.0.kind == SnapshotKind::Full)
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no initial full snapshot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // RSS sampler.
    let pid = sidecar.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = proc_status_kib(pid, "VmRSS:") {
                    samples.push(kib);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };

    eprintln!("rss: {rate} puts/s for {secs} s from {tasks} tasks");
    let start_rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let etcd_pid = etcd.process().pid();
    let cpu_before = (
        cpu_secs(pid).unwrap_or(0.0),
        cpu_secs(etcd_pid).unwrap_or(0.0),
    );
    let (done, elapsed, etcd_revision) = rt.block_on(async {
        let values: Arc<Vec<Vec<u8>>> = Arc::new({
            let mut rng = Rng::new(7);
            (0..1024).map(|_| rng.bytes(SMALL_VALUE)).collect()
        });
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(etcd.client().await);
        }
        let next = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let max_rev = Arc::new(AtomicI64::new(0));
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let mut handles = Vec::new();
        for t in 0..tasks {
            let mut kv = clients[t as usize % clients.len()].kv_client();
            let (next, done, max_rev, values) =
                (next.clone(), done.clone(), max_rev.clone(), values.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let r = kv
                        .put(
                            format!("/bench/load/{:06}", i % 100_000),
                            values[i as usize % values.len()].clone(),
                            None,
                        )
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                    max_rev.fetch_max(r.header().unwrap().revision(), Ordering::Relaxed);
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        (
            done.load(Ordering::Relaxed),
            start.elapsed(),
            max_rev.load(Ordering::Relaxed),
        )
    });
    let revision = rt.block_on(async {
        etcd.client()
            .await
            .status()
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision()
    });
    assert!(revision >= etcd_revision);
    let behind = revision - store_revision();
    eprintln!(
        "rss: {done} puts in {:.1} s; waiting for the store to reach revision {revision}",
        elapsed.as_secs_f64()
    );
    let t = Instant::now();
    let mut caught_up = None;
    while t.elapsed() < Duration::from_secs(120) {
        if store_revision() >= revision {
            caught_up = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let cpu = (
        cpu_secs(pid).unwrap_or(0.0) - cpu_before.0,
        cpu_secs(etcd_pid).unwrap_or(0.0) - cpu_before.1,
    );
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let final_store_revision = store_revision();
    let (_, latest) = http_get(&format!("{url}/snapshot/latest")).unwrap();
    let latest: serde_json::Value = serde_json::from_str(&latest).unwrap();
    let latest_deltas = latest["deltaSnapshots"].as_array().map_or(0, Vec::len);
    let listed = b.snapshots(prefix);
    let incr: Vec<&(Snapshot, u64)> = listed
        .iter()
        .filter(|s| s.0.kind == SnapshotKind::Incr)
        .collect();
    let incr_bytes: u64 = incr.iter().map(|s| s.1).sum();
    let early = std::fs::read_to_string(sidecar.log_path())
        .unwrap_or_default()
        .matches("delta memory limit reached")
        .count();
    sidecar.stop();
    drop(sidecar);
    etcd.stop();
    remove_dir(etcd.data_dir());

    let max = samples.iter().copied().max().unwrap_or(0);
    let mean = samples.iter().sum::<u64>() / samples.len().max(1) as u64;
    let mut sorted = samples.clone();
    sorted.sort_unstable();
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    println!();
    println!(
        "== rss: etcdbr server ({}, MinIO) while {tasks} tasks put 512-byte random values at a target of {rate}/s for {secs} s",
        extra.join(" ")
    );
    let mut vars = vec![
        ("DRUID_BENCH", "rss".to_string()),
        ("DRUID_BENCH_LOAD_SECS", secs.to_string()),
        ("DRUID_BENCH_LOAD_RATE", rate.to_string()),
        ("DRUID_BENCH_LOAD_TASKS", tasks.to_string()),
    ];
    if let Ok(args) = std::env::var("DRUID_BENCH_SIDECAR_ARGS") {
        vars.push(("DRUID_BENCH_SIDECAR_ARGS", format!("'{args}'")));
    }
    println!("   reproduce: {}", reproduce(&vars));
    let kv = |k: &str, v: String| println!("{k:<50} {v}");
    kv("puts done", done.to_string());
    kv(
        "achieved puts/s",
        format!("{:.0}", done as f64 / elapsed.as_secs_f64()),
    );
    kv(
        "deltas uploaded (Incr- objects / latest set)",
        format!(
            "{} / {latest_deltas} ({early} cut early at the memory limit)",
            incr.len()
        ),
    );
    kv(
        "delta bytes stored (gzip)",
        format!(
            "{:.1} MiB ({:.0} KiB per delta)",
            mib(incr_bytes),
            incr_bytes as f64 / 1024.0 / incr.len().max(1) as f64
        ),
    );
    kv(
        "sidecar RSS before load",
        format!("{:.1} MiB", kib_to_mib(start_rss)),
    );
    kv(
        "sidecar RSS sampled every 100 ms",
        format!(
            "max {:.1} MiB, median {:.1} MiB, mean {:.1} MiB ({} samples)",
            kib_to_mib(max),
            kib_to_mib(p50),
            kib_to_mib(mean),
            samples.len()
        ),
    );
    kv(
        "sidecar peak RSS (VmHWM)",
        format!(
            "{:.1} MiB (goal < 100 MiB: {})",
            kib_to_mib(hwm),
            if hwm < 100 * 1024 { "met" } else { "MISSED" }
        ),
    );
    kv(
        "etcd revision at the end / store's last revision",
        format!("{revision} / {final_store_revision}"),
    );
    kv(
        "revisions not yet in the store when the load ended",
        behind.to_string(),
    );
    kv(
        "CPU during load + catch-up: sidecar / etcd",
        format!(
            "{:.1} s / {:.1} s (sidecar: {:.0} µs per revision)",
            cpu.0,
            cpu.1,
            cpu.0 * 1e6 / done.max(1) as f64
        ),
    );
    kv(
        "store caught up after the load ended",
        match caught_up {
            Some(d) => format!("yes, after {:.1} s", d.as_secs_f64()),
            None => "NO (not within 120 s)".into(),
        },
    );
    let _ = b
        .mc()
        .args(["rm", "--recursive", "--force"])
        .arg(format!("druid/{BUCKET}/{prefix}/"))
        .output();
}
