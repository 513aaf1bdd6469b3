//! A provider written out of tree, end to end through `etcdbr`: the worked
//! example (`examples/httpstore-plugin`, made from the SDK's template) built
//! with `scripts/build-plugin.sh` and dropped into `--plugins-dir`; its
//! store Secret, with its own keys (`storeURL`, `token`), found through the
//! variable its store contract declares; its endpoint reached only because
//! the contract names `storeURL` as an endpoint key. A full snapshot of a
//! real etcd goes to the small HTTP object store of the test support, and
//! a restore into a new member serves every key back. The host knows
//! nothing of the provider beyond what the plugin declares.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::path::Path;

use common::{EtcdClient, dump, etcdbr_with, restore_and_dump, start_etcd};
use druid_test_support::{HttpStore, httpstore_example_plugin, server_dir};

const TOKEN: &str = "third-party-token";

/// `etcdbr <args>` with the example as the plugins directory's only file
/// and the HttpStore's secret at `secret`, named by `variable`.
fn etcdbr(plugins: &Path, secret: &Path, variable: &str, args: &[String]) -> std::process::Output {
    let store = [
        "--storage-provider=HttpStore".to_string(),
        "--store-container=backups".to_string(),
        "--store-prefix=etcd-main".to_string(),
    ];
    etcdbr_with(Some(plugins), &store, &[(variable, secret)], args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_built_out_of_tree_backs_up_and_restores_etcd_with_its_own_secret_keys() {
    let dir = server_dir("third-party-plugin").unwrap();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        httpstore_example_plugin().unwrap(),
        plugins.join("httpstore.wasm"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("store/backups")).unwrap();
    let store = HttpStore::start(&dir.join("store"), TOKEN).unwrap();
    // The Secret as a volume mounts it: one file per key, the provider's
    // own key names.
    let secret = dir.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("storeURL"), format!("{}\n", store.url())).unwrap();
    std::fs::write(secret.join("token"), format!("{TOKEN}\n")).unwrap();

    let etcd = start_etcd("third-party-src");
    let mut client = etcd.client().await;
    for i in 0..300 {
        client
            .put(format!("/registry/k{i:04}"), format!("value {i}"), None)
            .await
            .unwrap();
    }
    client.delete("/registry/k0007", None).await.unwrap();
    let (expected, revision) = dump(&mut client).await;

    // Read from a variable the contract does not declare: refused before any
    // request, naming the variable the plugin reads.
    let snapshot = [
        "snapshot".to_string(),
        format!("--endpoints={}", etcd.client_url()),
    ];
    let out = etcdbr(
        &plugins,
        &secret,
        "HTTP_STORE_APPLICATION_CREDENTIALS",
        &snapshot,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("no credentials for provider HttpStore: set $HTTPSTORE_APPLICATION_CREDENTIALS_JSON or $HTTPSTORE_APPLICATION_CREDENTIALS"),
        "{log}"
    );
    assert!(
        log.contains("HTTP_STORE_APPLICATION_CREDENTIALS")
            && log.contains("does not read: it is ignored"),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token leaked into the log: {log}");

    // The declared variable: a full snapshot lands in the HTTP store.
    let out = etcdbr(
        &plugins,
        &secret,
        "HTTPSTORE_APPLICATION_CREDENTIALS",
        &snapshot,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdbr snapshot: {log}");
    assert!(!log.contains(TOKEN), "the token leaked into the log: {log}");
    let stored: Vec<String> = walk(&dir.join("store/backups/etcd-main"));
    assert!(
        stored
            .iter()
            .any(|k| k.starts_with("v2/Full-00000000-") && k.contains(&format!("{revision:08}"))),
        "no full snapshot at revision {revision} in {stored:?}"
    );

    // Restore into a new member and read everything back.
    let (got, got_revision) = restore_and_dump("third-party-restored", |args| {
        etcdbr(&plugins, &secret, "HTTPSTORE_APPLICATION_CREDENTIALS", args)
    })
    .await;
    assert_eq!(got_revision, revision);
    assert_eq!(got.len(), 299);
    assert_eq!(got, expected);
}

/// The object keys below `root`, relative, with `/` separators.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}
