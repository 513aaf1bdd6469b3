//! Benchmark (not a test): creates N Etcd resources (default 1,000) against
//! a real kube-apiserver with the real `druid` binary running, and reports
//! the time until every one has its StatefulSet and a status for its
//! generation, and the operator's peak RSS (VmHWM).
//!
//! `cargo bench -p druid-operator --bench thousand_etcds`
//! (`DRUID_BENCH_ETCDS=200` for a smaller run, `DRUID_BENCH_WORKERS` for the
//! operator's `--workers`, default 16).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs,
    reason = "a bench binary prints its figures and fails loudly"
)]

use std::process::Command;
use std::time::{Duration, Instant};

use druid_api::Etcd;
use druid_test_support::{
    KubeApiServer, ServerProcess, find_binary, free_port, repo_root, server_dir,
};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

fn kubectl(args: &[&str]) {
    let out = Command::new(find_binary("kubectl", "kube").unwrap())
        .env("KUBECONFIG", KubeApiServer::shared().kubeconfig())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("DRUID_BENCH_ETCDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let server = KubeApiServer::shared();
    server
        .install_crds(&repo_root().join("deploy/crds"))
        .unwrap();
    kubectl(&["create", "namespace", "bench"]);
    kubectl(&[
        "-n",
        "bench",
        "create",
        "secret",
        "generic",
        "etcd-backup",
        "--from-literal=accessKeyID=AKIAEXAMPLE",
        "--from-literal=secretAccessKey=example-secret",
        "--from-literal=region=eu-west-1",
    ]);

    let port = free_port().unwrap();
    let dir = server_dir(&format!("druid-bench-{port}")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_druid"));
    cmd.env("KUBECONFIG", server.kubeconfig())
        .env("RUST_LOG", "warn")
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--leader-election-namespace",
            "kube-system",
            "--workers",
            &std::env::var("DRUID_BENCH_WORKERS").unwrap_or_else(|_| "16".into()),
        ]);
    let druid = ServerProcess::spawn("druid", cmd, &dir.join("druid.log")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_kib = vm_hwm_kib(druid.pid());

    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let etcds: Api<Etcd> = Api::namespaced(client.clone(), "bench");
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "bench");
    let seed: Etcd = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/samples/seed-etcd.yaml")).unwrap(),
    )
    .unwrap();

    let start = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let mut e = seed.clone();
            e.metadata.name = Some(format!("etcd-{i:04}"));
            e.metadata.namespace = Some("bench".into());
            e.status = None;
            let etcds = etcds.clone();
            async move {
                etcds.create(&PostParams::default(), &e).await.unwrap();
            }
        })
        .await;
    let created = start.elapsed();
    let mut peak_kib = 0;
    loop {
        peak_kib = peak_kib.max(vm_hwm_kib(druid.pid()));
        let with_sts = sts
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        if with_sts < n {
            if start.elapsed() > Duration::from_secs(900) {
                panic!(
                    "only {with_sts} StatefulSets of {n} after 900 s; log: {}",
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let with_status = etcds
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|e| {
                e.status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation == e.metadata.generation)
            })
            .count();
        if with_sts >= n && with_status >= n {
            break;
        }
        if start.elapsed() > Duration::from_secs(900) {
            panic!(
                "only {with_sts} StatefulSets and {with_status} statuses of {n} after 900 s; log: {}",
                dir.display()
            );
        }
        // Polling is itself API load: once a second, metadata first.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let all_done = start.elapsed();
    peak_kib = peak_kib.max(vm_hwm_kib(druid.pid()));
    println!(
        "Etcds created (32 concurrent creates):     {n} in {:.1} s",
        created.as_secs_f64()
    );
    println!(
        "every StatefulSet and status present after: {:.1} s",
        all_done.as_secs_f64()
    );
    println!(
        "throughput:                                 {:.0} Etcds/s",
        n as f64 / all_done.as_secs_f64()
    );
    let (_, metrics) =
        druid_test_support::http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    let sum = metric(&metrics, "druid_reconcile_duration_seconds_sum");
    let count = metric(&metrics, "druid_reconcile_duration_seconds_count");
    println!(
        "reconciles:                                 {count:.0}, mean {:.0} ms",
        1000.0 * sum / count.max(1.0)
    );
    println!(
        "druid peak RSS (VmHWM):                     {:.1} MiB (idle before: {:.1} MiB)",
        peak_kib as f64 / 1024.0,
        idle_kib as f64 / 1024.0
    );
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
