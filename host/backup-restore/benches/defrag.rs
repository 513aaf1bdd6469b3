//! Defragmentation figures on a real three-member etcd cluster (loopback):
//! seconds per GiB of database, and a client's latency during the run
//! against the same load without defragmentation.
//!
//! Run: `cargo bench -p druid-backup-restore --bench defrag`.
//! `DRUID_BENCH_DEFRAG_MIB` (default 1024) MiB of 64 KiB values are written,
//! three quarters deleted and compacted before each run. Three runs under
//! the same load (`DRUID_BENCH_DEFRAG_LOAD_TASKS` = 8 tasks doing put+get
//! of 1 KiB through all endpoints):
//! - `none`: no defragmentation, as long as the etcdbr run took (baseline);
//! - `etcdbr`: `/defragment` on the leader's `etcdbr server`: followers one
//!   at a time, leadership moved, the former leader last;
//! - `in-place`: the peer, upstream's order without moving leadership:
//!   `etcdctl defrag` of each follower, then of the leader.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a bench binary that prints its figures"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Sidecar, SidecarOptions, Store};
use druid_test_support::EtcdMember;
use etcd_client::{Client, CompactionOptions};
use tokio::sync::Mutex;

const VALUE: usize = 64 << 10;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn fill_and_fragment(client: &Client, mib: usize) {
    let n = mib * (1 << 20) / VALUE;
    let mut value = vec![0u8; VALUE];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    // Several writers: filling a GiB sequentially takes long.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for b in value.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for _ in 0..8 {
        let mut c = client.clone();
        let value = value.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let mut v = value.clone();
                v[..8].copy_from_slice(&(i as u64).to_le_bytes());
                c.put(format!("/bench/{i:08}"), v, None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = client.clone();
    for i in 0..n {
        if i % 4 != 0 {
            c.delete(format!("/bench/{i:08}"), None).await.unwrap();
        }
    }
    let rev = c.status().await.unwrap().header().unwrap().revision();
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
}

/// Latencies of a load running until `stop`.
async fn load(endpoints: Vec<String>, tasks: usize, stop: Arc<AtomicBool>) -> (Vec<Duration>, u64) {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let endpoint = endpoints[t % endpoints.len()].clone();
        let (latencies, failed, stop) = (latencies.clone(), failed.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut c = Client::connect([endpoint], None).await.unwrap();
            let mut i = 0u64;
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("/load/{t}/{}", i % 1000);
                let start = Instant::now();
                let ok = c.put(key.clone(), vec![b'v'; 1024], None).await.is_ok()
                    && c.get(key, None).await.is_ok();
                mine.push(start.elapsed());
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                // About 100 put+get pairs per second per task.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies.lock().await.extend(mine);
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut all = std::mem::take(&mut *latencies.lock().await);
    all.sort();
    (all, failed.load(Ordering::Relaxed))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn db_sizes(members: &[EtcdMember]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for m in members {
        let mut c = Client::connect([m.client_url()], None).await.unwrap();
        let s = c.status().await.unwrap();
        out.push((s.db_size(), s.raft_used_db_size()));
    }
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let mib = env_usize("DRUID_BENCH_DEFRAG_MIB", 1024);
    let tasks = env_usize("DRUID_BENCH_DEFRAG_LOAD_TASKS", 8);
    println!(
        "cargo bench -p druid-backup-restore --bench defrag  (DRUID_BENCH_DEFRAG_MIB={mib}, DRUID_BENCH_DEFRAG_LOAD_TASKS={tasks})"
    );
    let members = common::start_members(
        "bench-defrag",
        3,
        &[format!("--quota-backend-bytes={}", 8u64 << 30)],
    );
    let endpoints: Vec<String> = members.iter().map(EtcdMember::client_url).collect();
    let all = endpoints.join(",");
    let client = Client::connect(endpoints.clone(), None).await.unwrap();
    let store = Store::local("bench-defrag");

    let mut rows = Vec::new();
    let mut etcdbr_seconds = 10.0;
    for mode in ["etcdbr", "none", "in-place"] {
        if mode != "none" {
            eprintln!("filling {mib} MiB and fragmenting for {mode}");
            fill_and_fragment(&client, mib).await;
            // Let every member finish applying and compacting, so each run
            // starts from a settled cluster.
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        // The coordinator is up before the load and the clock start.
        let sidecar = if mode == "etcdbr" {
            let leader = &members[common::leader_index(&mut client.clone(), &members).await];
            let sidecar = Sidecar::start(&SidecarOptions {
                service_endpoints: Some(all.clone()),
                extra: vec![
                    "--defragmentation-threshold-bytes=1Mi".into(),
                    "--etcd-defrag-timeout=30m".into(),
                    // No store: no start-up full snapshot competes with
                    // the run (a repeated flag takes its last value).
                    "--storage-provider=".into(),
                ],
                ..SidecarOptions::new(leader, &store, "bench")
            });
            sidecar.wait_leading();
            Some(sidecar)
        } else {
            None
        };
        let before = db_sizes(&members).await;
        let stop = Arc::new(AtomicBool::new(false));
        let load_task = tokio::spawn(load(endpoints.clone(), tasks, stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        let mut per_member = Vec::new();
        match mode {
            "etcdbr" => {
                let Some(sidecar) = &sidecar else {
                    unreachable!()
                };
                let started_run = Instant::now();
                let url = format!("{}/defragment", sidecar.url);
                let (code, body) =
                    tokio::task::spawn_blocking(move || common::http_get_long(&url).unwrap())
                        .await
                        .unwrap();
                assert_eq!(code, 200, "{body}");
                etcdbr_seconds = started_run.elapsed().as_secs_f64();
                let report: serde_json::Value = serde_json::from_str(&body).unwrap();
                for m in report["members"].as_array().unwrap() {
                    per_member.push((
                        m["name"].as_str().unwrap().to_string(),
                        m["dbSizeBefore"].as_i64().unwrap(),
                        m["dbSizeAfter"].as_i64().unwrap(),
                        m["durationSeconds"].as_f64().unwrap(),
                    ));
                }
            }
            "none" => tokio::time::sleep(Duration::from_secs_f64(etcdbr_seconds)).await,
            _ => {
                let mut c = client.clone();
                let leader_id = c.status().await.unwrap().leader();
                let list = c.member_list().await.unwrap();
                let mut order: Vec<(String, String, bool)> = list
                    .members()
                    .iter()
                    .map(|m| {
                        (
                            m.name().to_string(),
                            m.client_urls()[0].clone(),
                            m.id() == leader_id,
                        )
                    })
                    .collect();
                order.sort_by_key(|(_, _, leader)| *leader);
                let etcdctl = druid_test_support::find_binary("etcdctl", "etcd").unwrap();
                for (name, url, _) in order {
                    let i = members.iter().position(|m| m.name() == name).unwrap();
                    let t = Instant::now();
                    let out = std::process::Command::new(&etcdctl)
                        .env("ETCDCTL_API", "3")
                        .args([
                            "--command-timeout=30m",
                            "defrag",
                            &format!("--endpoints={url}"),
                        ])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let after = db_sizes(&members).await[i].0;
                    per_member.push((name, before[i].0, after, t.elapsed().as_secs_f64()));
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let (lat, failed) = load_task.await.unwrap();
        rows.push((
            mode,
            elapsed,
            before,
            per_member,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 1.0),
            lat.len(),
            failed,
        ));
    }

    println!();
    println!(
        "{:<10} {:>9} {:>9} {:>10} {:>10} {:>10} {:>8} {:>7}",
        "run", "seconds", "ops", "p50 ms", "p99 ms", "max ms", "failed", ""
    );
    for (mode, elapsed, _, _, p50, p99, max, n, failed) in &rows {
        println!(
            "{mode:<10} {elapsed:>9.1} {n:>9} {p50:>10.2} {p99:>10.2} {max:>10.1} {failed:>8}"
        );
    }
    println!();
    println!(
        "{:<10} {:<6} {:>12} {:>12} {:>9} {:>10}",
        "run", "member", "db MiB", "after MiB", "seconds", "s per GiB"
    );
    for (mode, _, _, per_member, ..) in &rows {
        for (name, before, after, secs) in per_member {
            let gib = *before as f64 / (1u64 << 30) as f64;
            println!(
                "{mode:<10} {name:<6} {:>12.0} {:>12.0} {secs:>9.2} {:>10.2}",
                *before as f64 / (1 << 20) as f64,
                *after as f64 / (1 << 20) as f64,
                if gib > 0.0 { secs / gib } else { 0.0 }
            );
        }
    }
    println!(
        "(ops: put+get pairs of 1 KiB by {tasks} tasks through all three endpoints, ~100/s each; latency of the pair)"
    );
    // Each member has its own directory (a few GiB of data each).
    for m in &members {
        m.stop();
        let _ = std::fs::remove_dir_all(m.dir());
    }
}
