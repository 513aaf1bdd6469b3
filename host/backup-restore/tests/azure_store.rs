//! The ABS provider end to end through `etcdbr`, against Azurite: the
//! store secret in its JSON form (`AZURE_APPLICATION_CREDENTIALS_JSON`,
//! upstream's keys `storageAccount` and `storageKey`), the account's blob
//! endpoint as `--store-endpoint-override` (path style, as upstream takes
//! it for the emulator). A full snapshot of a real etcd larger than one
//! block (so it is staged block by block and committed) goes to the
//! container; a restore into a new member serves every key back. A wrong key fails with a message that names the
//! secret's keys and not the key.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::path::Path;

use common::{EtcdClient, dump, etcdbr_with, put_incompressible, restore_and_dump, start_etcd};
use druid_test_support::{AzuriteServer, server_dir};

/// `etcdbr <args>` on the ABS store in `container` with the JSON secret
/// at `secret`.
fn etcdbr(container: &str, secret: &Path, args: &[String]) -> std::process::Output {
    let store = [
        "--storage-provider=ABS".to_string(),
        format!("--store-container={container}"),
        "--store-prefix=etcd-main".to_string(),
        format!(
            "--store-endpoint-override={}",
            AzuriteServer::shared().endpoint()
        ),
    ];
    etcdbr_with(
        None,
        &store,
        &[("AZURE_APPLICATION_CREDENTIALS_JSON", secret)],
        args,
    )
}

fn secret(dir: &Path, name: &str, key: &str) -> std::path::PathBuf {
    let azurite = AzuriteServer::shared();
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::json!({ "storageAccount": azurite.account(), "storageKey": key }).to_string(),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_is_backed_up_to_azure_blob_storage_and_restored_from_it() {
    let dir = server_dir("azure-store").unwrap();
    let azurite = AzuriteServer::shared();
    let container = "etcdbr-abs";
    azurite.create_container(container).unwrap();
    let good = secret(&dir, "good.json", azurite.key());

    let etcd = start_etcd("azure-src");
    let mut client = etcd.client().await;
    // 21 MiB of values that do not compress: the snapshot is more than
    // one 16 MiB block.
    put_incompressible(&mut client, 448).await;

    // A wrong key: refused, naming the keys to check, never the key.
    use base64::Engine as _;
    let wrong_key = base64::engine::general_purpose::STANDARD.encode([9u8; 64]);
    let wrong = secret(&dir, "wrong.json", &wrong_key);
    let snapshot = [
        "snapshot".to_string(),
        format!("--endpoints={}", etcd.client_url()),
    ];
    let out = etcdbr(container, &wrong, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("`storageKey`"), "{log}");
    assert!(
        !log.contains(&wrong_key),
        "the key leaked into the log: {log}"
    );

    client.delete("/registry/k0007", None).await.unwrap();
    let (expected, revision) = dump(&mut client).await;
    let out = etcdbr(container, &good, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdbr snapshot: {log}");
    assert!(
        !log.contains(azurite.key()),
        "the key leaked into the log: {log}"
    );

    let (got, got_revision) =
        restore_and_dump("azure-restored", |args| etcdbr(container, &good, args)).await;
    assert_eq!(got_revision, revision);
    assert_eq!(got.len(), 448 + 149);
    assert_eq!(got, expected);
}

/// Without a Secret: the pod's workload identity, as Azure Workload
/// Identity's webhook injects it (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
/// `AZURE_FEDERATED_TOKEN_FILE` naming the projected token,
/// `AZURE_AUTHORITY_HOST`), against Azurite behind the Entra ID stand-in
/// (`AbsAuthGate`, a fake named as such); the account comes from the
/// endpoint override. The snapshot lands; no log line shows the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_workload_identity_backs_up_without_a_secret() {
    let dir = server_dir("azure-workload-identity").unwrap();
    let azurite = AzuriteServer::shared();
    let gate = druid_test_support::AbsAuthGate::start(azurite).unwrap();
    let issuer = druid_test_support::OidcIssuer::start().unwrap();
    let container = "etcdbr-abs-identity";
    azurite.create_container(container).unwrap();
    let token = issuer.token(
        "etcd",
        "etcd-main",
        druid_test_support::AZURE_TOKEN_AUDIENCE,
        3600,
    );
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, &token).unwrap();
    let etcd = start_etcd("abs-identity");
    let mut client = etcd.client().await;
    put_incompressible(&mut client, 8).await;
    let store = [
        "--storage-provider=ABS".to_string(),
        format!("--store-container={container}"),
        "--store-prefix=etcd-main".to_string(),
        format!("--store-endpoint-override={}", gate.blob_endpoint(azurite)),
    ];
    let authority = gate.authority();
    let env = [
        (
            "AZURE_CLIENT_ID",
            Path::new(druid_test_support::ABS_TEST_CLIENT_ID),
        ),
        (
            "AZURE_TENANT_ID",
            Path::new(druid_test_support::ABS_TEST_TENANT_ID),
        ),
        ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_path()),
        ("AZURE_AUTHORITY_HOST", Path::new(&authority)),
    ];
    let out = etcdbr_with(
        None,
        &store,
        &env,
        &[
            "snapshot".to_string(),
            format!("--endpoints={}", etcd.client_url()),
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdbr snapshot: {log}");
    assert!(!log.contains(&token), "the token leaked: {log}");
    assert!(
        gate.tokens() >= 1 && gate.passed() >= 1,
        "{} tokens",
        gate.tokens()
    );
    assert_eq!(gate.refused_requests(), 0);
    etcd.stop();
}
