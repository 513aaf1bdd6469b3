//! `druid plugin test`, run as a plugin author runs it: the real `druid`
//! binary on the real plugin components, against a Local store in a
//! temporary directory.
#![allow(clippy::unwrap_used, reason = "a test fails on error")]

use std::ffi::OsString;
use std::process::Command;

use druid_test_support::{plugin_components, server_dir};

mod common;

fn plugin_test(plugin: &str, provider: &str, container: &str) -> (bool, String) {
    let root = server_dir(&format!("plugin-cli-{container}")).unwrap();
    std::fs::create_dir_all(root.join(container)).unwrap();
    let args: [OsString; 8] = [
        "plugin".into(),
        "test".into(),
        plugin_components().get(plugin).into(),
        "--provider".into(),
        provider.into(),
        "--container".into(),
        container.into(),
        format!("--local-root={}", root.display()).into(),
    ];
    common::druid(&args)
}

#[test]
fn the_local_plugin_passes_druid_plugin_test() {
    let (ok, out) = plugin_test("druid-plugin-local", "Local", "cli.bkp");
    assert!(ok, "{out}");
    assert!(out.contains("plugin local"), "{out}");
    assert!(
        out.contains("pass  pod wiring within the host's policy"),
        "{out}"
    );
    assert!(out.contains("pass  round trip of 100 MiB"), "{out}");
    assert!(out.contains("pass  clean up"), "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn a_plugin_that_breaks_the_contract_fails_druid_plugin_test() {
    let (ok, out) = plugin_test("druid-test-plugin-hostile", "Hostile", "unsorted-page");
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL  round trip of 1 B"), "{out}");
    assert!(out.contains("FAIL  listing"), "{out}");
    assert!(!out.contains(", 0 failed"), "{out}");
    // Its second provider's store contract is refused: a failed check that
    // names the problems; the provider under test is still tested.
    let contract = out
        .lines()
        .find(|l| l.contains("store contract of HostileContract"))
        .unwrap_or_else(|| panic!("no contract check in:\n{out}"));
    assert!(contract.starts_with("FAIL"), "{out}");
    assert!(
        contract.contains("\"HOME\" is not <NAME>_APPLICATION_CREDENTIALS"),
        "{out}"
    );
    assert!(
        out.contains(
            "store contract of Hostile: credentials from HOSTILE_APPLICATION_CREDENTIALS_JSON"
        ),
        "{out}"
    );
}

#[test]
fn a_file_that_is_not_a_plugin_is_refused_with_the_reason() {
    let dir = server_dir("plugin-cli-broken").unwrap();
    let file = dir.join("broken.wasm");
    std::fs::write(&file, b"not a component").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_druid"))
        .args(["plugin", "test"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("the host refuses"), "{stderr}");
    assert!(stderr.contains("broken.wasm"), "{stderr}");
}

/// `druid plugin test` of a shipped cloud plugin against its provider's
/// server, as a plugin author or a cluster operator runs it: the store
/// secret as mounted (one file per key, here `serviceaccount.json`) and
/// the endpoint override. Every check passes, the secret's keys among
/// them, and no line of the key is printed.
#[test]
fn the_gcs_plugin_passes_druid_plugin_test_against_fake_gcs() {
    let gcs = druid_test_support::FakeGcsServer::shared();
    gcs.create_bucket("cli-gcs").unwrap();
    let gate = druid_test_support::GcsAuthGate::start(gcs.endpoint()).unwrap();
    let secret = server_dir("plugin-cli-gcs-secret").unwrap();
    let key_file: serde_json::Map<String, serde_json::Value> = gate
        .service_account()
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    std::fs::write(
        secret.join("serviceaccount.json"),
        serde_json::Value::Object(key_file).to_string(),
    )
    .unwrap();
    let endpoint = format!("{}/storage/v1/", gate.endpoint());
    let args: [OsString; 11] = [
        "plugin".into(),
        "test".into(),
        plugin_components().get("druid-plugin-gcs").into(),
        "--provider".into(),
        "GCS".into(),
        "--container".into(),
        "cli-gcs".into(),
        "--secret".into(),
        secret.into(),
        "--endpoint".into(),
        endpoint.into(),
    ];
    let (ok, out) = common::druid(&args);
    assert!(ok, "{out}");
    assert!(out.contains("plugin gcs"), "{out}");
    assert!(out.contains("pass  the secret's keys accepted"), "{out}");
    assert!(out.contains("pass  round trip of 100 MiB"), "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    let key_line = druid_test_support::GCS_TEST_KEY.lines().nth(2).unwrap();
    assert!(!out.contains(key_line), "{out}");
    // Through the token endpoint: the requests carried its tokens.
    assert!(gate.token_requests() > 0 && gate.passed() > 0);
    assert_eq!(gate.refused_requests(), 0);
}

/// `druid plugin test` of the Swift plugin against a real Swift signed in
/// through Keystone v3: the store secret as mounted (one file per key)
/// and the object store's endpoint. Every check passes, and the password
/// is never printed.
#[test]
fn the_swift_plugin_passes_druid_plugin_test_against_swift() {
    let swift = druid_test_support::SwiftServer::shared();
    swift.create_container("cli-swift").unwrap();
    let secret = server_dir("plugin-cli-swift-secret").unwrap();
    for (key, value) in swift.store_secret(swift.password()) {
        std::fs::write(secret.join(key), value).unwrap();
    }
    let args: [OsString; 11] = [
        "plugin".into(),
        "test".into(),
        plugin_components().get("druid-plugin-swift").into(),
        "--provider".into(),
        "Swift".into(),
        "--container".into(),
        "cli-swift".into(),
        "--secret".into(),
        secret.into(),
        "--endpoint".into(),
        swift.proxy_url().into(),
    ];
    let (ok, out) = common::druid(&args);
    assert!(ok, "{out}");
    assert!(out.contains("plugin swift"), "{out}");
    assert!(out.contains("pass  the secret's keys accepted"), "{out}");
    assert!(out.contains("pass  round trip of 100 MiB"), "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(!out.contains(swift.password()), "{out}");
}

/// `druid plugin test` of the OSS plugin through the OSS gateway (a FAKE
/// OSS: MinIO behind a front that checks every request's V4 signature
/// with Alibaba's Go SDK), with the store secret in upstream's JSON form
/// (one `*.json` file). Every check passes, every request passed the
/// SDK's check, and the AccessKey secret is never printed.
#[test]
fn the_oss_plugin_passes_druid_plugin_test_through_the_oss_gateway() {
    let oss = druid_test_support::OssGateway::shared();
    oss.create_bucket("cli-oss").unwrap();
    let secret = server_dir("plugin-cli-oss-secret").unwrap();
    let json: serde_json::Map<String, serde_json::Value> = oss
        .store_secret(oss.secret())
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
        .collect();
    std::fs::write(
        secret.join("alicloud.json"),
        serde_json::Value::Object(json).to_string(),
    )
    .unwrap();
    let before = oss.verified().unwrap();
    let args: [OsString; 9] = [
        "plugin".into(),
        "test".into(),
        plugin_components().get("druid-plugin-oss").into(),
        "--provider".into(),
        "alicloud".into(),
        "--container".into(),
        "cli-oss".into(),
        "--secret".into(),
        secret.into(),
    ];
    let (ok, out) = common::druid(&args);
    assert!(ok, "{out}");
    assert!(out.contains("plugin oss"), "{out}");
    assert!(out.contains("pass  the secret's keys accepted"), "{out}");
    assert!(out.contains("pass  round trip of 100 MiB"), "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(!out.contains(oss.secret()), "{out}");
    assert!(
        oss.verified().unwrap() > before,
        "no request reached the gateway"
    );
}
