//! Native unit tests of the pure logic. (Requests need the wasi imports and
//! are tested through the host against Azurite.)
#![allow(clippy::unwrap_used, clippy::panic, reason = "a test fails on error")]

use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::{StoreConfig, StoreError};
use druid_plugin_sdk::wiring::{StoreSpec, VolumeSource};

use crate::config::{self, Auth, EndpointSource};
use crate::errors::{Ctx, classify, parse_error};
use crate::listing::{block_id, block_list, parse_list};
use crate::sign::{Signed, authorization, string_to_sign};
use crate::upload::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, block_size};
use crate::wiring::{check_secret, pod_config};

/// Azurite's well-known development key (public, not a secret).
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn store_config(endpoint: Option<&str>, creds: &[(&str, &str)]) -> StoreConfig {
    StoreConfig {
        provider: "ABS".into(),
        container: "etcd-backups".into(),
        endpoint: endpoint.map(Into::into),
        credentials: creds
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    }
}

fn invalid(endpoint: Option<&str>, creds: &[(&str, &str)]) -> String {
    match config::parse(&store_config(endpoint, creds)) {
        Err(StoreError::InvalidConfig(m)) => m,
        other => panic!("expected invalid-config for {creds:?}, got {other:?}"),
    }
}

#[test]
fn the_account_endpoint_is_the_accounts_host_in_the_chosen_cloud() {
    let keys = [("storageAccount", "myaccount"), ("storageKey", DEV_KEY)];
    let s = config::parse(&store_config(None, &keys)).unwrap();
    assert_eq!(s.origin, "https://myaccount.blob.core.windows.net");
    assert_eq!(s.container_path, "/etcd-backups");
    assert_eq!(s.endpoint_source, EndpointSource::Account);
    assert!(matches!(&s.auth, Auth::SharedKey(k) if k.len() == 64));

    let china = [
        ("storageAccount", "myaccount"),
        ("storageKey", DEV_KEY),
        ("domain", " blob.core.chinacloudapi.cn\n"),
    ];
    let s = config::parse(&store_config(None, &china)).unwrap();
    assert_eq!(s.origin, "https://myaccount.blob.core.chinacloudapi.cn");

    // Any other domain needs the override: the host would refuse it.
    let other = [
        ("storageAccount", "myaccount"),
        ("storageKey", DEV_KEY),
        ("domain", "blob.azurestack.example"),
    ];
    let m = invalid(None, &other);
    assert!(m.contains("store.endpointOverride"), "{m}");
    assert!(m.contains("blob.azurestack.example"), "{m}");
}

#[test]
fn an_override_holds_the_account_path_style_and_wins_over_domain() {
    let keys = [
        ("storageAccount", "devstoreaccount1"),
        ("storageKey", DEV_KEY),
        ("domain", "blob.core.windows.net"),
    ];
    let s = config::parse(&store_config(
        Some("http://127.0.0.1:10000/devstoreaccount1/"),
        &keys,
    ))
    .unwrap();
    assert_eq!(s.origin, "http://127.0.0.1:10000");
    assert_eq!(s.container_path, "/devstoreaccount1/etcd-backups");
    assert_eq!(s.endpoint_source, EndpointSource::Override);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("`domain` is ignored"));

    for bad in [
        "127.0.0.1:10000",
        "ftp://h/x",
        "http://u:p@h/x",
        "http://h/x?sig=1",
        "http:///x",
    ] {
        let m = invalid(Some(bad), &keys);
        assert!(m.contains("store.endpointOverride"), "{bad}: {m}");
        assert!(!m.contains("sig=1") || bad.contains("sig=1"), "{m}");
    }
}

#[test]
fn bad_secrets_say_which_key_to_fix_and_never_show_a_credential() {
    let m = invalid(None, &[("storageKey", DEV_KEY)]);
    assert!(m.contains("`storageAccount`"), "{m}");
    let m = invalid(
        None,
        &[("storageAccount", "My_Account"), ("storageKey", DEV_KEY)],
    );
    assert!(m.contains("not a storage account name"), "{m}");
    let m = invalid(None, &[("storageAccount", "myaccount")]);
    assert!(m.contains("neither `storageKey`"), "{m}");
    let m = invalid(
        None,
        &[
            ("storageAccount", "myaccount"),
            ("storageKey", DEV_KEY),
            ("sasToken", "sv=2021-08-06&sig=abc"),
        ],
    );
    assert!(m.contains("both"), "{m}");
    let m = invalid(
        None,
        &[
            ("storageAccount", "myaccount"),
            ("storageKey", "not base64 !!"),
        ],
    );
    assert!(m.contains("not base64") && !m.contains("!!"), "{m}");
    let m = invalid(
        None,
        &[
            ("storageAccount", "myaccount"),
            ("sasToken", "sv=2021&secret=xyz"),
        ],
    );
    assert!(m.contains("not a SAS token") && !m.contains("xyz"), "{m}");

    let mut bad_container =
        store_config(None, &[("storageAccount", "a1b"), ("storageKey", DEV_KEY)]);
    for name in ["Etcd", "ab", "a--b", "-ab", "a_b"] {
        bad_container.container = name.into();
        let Err(StoreError::InvalidConfig(m)) = config::parse(&bad_container) else {
            panic!("{name} accepted");
        };
        assert!(m.contains("container name"), "{m}");
    }

    // The credential never shows in a Debug of the settings.
    let s = config::parse(&store_config(
        None,
        &[
            ("storageAccount", "myaccount"),
            ("sasToken", "?sv=2021&sig=SECRETSIG"),
        ],
    ))
    .unwrap();
    assert!(matches!(&s.auth, Auth::Sas(t) if t == "sv=2021&sig=SECRETSIG"));
    let shown = format!("{s:?}");
    assert!(!shown.contains("SECRETSIG"), "{shown}");
    let s = config::parse(&store_config(
        None,
        &[("storageAccount", "myaccount"), ("storageKey", DEV_KEY)],
    ))
    .unwrap();
    assert!(!format!("{s:?}").contains("Eby8"), "{s:?}");
}

#[test]
fn the_string_to_sign_has_the_documented_layout() {
    let headers = vec![
        ("x-ms-version".to_string(), "2021-08-06".to_string()),
        (
            "x-ms-date".to_string(),
            "Tue, 14 Nov 2023 22:13:20 GMT".to_string(),
        ),
        ("x-ms-blob-type".to_string(), " BlockBlob ".to_string()),
    ];
    let query = vec![
        ("restype".to_string(), "container".to_string()),
        ("comp".to_string(), "list".to_string()),
        ("prefix".to_string(), "v2/a b".to_string()),
    ];
    let s = string_to_sign(&Signed {
        method: "PUT",
        content_length: 5,
        ms_headers: &headers,
        account: "devstoreaccount1",
        path: "/devstoreaccount1/etcd-backups/v2/a%20b",
        query: &query,
    });
    // Verb, 11 standard headers (Content-Length the 3rd), the x-ms-*
    // headers sorted and trimmed, then /account + path and the query
    // parameters sorted, decoded.
    assert_eq!(
        s,
        "PUT\n\n\n5\n\n\n\n\n\n\n\n\n\
         x-ms-blob-type:BlockBlob\n\
         x-ms-date:Tue, 14 Nov 2023 22:13:20 GMT\n\
         x-ms-version:2021-08-06\n\
         /devstoreaccount1/devstoreaccount1/etcd-backups/v2/a%20b\n\
         comp:list\n\
         prefix:v2/a b\n\
         restype:container"
    );
    // A zero length is signed as empty.
    let s = string_to_sign(&Signed {
        method: "GET",
        content_length: 0,
        ms_headers: &[],
        account: "a",
        path: "/c",
        query: &[],
    });
    assert_eq!(s, "GET\n\n\n\n\n\n\n\n\n\n\n\n/a/c");
}

#[test]
fn the_signature_is_base64_hmac_sha256_with_the_account_key() {
    // RFC 4231 test case 1: key 20 × 0x0b, data "Hi There".
    let auth = authorization("acct", &[0x0b; 20], "Hi There");
    assert_eq!(
        auth,
        "SharedKey acct:sDRMYdjbOFNcqK/OrwvxK4gdwgDJgz2nJuk3bC4yz/c="
    );
}

#[test]
fn listings_parse_with_escaped_names_and_the_next_marker() {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c">
  <Prefix>v2/</Prefix><MaxResults>2</MaxResults>
  <Blobs>
    <Blob><Name>v2/Full-1 &amp; &lt;x&gt;</Name><Properties>
      <Creation-Time>Tue, 14 Nov 2023 22:13:20 GMT</Creation-Time>
      <Last-Modified>Tue, 14 Nov 2023 22:13:20 GMT</Last-Modified>
      <Content-Length>1048576</Content-Length><Content-Type>application/octet-stream</Content-Type>
      <BlobType>BlockBlob</BlobType></Properties><Metadata /></Blob>
    <Blob><Name>v2/Incr-2</Name><Properties><Content-Length>0</Content-Length></Properties></Blob>
  </Blobs>
  <NextMarker>2!8!djIvSW5jci0y</NextMarker>
</EnumerationResults>"#;
    let page = parse_list(xml).unwrap();
    assert_eq!(page.objects.len(), 2);
    assert_eq!(page.objects[0].key, "v2/Full-1 & <x>");
    assert_eq!(page.objects[0].size, 1_048_576);
    assert_eq!(page.objects[0].last_modified, Some(1_700_000_000));
    assert_eq!(page.objects[1].key, "v2/Incr-2");
    assert_eq!(page.objects[1].last_modified, None);
    assert_eq!(page.next_token.as_deref(), Some("2!8!djIvSW5jci0y"));

    let last =
        parse_list(r#"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#).unwrap();
    assert!(last.objects.is_empty() && last.next_token.is_none());
    assert!(parse_list("<html>oops</html>").is_err());
    assert!(parse_list("not xml <").is_err());
}

#[test]
fn block_ids_have_one_length_and_commit_in_order() {
    assert_eq!(block_id(0), "MDAwMDAwMDAwMA==");
    let ids: Vec<String> = [0, 9, 49_999].iter().map(|&n| block_id(n)).collect();
    assert!(ids.iter().all(|i| i.len() == ids[0].len()), "{ids:?}");
    assert_eq!(
        block_list(&ids[..2]),
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{}</Latest><Latest>{}</Latest></BlockList>",
            ids[0], ids[1]
        )
    );
}

#[test]
fn block_sizes_grow_with_the_hint_within_bounds() {
    let mib = 1 << 20;
    assert_eq!(block_size(None) as u64, MIN_BLOCK_SIZE);
    assert_eq!(block_size(Some(1 << 30)) as u64, MIN_BLOCK_SIZE);
    // 1 TiB in at most 45,000 blocks: 24 MiB.
    assert_eq!(block_size(Some(1 << 40)), 24 * mib);
    assert_eq!(block_size(Some(u64::MAX)) as u64, MAX_BLOCK_SIZE);
}

fn ctx(key: Option<&str>) -> Ctx<'_> {
    Ctx {
        op: "list",
        key,
        container: "etcd-backups",
        account: "myaccount",
        identity: None,
    }
}

fn fail(a: Attempt<StoreError>) -> StoreError {
    match a {
        Attempt::Fail(e) => e,
        Attempt::Retry(e) => panic!("retried: {e:?}"),
    }
}

#[test]
fn error_responses_map_to_store_errors() {
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ContainerNotFound</Code>\
                <Message>The specified container does not exist.\nRequestId:1\nTime:x</Message></Error>";
    assert_eq!(
        parse_error(body).message.as_deref(),
        Some("The specified container does not exist.")
    );
    let e = fail(classify(404, None, body, &ctx(None)));
    assert!(
        matches!(&e, StoreError::NoSuchContainer(m) if m.contains("etcd-backups") && !m.contains("RequestId")),
        "{e:?}"
    );
    let e = fail(classify(404, Some("BlobNotFound"), "", &ctx(Some("v2/x"))));
    assert!(
        matches!(&e, StoreError::NotFound(m) if m.contains("v2/x")),
        "{e:?}"
    );
    let e = fail(classify(403, Some("AuthenticationFailed"), "", &ctx(None)));
    assert!(
        matches!(&e, StoreError::AccessDenied(m) if m.contains("`storageKey`")),
        "{e:?}"
    );
    let e = fail(classify(400, Some("InvalidResourceName"), "", &ctx(None)));
    assert!(matches!(e, StoreError::InvalidConfig(_)), "{e:?}");
    let e = fail(classify(409, Some("LeaseIdMissing"), "", &ctx(Some("k"))));
    assert!(
        matches!(&e, StoreError::Other(m) if m.contains("LeaseIdMissing")),
        "{e:?}"
    );
    assert!(matches!(
        classify(503, Some("ServerBusy"), "", &ctx(None)),
        Attempt::Retry(StoreError::Throttled(_))
    ));
    assert!(matches!(
        classify(500, Some("InternalError"), "", &ctx(None)),
        Attempt::Retry(StoreError::Unavailable(_))
    ));
}

fn spec(secret: Option<&str>) -> StoreSpec {
    StoreSpec {
        provider: "azure".into(),
        container: "etcd-backups".into(),
        prefix: "etcd-main".into(),
        secret_name: secret.map(Into::into),
    }
}

#[test]
fn the_sidecar_gets_the_secret_and_the_variables_upstream_reads() {
    let c = pod_config(&spec(Some("abs-secret"))).unwrap();
    let env: Vec<(&str, &str)> = c
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        env,
        vec![
            ("STORAGE_CONTAINER", "etcd-backups"),
            ("AZURE_APPLICATION_CREDENTIALS", "/var/etcd-backup")
        ]
    );
    assert_eq!(c.volumes.len(), 1);
    assert!(matches!(c.volumes[0].source, VolumeSource::StoreSecret));
    // Without a Secret: the pod's workload identity; nothing mounted.
    let c = pod_config(&spec(None)).unwrap();
    assert!(c.volumes.is_empty());
    assert_eq!(c.env.len(), 1);
    assert_eq!(c.env[0].name, "STORAGE_CONTAINER");
    let mut other = spec(Some("s"));
    other.provider = "Azure".into();
    assert!(pod_config(&other).unwrap_err().contains("case-sensitive"));
}

#[test]
fn secret_keys_are_checked_by_name() {
    let keys = |k: &[&str]| k.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    assert!(check_secret("ABS", &keys(&["storageAccount", "storageKey"])).is_ok());
    assert!(check_secret("ABS", &keys(&["storageAccount", "sasToken", "domain"])).is_ok());
    assert!(check_secret("ABS", &keys(&["credentials.json"])).is_ok());
    let problems = check_secret("ABS", &keys(&["storageKey"])).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`storageAccount`"));
    let problems = check_secret("ABS", &keys(&["domain"])).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    let problems =
        check_secret("ABS", &keys(&["storageAccount", "storageKey", "sasToken"])).unwrap_err();
    assert!(problems[0].contains("both"), "{problems:?}");
}

#[test]
fn the_contract_names_azures_credentials_and_clouds() {
    let c = config::contract();
    assert_eq!(
        c.credential_variables,
        vec![
            "AZURE_APPLICATION_CREDENTIALS_JSON",
            "AZURE_APPLICATION_CREDENTIALS"
        ]
    );
    // Not required: the pod's workload identity serves without a Secret.
    assert!(!c.credentials_required);
    assert_eq!(c.endpoint_keys, vec!["AZURE_AUTHORITY_HOST"]);
    assert!(c.credential_value_variables.contains(&(
        "AZURE_FEDERATED_TOKEN_FILE".into(),
        "AZURE_FEDERATED_TOKEN".into()
    )));
    assert!(
        c.official_endpoints
            .contains(&"https://login.microsoftonline.com".to_string())
    );
    for domain in config::CLOUD_DOMAINS {
        assert!(
            c.official_endpoints
                .contains(&format!("https://{{storageAccount}}.{domain}")),
            "{domain}"
        );
    }
}

// --- Workload identity ------------------------------------------------------

const FEDERATED: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

fn identity(s: &config::Settings) -> &config::WorkloadIdentity {
    match &s.auth {
        config::Auth::WorkloadIdentity(w) => w,
        other => panic!("not a workload identity: {other:?}"),
    }
}

#[test]
fn the_pods_workload_identity_signs_without_a_secret() {
    let pod = [
        ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-0000000000c1"),
        ("AZURE_TENANT_ID", "00000000-0000-0000-0000-0000000000a1"),
        ("AZURE_FEDERATED_TOKEN", FEDERATED),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
    ];
    // The account from the override's host.
    let s = config::parse(&store_config(
        Some("https://myaccount.blob.core.windows.net"),
        &pod,
    ))
    .unwrap();
    assert_eq!(s.account, "myaccount");
    let w = identity(&s);
    assert_eq!(
        w.token_url(),
        "https://login.microsoftonline.com/00000000-0000-0000-0000-0000000000a1/oauth2/v2.0/token"
    );
    let body = w.token_request_body();
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(
        body.contains("scope=https%3A%2F%2Fstorage.azure.com%2F.default"),
        "{body}"
    );
    assert!(
        body.contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        ),
        "{body}"
    );
    assert!(
        body.ends_with(&format!("&client_assertion={FEDERATED}")),
        "{body}"
    );
    assert!(
        !format!("{s:?}").contains(FEDERATED),
        "the token shows in Debug"
    );
    // Path-style (Azurite): the account is the first path segment.
    let s = config::parse(&store_config(
        Some("http://127.0.0.1:10000/devstoreaccount1"),
        &pod,
    ))
    .unwrap();
    assert_eq!(s.account, "devstoreaccount1");
    // A Secret's account with the pod's identity; Entra ID's public cloud
    // by default.
    let mut with_account = pod[..3].to_vec();
    with_account.push(("storageAccount", "other"));
    let s = config::parse(&store_config(None, &with_account)).unwrap();
    assert_eq!(
        (s.account.as_str(), identity(&s).authority.as_str()),
        ("other", "https://login.microsoftonline.com")
    );
    // A key in the Secret wins.
    let mut with_key = with_account.clone();
    with_key.push(("storageKey", DEV_KEY));
    let s = config::parse(&store_config(None, &with_key)).unwrap();
    assert!(matches!(s.auth, config::Auth::SharedKey(_)));
}

#[test]
fn workload_identity_errors_say_what_to_fix() {
    let over = Some("https://myaccount.blob.core.windows.net");
    let m = invalid(
        over,
        &[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN", FEDERATED),
        ],
    );
    assert!(
        m.contains("$AZURE_TENANT_ID") && m.contains("azure.workload.identity/use"),
        "{m}"
    );
    let m = invalid(
        over,
        &[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_FEDERATED_TOKEN", FEDERATED),
        ],
    );
    assert!(m.contains("$AZURE_CLIENT_ID"), "{m}");
    let m = invalid(
        over,
        &[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_FEDERATED_TOKEN", "x"),
        ],
    );
    assert!(
        m.contains("not a JSON web token") && !m.contains("\"x\""),
        "{m}"
    );
    let m = invalid(
        over,
        &[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_FEDERATED_TOKEN", FEDERATED),
        ],
    );
    assert!(m.contains("no $AZURE_AUTHORITY_HOST"), "{m}");
    // No account anywhere.
    let m = invalid(None, &[("AZURE_CLIENT_ID", "c")]);
    assert!(
        m.contains("no storage account") && m.contains("endpointOverride"),
        "{m}"
    );
    // Nothing at all names every way.
    let m = invalid(None, &[("storageAccount", "myaccount")]);
    assert!(
        m.contains("`storageKey`") && m.contains("$AZURE_FEDERATED_TOKEN_FILE"),
        "{m}"
    );
}

#[test]
fn refusals_under_a_workload_identity_name_the_role_to_grant() {
    let c = Ctx {
        identity: Some("client-1"),
        ..ctx(Some("k"))
    };
    let m = match fail(classify(
        403,
        Some("AuthorizationPermissionMismatch"),
        "",
        &c,
    )) {
        StoreError::AccessDenied(m) => m,
        other => panic!("{other:?}"),
    };
    assert!(
        m.contains("client-1") && m.contains("Storage Blob Data Contributor"),
        "{m}"
    );
}
