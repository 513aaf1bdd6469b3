//! Stopping a leading operator (its own kube-apiserver, as this test stops
//! and starts operators in turn): on SIGTERM it exits within a few seconds
//! even with reconciles in flight, and it releases the leader lease, so
//! the next start leads at once instead of waiting for the lease to expire.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use common::{kubectl_stdin, namespace, seed_in};
use druid_test_support::{KubeApiServer, ServerProcess, repo_root};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

const LEASE: &str = "druid-shutdown-test";

fn start(round: usize) -> ServerProcess {
    common::spawn_druid(
        &format!("druid round {round}"),
        &format!("druid-shutdown-{round}"),
        &["--leader-election-lease", LEASE],
        &[],
    )
    .0
}

fn log(p: &ServerProcess) -> String {
    std::fs::read_to_string(p.log_path()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_leader_exits_at_once_and_releases_the_lease() {
    let server = KubeApiServer::shared();
    server
        .install_crds(&repo_root().join("deploy/crds"))
        .unwrap();
    // Load: Etcds that keep every start reconciling (no node runs their
    // pods, so they never settle).
    for i in 0..4 {
        let ns = format!("shutdown-{i}");
        namespace(&ns, true);
        let out = kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], &seed_in(&ns));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let leases: Api<Lease> = Api::namespaced(common::client().await, "kube-system");
    let mut figures = Vec::new();
    for round in 0..10 {
        let started = Instant::now();
        let druid = start(round);
        druid
            .wait_ready(Duration::from_secs(60), || {
                Ok(log(&druid).contains("leading: starting the controllers"))
            })
            .unwrap_or_else(|e| panic!("round {round}: the operator did not lead: {e}"));
        let lead = started.elapsed();
        // Reconciling when the signal comes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &druid.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let signalled = Instant::now();
        while druid.exited().is_none() && signalled.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let exit = signalled.elapsed();
        let exited = druid.exited();
        assert!(
            exited.is_some(),
            "round {round}: still running 10 s after SIGTERM:\n{}",
            druid.log_tail(40)
        );
        assert!(
            exited
                .as_deref()
                .is_some_and(|s| s.contains("exit status: 0")),
            "round {round}: {exited:?}\n{}",
            druid.log_tail(40)
        );
        // Released: nobody holds the lease, so the next start takes it now.
        let lease = leases.get(LEASE).await.unwrap();
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        assert!(
            holder.is_empty(),
            "round {round}: the lease is still held by {holder:?}:\n{}",
            druid.log_tail(40)
        );
        assert!(log(&druid).contains("released the leader lease"));
        figures.push((lead, exit));
    }
    for (round, (lead, exit)) in figures.iter().enumerate() {
        println!(
            "round {round}: leading {:.2} s after start, exited {:.2} s after SIGTERM",
            lead.as_secs_f64(),
            exit.as_secs_f64()
        );
    }
}
