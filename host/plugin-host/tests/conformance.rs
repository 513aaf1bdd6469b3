//! The conformance suite every provider plugin must pass, run through the
//! plugin host against real stores: a local directory (the Local plugin),
//! MinIO (the S3 plugin), Azurite (the ABS plugin), fake-gcs-server
//! (the GCS plugin, also behind a test token endpoint), Swift with
//! Keystone v3 (the Swift plugin) and MinIO behind an OSS gateway that
//! checks signatures with Alibaba's Go SDK (the OSS plugin; no OSS
//! emulator exists). The S3 plugin also signs in with a web identity
//! token at MinIO's STS, the GCS plugin with workload identity federation
//! at a test STS, the ABS plugin with a workload identity at a test Entra
//! ID (tokens from a test OIDC issuer).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use common::{local_config, minio_config, minio_config_with, registry};
use druid_plugin_host::conformance::pattern;
use druid_plugin_host::{Limits, SnapshotStore, StoreError, conformance};
use druid_test_support::server_dir;

/// Writes `data` as `key` in uneven chunks, then reads it back whole and
/// checks size and content.
async fn round_trip(store: &dyn SnapshotStore, key: &str, data: &[u8]) {
    let mut up = store.upload(key, Some(data.len() as u64)).await.unwrap();
    // Uneven chunks, so part boundaries never line up with writes.
    for chunk in data.chunks(3 << 20 | 12_345) {
        up.write(chunk).await.unwrap();
    }
    let info = up.finish().await.unwrap();
    assert_eq!(info.key, key);
    assert_eq!(
        info.size,
        data.len() as u64,
        "{key}: size reported by finish"
    );
    assert_eq!(
        store.head(key).await.unwrap().size,
        data.len() as u64,
        "{key}: head"
    );
    let back = store.get(key, None).await.unwrap();
    assert_eq!(back.len(), data.len(), "{key}: length read back");
    assert!(back == data, "{key}: content read back differs");
}

/// The conformance suite (`druid_plugin_host::conformance`, the one
/// `druid plugin test` runs): every check passes, and each one ran.
async fn suite(store: &dyn SnapshotStore, name: &str) {
    let report = conformance::run(store, "conformance/").await;
    assert!(
        report.passed(),
        "{name} fails the conformance suite:\n{}",
        report.table()
    );
    assert_eq!(report.checks.len(), 9, "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_plugin_passes_the_conformance_suite() {
    let registry = registry(Limits::default()).await;
    let root = server_dir("conformance-local").unwrap();
    let store = registry.store(local_config(&root, "default.bkp")).unwrap();
    suite(&store, "local").await;
    // Nothing of the store lives outside its container directory.
    let entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("default.bkp")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_plugin_passes_the_conformance_suite_on_minio() {
    let registry = registry(Limits::default()).await;
    let store = registry.store(minio_config("conformance")).unwrap();
    suite(&store, "s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_abs_plugin_passes_the_conformance_suite_on_azurite() {
    let registry = registry(Limits::default()).await;
    let store = registry
        .store(common::azurite_config("conformance"))
        .unwrap();
    suite(&store, "abs").await;
}

/// A SAS token instead of the account key: the suite passes with one
/// that grants what a backup store needs, and a read-only one is refused
/// writes, saying which keys to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_abs_plugin_works_with_a_sas_token_and_its_permissions() {
    let registry = registry(Limits::default()).await;
    let azurite = druid_test_support::AzuriteServer::shared();
    azurite.create_container("abs-sas").unwrap();
    let sas_config = |permissions: &str| {
        let sas = azurite.container_sas("abs-sas", permissions).unwrap();
        common::config(
            "ABS",
            "abs-sas",
            Some(azurite.endpoint()),
            &[("storageAccount", azurite.account()), ("sasToken", &sas)],
        )
    };
    let store = registry.store(sas_config("racwdl")).unwrap();
    suite(&store, "abs with a SAS").await;

    let read_only = sas_config("rl");
    let sig = read_only.credentials["sasToken"].clone();
    let store = registry.store(read_only).unwrap();
    store.list("v2/").await.unwrap();
    let err = store.put("v2/x", b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("sasToken"), "{err}");
    let sig = sig.split("sig=").nth(1).unwrap();
    assert!(!err.to_string().contains(sig), "{err}");
}

/// Azure's errors through the ABS plugin: a wrong account key is access
/// denied, a missing container says so by name, and neither message
/// carries the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_abs_plugin_names_a_wrong_key_and_a_missing_container() {
    use base64::Engine as _;
    let registry = registry(Limits::default()).await;
    common::azurite_config("abs-denied");
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let store = registry
        .store(common::azurite_config_with("abs-denied", &wrong))
        .unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("storageKey"), "{err}");
    assert!(!err.to_string().contains(&wrong), "{err}");
    let err = store.put("v2/x", b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");

    let azurite = druid_test_support::AzuriteServer::shared();
    let store = registry
        .store(common::azurite_config_with(
            "abs-no-such-container",
            azurite.key(),
        ))
        .unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");
    assert!(err.to_string().contains("abs-no-such-container"), "{err}");
    let err = store.put("v2/x", b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcs_plugin_passes_the_conformance_suite_on_fake_gcs() {
    let registry = registry(Limits::default()).await;
    let store = registry
        .store(common::fake_gcs_config("conformance"))
        .unwrap();
    suite(&store, "gcs").await;
    // A resumable upload that ends on a part boundary (completed by an
    // empty request) and one that does not.
    round_trip(&store, "v2/exact", &pattern(7, 32 << 20)).await;
    round_trip(&store, "v2/odd", &pattern(8, (16 << 20) + 1)).await;
}

/// The service account's flow through the host: every request reaches
/// fake-gcs-server only with a token the test token endpoint issued for
/// a JWT signed with the account's key; the suite passes that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcs_plugin_gets_a_token_for_its_service_account_and_sends_it() {
    let registry = registry(Limits::default()).await;
    let gcs = druid_test_support::FakeGcsServer::shared();
    let gate = druid_test_support::GcsAuthGate::start(gcs.endpoint()).unwrap();
    let store = registry
        .store(common::gated_gcs_config(&gate, "gcs-token"))
        .unwrap();
    suite(&store, "gcs with a service account").await;
    assert!(gate.token_requests() > 0);
    assert_eq!(gate.refused_assertions(), 0);
    assert_eq!(gate.refused_requests(), 0);
    // One token per store call, not per request: the 100 MiB object
    // alone took 7 parts.
    assert!(
        gate.passed() > gate.token_requests(),
        "{} requests, {} tokens",
        gate.passed(),
        gate.token_requests()
    );
}

/// The token endpoint's refusal (another account than the key's) and a
/// missing bucket through the GCS plugin: access denied with the
/// endpoint's reason, the bucket named, and never the key in a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcs_plugin_names_a_refused_account_and_a_missing_bucket() {
    let registry = registry(Limits::default()).await;
    let gcs = druid_test_support::FakeGcsServer::shared();
    let gate = druid_test_support::GcsAuthGate::start(gcs.endpoint()).unwrap();
    let mut config = common::gated_gcs_config(&gate, "gcs-refused");
    config.credentials.insert(
        "client_email".into(),
        "someone-else@druid-tests.iam.gserviceaccount.com".into(),
    );
    let store = registry.store(config).unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(message.contains("token endpoint refused"), "{message}");
    let key_line = druid_test_support::GCS_TEST_KEY.lines().nth(2).unwrap();
    assert!(!message.contains(key_line), "{message}");
    let err = store.put("v2/x", b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert_eq!(
        gate.refused_requests(),
        0,
        "no request went out without a token"
    );

    let mut config = common::gated_gcs_config(&gate, "gcs-present");
    config.container = "gcs-no-such-bucket".into();
    let store = registry.store(config).unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");
    assert!(err.to_string().contains("gcs-no-such-bucket"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swift_plugin_passes_the_conformance_suite_with_a_password() {
    let registry = registry(Limits::default()).await;
    let store = registry.store(common::swift_config("conformance")).unwrap();
    suite(&store, "swift").await;
    // Large objects are segments under a manifest; listings show the
    // object alone, with its whole size.
    let swift = druid_test_support::SwiftServer::shared();
    let data = pattern(3, 40 << 20);
    round_trip(&store, "v2/large", &data).await;
    let listed = store.list("v2/").await.unwrap();
    let large: Vec<_> = listed
        .iter()
        .filter(|o| o.key.starts_with("v2/large"))
        .collect();
    assert_eq!(large.len(), 1, "{listed:?}");
    assert_eq!(large[0].size, 40 << 20);
    let raw = swift_names(swift, "conformance", "v2/large/");
    assert_eq!(
        raw,
        [
            "v2/large/0000000001",
            "v2/large/0000000002",
            "v2/large/0000000003"
        ]
    );
    store.delete("v2/large").await.unwrap();
    assert!(swift_names(swift, "conformance", "v2/large").is_empty());
}

/// An application credential instead of a password signs in and serves
/// a round trip, a listing and a delete (the whole suite runs with the
/// password above: past the sign-in the requests are the same), and a
/// wrong secret is refused without appearing in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swift_plugin_signs_in_with_an_application_credential() {
    let registry = registry(Limits::default()).await;
    let swift = druid_test_support::SwiftServer::shared();
    swift.create_container("swift-appcred").unwrap();
    let (id, secret) = swift
        .create_application_credential(&format!("conformance-{}", std::process::id()))
        .unwrap();
    let config = |secret: &str| {
        common::config(
            "openstack",
            "swift-appcred",
            Some(swift.proxy_url()),
            &[
                ("authURL", swift.auth_url()),
                ("applicationCredentialID", &id),
                ("applicationCredentialSecret", secret),
            ],
        )
    };
    let store = registry.store(config(&secret)).unwrap();
    let data = pattern(5, 20 << 20 | 7);
    round_trip(&store, "v2/by-application-credential", &data).await;
    let listed = store.list("v2/").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].size, data.len() as u64);
    store.delete("v2/by-application-credential").await.unwrap();
    assert!(store.list("v2/").await.unwrap().is_empty());
    let wrong = "not-the-application-credential-secret";
    let store = registry.store(config(wrong)).unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(!err.to_string().contains(wrong), "{err}");
    assert!(!err.to_string().contains(&secret), "{err}");
}

/// Keystone's and Swift's refusals through the Swift plugin: a wrong
/// password is access denied with Keystone's words, a missing container
/// is named, and an object store the host does not allow says to set the
/// endpoint override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swift_plugin_names_a_wrong_password_a_missing_container_and_a_foreign_store() {
    let registry = registry(Limits::default()).await;
    let swift = druid_test_support::SwiftServer::shared();
    swift.create_container("swift-denied").unwrap();
    let wrong = "not-the-password-of-etcd-backup";
    let store = registry
        .store(common::swift_config_with("swift-denied", wrong))
        .unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("Keystone refused"), "{message}");
    assert!(message.contains("`password`"), "{message}");
    assert!(!message.contains(wrong), "{message}");
    let err = store.put("v2/x", b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");

    let store = registry
        .store(common::swift_config_with(
            "swift-no-such-container",
            swift.password(),
        ))
        .unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");
    assert!(err.to_string().contains("swift-no-such-container"), "{err}");
    let err = store.put("v2/x", b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");

    // Without the override the catalog's object store (another port) is
    // not a destination the user named: the host refuses it, and the
    // error says what to set.
    let mut config = common::swift_config("swift-foreign");
    config.endpoint = None;
    let store = registry.store(config).unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(err.to_string().contains("store.endpointOverride"), "{err}");
    assert!(!err.to_string().contains(swift.password()), "{err}");
}

/// A large object as upstream writes it (a dynamic large object: segments
/// `<key>/NNNNNNNNNN` and a zero-byte manifest naming their prefix) reads
/// back whole through the plugin, is listed without its segments, and is
/// deleted with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swift_plugin_reads_and_deletes_upstreams_dynamic_large_objects() {
    let registry = registry(Limits::default()).await;
    let store = registry
        .store(common::swift_config("swift-upstream"))
        .unwrap();
    let swift = druid_test_support::SwiftServer::shared();
    let token = swift.token().unwrap();
    let key = "v2/Full-00000000-00000042-1765000000.gz";
    let data = pattern(9, 5 << 20 | 123);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(true)
        .build()
        .new_agent();
    let object = |name: &str| format!("{}/swift-upstream/{name}", swift.storage_url());
    for (i, segment) in data.chunks(2 << 20).enumerate() {
        agent
            .put(&object(&format!("{key}/{:010}", i + 1)))
            .header("x-auth-token", &token)
            .send(segment)
            .unwrap();
    }
    agent
        .put(&object(key))
        .header("x-auth-token", &token)
        .header("x-object-manifest", format!("swift-upstream/{key}/"))
        .send(&[][..])
        .unwrap();

    assert_eq!(store.head(key).await.unwrap().size, data.len() as u64);
    let back = store.get(key, None).await.unwrap();
    assert!(back == data, "the dynamic large object read back differs");
    let listed: Vec<String> = store
        .list("v2/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, [key]);
    store.delete(key).await.unwrap();
    assert!(swift_names(swift, "swift-upstream", "v2/").is_empty());
}

/// OSS through the gateway of tests/peers/oss (a FAKE OSS named as such:
/// MinIO behind a front that checks every request's OSS V4 signature with
/// Alibaba Cloud's official Go SDK and refuses what fails): the suite
/// passes, multipart uploads included, and every request was signed as
/// the SDK signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oss_plugin_passes_the_conformance_suite_with_sdk_checked_signatures() {
    let registry = registry(Limits::default()).await;
    let store = registry
        .store(common::oss_config("oss-conformance"))
        .unwrap();
    let oss = druid_test_support::OssGateway::shared();
    let before = oss.verified().unwrap();
    suite(&store, "oss").await;
    // Parts of 8 MiB: a multipart upload whose last part is short.
    round_trip(&store, "v2/multipart", &pattern(9, (24 << 20) + 7)).await;
    let verified = oss.verified().unwrap() - before;
    assert!(
        verified > 20,
        "only {verified} requests reached the gateway"
    );
}

/// OSS's refusals through the OSS plugin, as the gateway answers them
/// with the SDK's signature check: a wrong AccessKey secret or ID is
/// access denied naming the key to check (never showing the secret), a
/// signature for another region says to set `region`, and a missing
/// bucket says so by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oss_plugin_names_a_wrong_key_a_wrong_region_and_a_missing_bucket() {
    let registry = registry(Limits::default()).await;
    let oss = druid_test_support::OssGateway::shared();
    oss.create_bucket("oss-denied").unwrap();
    let wrong = "not-the-oss-secret-9f3a";
    let store = registry
        .store(common::oss_config_with("oss-denied", wrong))
        .unwrap();
    for err in [
        store.list("v2/").await.unwrap_err(),
        store.put("v2/x", b"x").await.unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
        assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
        assert!(err.to_string().contains("`accessKeySecret`"), "{err}");
        assert!(!err.to_string().contains(wrong), "{err}");
    }

    // The listing's error with one key of the right secret changed.
    let list_with = |key: &str, value: &str| {
        let mut config = common::oss_config_with("oss-denied", oss.secret());
        config.credentials.insert(key.into(), value.into());
        let store = registry.store(config).unwrap();
        async move { store.list("v2/").await.unwrap_err() }
    };
    let err = list_with("accessKeyID", "LTAI5tSomeoneElse").await;
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("`accessKeyID`"), "{err}");

    let err = list_with("region", "eu-central-1").await;
    assert!(matches!(err, StoreError::InvalidConfig { .. }), "{err:?}");
    assert!(err.to_string().contains("set `region`"), "{err}");

    let store = registry
        .store(common::oss_config_with("oss-no-such-bucket", oss.secret()))
        .unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");
    assert!(err.to_string().contains("oss-no-such-bucket"), "{err}");
    let err = store.put("v2/x", b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");
}

/// Checks a refusal of a cloud identity: access denied, naming each of
/// `needles`, never showing `token`; returns the message.
fn denied(err: StoreError, what: &str, needles: &[&str], token: &str) -> String {
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::AccessDenied { .. }),
        "{what}: {err:?}"
    );
    for needle in needles {
        assert!(text.contains(needle), "{what}: no {needle:?} in {text}");
    }
    assert!(!text.contains(token), "{what}: the token leaked: {text}");
    text
}

/// The audience (MinIO's OpenID client ID) of the web identity tokens, as
/// EKS projects them for STS.
const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// A MinIO whose STS takes the test issuer's tokens, with bucket
/// `bucket`, and an S3 store config that signs in with web identity only
/// (no access key): `roleARN`, `token` and `stsEndpoint`.
fn web_identity_store(
    minio: &druid_test_support::MinioServer,
    bucket: &str,
    role: &str,
    token: &str,
) -> druid_plugin_host::StoreConfig {
    minio.create_bucket(bucket).unwrap();
    common::config(
        "S3",
        bucket,
        Some(minio.endpoint()),
        &[
            ("region", minio.region()),
            ("roleARN", role),
            ("token", token),
            ("stsEndpoint", minio.endpoint()),
        ],
    )
}

/// Web identity (upstream's `roleARN` + `token`): the S3 plugin exchanges
/// a service-account token for temporary credentials at a real STS
/// (MinIO's `AssumeRoleWithWebIdentity`, which checks the token against
/// the test issuer's published key and the role's client ID) and passes
/// the conformance suite with them; the store config holds no access key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_plugin_assumes_a_role_with_a_web_identity_token() {
    let registry = registry(Limits::default()).await;
    let issuer = druid_test_support::OidcIssuer::start().unwrap();
    let minio = druid_test_support::MinioServer::start_with_openid(&issuer, STS_AUDIENCE).unwrap();
    let role = minio.openid_role_arn(STS_AUDIENCE);
    let token = issuer.token("etcd", "etcd-main", STS_AUDIENCE, 3600);
    let config = web_identity_store(&minio, "web-identity", &role, &token);
    assert!(!config.credentials.contains_key("accessKeyID"));
    let store = registry.store(config).unwrap();
    suite(&store, "s3 (web identity)").await;
    round_trip(&store, "v2/multipart", &pattern(5, (17 << 20) + 3)).await;
    // The objects are MinIO's: its root user reads them back.
    let listed = minio
        .mc()
        .unwrap()
        .args(["ls", "druid/web-identity/v2/"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("multipart"), "{listed}");
}

/// STS's refusals say what to fix and never show the token: a token
/// signed by a key the issuer does not publish, an expired token, a
/// token for another audience, and a role STS does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_plugin_names_refused_web_identity_tokens_and_roles() {
    let registry = registry(Limits::default()).await;
    let issuer = druid_test_support::OidcIssuer::start().unwrap();
    let minio = druid_test_support::MinioServer::start_with_openid(&issuer, STS_AUDIENCE).unwrap();
    let role = minio.openid_role_arn(STS_AUDIENCE);
    let good = issuer.token("etcd", "etcd-main", STS_AUDIENCE, 3600);
    let cases = [
        (
            "forged",
            role.clone(),
            issuer.forged_token(STS_AUDIENCE).unwrap(),
        ),
        (
            "expired",
            role.clone(),
            issuer.token("etcd", "etcd-main", STS_AUDIENCE, -600),
        ),
        (
            "audience",
            role.clone(),
            issuer.token("etcd", "etcd-main", "someone-else", 3600),
        ),
        (
            "role",
            "arn:minio:iam:us-east-1::role/not-a-role".to_string(),
            good,
        ),
    ];
    for (what, role, token) in cases {
        let store = registry
            .store(web_identity_store(
                &minio,
                "web-identity-refused",
                &role,
                &token,
            ))
            .unwrap();
        let text = denied(
            store.list("v2/").await.unwrap_err(),
            what,
            &["assume role", &role, "STS refused"],
            &token,
        );
        assert!(
            text.contains("`token`") || text.contains("`roleARN`"),
            "{what}: {text}"
        );
    }
}

/// A GCS store Secret in upstream's workload identity layout, written to
/// `dir`: `serviceaccount.json` (an `external_account` whose token URL is
/// the gate's STS and whose `credential_source` names the Secret's
/// `token`), `token` and `projectID`; read by the host as the sidecar
/// does (upstream's GOOGLE_APPLICATION_CREDENTIALS names the JSON file).
fn workload_identity_secret(
    dir: &std::path::Path,
    gate: &druid_test_support::GcsAuthGate,
    token: &str,
    impersonate: bool,
) -> std::collections::BTreeMap<String, String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut json = serde_json::json!({
        "type": "external_account",
        "audience": druid_test_support::GCS_TEST_POOL,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": gate.sts_token_url(),
        "credential_source": {"file": "/var/etcd-backup/token", "format": {"type": "text"}},
    });
    if impersonate {
        json["service_account_impersonation_url"] = gate.impersonation_url().into();
    }
    std::fs::write(dir.join("serviceaccount.json"), json.to_string()).unwrap();
    std::fs::write(dir.join("token"), format!("{token}\n")).unwrap();
    std::fs::write(dir.join("projectID"), "druid-tests").unwrap();
    druid_plugin_host::credentials::read(&dir.join("serviceaccount.json")).unwrap()
}

/// Workload identity federation (upstream's GCS `external_account`): the
/// Secret as upstream lays it out, read by the host (the nested
/// `credential_source` as JSON text, `token` and `projectID` from next to
/// the JSON); the plugin exchanges the cluster's token at an STS (the
/// gate's stand-in for Google's, checking the OIDC test issuer's
/// signature) and, when asked, that token for the service account's
/// (impersonation); the suite passes either way. An expired or forged
/// token is access denied with what to check, never showing the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcs_plugin_exchanges_a_workload_identity_token() {
    let registry = registry(Limits::default()).await;
    let gcs = druid_test_support::FakeGcsServer::shared();
    let gate = druid_test_support::GcsAuthGate::start(gcs.endpoint()).unwrap();
    let issuer = druid_test_support::OidcIssuer::start().unwrap();
    let token = issuer.token("etcd", "etcd-main", "druid-gcs", 3600);
    let root = server_dir("gcs-workload-identity").unwrap();
    for impersonate in [false, true] {
        let bucket = if impersonate {
            "gcs-wif-imp"
        } else {
            "gcs-wif"
        };
        gcs.create_bucket(bucket).unwrap();
        let mut config = common::config("gcp", bucket, Some(gate.endpoint()), &[]);
        config.credentials =
            workload_identity_secret(&root.join(bucket), &gate, &token, impersonate);
        assert_eq!(config.credentials["token"], token);
        let store = registry.store(config).unwrap();
        suite(
            &store,
            &format!("gcs with workload identity (impersonate: {impersonate})"),
        )
        .await;
    }
    assert!(gate.exchanges() >= 2, "{} exchanges", gate.exchanges());
    assert!(gate.impersonations() >= 1);
    assert_eq!(gate.refused_exchanges(), 0);
    assert_eq!(gate.refused_requests(), 0);

    for (what, bad) in [
        (
            "expired",
            issuer.token("etcd", "etcd-main", "druid-gcs", -600),
        ),
        ("forged", issuer.forged_token("druid-gcs").unwrap()),
    ] {
        let mut config = common::config("gcp", "gcs-wif", Some(gate.endpoint()), &[]);
        config.credentials = workload_identity_secret(&root.join(what), &gate, &bad, false);
        let store = registry.store(config).unwrap();
        denied(
            store.list("v2/").await.unwrap_err(),
            what,
            &["invalid_grant", "token exchange refused"],
            &bad,
        );
    }
    assert_eq!(gate.refused_exchanges(), 2);
}

/// An ABS store on Azurite behind the Entra ID stand-in, signed in with
/// the pod's workload identity as the host passes it from Azure Workload
/// Identity's variables (no Secret: the account comes from the override).
fn workload_identity_abs(
    gate: &druid_test_support::AbsAuthGate,
    container: &str,
    client_id: &str,
    token: &str,
) -> druid_plugin_host::StoreConfig {
    let azurite = druid_test_support::AzuriteServer::shared();
    azurite.create_container(container).unwrap();
    common::config(
        "azure",
        container,
        Some(&gate.blob_endpoint(azurite)),
        &[
            ("AZURE_CLIENT_ID", client_id),
            ("AZURE_TENANT_ID", druid_test_support::ABS_TEST_TENANT_ID),
            ("AZURE_FEDERATED_TOKEN", token),
            ("AZURE_AUTHORITY_HOST", &gate.authority()),
        ],
    )
}

/// Azure workload identity: the ABS plugin exchanges the pod's projected
/// token at the Entra ID stand-in (client credentials with the token as
/// the client assertion, checked against the OIDC test issuer's key) and
/// sends the bearer token on every request; the gate lets nothing else
/// through to Azurite. An expired token, a token for another audience and
/// an unknown client are access denied with Entra ID's reason and what to
/// check, never showing the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_abs_plugin_signs_in_with_the_pods_workload_identity() {
    use druid_test_support::{ABS_TEST_CLIENT_ID, AZURE_TOKEN_AUDIENCE};
    let registry = registry(Limits::default()).await;
    let azurite = druid_test_support::AzuriteServer::shared();
    let gate = druid_test_support::AbsAuthGate::start(azurite).unwrap();
    let issuer = druid_test_support::OidcIssuer::start().unwrap();
    let token = issuer.token("etcd", "etcd-main", AZURE_TOKEN_AUDIENCE, 3600);
    let store = registry
        .store(workload_identity_abs(
            &gate,
            "abs-workload-identity",
            ABS_TEST_CLIENT_ID,
            &token,
        ))
        .unwrap();
    suite(&store, "abs with workload identity").await;
    assert!(gate.tokens() > 0);
    assert_eq!(gate.refused_assertions(), 0);
    assert_eq!(gate.refused_requests(), 0);
    assert!(
        gate.passed() > gate.tokens(),
        "{} requests, {} tokens",
        gate.passed(),
        gate.tokens()
    );

    for (what, client, bad, expected) in [
        (
            "expired",
            ABS_TEST_CLIENT_ID,
            issuer.token("etcd", "etcd-main", AZURE_TOKEN_AUDIENCE, -600),
            "AADSTS700024",
        ),
        (
            "audience",
            ABS_TEST_CLIENT_ID,
            issuer.token("etcd", "etcd-main", "sts.amazonaws.com", 3600),
            "AADSTS700212",
        ),
        (
            "client",
            "00000000-0000-4000-8000-0000000000ff",
            token.clone(),
            "AADSTS700016",
        ),
    ] {
        let store = registry
            .store(workload_identity_abs(
                &gate,
                "abs-workload-identity",
                client,
                &bad,
            ))
            .unwrap();
        denied(
            store.list("v2/").await.unwrap_err(),
            what,
            &[expected, "Entra ID refused"],
            &bad,
        );
    }
}

/// The raw object names below `prefix` in `container`, straight from
/// Swift (segments included).
fn swift_names(
    swift: &druid_test_support::SwiftServer,
    container: &str,
    prefix: &str,
) -> Vec<String> {
    let token = swift.token().unwrap();
    let url = format!(
        "{}/{container}?format=json&prefix={prefix}",
        swift.storage_url()
    );
    let body = ureq::get(&url)
        .header("x-auth-token", &token)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    entries
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_access_denied() {
    let registry = registry(Limits::default()).await;
    common::minio_config("denied");
    let store = registry
        .store(minio_config_with("denied", "not-the-secret"))
        .unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    let err = store.put("v2/x", b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_clear_error() {
    let registry = registry(Limits::default()).await;
    let minio = druid_test_support::MinioServer::shared();
    let store = registry
        .store(minio_config_with("no-such-bucket", minio.secret_key()))
        .unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");

    let root = server_dir("conformance-local-missing").unwrap();
    let mut config = common::config("Local", "missing.bkp", None, &[]);
    config.local_root = Some(root);
    let store = registry.store(config).unwrap();
    let err = store.list("v2/").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchContainer { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.bkp"), "{err}");
}

/// A Local store opens its directory afresh for every call (its
/// instances are never kept for the next call): once the container
/// directory moved away, the calls fail naming it, and nothing is written
/// through the old directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_store_never_writes_through_a_directory_that_moved() {
    let registry = registry(Limits::default()).await;
    let root = server_dir("conformance-local-moved").unwrap();
    let store = registry.store(local_config(&root, "moved.bkp")).unwrap();
    store.put("v2/a", b"a").await.unwrap();
    assert_eq!(store.list("v2/").await.unwrap().len(), 1);
    std::fs::rename(root.join("moved.bkp"), root.join("elsewhere")).unwrap();
    // The directory cannot be opened: the error names it.
    let err = store.list("v2/").await.unwrap_err();
    assert!(err.to_string().contains("moved.bkp"), "{err}");
    store.put("v2/b", b"b").await.unwrap_err();
    assert!(!root.join("elsewhere/v2/b").exists());
    assert!(root.join("elsewhere/v2/a").exists());
}

/// The temporary files of a Local store's directory (`.druid-upload-*`).
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".druid-upload-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_dropped_unfinished_is_aborted_and_stale_temporaries_are_swept() {
    let registry = registry(Limits::default()).await;
    let root = server_dir("conformance-local-dropped").unwrap();
    let store = registry.store(local_config(&root, "b")).unwrap();
    let dir = root.join("b/v2");

    // Dropped mid-way (as a timeout around it does): aborted in the
    // background, nothing stays behind.
    let mut up = store.upload("v2/dropped", None).await.unwrap();
    up.write(&[1u8; 4096]).await.unwrap();
    assert_eq!(
        temp_files(&dir).len(),
        1,
        "the upload writes a temporary file"
    );
    drop(up);
    let start = std::time::Instant::now();
    while !temp_files(&dir).is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the dropped upload's temporary file stays: {:?}",
            temp_files(&dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!dir.join("dropped").exists());

    // A temporary file an interrupted upload left an hour ago is swept by
    // the next upload to its directory; a fresh one (a live upload) stays.
    let stale = dir.join(".druid-upload-old-0000000000000001");
    let live = dir.join(".druid-upload-live-0000000000000002");
    for path in [&stale, &live] {
        std::fs::write(path, b"partial").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    store.put("v2/next", b"next").await.unwrap();
    assert!(!stale.exists(), "the stale temporary file stays");
    assert!(live.exists(), "a live upload's file was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_container_that_is_not_a_plain_name_reaches_no_directory() {
    let registry = registry(Limits::default()).await;
    let root = server_dir("conformance-local-names").unwrap();
    let tenant = root.join("tenant");
    std::fs::create_dir_all(tenant.join("other/v2")).unwrap();
    std::fs::write(tenant.join("other/v2/Full-00000000-00000001-1"), b"theirs").unwrap();
    for container in ["..", ".", "../tenant/other", "/etc", "other/../other"] {
        let mut config = common::config("Local", container, None, &[]);
        config.local_root = Some(root.join("mine"));
        std::fs::create_dir_all(root.join("mine")).unwrap();
        let store = registry.store(config).unwrap();
        let err = store.list("v2/").await.unwrap_err();
        assert!(
            matches!(err, StoreError::NoSuchContainer { .. }),
            "{container:?}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_nobody_finished_is_aborted_by_a_later_upload() {
    use rusty_s3::S3Action as _;
    const MARKERS: &str = ".druid-incomplete-uploads/";
    let registry = registry(Limits::default()).await;
    let mut config = minio_config("incomplete-uploads");
    // Every unfinished upload counts as abandoned at once (default: a day).
    config
        .credentials
        .insert("incompleteUploadExpirySeconds".into(), "0".into());
    let store = registry.store(config).unwrap();
    let minio = druid_test_support::MinioServer::shared();
    let bucket = rusty_s3::Bucket::new(
        minio.endpoint().parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        "incomplete-uploads",
        minio.region().to_string(),
    )
    .unwrap();
    let creds = rusty_s3::Credentials::new(minio.access_key(), minio.secret_key());
    // Whether MinIO still holds the multipart upload (ListParts: 200, or
    // 404 NoSuchUpload once it is aborted).
    let upload_exists = |key: &str, id: &str| {
        let url = bucket
            .list_parts(Some(&creds), key, id)
            .sign(std::time::Duration::from_secs(600));
        let (status, body) = druid_test_support::http_get(url.as_str()).unwrap();
        assert!(
            status == 200 || status == 404,
            "ListParts: {status}: {body}"
        );
        status == 200
    };

    // An upload that started its multipart upload (a part filled) and is
    // then lost without an abort, as when the sidecar is killed.
    let mut lost = store.upload("v2/abandoned", None).await.unwrap();
    lost.write(&pattern(1, 9 << 20)).await.unwrap();
    std::mem::forget(lost);
    let markers = store.list(MARKERS).await.unwrap();
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert!(
        markers[0]
            .key
            .starts_with(".druid-incomplete-uploads/v2/abandoned/")
    );
    let id = String::from_utf8(store.get(&markers[0].key, None).await.unwrap()).unwrap();
    assert!(
        upload_exists("v2/abandoned", &id),
        "the lost upload is there"
    );

    // The next multipart upload aborts it and removes its marker; its own
    // marker goes when it completes.
    round_trip(&store, "v2/next", &pattern(2, 9 << 20)).await;
    assert!(
        !upload_exists("v2/abandoned", &id),
        "the lost upload was aborted"
    );
    let left = store.list(MARKERS).await.unwrap();
    assert!(left.is_empty(), "markers left: {left:?}");
    // No snapshot listing sees the markers: they are outside every prefix.
    let objects = store.list("v2/").await.unwrap();
    assert_eq!(
        objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["v2/next"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_breaks_the_contract_fails_the_suite_naming_the_checks() {
    let registry = registry(Limits::default()).await;
    // The hostile plugin's `unsorted-page` store lists keys out of order
    // and stores nothing (its uploads fail).
    let store = registry
        .store(common::config("Hostile", "unsorted-page", None, &[]))
        .unwrap();
    let report = conformance::run(&store, "conformance/").await;
    assert!(!report.passed(), "{}", report.table());
    let failed: Vec<&str> = report.failures().iter().map(|c| c.name.as_str()).collect();
    assert!(failed.contains(&"round trip of 1 B"), "{failed:?}");
    let listing = report
        .checks
        .iter()
        .find(|c| c.name.starts_with("listing"))
        .unwrap();
    let why = listing.outcome.as_ref().unwrap_err();
    assert!(!why.is_empty(), "{}", report.table());
    let table = report.table();
    assert!(table.contains("FAIL  round trip of 1 B"), "{table}");
    assert!(table.ends_with(&format!(
        "{} checks, {} passed, {} failed\n",
        report.checks.len(),
        report.checks.len() - failed.len(),
        failed.len()
    )));
}
