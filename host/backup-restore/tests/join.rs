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
use druid_test_support::EtcdMemberConfig;

#[test]
fn a_joining_member_without_its_source_cluster_refuses_to_start_a_new_one() {
    let mut config = EtcdMemberConfig::new("join-alone").unwrap();
    // A member of a cluster with a source member that does not run.
    config.name = "test-0".into();
    config.initial_cluster = Some(format!(
        "test-0={},source-0=http://127.0.0.1:9",
        config.peer_url()
    ));
    let etcd = config.spawn().unwrap();
    etcd.stop();
    let _ = std::fs::remove_dir_all(etcd.data_dir());
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
