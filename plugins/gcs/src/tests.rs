//! Native unit tests of the pure logic. (Requests need the wasi imports and
//! are tested through the host against fake-gcs-server.)
#![allow(clippy::unwrap_used, clippy::panic, reason = "a test fails on error")]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::{StoreConfig, StoreError};
use druid_plugin_sdk::wiring::{StoreSpec, VolumeSource};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use sha2::Sha256;

use crate::auth::{self, SCOPE, ServiceAccount, parse_private_key, parse_token_response};
use crate::client::upload_id;
use crate::config::{self, Auth, EndpointSource};
use crate::errors::{Ctx, classify, parse_error};
use crate::listing::{parse_list, parse_object};
use crate::upload::{MAX_PART_SIZE, MIN_PART_SIZE, part_size};
use crate::wiring::{check_secret, pod_config};
use druid_plugin_sdk::oauth::classify as classify_token;

/// A key made for the tests (tests/support/testdata/README.md).
const TEST_KEY: &str = include_str!("../../../tests/support/testdata/gcs-test-key.pem");

/// OpenSSL's RS256 signature of `header.claims` with [`TEST_KEY`]
/// (`printf 'header.claims' | openssl dgst -sha256 -sign gcs-test-key.pem
/// | basenc --base64url`).
const OPENSSL_SIGNATURE: &str = "hHRVGpycFmJyfprEmawxZ8S0LdSFAtOfM5kZ7fpxxhLA_aFmpY6w2dIFR0_laoNdTfUuLw2V_QedRRJOYQH8Mlg1gHOSnRyvn1fARR4Coi8NRyrhVxYqcnReKc84Pi3LPthprB-pmDtj4O4Wcqw-DswNiUm1d89PClqW_72G7gmFq6nlerAvPZ9DQybYG7YXoe5TpfnVT4BM1HbJxKj__BbwNfo8400erB-GfFogtPzfJ0aU7e_uh8NZ4UghIzALGf__uHEHZBBch9V4NjOSu_vdKs--x0i0M7ut7MU_m2p-ce8GDvIwH7Caz0lDwl7aTGREBRbAdqKr6nY4JYFfRQ";

const EMAIL: &str = "etcd-backup@my-project.iam.gserviceaccount.com";

fn service_account(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut creds = vec![
        ("type".to_string(), "service_account".to_string()),
        ("project_id".into(), "my-project".into()),
        ("private_key_id".into(), "0123abcd".into()),
        ("private_key".into(), TEST_KEY.into()),
        ("client_email".into(), EMAIL.into()),
    ];
    for (k, v) in extra {
        creds.retain(|(key, _)| key != k);
        if !v.is_empty() {
            creds.push(((*k).into(), (*v).into()));
        }
    }
    creds
}

fn store_config(endpoint: Option<&str>, credentials: Vec<(String, String)>) -> StoreConfig {
    StoreConfig {
        provider: "GCS".into(),
        container: "etcd-backups".into(),
        endpoint: endpoint.map(Into::into),
        credentials,
    }
}

fn invalid(endpoint: Option<&str>, credentials: Vec<(String, String)>) -> String {
    match config::parse(&store_config(endpoint, credentials)) {
        Err(StoreError::InvalidConfig(m)) => m,
        other => panic!("expected invalid-config, got {other:?}"),
    }
}

#[test]
fn rs256_signatures_match_openssl() {
    let config = store_config(None, service_account(&[]));
    let account = ServiceAccount::from_config(&config).unwrap();
    assert_eq!(
        B64URL.encode(account.sign(b"header.claims")),
        OPENSSL_SIGNATURE
    );
}

#[test]
fn the_assertion_names_the_account_scope_and_token_endpoint_and_verifies() {
    let config = store_config(None, service_account(&[]));
    let account = ServiceAccount::from_config(&config).unwrap();
    let jwt = account.assertion(1_700_000_000);
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let json = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&B64URL.decode(p).unwrap()).unwrap()
    };
    let header = json(parts[0]);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], "0123abcd");
    let claims = json(parts[1]);
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(claims["scope"], SCOPE);
    assert_eq!(claims["aud"], config::TOKEN_URI);
    assert_eq!(claims["iat"], 1_700_000_000);
    assert_eq!(claims["exp"], 1_700_000_000 + auth::LIFETIME_SECS);
    // The signature verifies with the key's public half, over the first
    // two parts exactly as sent.
    let key = parse_private_key(TEST_KEY).unwrap();
    let verifying = VerifyingKey::<Sha256>::new(key.as_ref().clone());
    let signature = Signature::try_from(B64URL.decode(parts[2]).unwrap().as_slice()).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    verifying.verify(input.as_bytes(), &signature).unwrap();
    assert!(
        verifying
            .verify(format!("{input}x").as_bytes(), &signature)
            .is_err()
    );

    let body = ServiceAccount::token_request_body(&jwt);
    assert!(
        body.starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ),
        "{body}"
    );
    assert!(body.ends_with(&jwt), "a JWT needs no escaping: {body}");
}

#[test]
fn a_pkcs1_key_works_too_and_a_bad_key_is_named_without_its_content() {
    let key = parse_private_key(TEST_KEY).unwrap();
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    let pkcs1 = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
    let creds = service_account(&[("private_key", &pkcs1)]);
    let a = ServiceAccount::from_config(&store_config(None, creds)).unwrap();
    assert_eq!(B64URL.encode(a.sign(b"header.claims")), OPENSSL_SIGNATURE);

    let broken = TEST_KEY.replace("MII", "XXX");
    let m = invalid(None, service_account(&[("private_key", &broken)]));
    assert!(m.contains("`private_key`") && m.contains("PKCS#8"), "{m}");
    let body = TEST_KEY.lines().nth(3).unwrap();
    assert!(!m.contains(body), "{m}");
    let m = invalid(
        None,
        service_account(&[("private_key", "secret-but-not-pem")]),
    );
    assert!(m.contains("not a PEM private key"), "{m}");
    assert!(!m.contains("secret-but-not-pem"), "{m}");
    // Debug output never shows the key.
    let debug = format!("{a:?}");
    assert!(
        debug.contains("[redacted]") && !debug.contains("MII"),
        "{debug}"
    );
}

#[test]
fn google_is_the_default_and_needs_a_service_account() {
    let s = config::parse(&store_config(None, service_account(&[]))).unwrap();
    assert_eq!(s.origin, config::STORAGE_ORIGIN);
    assert_eq!(s.base_path, "");
    assert_eq!(s.endpoint_source, EndpointSource::Google);
    assert!(
        matches!(&s.auth, Auth::ServiceAccount(a) if a.email == EMAIL && a.token_uri == config::TOKEN_URI)
    );

    let m = invalid(None, service_account(&[("private_key", "")]));
    assert!(
        m.contains("no `private_key`") && m.contains("serviceaccount.json"),
        "{m}"
    );
    let m = invalid(None, service_account(&[("client_email", "")]));
    assert!(m.contains("no `client_email`"), "{m}");
    let m = invalid(None, service_account(&[("type", "external_account")]));
    assert!(
        m.contains("`external_account`") && m.contains("`audience`"),
        "{m}"
    );
    let m = invalid(None, service_account(&[("type", "authorized_user")]));
    assert!(m.contains("\"authorized_user\""), "{m}");
    let m = invalid(None, service_account(&[("project_id", "My_Project")]));
    assert!(m.contains("not a project ID"), "{m}");
    let m = invalid(None, service_account(&[("token_uri", "ftp://x/token")]));
    assert!(m.contains("token_uri"), "{m}");
}

#[test]
fn an_override_in_upstreams_form_and_the_emulator_mode() {
    // Upstream's e2e form, with /storage/v1/: no token over plain http,
    // whatever the secret holds (a placeholder key too).
    let creds = service_account(&[("private_key", "placeholder")]);
    let s = config::parse(&store_config(
        Some("http://fake-gcs:8000/storage/v1/"),
        creds,
    ))
    .unwrap();
    assert_eq!(s.origin, "http://fake-gcs:8000");
    assert_eq!(s.base_path, "");
    assert_eq!(s.endpoint_source, EndpointSource::Override);
    assert!(matches!(s.auth, Auth::Emulator));
    let s = config::parse(&store_config(Some("http://gw:80/gcs/"), Vec::new())).unwrap();
    assert_eq!(
        (s.origin.as_str(), s.base_path.as_str()),
        ("http://gw:80", "/gcs")
    );

    // Over https an override needs the service account.
    let s = config::parse(&store_config(
        Some("https://storage.example.com"),
        service_account(&[]),
    ))
    .unwrap();
    assert!(matches!(s.auth, Auth::ServiceAccount(_)));
    let m = invalid(Some("https://storage.example.com"), Vec::new());
    assert!(m.contains("no `client_email`"), "{m}");

    // A token endpoint over plain http too: a token service run beside
    // the store, which is used.
    let creds = service_account(&[("token_uri", "http://127.0.0.1:9/token")]);
    let s = config::parse(&store_config(Some("http://127.0.0.1:8/"), creds)).unwrap();
    assert!(
        matches!(&s.auth, Auth::ServiceAccount(a) if a.token_uri == "http://127.0.0.1:9/token")
    );

    // The legacy key, with a warning; the override wins over it.
    let creds = service_account(&[("storageAPIEndpoint", "http://legacy:4443/storage/v1/")]);
    let s = config::parse(&store_config(None, creds.clone())).unwrap();
    assert_eq!(s.origin, "http://legacy:4443");
    assert_eq!(s.endpoint_source, EndpointSource::LegacyKey);
    assert!(s.warnings[0].contains("deprecated"), "{:?}", s.warnings);
    let s = config::parse(&store_config(Some("http://new:1"), creds)).unwrap();
    assert_eq!(s.origin, "http://new:1");
    assert!(s.warnings[0].contains("ignored"), "{:?}", s.warnings);

    for bad in [
        "fake-gcs:8000",
        "ftp://x",
        "http://",
        "http://u@h",
        "http://h/?q",
    ] {
        let m = invalid(Some(bad), Vec::new());
        assert!(m.contains("store.endpointOverride"), "{bad}: {m}");
    }
}

#[test]
fn bucket_names_follow_googles_rules() {
    for good in [
        "etcd-backups",
        "a_b",
        "abc",
        "my.bucket.example.com",
        "0-bucket-9",
    ] {
        assert!(config::valid_bucket(good), "{good}");
    }
    let long = "a".repeat(64);
    for bad in ["ab", "Etcd", "-abc", "abc-", "a..b", "a b", long.as_str()] {
        assert!(!config::valid_bucket(bad), "{bad}");
    }
    let mut c = store_config(None, service_account(&[]));
    c.container = "Bad_Bucket".into();
    match config::parse(&c) {
        Err(StoreError::InvalidConfig(m)) => assert!(m.contains("\"Bad_Bucket\""), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn token_answers_are_read_and_refusals_are_access_denied() {
    let t = parse_token_response(
        r#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#,
        1000,
    )
    .unwrap();
    assert_eq!(t.access_token, "ya29.abc");
    assert_eq!(t.expires_at, 4599);
    assert!(t.fresh(4000, 300) && !t.fresh(4300, 300));
    assert!(!format!("{t:?}").contains("ya29"));
    for bad in [
        "not json",
        r#"{"expires_in":10}"#,
        r#"{"access_token":"a b"}"#,
        r#"{"access_token":"x","token_type":"mac"}"#,
    ] {
        assert!(parse_token_response(bad, 0).is_err(), "{bad}");
    }

    let body = r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
    match classify_token(
        400,
        body,
        "https://oauth2.googleapis.com/token?x=1",
        crate::errors::SERVICE_ACCOUNT_REFUSED,
    ) {
        Attempt::Fail(StoreError::AccessDenied(m)) => {
            assert!(m.contains("invalid_grant: Invalid JWT Signature."), "{m}");
            assert!(
                m.contains("oauth2.googleapis.com") && !m.contains("x=1"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        classify_token(
            503,
            "",
            "https://t/token",
            crate::errors::SERVICE_ACCOUNT_REFUSED
        ),
        Attempt::Retry(StoreError::Unavailable(_))
    ));
}

#[test]
fn listings_and_objects_parse() {
    let page = parse_list(
        r#"{"kind":"storage#objects","nextPageToken":"v2/b",
            "items":[{"name":"v2/a b","size":"12","updated":"2024-01-02T03:04:05.678Z"},
                     {"name":"v2/Full-0-1-1","size":"0"}]}"#,
    )
    .unwrap();
    assert_eq!(page.objects.len(), 2);
    assert_eq!(page.objects[0].key, "v2/a b");
    assert_eq!(page.objects[0].size, 12);
    assert_eq!(page.objects[0].last_modified, Some(1_704_164_645));
    assert_eq!(page.objects[1].last_modified, None);
    assert_eq!(page.next_token.as_deref(), Some("v2/b"));
    let empty = parse_list(r#"{"kind":"storage#objects"}"#).unwrap();
    assert!(empty.objects.is_empty() && empty.next_token.is_none());
    assert!(parse_list(r#"{"items":[{"name":"x","size":"big"}]}"#).is_err());
    assert!(parse_list("<xml/>").is_err());

    let o = parse_object(r#"{"name":"k","size":"263144","updated":"2026-12-07T10:01:09.644Z"}"#)
        .unwrap();
    assert_eq!(o.size, 263_144);
    assert!(o.last_modified.is_some());
}

#[test]
fn the_upload_id_comes_from_the_session_url() {
    let l = "http://127.0.0.1:4443/upload/storage/v1/b/bkt/o?uploadType=resumable&name=a%2Fb&upload_id=52310ad8";
    assert_eq!(upload_id(l).as_deref(), Some("52310ad8"));
    assert_eq!(upload_id("https://x/upload?upload_id="), None);
    assert_eq!(upload_id("https://x/upload"), None);
}

#[test]
fn part_sizes_are_multiples_of_256_kib_within_bounds() {
    assert_eq!(part_size(None) as u64, MIN_PART_SIZE);
    assert_eq!(part_size(Some(1 << 30)) as u64, MIN_PART_SIZE);
    let big = part_size(Some(1 << 40)) as u64;
    assert!(big > MIN_PART_SIZE && big <= MAX_PART_SIZE);
    assert_eq!(part_size(Some(u64::MAX)) as u64, MAX_PART_SIZE);
    for hint in [None, Some(1 << 30), Some(1 << 40), Some(u64::MAX)] {
        assert_eq!(part_size(hint) % (256 << 10), 0, "{hint:?}");
    }
}

fn ctx(key: Option<&str>) -> Ctx<'_> {
    Ctx {
        op: "head",
        key,
        bucket: "b",
    }
}

fn fail(a: Attempt<StoreError>) -> StoreError {
    match a {
        Attempt::Fail(e) => e,
        Attempt::Retry(e) => panic!("expected a final error, got a retry of {e:?}"),
    }
}

#[test]
fn error_responses_map_to_store_errors() {
    let no_object = r#"{"error":{"code":404,"message":"No such object: b/k","errors":[{"reason":"notFound"}]}}"#;
    assert_eq!(
        parse_error(no_object),
        crate::errors::GcsError {
            reason: Some("notFound".into()),
            message: Some("No such object: b/k".into())
        }
    );
    match fail(classify(404, no_object, &ctx(Some("k")))) {
        StoreError::NotFound(m) => assert!(m.contains("\"k\" in bucket \"b\""), "{m}"),
        other => panic!("{other:?}"),
    }
    // A bucket whose name holds the word: still the object that is missing.
    let in_backup_bucket =
        r#"{"error":{"code":404,"message":"No such object: etcd-backup-bucket/k"}}"#;
    assert!(matches!(
        fail(classify(404, in_backup_bucket, &ctx(Some("k")))),
        StoreError::NotFound(_)
    ));
    let no_bucket = r#"{"error":{"code":404,"message":"The specified bucket does not exist."}}"#;
    assert!(matches!(
        fail(classify(404, no_bucket, &ctx(Some("k")))),
        StoreError::NoSuchContainer(_)
    ));
    // fake-gcs-server's bare "Not Found" for a listing is the bucket.
    let bare = r#"{"error":{"code":404,"message":"Not Found"}}"#;
    assert!(matches!(
        fail(classify(404, bare, &ctx(None))),
        StoreError::NoSuchContainer(_)
    ));
    match fail(classify(
        403,
        r#"{"error":{"code":403,"message":"denied"}}"#,
        &ctx(None),
    )) {
        StoreError::AccessDenied(m) => assert!(m.contains("roles/storage.objectAdmin"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        classify(429, "", &ctx(None)),
        Attempt::Retry(StoreError::Throttled(_))
    ));
    assert!(matches!(
        classify(503, "<html>", &ctx(None)),
        Attempt::Retry(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        fail(classify(400, "", &ctx(None))),
        StoreError::Other(_)
    ));
}

fn spec(secret: Option<&str>) -> StoreSpec {
    StoreSpec {
        provider: "gcp".into(),
        container: "etcd-backups".into(),
        prefix: "etcd-main".into(),
        secret_name: secret.map(Into::into),
    }
}

#[test]
fn the_sidecar_gets_the_secret_as_upstreams_variable() {
    let c = pod_config(&spec(Some("gcs-secret"))).unwrap();
    let env: Vec<(&str, &str)> = c
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert!(
        env.contains(&("STORAGE_CONTAINER", "etcd-backups")),
        "{env:?}"
    );
    assert!(
        env.contains(&("GOOGLE_APPLICATION_CREDENTIALS", "/var/etcd-backup")),
        "{env:?}"
    );
    assert!(matches!(c.volumes[0].source, VolumeSource::StoreSecret));
    let e = pod_config(&spec(None)).unwrap_err();
    assert!(e.contains("serviceaccount.json"), "{e}");
    let mut s3 = spec(Some("x"));
    s3.provider = "S3".into();
    assert!(
        pod_config(&s3)
            .unwrap_err()
            .contains("not served by the gcs plugin")
    );
}

#[test]
fn secret_keys_are_checked_by_name() {
    let keys = |k: &[&str]| k.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    check_secret("GCS", &keys(&["serviceaccount.json"])).unwrap();
    check_secret("gcp", &keys(&["client_email", "private_key", "type"])).unwrap();
    let p = check_secret("GCS", &keys(&["accessKeyID"])).unwrap_err();
    assert!(p[0].contains("serviceaccount.json"), "{p:?}");
    let p = check_secret("GCS", &keys(&["client_email"])).unwrap_err();
    assert!(p[0].contains("private_key"), "{p:?}");
}

#[test]
fn the_contract_names_googles_hosts_and_the_token_endpoint() {
    let c = config::contract();
    assert_eq!(
        c.credential_variables,
        vec![
            "GOOGLE_APPLICATION_CREDENTIALS_JSON".to_string(),
            "GOOGLE_APPLICATION_CREDENTIALS".to_string()
        ]
    );
    assert!(c.credentials_required);
    assert_eq!(
        c.endpoint_keys,
        vec![
            "token_uri",
            "token_url",
            "service_account_impersonation_url",
            "storageAPIEndpoint"
        ]
    );
    assert_eq!(
        c.official_endpoints,
        vec![
            "https://storage.googleapis.com",
            "https://oauth2.googleapis.com",
            "https://sts.googleapis.com",
            "https://iamcredentials.googleapis.com"
        ]
    );
}

// --- Workload identity federation (external_account) ----------------------

const POOL: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/druid/providers/k8s";
const SUBJECT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

/// Upstream's layout: the JSON (as `gcloud iam workload-identity-pools
/// create-cred-config` writes it, `credential_source` as JSON text the
/// way the host passes nested values) and `token` and `projectID` next
/// to it.
fn external_account(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut creds = vec![
        ("type".to_string(), "external_account".to_string()),
        ("audience".into(), POOL.into()),
        (
            "subject_token_type".into(),
            "urn:ietf:params:oauth:token-type:jwt".into(),
        ),
        (
            "token_url".into(),
            "https://sts.googleapis.com/v1/token".into(),
        ),
        (
            "credential_source".into(),
            r#"{"file":"/var/etcd-backup/token","format":{"type":"text"}}"#.into(),
        ),
        ("token".into(), format!("{SUBJECT}\n")),
        ("projectID".into(), "my-project".into()),
    ];
    for (k, v) in extra {
        creds.retain(|(key, _)| key != k);
        if !v.is_empty() {
            creds.push(((*k).into(), (*v).into()));
        }
    }
    creds
}

fn external(s: &config::Settings) -> &crate::auth::ExternalAccount {
    match &s.auth {
        config::Auth::ExternalAccount(a) => a,
        other => panic!("not an external account: {other:?}"),
    }
}

#[test]
fn an_external_account_exchanges_the_secrets_token() {
    let s = config::parse(&store_config(None, external_account(&[]))).unwrap();
    let a = external(&s);
    assert_eq!(a.audience, POOL);
    assert_eq!(a.subject_token, SUBJECT, "the token is trimmed");
    assert_eq!(a.token_url, crate::auth::STS_TOKEN_URL);
    assert!(a.impersonation_url.is_none());
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert!(
        !format!("{s:?}").contains(SUBJECT),
        "the token shows in Debug"
    );
    let body = a.exchange_body();
    let form: std::collections::HashMap<String, String> = body
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), percent_decode(v))
        })
        .collect();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(form["audience"], POOL);
    assert_eq!(form["subject_token"], SUBJECT);
    assert_eq!(
        form["subject_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(
        form["requested_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(
        form["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );

    // Impersonation, and another token URL (warned about).
    let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/b@p.iam.gserviceaccount.com:generateAccessToken";
    let s = config::parse(&store_config(
        None,
        external_account(&[
            ("service_account_impersonation_url", url),
            ("token_url", "http://127.0.0.1:1234/v1/token"),
        ]),
    ))
    .unwrap();
    assert_eq!(external(&s).impersonation_url.as_deref(), Some(url));
    assert!(
        s.warnings.iter().any(|w| w.contains("not Google's")),
        "{:?}",
        s.warnings
    );
    let body: serde_json::Value =
        serde_json::from_str(&crate::auth::ExternalAccount::impersonation_body()).unwrap();
    assert_eq!(body["scope"][0], crate::auth::SCOPE);
    assert_eq!(body["lifetime"], "3600s");
    let t = crate::auth::parse_impersonation_response(
        r#"{"accessToken":"ya29.imp","expireTime":"2014-10-02T15:01:23Z"}"#,
        1_412_259_683,
    )
    .unwrap();
    assert_eq!(t.access_token, "ya29.imp");
    assert_eq!(t.expires_at, 1_412_262_083);
    assert!(crate::auth::parse_impersonation_response(r#"{"error":{}}"#, 0).is_err());
}

#[test]
fn external_account_errors_say_what_to_fix() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("audience", "")], "`audience`"),
        (&[("token", "")], "no `token` key"),
        (&[("projectID", "")], "no `projectID`"),
        (&[("credential_source", "")], "`credential_source`"),
        (&[("credential_source", "not json")], "not an object"),
        (
            &[(
                "credential_source",
                r#"{"url":"http://169.254.169.254/token"}"#,
            )],
            "has a `url`",
        ),
        (
            &[("credential_source", r#"{"file":"/etc/shadow"}"#)],
            "`token` key",
        ),
        (
            &[(
                "credential_source",
                r#"{"file":"/x/token","format":{"type":"json"}}"#,
            )],
            "plain text",
        ),
        (
            &[(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            )],
            "saml2",
        ),
        (&[("token_url", "ftp://sts/token")], "not an http(s) URL"),
        (
            &[(
                "service_account_impersonation_url",
                "https://evil.example/x",
            )],
            "generateAccessToken",
        ),
    ];
    for (extra, expected) in cases {
        let m = invalid(None, external_account(extra));
        assert!(m.contains(expected), "{extra:?}: {m}");
        assert!(!m.contains(SUBJECT), "{m}");
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
