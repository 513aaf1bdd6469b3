//! Leader election with a real kube-apiserver (its own, as this test kills
//! the leader): a standby replica takes over when the leader crashes and
//! then reconciles.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use common::{kubectl_stdin, namespace, operator, seed_in, wait_for};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_when_the_leader_crashes() {
    let leader = operator();
    let (standby, port) = common::spawn_druid("druid standby", "druid-standby", &[], &[]);
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    wait_for("the standby's /readyz", || {
        let url = readyz.clone();
        async move {
            druid_test_support::http_get(&url)
                .ok()
                .filter(|(s, _)| *s == 200)
        }
    })
    .await;
    let standby_log = || std::fs::read_to_string(standby.log_path()).unwrap_or_default();
    assert!(!standby_log().contains("leading: starting the controllers"));

    // The leader crashes without releasing the lease; the standby takes
    // over once the lease expires.
    leader.kill();
    wait_for("the standby to lead", || {
        let log = standby_log();
        async move {
            log.contains("leading: starting the controllers")
                .then_some(())
        }
    })
    .await;
    let (_, metrics) =
        druid_test_support::http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    assert!(metrics.contains("druid_leader 1"), "{metrics}");

    // ... and does the work.
    let ns = "after-takeover";
    namespace(ns, true);
    let out = kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], &seed_in(ns));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sts: StatefulSet = wait_for("the StatefulSet from the new leader", || async {
        Api::<StatefulSet>::namespaced(common::client().await, ns)
            .get_opt("test")
            .await
            .unwrap()
    })
    .await;
    assert_eq!(sts.spec.unwrap().replicas, Some(1));
}
