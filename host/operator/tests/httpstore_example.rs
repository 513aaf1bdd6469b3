//! The worked example of a third-party provider (`examples/httpstore-plugin`,
//! made with `scripts/new-plugin.sh`), followed as plugins/sdk/README.md
//! says: built with `scripts/build-plugin.sh`, then `druid plugin test`
//! against the small HTTP object store of the test support
//! (`druid_test_support::HttpStore`), with its secret as a directory of
//! files (its own keys, `storeURL` and `token`). The same plugin backing up
//! and restoring etcd through `etcdbr` is
//! host/backup-restore/tests/third_party_plugin.rs.
#![allow(clippy::unwrap_used, reason = "a test fails on error")]

use std::ffi::OsString;
use std::path::PathBuf;

use druid_test_support::{HttpStore, httpstore_example_plugin, server_dir};

mod common;

const TOKEN: &str = "s3cr3t-example-token";

/// The example built with the documented command, once per test process.
fn example_plugin() -> PathBuf {
    httpstore_example_plugin().unwrap()
}

/// Runs `druid plugin test` on the example against a fresh store whose
/// secret holds `token`; (success, stdout and stderr).
fn plugin_test(name: &str, token: &str) -> (bool, String) {
    let plugin = example_plugin();
    let dir = server_dir(&format!("httpstore-{name}")).unwrap();
    let store_root = dir.join("store");
    std::fs::create_dir_all(store_root.join("backups")).unwrap();
    let store = HttpStore::start(&store_root, TOKEN).unwrap();
    let secret = dir.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    // The example's own keys: its store contract names `storeURL` as the
    // key holding its endpoint, which the host then lets it reach.
    std::fs::write(secret.join("storeURL"), format!("{}\n", store.url())).unwrap();
    std::fs::write(secret.join("token"), format!("{token}\n")).unwrap();
    let args: [OsString; 9] = [
        "plugin".into(),
        "test".into(),
        plugin.into(),
        "--provider".into(),
        "HttpStore".into(),
        "--container".into(),
        "backups".into(),
        "--secret".into(),
        secret.into(),
    ];
    common::druid(&args)
}

#[test]
fn the_httpstore_example_passes_druid_plugin_test() {
    let (ok, out) = plugin_test("pass", TOKEN);
    assert!(ok, "{out}");
    assert!(out.contains("plugin httpstore 0.1.0"), "{out}");
    assert!(out.contains("providers: HttpStore"), "{out}");
    assert!(
        out.contains(
            "store contract of HttpStore: credentials from HTTPSTORE_APPLICATION_CREDENTIALS_JSON, \
             HTTPSTORE_APPLICATION_CREDENTIALS (required); endpoint keys: storeURL; official \
             endpoints: none"
        ),
        "{out}"
    );
    assert!(out.contains("pass  the secret's keys accepted"), "{out}");
    assert!(out.contains("pass  round trip of 100 MiB"), "{out}");
    assert!(
        out.contains("pass  an aborted upload leaves nothing"),
        "{out}"
    );
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn the_httpstore_example_with_a_wrong_token_fails_with_access_denied() {
    let (ok, out) = plugin_test("wrong-token", "not-the-token");
    assert!(!ok, "{out}");
    // The wiring and the secret's keys are fine; every store check is
    // refused by the store, and says so.
    assert!(out.contains("pass  the secret's keys accepted"), "{out}");
    let round_trip = out
        .lines()
        .find(|l| l.contains("round trip of 0 B"))
        .unwrap_or_else(|| panic!("no round trip line in:\n{out}"));
    assert!(round_trip.starts_with("FAIL"), "{out}");
    assert!(round_trip.contains("access denied"), "{out}");
    assert!(round_trip.contains("HTTP 401"), "{out}");
    assert!(!out.contains(", 0 failed"), "{out}");
}
