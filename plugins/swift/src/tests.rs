//! Native unit tests of the pure logic. (Requests need the wasi imports and
//! are tested through the host against a real Swift and Keystone.)
#![allow(clippy::unwrap_used, clippy::panic, reason = "a test fails on error")]

use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::{StoreConfig, StoreError};
use druid_plugin_sdk::wiring::{StoreSpec, VolumeSource};
use serde_json::Value;

use crate::auth::{Session, keystone_error, parse_token_answer, storage_url, token_request};
use crate::config::{self, Credential, Named};
use crate::errors::{Ctx, classify, classify_keystone};
use crate::listing::{is_segment, parse_list, segment_name, segment_names};
use crate::upload::{MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, parse_part, part_size, part_token};
use crate::wiring::{check_secret, pod_config};

fn creds(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn password_secret() -> Vec<(String, String)> {
    creds(&[
        ("authURL", "https://keystone.example.com:5000/v3"),
        ("domainName", "Default"),
        ("tenantName", "etcd"),
        ("username", "etcd-backup"),
        ("password", "s3cr3t-pa55word"),
        ("region", "RegionOne"),
    ])
}

fn store_config(endpoint: Option<&str>, credentials: Vec<(String, String)>) -> StoreConfig {
    StoreConfig {
        provider: "Swift".into(),
        container: "etcd-backups".into(),
        endpoint: endpoint.map(Into::into),
        credentials,
    }
}

fn invalid(credentials: Vec<(String, String)>) -> String {
    match config::parse(&store_config(None, credentials)) {
        Err(StoreError::InvalidConfig(m)) => m,
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

#[test]
fn a_password_secret_signs_in_scoped_to_its_project_in_its_domain() {
    let settings = config::parse(&store_config(None, password_secret())).unwrap();
    assert_eq!(settings.auth_url, "https://keystone.example.com:5000/v3");
    assert_eq!(settings.region.as_deref(), Some("RegionOne"));
    assert_eq!(settings.container, "etcd-backups");
    let body: Value = serde_json::from_str(&token_request(&settings.credential)).unwrap();
    let auth = &body["auth"];
    assert_eq!(auth["identity"]["methods"][0], "password");
    let user = &auth["identity"]["password"]["user"];
    assert_eq!(user["name"], "etcd-backup");
    assert_eq!(user["password"], "s3cr3t-pa55word");
    assert_eq!(user["domain"]["name"], "Default");
    assert_eq!(auth["scope"]["project"]["name"], "etcd");
    assert_eq!(auth["scope"]["project"]["domain"]["name"], "Default");
    // Debug output never shows the password.
    assert!(!format!("{settings:?}").contains("s3cr3t"));
}

#[test]
fn ids_replace_names_for_the_domain_and_the_project() {
    let mut secret = password_secret();
    secret.retain(|(k, _)| k != "domainName" && k != "tenantName");
    secret.extend(creds(&[("domainID", "default"), ("tenantID", "0123abcd")]));
    let settings = config::parse(&store_config(None, secret)).unwrap();
    let body: Value = serde_json::from_str(&token_request(&settings.credential)).unwrap();
    assert_eq!(
        body["auth"]["identity"]["password"]["user"]["domain"]["id"],
        "default"
    );
    assert_eq!(
        body["auth"]["scope"]["project"],
        serde_json::json!({"id": "0123abcd"})
    );
}

#[test]
fn an_application_credential_signs_in_by_id_or_by_name_without_a_scope() {
    let by_id = creds(&[
        ("authURL", "https://keystone.example.com/identity"),
        ("applicationCredentialID", "ac-id"),
        ("applicationCredentialSecret", "ac-secret-value"),
        ("tenantName", "etcd"),
    ]);
    let settings = config::parse(&store_config(None, by_id)).unwrap();
    // A path without a version gets /v3 after it; the unused project is
    // worth a warning.
    assert_eq!(
        settings.auth_url,
        "https://keystone.example.com/identity/v3"
    );
    assert!(
        settings.warnings[0].contains("tenantName"),
        "{:?}",
        settings.warnings
    );
    let body: Value = serde_json::from_str(&token_request(&settings.credential)).unwrap();
    assert_eq!(
        body["auth"]["identity"]["methods"][0],
        "application_credential"
    );
    assert_eq!(
        body["auth"]["identity"]["application_credential"],
        serde_json::json!({"id": "ac-id", "secret": "ac-secret-value"})
    );
    assert!(body["auth"].get("scope").is_none());
    assert!(!format!("{:?}", settings.credential).contains("ac-secret-value"));

    let by_name = creds(&[
        ("authURL", "https://keystone.example.com"),
        ("applicationCredentialName", "backups"),
        ("applicationCredentialSecret", "ac-secret-value"),
        ("username", "etcd-backup"),
        ("domainName", "Default"),
    ]);
    let settings = config::parse(&store_config(None, by_name)).unwrap();
    assert_eq!(settings.auth_url, "https://keystone.example.com/v3");
    let body: Value = serde_json::from_str(&token_request(&settings.credential)).unwrap();
    let credential = &body["auth"]["identity"]["application_credential"];
    assert_eq!(credential["name"], "backups");
    assert_eq!(credential["user"]["name"], "etcd-backup");
    assert_eq!(credential["user"]["domain"]["name"], "Default");
    assert!(matches!(
        settings.credential,
        Credential::ApplicationCredential { id: None, .. }
    ));
}

#[test]
fn a_bad_secret_is_named_with_the_fix() {
    let mut mixed = password_secret();
    mixed.extend(creds(&[("applicationCredentialSecret", "x")]));
    assert!(invalid(mixed).contains("mixes a password with an application credential"));

    assert!(invalid(creds(&[("authURL", "https://k/v3")])).contains("holds no credential"));

    let mut no_domain = password_secret();
    no_domain.retain(|(k, _)| k != "domainName");
    assert!(invalid(no_domain).contains("no `domainName`"));

    let mut no_project = password_secret();
    no_project.retain(|(k, _)| k != "tenantName");
    assert!(invalid(no_project).contains("no `tenantName`"));

    let mut no_user = password_secret();
    no_user.retain(|(k, _)| k != "username");
    assert!(invalid(no_user).contains("no `username`"));

    let mut no_auth = password_secret();
    no_auth.retain(|(k, _)| k != "authURL");
    assert!(invalid(no_auth).contains("no `authURL`"));

    let mut v2 = password_secret();
    v2.retain(|(k, _)| k != "authURL");
    v2.extend(creds(&[("authURL", "https://keystone:5000/v2.0/")]));
    assert!(invalid(v2).contains("v2.0"));

    let mut not_a_url = password_secret();
    not_a_url.retain(|(k, _)| k != "authURL");
    not_a_url.extend(creds(&[("authURL", "ftp://keystone")]));
    assert!(invalid(not_a_url).contains("authURL"));

    let name_without_user = creds(&[
        ("authURL", "https://k/v3"),
        ("applicationCredentialName", "backups"),
        ("applicationCredentialSecret", "x"),
    ]);
    assert!(invalid(name_without_user).contains("applicationCredentialID"));

    let mut bad_container = store_config(None, password_secret());
    bad_container.container = "a/b".into();
    assert!(matches!(
        config::parse(&bad_container),
        Err(StoreError::InvalidConfig(m)) if m.contains("container")
    ));
    // No message repeats the password.
    let mut mixed = password_secret();
    mixed.extend(creds(&[("applicationCredentialSecret", "x")]));
    assert!(!invalid(mixed).contains("s3cr3t"));
}

fn catalog(endpoints: &[(&str, &str, &str)]) -> String {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(interface, region, url)| {
            serde_json::json!({"interface": interface, "region_id": region, "region": region, "url": url})
        })
        .collect();
    serde_json::json!({"token": {
        "expires_at": "2026-12-07T14:00:00.000000Z",
        "catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "region_id": "RegionOne", "url": "https://k/v3"}]},
            {"type": "object-store", "name": "swift", "endpoints": endpoints},
        ],
    }})
    .to_string()
}

#[test]
fn the_object_store_is_the_public_endpoint_of_the_region() {
    let json = catalog(&[
        ("internal", "RegionOne", "http://10.0.0.1:8080/v1/AUTH_p"),
        (
            "public",
            "RegionOne",
            "https://swift-one.example.com/v1/AUTH_p/",
        ),
        (
            "public",
            "RegionTwo",
            "https://swift-two.example.com/v1/AUTH_p",
        ),
    ]);
    let answer = parse_token_answer(&json, Some("RegionTwo")).unwrap();
    assert_eq!(
        answer.storage_url,
        "https://swift-two.example.com/v1/AUTH_p"
    );
    assert_eq!(
        answer.expires_at,
        druid_plugin_sdk::time::parse_iso8601("2026-12-07T14:00:00Z")
    );
    let answer = parse_token_answer(&json, Some("RegionOne")).unwrap();
    assert_eq!(
        answer.storage_url,
        "https://swift-one.example.com/v1/AUTH_p"
    );
    // Several regions and none chosen, or an unknown one: say which exist.
    let err = parse_token_answer(&json, None).unwrap_err();
    assert!(
        err.contains("RegionOne, RegionTwo") && err.contains("`region`"),
        "{err}"
    );
    let err = parse_token_answer(&json, Some("RegionThree")).unwrap_err();
    assert!(
        err.contains("\"RegionThree\"") && err.contains("RegionOne"),
        "{err}"
    );
    // One region: no need to choose.
    let one = catalog(&[("public", "RegionOne", "https://swift.example.com/v1/AUTH_p")]);
    assert!(parse_token_answer(&one, None).is_ok());
    // No object store in the catalog.
    let none = catalog(&[]);
    assert!(
        parse_token_answer(&none, None)
            .unwrap_err()
            .contains("no public object-store")
    );
    assert!(
        parse_token_answer("<html>", None)
            .unwrap_err()
            .contains("not a Keystone token")
    );
}

#[test]
fn an_endpoint_override_replaces_the_catalogs_origin_or_its_whole_url() {
    let catalog = "https://swift.internal:8080/v1/AUTH_p";
    assert_eq!(storage_url(catalog, None).unwrap(), catalog);
    assert_eq!(
        storage_url(catalog, Some("https://objects.example.com")).unwrap(),
        "https://objects.example.com/v1/AUTH_p"
    );
    assert_eq!(
        storage_url(
            catalog,
            Some("https://objects.example.com/swift/v1/AUTH_q/")
        )
        .unwrap(),
        "https://objects.example.com/swift/v1/AUTH_q"
    );
    let settings = config::parse(&store_config(
        Some("https://objects.example.com:8443/"),
        password_secret(),
    ))
    .unwrap();
    assert_eq!(
        settings.endpoint_override.as_deref(),
        Some("https://objects.example.com:8443")
    );
    assert!(matches!(
        config::parse(&store_config(Some("ftp://x"), password_secret())),
        Err(StoreError::InvalidConfig(m)) if m.contains("store.endpointOverride")
    ));
}

#[test]
fn a_session_is_renewed_before_its_token_expires() {
    let session = Session {
        token: "gAAAAA-token".into(),
        expires_at: Some(1000),
        storage_url: "https://s/v1/AUTH_p".into(),
    };
    assert!(session.fresh(600, 300));
    assert!(!session.fresh(701, 300));
    assert!(!format!("{session:?}").contains("gAAAAA"));
}

#[test]
fn listings_leave_segments_out_and_page_on_with_the_last_name() {
    let json = r#"[
        {"name": "v2/Full-00000000-00000010-1700000000.gz", "bytes": 52428800, "last_modified": "2026-12-07T13:24:05.123450", "hash": "x", "content_type": "application/octet-stream", "slo_etag": "\"y\""},
        {"name": "v2/Full-00000000-00000010-1700000000.gz/0000000001", "bytes": 16777216, "last_modified": "2026-12-07T13:24:01.000000"},
        {"name": "v2/Incr-00000011-00000020-1700000100.gz", "bytes": 300, "last_modified": "2026-12-07T13:25:00.000000"},
        {"subdir": "v2/x/"}
    ]"#;
    let page = parse_list(json, 4).unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "v2/Full-00000000-00000010-1700000000.gz",
            "v2/Incr-00000011-00000020-1700000100.gz"
        ]
    );
    assert_eq!(page.objects[0].size, 52_428_800);
    assert_eq!(
        page.objects[0].last_modified,
        druid_plugin_sdk::time::parse_iso8601("2026-12-07T13:24:05Z")
    );
    // A full page goes on after its last raw name (a segment or a subdir
    // counts: Swift's marker is the last name it gave).
    assert_eq!(page.next_token.as_deref(), Some("v2/x/"));
    let short = parse_list(json, 10).unwrap();
    assert_eq!(short.next_token, None);
    assert!(parse_list("", 10).unwrap().objects.is_empty());
    assert!(parse_list("[]", 10).unwrap().objects.is_empty());
    assert!(parse_list("{", 10).is_err());

    assert!(is_segment("a/b.gz/0000000001"));
    assert!(!is_segment("0000000001"));
    assert!(!is_segment("a/000000001"));
    assert!(!is_segment("a/00000000012"));
    assert!(!is_segment("a/000000000x"));
    assert_eq!(segment_name("k", 0), "k/0000000001");
    assert_eq!(segment_name("k", 41), "k/0000000042");
}

#[test]
fn deleting_takes_only_the_objects_own_segments() {
    let json = r#"[
        {"name": "k/0000000001", "bytes": 1},
        {"name": "k/0000000002", "bytes": 1},
        {"name": "k/other", "bytes": 1},
        {"name": "k/sub/0000000001", "bytes": 1}
    ]"#;
    let page = segment_names(json, "k/").unwrap();
    assert_eq!(page.segments, ["k/0000000001", "k/0000000002"]);
    assert_eq!(page.names, 4);
    assert_eq!(page.last.as_deref(), Some("k/sub/0000000001"));
}

#[test]
fn part_sizes_fit_swifts_manifest_limit() {
    assert_eq!(part_size(None) as u64, MIN_PART_SIZE);
    assert_eq!(part_size(Some(1 << 30)) as u64, MIN_PART_SIZE);
    let big = 100u64 << 30;
    let size = part_size(Some(big)) as u64;
    assert!(size * 999 >= big && size <= MAX_PART_SIZE, "{size}");
    assert_eq!(part_size(Some(10 << 40)) as u64, MAX_PART_SIZE);
    assert_eq!(MAX_PARTS, 1000);
    let token = part_token("d41d8cd98f00b204e9800998ecf8427e", 16);
    assert_eq!(
        parse_part(&token),
        Some(("d41d8cd98f00b204e9800998ecf8427e".into(), 16))
    );
    assert_eq!(parse_part("nonsense"), None);
}

#[test]
fn errors_say_what_failed_and_whether_to_retry() {
    let ctx = Ctx {
        op: "upload",
        key: Some("v2/Full-1"),
        container: "backups",
        container_404: false,
    };
    let write = Ctx {
        container_404: true,
        ..ctx
    };
    let fail = |a: Attempt<StoreError>| match a {
        Attempt::Fail(e) => e,
        Attempt::Retry(e) => panic!("retried: {e:?}"),
    };
    let retry = |a: Attempt<StoreError>| match a {
        Attempt::Retry(e) => e,
        Attempt::Fail(e) => panic!("not retried: {e:?}"),
    };
    let html = "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>";
    assert!(
        matches!(fail(classify(404, html, &write)), StoreError::NoSuchContainer(m) if m.contains("create the container"))
    );
    assert!(
        matches!(fail(classify(404, html, &ctx)), StoreError::NotFound(m) if m.contains("\"v2/Full-1\" in container \"backups\""))
    );
    assert!(matches!(
        fail(classify(403, "", &ctx)),
        StoreError::AccessDenied(_)
    ));
    assert!(matches!(
        retry(classify(503, "Service Unavailable", &ctx)),
        StoreError::Unavailable(m) if m.contains("HTTP 503: Service Unavailable")
    ));
    assert!(matches!(
        retry(classify(498, "", &ctx)),
        StoreError::Throttled(_)
    ));

    let body = r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#;
    assert_eq!(
        keystone_error(body).as_deref(),
        Some("Unauthorized: The request you have made requires authentication.")
    );
    let e = fail(classify_keystone(401, body, "https://u:p@k/v3?x=1"));
    let StoreError::AccessDenied(m) = e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("requires authentication") && m.contains("`password`"),
        "{m}"
    );
    assert!(!m.contains("u:p") && !m.contains("x=1"), "{m}");
    assert!(matches!(
        fail(classify_keystone(404, "", "https://k/v3")),
        StoreError::InvalidConfig(m) if m.contains("authURL")
    ));
    assert!(matches!(
        retry(classify_keystone(503, "", "https://k/v3")),
        StoreError::Unavailable(_)
    ));
}

#[test]
fn the_pod_gets_the_secret_and_the_secret_check_names_missing_keys() {
    let spec = StoreSpec {
        provider: "Swift".into(),
        container: "etcd-backups".into(),
        prefix: "p".into(),
        secret_name: Some("swift-secret".into()),
    };
    let wiring = pod_config(&spec).unwrap();
    let env: Vec<_> = wiring
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert!(env.contains(&("OPENSTACK_APPLICATION_CREDENTIALS", "/var/etcd-backup")));
    assert!(env.contains(&("STORAGE_CONTAINER", "etcd-backups")));
    assert!(matches!(
        wiring.volumes[0].source,
        VolumeSource::StoreSecret
    ));
    let no_secret = StoreSpec {
        secret_name: None,
        ..spec.clone()
    };
    assert!(pod_config(&no_secret).unwrap_err().contains("secretRef"));
    let other = StoreSpec {
        provider: "swift".into(),
        ..spec
    };
    assert!(pod_config(&other).unwrap_err().contains("case-sensitive"));

    let keys = |ks: &[&str]| ks.iter().map(|k| (*k).to_string()).collect::<Vec<_>>();
    assert!(
        check_secret(
            "Swift",
            &keys(&[
                "authURL",
                "domainName",
                "tenantName",
                "username",
                "password",
                "region"
            ])
        )
        .is_ok()
    );
    assert!(
        check_secret(
            "openstack",
            &keys(&[
                "authURL",
                "applicationCredentialID",
                "applicationCredentialSecret"
            ])
        )
        .is_ok()
    );
    assert!(check_secret("Swift", &keys(&["credentials.json"])).is_ok());
    let problems = check_secret("Swift", &keys(&["username", "password"])).unwrap_err();
    let text = problems.join("\n");
    assert!(
        text.contains("`authURL`")
            && text.contains("`domainName`")
            && text.contains("`tenantName`"),
        "{text}"
    );
    let problems = check_secret(
        "Swift",
        &keys(&[
            "authURL",
            "username",
            "password",
            "domainName",
            "tenantName",
            "applicationCredentialSecret",
        ]),
    )
    .unwrap_err();
    assert!(problems.join("\n").contains("both"), "{problems:?}");
    let problems =
        check_secret("Swift", &keys(&["authURL", "applicationCredentialSecret"])).unwrap_err();
    assert!(
        problems.join("\n").contains("applicationCredentialID"),
        "{problems:?}"
    );
    assert!(check_secret("Swift", &keys(&["authURL"])).unwrap_err()[0].contains("no credential"));
}

#[test]
fn the_contract_declares_the_secret_and_keystone_as_the_endpoint() {
    let contract = config::contract();
    assert_eq!(
        contract.credential_variables,
        [
            "OPENSTACK_APPLICATION_CREDENTIALS_JSON",
            "OPENSTACK_APPLICATION_CREDENTIALS"
        ]
    );
    assert!(contract.credentials_required);
    assert_eq!(contract.endpoint_keys, ["authURL"]);
    assert!(contract.official_endpoints.is_empty());
    assert!(matches!(
        config::parse(&store_config(None, password_secret())).unwrap().credential,
        Credential::Password { project: Named::Name(p), .. } if p == "etcd"
    ));
}
