//! The GCS provider end to end through `etcdbr`, against fake-gcs-server
//! behind the test token endpoint (`GcsAuthGate`): the store secret as
//! upstream has it, a service account key file (`serviceaccount.json`)
//! named by `GOOGLE_APPLICATION_CREDENTIALS` (as a file, the way upstream's
//! chart sets it, and as the mounted secret directory, the way this
//! operator does). A full snapshot of a real etcd larger than one part
//! (so it goes as a resumable upload) reaches the bucket only with tokens
//! from the service account's JWT; a restore into a new member serves
//! every key back. An account the token endpoint refuses fails with its
//! reason, and no log shows the key or a token.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{EtcdClient, dump, etcdbr_with, put_incompressible, restore_and_dump, start_etcd};
use druid_test_support::{FakeGcsServer, GCS_TEST_KEY, GcsAuthGate, server_dir};

/// `etcdbr <args>` on the GCS store in `bucket` behind `gate`, with
/// `GOOGLE_APPLICATION_CREDENTIALS` set to `secret` (a key file or a
/// directory holding one).
fn etcdbr(
    gate: &GcsAuthGate,
    bucket: &str,
    secret: &Path,
    args: &[String],
) -> std::process::Output {
    let store = [
        "--storage-provider=GCS".to_string(),
        format!("--store-container={bucket}"),
        "--store-prefix=etcd-main".to_string(),
        format!("--store-endpoint-override={}/storage/v1/", gate.endpoint()),
    ];
    etcdbr_with(
        None,
        &store,
        &[("GOOGLE_APPLICATION_CREDENTIALS", secret)],
        args,
    )
}

/// The key file for the gate's test account, with `client_email` replaced
/// when `email` is given, written as Google writes it.
fn key_file(dir: &Path, name: &str, gate: &GcsAuthGate, email: Option<&str>) -> PathBuf {
    let mut fields: serde_json::Map<String, serde_json::Value> = gate
        .service_account()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    if let Some(email) = email {
        fields.insert("client_email".into(), email.into());
    }
    fields.insert("client_id".into(), "1234567890".into());
    fields.insert("universe_domain".into(), "googleapis.com".into());
    let path = dir.join(name);
    std::fs::write(&path, serde_json::Value::Object(fields).to_string()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_is_backed_up_to_google_cloud_storage_and_restored_from_it() {
    let dir = server_dir("gcs-store").unwrap();
    let gcs = FakeGcsServer::shared();
    let gate = GcsAuthGate::start(gcs.endpoint()).unwrap();
    let bucket = "etcdbr-gcs";
    gcs.create_bucket(bucket).unwrap();
    let good = key_file(&dir, "serviceaccount.json", &gate, None);
    // The operator's form: the secret mounted as a directory whose
    // `serviceaccount.json` is the key file.
    let mounted = dir.join("mounted");
    std::fs::create_dir_all(&mounted).unwrap();
    std::fs::copy(&good, mounted.join("serviceaccount.json")).unwrap();

    let etcd = start_etcd("gcs-src");
    let mut client = etcd.client().await;
    // 21 MiB of values that do not compress: the snapshot is more than
    // one 16 MiB part.
    put_incompressible(&mut client, 448).await;
    let key_lines: Vec<&str> = GCS_TEST_KEY.lines().skip(1).take(3).collect();
    let no_secret_in = |log: &str| {
        for line in &key_lines {
            assert!(!log.contains(line), "the key leaked into the log: {log}");
        }
        assert!(
            !log.contains("test-token-"),
            "a token leaked into the log: {log}"
        );
    };

    // An account the token endpoint refuses: the reason, and no request
    // reached the bucket.
    let refused = key_file(
        &dir,
        "refused.json",
        &gate,
        Some("intruder@druid-tests.iam.gserviceaccount.com"),
    );
    let snapshot = [
        "snapshot".to_string(),
        format!("--endpoints={}", etcd.client_url()),
    ];
    let out = etcdbr(&gate, bucket, &refused, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("invalid_grant"), "{log}");
    assert!(log.contains("token endpoint refused"), "{log}");
    no_secret_in(&log);
    assert_eq!(gate.passed(), 0);

    client.delete("/registry/k0007", None).await.unwrap();
    let (expected, revision) = dump(&mut client).await;
    let out = etcdbr(&gate, bucket, &good, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdbr snapshot: {log}");
    no_secret_in(&log);
    assert!(gate.token_requests() > 0 && gate.passed() > 0);
    assert_eq!(gate.refused_requests(), 0);

    let (got, got_revision) = restore_and_dump("gcs-restored", |args| {
        let out = etcdbr(&gate, bucket, &mounted, args);
        no_secret_in(&String::from_utf8_lossy(&out.stderr));
        out
    })
    .await;
    assert_eq!(got_revision, revision);
    assert_eq!(got.len(), 448 + 149);
    assert_eq!(got, expected);
    assert_eq!(gate.refused_requests(), 0);
}
