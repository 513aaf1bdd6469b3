//! The Swift provider end to end through `etcdbr`, against a real Swift
//! signed in through a real Keystone v3: the store secret as upstream has
//! it (one file per key, named by `OPENSTACK_APPLICATION_CREDENTIALS`). A
//! full snapshot of a real etcd larger than one part (so it goes as
//! segments under a manifest) reaches the container; a restore into a new
//! member serves every key back. A wrong password fails with Keystone's
//! refusal, and no log shows a password or a token.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::path::Path;

use common::{
    EtcdClient, dump, etcdbr_with, put_incompressible, restore_and_dump, secret_dir, start_etcd,
};
use druid_test_support::{SwiftServer, server_dir};

/// `etcdbr <args>` on the Swift store in `container`, with the secret
/// directory `secret`.
fn etcdbr(
    swift: &SwiftServer,
    container: &str,
    secret: &Path,
    args: &[String],
) -> std::process::Output {
    let store = [
        "--storage-provider=Swift".to_string(),
        format!("--store-container={container}"),
        "--store-prefix=etcd-main".to_string(),
        // The catalog's object store is on another port than Keystone:
        // the override names it, so the host lets the plugin reach it.
        format!("--store-endpoint-override={}", swift.proxy_url()),
    ];
    etcdbr_with(
        None,
        &store,
        &[("OPENSTACK_APPLICATION_CREDENTIALS", secret)],
        args,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_is_backed_up_to_swift_and_restored_from_it() {
    let dir = server_dir("swift-store").unwrap();
    let swift = SwiftServer::shared();
    let container = "etcdbr-swift";
    swift.create_container(container).unwrap();
    let good = secret_dir(&dir, "secret", &swift.store_secret(swift.password()));
    let wrong_password = "not-the-password-of-the-backup-user";
    let wrong = secret_dir(&dir, "wrong", &swift.store_secret(wrong_password));

    let etcd = start_etcd("swift-src");
    let mut client = etcd.client().await;
    // 21 MiB of values that do not compress: the snapshot is more than
    // one 16 MiB part.
    put_incompressible(&mut client, 448).await;
    let no_secret_in = |log: &str| {
        assert!(
            !log.contains(swift.password()) && !log.contains(wrong_password),
            "a password leaked into the log: {log}"
        );
        assert!(
            !log.contains("gAAAAA"),
            "a token leaked into the log: {log}"
        );
    };

    let snapshot = [
        "snapshot".to_string(),
        format!("--endpoints={}", etcd.client_url()),
    ];
    let out = etcdbr(swift, container, &wrong, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("Keystone refused"), "{log}");
    no_secret_in(&log);

    client.delete("/registry/k0007", None).await.unwrap();
    let (expected, revision) = dump(&mut client).await;
    let out = etcdbr(swift, container, &good, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdbr snapshot: {log}");
    no_secret_in(&log);

    let (got, got_revision) = restore_and_dump("swift-restored", |args| {
        let out = etcdbr(swift, container, &good, args);
        no_secret_in(&String::from_utf8_lossy(&out.stderr));
        out
    })
    .await;
    assert_eq!(got_revision, revision);
    assert_eq!(got.len(), 448 + 149);
    assert_eq!(got, expected);
}
