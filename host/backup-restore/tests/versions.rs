//! Backups across etcd minor versions, on real etcd 3.4, 3.5, 3.6 and 3.7
//! (`tests/scripts/install-etcd-versions.sh`): a backup taken on one
//! version restores on the next one up (the usual upgrade), full snapshot
//! and deltas, and a restore that would move data to an older minor version
//! is refused before anything is touched, whether that version comes from
//! the restore tool, `--etcd-version` or the etcd-wrapper. A data
//! directory that a newer minor version ran on is not started on by an
//! older etcd, and a member of a cluster still at the older version may go
//! back to it.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use std::collections::BTreeMap;

use common::{EtcdClient, Sidecar, SidecarOptions, Store, dump};
use druid_test_support::{EtcdCluster, EtcdMember, EtcdMemberConfig, etcd_binary_of};
use etcd_client::Client;

async fn write(client: &mut Client, tag: &str, n: usize) {
    for i in 0..n {
        client
            .put(
                format!("/registry/{tag}/{i:04}"),
                format!("{tag}-{i}"),
                None,
            )
            .await
            .unwrap();
    }
}

/// The flags that make a sidecar restore with etcd `version`'s tools.
fn tools_of(version: &str) -> Vec<String> {
    let etcd = etcd_binary_of("etcd", version).unwrap();
    let restore = etcd_binary_of("etcdutl", version)
        .or_else(|_| etcd_binary_of("etcdctl", version))
        .unwrap();
    vec![
        format!("--etcd-binary={}", etcd.display()),
        format!("--etcdctl-binary={}", restore.display()),
    ]
}

/// A sidecar for `etcd` on `store` (prefix `p`) with `extra` flags.
fn sidecar_with(etcd: &EtcdMember, store: &Store, extra: Vec<String>) -> Sidecar {
    Sidecar::start(&SidecarOptions {
        extra,
        ..SidecarOptions::new(etcd, store, "p")
    })
}

/// Initializes a sidecar with etcd `tools`' binaries and
/// `--etcd-version=<stated>`, expecting it to fail; returns its log.
fn failed_with_flag(etcd: &EtcdMember, store: &Store, tools: &str, stated: &str) -> String {
    let mut extra = tools_of(tools);
    extra.push(format!("--etcd-version={stated}"));
    let sidecar = sidecar_with(etcd, store, extra);
    assert_eq!(sidecar.initialize("full"), "Failed");
    sidecar.log()
}

/// A member running etcd `version`, whose data is backed up to `store`
/// (prefix `p`): `full` keys, a full snapshot, then `delta` more keys in
/// deltas. Returns the member (stopped, its data directory deleted) and
/// what etcd held.
async fn backed_up_on(
    version: &str,
    label: &str,
    store: &Store,
    full: usize,
    delta: usize,
) -> (EtcdMember, (BTreeMap<Vec<u8>, common::Kv>, i64)) {
    let mut config = EtcdMemberConfig::new(label).unwrap();
    config.binary = Some(etcd_binary_of("etcd", version).unwrap());
    let etcd = config.start().unwrap();
    let sidecar = sidecar_with(&etcd, store, tools_of(version));
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    write(&mut client, "before", full).await;
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    write(&mut client, "after", delta).await;
    let held = dump(&mut client).await;
    sidecar.wait_store_revision(held.1);
    drop(client);
    drop(sidecar);
    etcd.stop();
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();
    (etcd, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_and_serves_on_the_next_minor_version() {
    for (from, to) in [("3.4", "3.5"), ("3.5", "3.6"), ("3.6", "3.7")] {
        let label = format!("up-{from}-{to}");
        let store = Store::local(&label);
        let (mut etcd, held) = backed_up_on(from, &label, &store, 60, 40).await;

        let sidecar = sidecar_with(&etcd, &store, tools_of(to));
        assert_eq!(
            sidecar.initialize("full"),
            "Successful",
            "a backup of etcd {from} restored for etcd {to}:\n{}",
            sidecar.log()
        );
        let log = sidecar.log();
        assert!(
            log.contains("suits the etcd that will run on it"),
            "the version check ran: {log}"
        );
        drop(sidecar);
        etcd.config_mut().binary = Some(etcd_binary_of("etcd", to).unwrap());
        etcd.restart().unwrap();
        let mut client = etcd.client().await;
        let served = dump(&mut client).await;
        assert_eq!(
            served.0, held.0,
            "etcd {to} serves what etcd {from} held (keys, values, revisions)"
        );
        assert!(
            served.1 >= held.1,
            "no revision lost: {} < {}",
            served.1,
            held.1
        );
        drop(client);
        etcd.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_would_downgrade_across_minor_versions_is_refused() {
    for (written, older, evidence) in [
        ("3.5", "3.4", "it records clusterVersion 3.5.0"),
        (
            "3.6",
            "3.5",
            "it records storageVersion 3.6.0, clusterVersion 3.6.0",
        ),
        (
            "3.7",
            "3.6",
            "it records storageVersion 3.7.0, clusterVersion 3.7.0",
        ),
    ] {
        let label = format!("down-{written}-{older}");
        let store = Store::local(&label);
        let (mut etcd, held) = backed_up_on(written, &label, &store, 30, 0).await;

        // The restore tool of the older version: refused, nothing written.
        let sidecar = sidecar_with(&etcd, &store, tools_of(older));
        assert_eq!(sidecar.initialize("full"), "Failed");
        let log = sidecar.log();
        for part in [
            format!("written by etcd {written} ({evidence})"),
            format!("will run on the restored data is {older} (the version of"),
            "downgrade the data across minor versions".to_string(),
            "Nothing was restored".to_string(),
        ] {
            assert!(log.contains(&part), "{part:?} missing from:\n{log}");
        }
        assert!(
            !etcd.data_dir().exists(),
            "a refused restore writes no data directory"
        );
        drop(sidecar);

        // The tools of the newer version but the etcd-wrapper reporting the
        // older one (it runs etcd): the wrapper wins.
        let sidecar = sidecar_with(&etcd, &store, tools_of(written));
        let reported = format!("full&etcdversion={older}.99");
        assert_eq!(sidecar.initialize(&reported), "Failed");
        let log = sidecar.log();
        assert!(
            log.contains(&format!("is {older} (reported by the etcd-wrapper)")),
            "{log}"
        );
        assert!(!etcd.data_dir().exists());
        drop(sidecar);

        // `--etcd-version` says the older one: refused too.
        let log = failed_with_flag(&etcd, &store, written, older);
        assert!(
            log.contains(&format!("is {older} (--etcd-version)")),
            "{log}"
        );
        assert!(!etcd.data_dir().exists());

        // The version that wrote it restores it: nothing was lost.
        let sidecar = sidecar_with(&etcd, &store, tools_of(written));
        assert_eq!(
            sidecar.initialize(&format!("full&etcdversion={written}.0")),
            "Successful",
            "{}",
            sidecar.log()
        );
        drop(sidecar);
        etcd.restart().unwrap();
        let mut client = etcd.client().await;
        assert_eq!(dump(&mut client).await.0, held.0);
        drop(client);
        etcd.stop();
    }
}

/// Initializes `sidecar` with `query`, expecting it to keep the data
/// directory and to say that its version check passed.
fn accepts_data_dir(sidecar: &Sidecar, query: &str) {
    assert_eq!(sidecar.initialize(query), "Successful", "{}", sidecar.log());
    let log = sidecar.log();
    assert!(
        log.contains("the data directory's version suits this member's etcd"),
        "{log}"
    );
}

/// The database file of a data directory.
fn db_of(etcd: &EtcdMember) -> Vec<u8> {
    std::fs::read(etcd.data_dir().join("member/snap/db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_etcd_is_not_started_on_data_a_newer_one_ran() {
    for (written, older) in [("3.5", "3.4"), ("3.6", "3.5"), ("3.7", "3.6")] {
        let label = format!("dir-{written}-{older}");
        let store = Store::local(&label);
        let mut config = EtcdMemberConfig::new(&label).unwrap();
        config.binary = Some(etcd_binary_of("etcd", written).unwrap());
        let mut etcd = config.start().unwrap();
        let mut client = etcd.client().await;
        write(&mut client, "kept", 20).await;
        let held = dump(&mut client).await;
        drop(client);
        etcd.stop();
        let before = db_of(&etcd);

        // The etcd-wrapper reports the older etcd: refused, untouched.
        let sidecar = sidecar_with(&etcd, &store, tools_of(written));
        assert_eq!(
            sidecar.initialize(&format!("full&etcdversion={older}.99")),
            "Failed"
        );
        let log = sidecar.log();
        for part in [
            format!("was last run by etcd {written} (it records"),
            format!("clusterVersion {written}.0"),
            format!("this member's etcd is {older} (reported by the etcd-wrapper)"),
            "Nothing was changed and etcd is not started".to_string(),
            format!("etcdctl downgrade enable {older}"),
        ] {
            assert!(log.contains(&part), "{part:?} missing from:\n{log}");
        }
        assert!(
            db_of(&etcd) == before,
            "a refused data directory is untouched"
        );
        drop(sidecar);

        // `--etcd-version` says the older one: refused too.
        let log = failed_with_flag(&etcd, &store, written, older);
        assert!(
            log.contains(&format!("this member's etcd is {older} (--etcd-version)")),
            "{log}"
        );

        // Only the restore tool is older and nobody states etcd's version:
        // the tool is not the member's etcd, so no refusal.
        let sidecar = sidecar_with(&etcd, &store, tools_of(older));
        assert_eq!(sidecar.initialize("full"), "Successful");
        assert!(!sidecar.log().contains("Nothing was changed"));
        drop(sidecar);

        // The version that ran on it starts on it, with every key.
        let sidecar = sidecar_with(&etcd, &store, tools_of(written));
        accepts_data_dir(&sidecar, &format!("full&etcdversion={written}.0"));
        drop(sidecar);
        assert!(
            db_of(&etcd) == before,
            "a valid data directory is untouched"
        );
        etcd.restart().unwrap();
        let mut client = etcd.client().await;
        assert_eq!(dump(&mut client).await.0, held.0);
        drop(client);
        etcd.stop();
    }
}

/// A rolling upgrade from 3.4 to 3.5 that is rolled back before every
/// member runs 3.5: the upgraded member's data has a raft term, but the
/// cluster version is still 3.4, and etcd supports going back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_a_cluster_still_at_the_older_version_may_go_back() {
    let cluster = EtcdCluster::start_with("rollback", 3, |i, config| {
        let version = if i == 2 { "3.5" } else { "3.4" };
        config.binary = Some(etcd_binary_of("etcd", version).unwrap());
    })
    .unwrap();
    let endpoints = cluster.client_urls();
    let mut members = cluster.into_members();
    let mut client = Client::connect(&endpoints, None).await.unwrap();
    write(&mut client, "mixed", 20).await;
    let held = dump(&mut client).await;
    let upgraded = members.pop().unwrap();
    upgraded.stop();
    let db = druid_etcd_db::Db::open(
        std::fs::File::open(upgraded.data_dir().join("member/snap/db")).unwrap(),
    )
    .unwrap();
    assert!(db.term().unwrap().is_some(), "etcd 3.5 wrote a term");
    assert_eq!(db.cluster_version().unwrap().as_deref(), Some("3.4.0"));
    drop(db);

    let store = Store::local("rollback");
    let sidecar = Sidecar::start(&SidecarOptions {
        service_endpoints: Some(endpoints.join(",")),
        extra: tools_of("3.4"),
        ..SidecarOptions::new(&upgraded, &store, "r")
    });
    accepts_data_dir(&sidecar, "full&etcdversion=3.4.23");
    drop(sidecar);

    let mut upgraded = upgraded;
    upgraded.config_mut().binary = Some(etcd_binary_of("etcd", "3.4").unwrap());
    upgraded.restart().unwrap();
    let mut back = Client::connect([upgraded.client_url()], None)
        .await
        .unwrap();
    assert_eq!(
        dump(&mut back).await.0,
        held.0,
        "the member went back to 3.4 and serves the cluster's data"
    );
    drop((back, client));
    upgraded.stop();
    for m in &members {
        m.stop();
    }
}
