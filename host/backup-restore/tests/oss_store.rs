//! The OSS provider end to end through `etcdbr`, against the OSS gateway
//! (a FAKE OSS named as such: MinIO behind a front that checks every
//! request's V4 signature with Alibaba Cloud's official Go SDK; no OSS
//! emulator exists): the store secret as upstream has it (one file per
//! key, named by `ALICLOUD_APPLICATION_CREDENTIALS`). A full snapshot of a
//! real etcd larger than one part (a multipart upload) reaches the bucket;
//! a restore into a new member serves every key back. A wrong AccessKey
//! secret fails with OSS's refusal, and no log shows a secret.
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
use druid_test_support::{OssGateway, server_dir};

/// `etcdbr <args>` on the OSS store in `bucket`, with the secret
/// directory `secret`.
fn etcdbr(bucket: &str, secret: &Path, args: &[String]) -> std::process::Output {
    let store = [
        "--storage-provider=OSS".to_string(),
        format!("--store-container={bucket}"),
        "--store-prefix=etcd-main".to_string(),
    ];
    etcdbr_with(
        None,
        &store,
        &[("ALICLOUD_APPLICATION_CREDENTIALS", secret)],
        args,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_is_backed_up_to_oss_and_restored_from_it() {
    let dir = server_dir("oss-store").unwrap();
    let oss = OssGateway::shared();
    let bucket = "etcdbr-oss";
    oss.create_bucket(bucket).unwrap();
    let good = secret_dir(&dir, "secret", &oss.store_secret(oss.secret()));
    let wrong_secret = "not-the-secret-of-the-backup-key";
    let wrong = secret_dir(&dir, "wrong", &oss.store_secret(wrong_secret));

    let etcd = start_etcd("oss-src");
    let mut client = etcd.client().await;
    // 21 MiB of values that do not compress: the snapshot is more than
    // one 8 MiB part.
    put_incompressible(&mut client, 448).await;
    let no_secret_in = |log: &str| {
        assert!(
            !log.contains(oss.secret()) && !log.contains(wrong_secret),
            "a secret leaked into the log: {log}"
        );
    };

    let snapshot = [
        "snapshot".to_string(),
        format!("--endpoints={}", etcd.client_url()),
    ];
    let out = etcdbr(bucket, &wrong, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("SignatureDoesNotMatch"), "{log}");
    assert!(log.contains("accessKeySecret"), "{log}");
    no_secret_in(&log);

    client.delete("/registry/k0007", None).await.unwrap();
    let (expected, revision) = dump(&mut client).await;
    let before = oss.verified().unwrap();
    let out = etcdbr(bucket, &good, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdbr snapshot: {log}");
    no_secret_in(&log);
    // A multipart upload: initiate, three parts at least, complete.
    assert!(oss.verified().unwrap() - before >= 5);

    let (got, got_revision) = restore_and_dump("oss-restored", |args| {
        let out = etcdbr(bucket, &good, args);
        no_secret_in(&String::from_utf8_lossy(&out.stderr));
        out
    })
    .await;
    assert_eq!(got_revision, revision);
    assert_eq!(got.len(), 448 + 149);
    assert_eq!(got, expected);
}
