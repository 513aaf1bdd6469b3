//! A member that is to join an existing cluster (`--join-existing-cluster`)
//! and has no data never founds a cluster of its own when the source does
//! not answer: its initialization fails (the etcd wrapper retries it) and
//! says why. Without the flag the same member starts (as the first members
//! of a new cluster must).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use common::{Sidecar, SidecarOptions, Store};
use druid_test_support::{EtcdMember, EtcdMemberConfig};

/// Member `name` of a cluster whose other members (`others`, as
/// `name=peer-URL`) do not run, with no data directory: spawned once for
/// its settings, then stopped and wiped.
fn member_without_data(label: &str, name: &str, others: &[&str]) -> EtcdMember {
    let mut config = EtcdMemberConfig::new(label).unwrap();
    config.name = name.into();
    config.initial_cluster = Some(
        std::iter::once(format!("{name}={}", config.peer_url()))
            .chain(others.iter().map(|o| (*o).to_string()))
            .collect::<Vec<_>>()
            .join(","),
    );
    let etcd = config.spawn().unwrap();
    etcd.stop();
    let _ = std::fs::remove_dir_all(etcd.data_dir());
    etcd
}

#[test]
fn a_joining_member_without_its_source_cluster_refuses_to_start_a_new_one() {
    // A member of a cluster with a source member that does not run.
    let etcd = member_without_data("join-alone", "test-0", &["source-0=http://127.0.0.1:9"]);
    let store = Store::local("join-alone");
    // With user information, which must not reach the log.
    let dead_source = "http://backup:s3cr3t-pw@127.0.0.1:9";

    let joining = Sidecar::start(&SidecarOptions {
        service_endpoints: Some(dead_source.into()),
        extra: vec!["--join-existing-cluster=true".into()],
        ..SidecarOptions::new(&etcd, &store, "p")
    });
    assert_eq!(joining.initialize("full"), "Failed");
    let log = joining.log();
    assert!(
        log.contains("joins an existing cluster, but no voting member answers at http://")
            && log.contains("not founding a new cluster"),
        "{log}"
    );
    assert!(!log.contains("s3cr3t-pw"), "{log}");
    assert!(!etcd.data_dir().exists(), "nothing may be created");
    drop(joining);

    // The same member, not joining: it starts (empty) as a new member.
    let founding = Sidecar::start(&SidecarOptions {
        service_endpoints: Some(dead_source.into()),
        ..SidecarOptions::new(&etcd, &store, "p")
    });
    assert_eq!(founding.initialize("full"), "Successful");
}

/// A member of a multi-member cluster, without data, finding no running
/// member while the store holds the cluster's backups: its cluster lost
/// its quorum (the operator stages every start of members without data
/// when there is a store), so it refuses to found a new, empty cluster.
/// With an empty store, it starts (a new cluster's first start).
#[test]
fn a_member_without_data_and_without_a_running_cluster_refuses_to_found_one_over_backups() {
    let etcd = member_without_data(
        "lost-quorum",
        "test-1",
        &["test-0=http://127.0.0.1:9", "test-2=http://127.0.0.1:10"],
    );
    let store = Store::local("lost-quorum");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/upstream-local-store/store/v2/Full-00000000-00000302-1796388479.gz");
    store.write(
        "p/v2/Full-00000000-00000302-1796388479.gz",
        &std::fs::read(fixture).unwrap(),
    );
    let options = || SidecarOptions {
        service_endpoints: Some("http://127.0.0.1:9".into()),
        ..SidecarOptions::new(&etcd, &store, "p")
    };
    let lost = Sidecar::start(&options());
    assert_eq!(lost.initialize("full"), "Failed");
    let log = lost.log();
    assert!(
        log.contains("no member of this cluster answers at http://127.0.0.1:9")
            && log.contains("(up to revision 302): not founding a new, empty cluster")
            && log.contains("quorum-loss recovery"),
        "{log}"
    );
    assert!(!etcd.data_dir().exists(), "nothing may be created");
    drop(lost);

    // An empty store: the first start of a new cluster.
    store.remove("p/v2/Full-00000000-00000302-1796388479.gz");
    let founding = Sidecar::start(&options());
    assert_eq!(founding.initialize("full"), "Successful");
}

/// The same without backups (no full snapshot in the store, as for a
/// cluster without a store): the member leases show that the cluster ran
/// before (each sidecar writes its etcd's revision on its lease), so a
/// member without data that finds no running member refuses to found a
/// new, empty cluster next to the survivors. Leases of a cluster that never
/// got past its first start (revision 1, or no revision) let it start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_data_refuses_to_found_a_cluster_its_leases_say_ran_before() {
    let etcd = member_without_data(
        "ran-before",
        "test-1",
        &["test-0=http://127.0.0.1:9", "test-2=http://127.0.0.1:10"],
    );
    let store = Store::local("ran-before");
    let (namespace, leases) = common::lease_namespace("ran-before").await;
    for name in ["test-0", "test-1", "test-2"] {
        common::create_lease(&leases, name).await;
    }
    let annotate = |revision: &str| {
        let patch = serde_json::json!({"metadata": {"annotations": {
            druid_api::MEMBER_REVISION_ANNOTATION: revision,
        }}});
        let leases = leases.clone();
        async move {
            leases
                .patch(
                    "test-0",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap();
        }
    };
    annotate("1207").await;
    let kubeconfig = druid_test_support::KubeApiServer::shared()
        .kubeconfig()
        .display()
        .to_string();
    let options = || SidecarOptions {
        service_endpoints: Some("http://127.0.0.1:9".into()),
        extra: vec!["--enable-member-lease-renewal=true".into()],
        env: vec![
            ("POD_NAMESPACE".into(), namespace.clone()),
            ("POD_NAME".into(), "test-1".into()),
            ("KUBECONFIG".into(), kubeconfig.clone()),
        ],
        ..SidecarOptions::new(&etcd, &store, "p")
    };
    let lost = Sidecar::start(&options());
    assert_eq!(lost.initialize("full"), "Failed");
    let log = lost.log();
    assert!(
        log.contains("no member of this cluster answers at http://127.0.0.1:9")
            && log.contains(
                "the cluster ran before (lease test-0: its member reached revision 1207)"
            )
            && log.contains("the store holds no full snapshot to restore")
            && log.contains("delete this Etcd's member leases"),
        "{log}"
    );
    assert!(!etcd.data_dir().exists(), "nothing may be created");
    drop(lost);

    // A cluster's first start: its members' etcd is at revision 1.
    annotate("1").await;
    let founding = Sidecar::start(&options());
    assert_eq!(founding.initialize("full"), "Successful");
}
