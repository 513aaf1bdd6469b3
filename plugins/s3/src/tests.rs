//! Native unit tests of the pure logic. (Requests need the wasi imports and
//! are tested through the host against a real server.)

use std::time::Duration;

use druid_plugin_sdk::provider::Guest as _;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::{StoreConfig, StoreError};
use druid_plugin_sdk::wiring::{StoreSpec, VolumeSource};
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};

use super::S3;
use crate::client::{check_key, complete_outcome, parse_list};
use crate::config::{self, EndpointSource, Family, Settings};
use crate::errors::{Ctx, classify, parse_error, transport};
use crate::wiring::{check_secret, pod_config};

/// The access key of settings that sign with one.
fn access_key(s: &Settings) -> (&str, &str) {
    match &s.auth {
        config::Auth::Keys {
            access_key,
            secret_key,
        } => (access_key, secret_key),
        config::Auth::WebIdentity(w) => panic!("web identity, not an access key: {w:?}"),
    }
}

fn store_config(provider: &str, endpoint: Option<&str>, creds: &[(&str, &str)]) -> StoreConfig {
    StoreConfig {
        provider: provider.into(),
        container: "etcd-backups".into(),
        endpoint: endpoint.map(Into::into),
        credentials: creds
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    }
}

const AWS_KEYS: &[(&str, &str)] = &[
    ("region", "eu-west-1"),
    ("accessKeyID", "AKIAIOSFODNN7EXAMPLE"),
    (
        "secretAccessKey",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut keys: Vec<(&str, &str)> = AWS_KEYS.to_vec();
    keys.extend_from_slice(extra);
    keys
}

fn parse_ok(provider: &str, endpoint: Option<&str>, creds: &[(&str, &str)]) -> Settings {
    match config::parse(&store_config(provider, endpoint, creds)) {
        Ok(s) => s,
        Err(e) => panic!("{provider} {endpoint:?} {creds:?}: {e:?}"),
    }
}

fn invalid_config(provider: &str, endpoint: Option<&str>, creds: &[(&str, &str)]) -> String {
    match config::parse(&store_config(provider, endpoint, creds)) {
        Err(StoreError::InvalidConfig(m)) => m,
        other => panic!("expected invalid-config, got {other:?}"),
    }
}

fn base_url(s: &Settings) -> String {
    s.bucket().unwrap().base_url().as_str().to_string()
}

#[test]
fn describe_serves_s3_and_the_upstream_aliases() {
    let info = S3::describe();
    assert_eq!(info.name, "s3");
    assert_eq!(info.api_version, druid_plugin_sdk::API_VERSION);
    assert_eq!(
        info.providers,
        vec!["S3", "aws", "ECS", "dell", "OCS", "openshift", "stackit"]
    );
    for p in &info.providers {
        assert!(Family::of(p).is_some(), "{p}");
    }
    assert_eq!(Family::of("s3"), None, "matching is case-sensitive");
}

// --- Configuration --------------------------------------------------------

#[test]
fn aws_without_endpoint_uses_the_official_virtual_hosted_endpoint() {
    let s = parse_ok("S3", None, AWS_KEYS);
    assert_eq!(s.family, Family::Aws);
    assert_eq!(s.region, "eu-west-1");
    assert_eq!(s.endpoint, "https://s3.eu-west-1.amazonaws.com");
    assert_eq!(s.endpoint_source, EndpointSource::Official);
    assert!(!s.path_style);
    assert_eq!(
        base_url(&s),
        "https://etcd-backups.s3.eu-west-1.amazonaws.com/"
    );
    assert!(s.warnings.is_empty());
}

#[test]
fn force_path_style_puts_the_bucket_in_the_path() {
    let s = parse_ok("aws", None, &with(&[("s3ForcePathStyle", "true")]));
    assert!(s.path_style);
    assert_eq!(
        base_url(&s),
        "https://s3.eu-west-1.amazonaws.com/etcd-backups/"
    );
    let s = parse_ok("aws", None, &with(&[("s3ForcePathStyle", "false")]));
    assert!(!s.path_style);
}

#[test]
fn endpoints_on_ip_addresses_or_localhost_are_path_style() {
    for endpoint in [
        "http://127.0.0.1:9000",
        "http://localhost:9000",
        "http://[::1]:9000",
        "https://10.0.0.5",
    ] {
        let s = parse_ok("S3", Some(endpoint), AWS_KEYS);
        assert!(s.path_style, "{endpoint}");
        assert_eq!(base_url(&s), format!("{endpoint}/etcd-backups/"));
    }
}

#[test]
fn endpoints_on_host_names_are_virtual_hosted() {
    let s = parse_ok(
        "stackit",
        None,
        &with(&[("endpoint", "https://object.storage.eu01.onstackit.cloud")]),
    );
    assert!(!s.path_style);
    assert_eq!(s.endpoint_source, EndpointSource::Secret("endpoint"));
    assert_eq!(
        base_url(&s),
        "https://etcd-backups.object.storage.eu01.onstackit.cloud/"
    );
}

#[test]
fn the_spec_endpoint_wins_over_the_secret() {
    let s = parse_ok(
        "S3",
        Some("http://127.0.0.1:9000"),
        &with(&[("endpoint", "https://s3.example.com")]),
    );
    assert_eq!(s.endpoint, "http://127.0.0.1:9000");
    assert_eq!(s.endpoint_source, EndpointSource::Spec);
    // An empty override does not count.
    let s = parse_ok(
        "S3",
        Some(" "),
        &with(&[("endpoint", "https://s3.example.com")]),
    );
    assert_eq!(s.endpoint, "https://s3.example.com");
}

#[test]
fn bucket_names_that_cannot_be_host_labels_go_path_style() {
    let mut c = store_config("S3", None, AWS_KEYS);
    c.container = "my.dotted.bucket".into();
    assert!(config::parse(&c).unwrap().path_style, "dots over https");
    c.container = "Legacy_Bucket".into();
    assert!(config::parse(&c).unwrap().path_style);
    c.container = "fine-bucket".into();
    assert!(!config::parse(&c).unwrap().path_style);
}

#[test]
fn style_choice() {
    assert!(config::choose_path_style(
        true,
        "s3.example.com",
        true,
        "b-1"
    ));
    assert!(config::choose_path_style(false, "192.168.1.1", true, "b-1"));
    assert!(config::choose_path_style(false, "localhost", false, "b-1"));
    assert!(config::choose_path_style(false, "::1", false, "b-1"));
    assert!(!config::choose_path_style(
        false,
        "s3.example.com",
        true,
        "b-1"
    ));
    assert!(!config::choose_path_style(
        false,
        "s3.example.com",
        false,
        "a.b.c"
    ));
    assert!(config::choose_path_style(
        false,
        "s3.example.com",
        true,
        "a.b.c"
    ));
    assert_eq!(
        config::endpoint_host("https://user@Host.Example:443/x"),
        Ok(("host.example".into(), true))
    );
    assert_eq!(
        config::endpoint_host("http://[::1]:9000"),
        Ok(("::1".into(), false))
    );
    assert!(config::endpoint_host("ftp://x").is_err());
    assert!(config::endpoint_host("http://").is_err());
}

#[test]
fn values_are_trimmed_and_scheme_less_endpoints_follow_disable_ssl() {
    let s = parse_ok(
        "OCS",
        None,
        &with(&[
            ("endpoint", "ocs.example.com:8080\n"),
            ("disableSSL", "true"),
        ]),
    );
    assert_eq!(s.endpoint, "http://ocs.example.com:8080");
    assert_eq!(access_key(&s).0, "AKIAIOSFODNN7EXAMPLE");
    let s = parse_ok("OCS", None, &with(&[("endpoint", "ocs.example.com")]));
    assert_eq!(s.endpoint, "https://ocs.example.com");
}

#[test]
fn openshift_is_always_path_style_and_needs_an_endpoint() {
    let s = parse_ok(
        "openshift",
        None,
        &with(&[("endpoint", "https://ocs.example.com")]),
    );
    assert_eq!(s.family, Family::Openshift);
    assert!(s.path_style);
    assert_eq!(base_url(&s), "https://ocs.example.com/etcd-backups/");
    let m = invalid_config("OCS", None, AWS_KEYS);
    assert!(
        m.contains("`endpoint`") && m.contains("add it to the secret"),
        "{m}"
    );
    // The spec's override is enough.
    assert!(parse_ok("OCS", Some("https://ocs.example.com"), AWS_KEYS).path_style);
}

#[test]
fn ecs_takes_its_upstream_key_names_and_a_fixed_region() {
    let s = parse_ok(
        "dell",
        None,
        &[
            ("ECS_ENDPOINT", "https://ecs.example.com:9021"),
            ("ECS_ACCESS_KEY_ID", "user1"),
            ("ECS_SECRET_ACCESS_KEY", "secret1"),
        ],
    );
    assert_eq!(s.family, Family::Ecs);
    assert_eq!(s.region, "US-Standard");
    assert!(s.path_style);
    assert_eq!(access_key(&s), ("user1", "secret1"));
    assert_eq!(base_url(&s), "https://ecs.example.com:9021/etcd-backups/");
    let s = parse_ok(
        "ECS",
        None,
        &[
            ("endpoint", "https://ecs.example.com"),
            ("accessKeyID", "a"),
            ("secretAccessKey", "b"),
        ],
    );
    assert_eq!(s.region, "US-Standard");
    let m = invalid_config(
        "ECS",
        None,
        &[("accessKeyID", "a"), ("secretAccessKey", "b")],
    );
    assert!(m.contains("`endpoint` or `ECS_ENDPOINT`"), "{m}");
}

#[test]
fn missing_keys_are_named_with_the_fix() {
    let m = invalid_config(
        "S3",
        None,
        &[("region", "eu-west-1"), ("secretAccessKey", "s")],
    );
    assert!(
        m.contains("`accessKeyID`") && m.contains("add it to the secret"),
        "{m}"
    );
    let m = invalid_config("S3", None, &[("region", "eu-west-1"), ("accessKeyID", "a")]);
    assert!(m.contains("`secretAccessKey`"), "{m}");
    let m = invalid_config(
        "S3",
        None,
        &[("accessKeyID", "a"), ("secretAccessKey", "s")],
    );
    assert!(m.contains("`region`"), "{m}");
    let m = invalid_config(
        "S3",
        None,
        &[
            ("region", ""),
            ("accessKeyID", "a"),
            ("secretAccessKey", "s"),
        ],
    );
    assert!(
        m.contains("`region`"),
        "an empty value counts as missing: {m}"
    );
}

#[test]
fn sse_c_is_refused_by_name() {
    let m = invalid_config(
        "S3",
        None,
        &with(&[("sseCustomerKey", "k"), ("sseCustomerAlgorithm", "AES256")]),
    );
    assert!(
        m.contains("`sseCustomerKey`") && m.contains("`sseCustomerAlgorithm`"),
        "{m}"
    );
    assert!(m.contains("not supported"), "{m}");
    let m = invalid_config("S3", None, &with(&[("sseCustomerAlgorithm", "AES256")]));
    assert!(m.contains("`sseCustomerAlgorithm`"), "{m}");
}

#[test]
fn invalid_values_are_named_with_the_fix() {
    let m = invalid_config("S3", None, &with(&[("s3ForcePathStyle", "yes")]));
    assert!(
        m.contains("`s3ForcePathStyle`") && m.contains("\"true\" or \"false\""),
        "{m}"
    );
    let m = invalid_config("S3", None, &with(&[("endpoint", "ftp://s3.example.com")]));
    assert!(
        m.contains("secret key `endpoint`") && m.contains("scheme://host"),
        "{m}"
    );
    let m = invalid_config("S3", Some("http://"), AWS_KEYS);
    assert!(
        m.contains("endpoint override") && m.contains("no host"),
        "{m}"
    );
    let m = invalid_config(
        "S3",
        None,
        &[
            ("region", "eu west 1"),
            ("accessKeyID", "a"),
            ("secretAccessKey", "s"),
        ],
    );
    assert!(m.contains("`region`"), "{m}");
    let m = invalid_config("s3", None, AWS_KEYS);
    assert!(
        m.contains("not served") && m.contains("case-sensitive"),
        "{m}"
    );
    let mut c = store_config("S3", None, AWS_KEYS);
    c.container = String::new();
    assert!(
        matches!(config::parse(&c), Err(StoreError::InvalidConfig(m)) if m.contains("store.container"))
    );
    c.container = "bucket/path".into();
    assert!(
        matches!(config::parse(&c), Err(StoreError::InvalidConfig(m)) if m.contains("store.prefix"))
    );
}

#[test]
fn tls_settings_the_host_owns_are_warned_about() {
    let s = parse_ok(
        "S3",
        None,
        &with(&[
            ("insecureSkipVerify", "true"),
            ("trustedCaCert", "-----BEGIN"),
        ]),
    );
    assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
    let s = parse_ok("S3", None, &with(&[("insecureSkipVerify", "false")]));
    assert!(s.warnings.is_empty());
}

// --- SigV4 ----------------------------------------------------------------

/// AWS's published example of a presigned URL ("Authenticating Requests:
/// Using Query Parameters"): GET /test.txt from examplebucket, us-east-1,
/// 2013-05-24T00:00:00Z, valid for 86400 s.
const AWS_EXAMPLE_URL: &str = "https://examplebucket.s3.amazonaws.com/test.txt\
    ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
    &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
    &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
    &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn sigv4_matches_the_aws_presigned_url_example() {
    let bucket = Bucket::new(
        "https://s3.amazonaws.com".parse().unwrap(),
        UrlStyle::VirtualHost,
        "examplebucket",
        "us-east-1",
    )
    .unwrap();
    let credentials = Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    );
    // The timestamp type (jiff's) is inferred from `sign_with_time`.
    let url = bucket
        .get_object(Some(&credentials), "test.txt")
        .sign_with_time(
            Duration::from_secs(86400),
            &"2013-05-24T00:00:00Z".parse().unwrap(),
        );
    assert_eq!(url.as_str(), AWS_EXAMPLE_URL);
    assert!(
        url.as_str()
            .ends_with("aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
    );
}

#[test]
fn sigv4_through_the_plugins_own_configuration() {
    // The same request, with the bucket and credentials built by `open`'s
    // configuration path.
    let mut c = store_config(
        "S3",
        Some("https://s3.amazonaws.com"),
        &[
            ("region", "us-east-1"),
            ("accessKeyID", "AKIAIOSFODNN7EXAMPLE"),
            (
                "secretAccessKey",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
            ),
        ],
    );
    c.container = "examplebucket".into();
    let settings = config::parse(&c).unwrap();
    let client = crate::client::Client::new(&settings).unwrap();
    let url = client
        .bucket
        .get_object(Some(&client.credentials().unwrap()), "test.txt")
        .sign_with_time(
            Duration::from_secs(86400),
            &"2013-05-24T00:00:00Z".parse().unwrap(),
        );
    assert_eq!(url.as_str(), AWS_EXAMPLE_URL);
}

// --- Error mapping --------------------------------------------------------

fn ctx(key: Option<&'static str>) -> Ctx<'static> {
    Ctx {
        op: "head",
        key,
        bucket: "etcd-backups",
        region: "eu-west-1",
        role: None,
    }
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"
    )
}

fn fail(a: Attempt<StoreError>) -> StoreError {
    match a {
        Attempt::Fail(e) => e,
        Attempt::Retry(e) => panic!("expected a final failure, got a retry: {e:?}"),
    }
}

fn retry(a: Attempt<StoreError>) -> StoreError {
    match a {
        Attempt::Retry(e) => e,
        Attempt::Fail(e) => panic!("expected a retry, got a final failure: {e:?}"),
    }
}

#[test]
fn error_bodies_parse() {
    let e = parse_error(&error_xml(
        "NoSuchKey",
        "The specified key does not exist. &lt;x&gt; &amp;",
    ));
    assert_eq!(e.code.as_deref(), Some("NoSuchKey"));
    assert_eq!(
        e.message.as_deref(),
        Some("The specified key does not exist. <x> &")
    );
    assert_eq!(parse_error(""), Default::default());
    assert_eq!(parse_error("<html>bad gateway</html>").code, None);
}

#[test]
fn not_found_and_no_such_bucket() {
    let body = error_xml("NoSuchKey", "The specified key does not exist.");
    let e = fail(classify(404, None, &body, &ctx(Some("v2/Full-1"))));
    assert!(
        matches!(&e, StoreError::NotFound(m) if m.contains("v2/Full-1")),
        "{e:?}"
    );
    // HEAD: no body.
    assert!(matches!(
        fail(classify(404, None, "", &ctx(Some("k")))),
        StoreError::NotFound(_)
    ));

    let body = error_xml("NoSuchBucket", "The specified bucket does not exist");
    let e = fail(classify(404, None, &body, &ctx(Some("k"))));
    let StoreError::NoSuchContainer(m) = e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("etcd-backups") && m.contains("must exist") && m.contains("store.container"),
        "{m}"
    );
    // A bucket-level request without a body: the bucket is missing.
    assert!(matches!(
        fail(classify(404, None, "", &ctx(None))),
        StoreError::NoSuchContainer(_)
    ));
}

#[test]
fn access_errors_name_the_code_and_the_secret() {
    for code in [
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ] {
        let e = fail(classify(
            403,
            None,
            &error_xml(code, "nope"),
            &ctx(Some("k")),
        ));
        let StoreError::AccessDenied(m) = e else {
            panic!("{code}: {e:?}")
        };
        assert!(m.contains(code) && m.contains("store secret"), "{m}");
    }
    let e = fail(classify(403, None, "", &ctx(Some("k"))));
    assert!(matches!(e, StoreError::AccessDenied(m) if m.contains("`secretAccessKey`")));
}

#[test]
fn region_errors_name_the_region() {
    let body = "<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access \
                must be addressed using the specified endpoint.</Message>\
                <Endpoint>etcd-backups.s3.us-east-2.amazonaws.com</Endpoint></Error>";
    let StoreError::InvalidConfig(m) =
        fail(classify(301, Some("us-east-2"), body, &ctx(Some("k"))))
    else {
        panic!()
    };
    assert!(
        m.contains("\"eu-west-1\"") && m.contains("\"us-east-2\"") && m.contains("`region`"),
        "{m}"
    );
    // HEAD: only the status and the header.
    let e = fail(classify(301, Some("us-east-2"), "", &ctx(Some("k"))));
    assert!(matches!(e, StoreError::InvalidConfig(m) if m.contains("us-east-2")));
    let body = "<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is \
                malformed; the region 'eu-west-1' is wrong; expecting 'us-east-1'</Message>\
                <Region>us-east-1</Region></Error>";
    let e = fail(classify(400, None, body, &ctx(None)));
    assert!(
        matches!(e, StoreError::InvalidConfig(m) if m.contains("\"us-east-1\"") && m.contains("`region`"))
    );
    let body = "<Error><Code>AuthorizationQueryParametersError</Code><Message>Error parsing the \
                X-Amz-Credential parameter; the region 'eu-west-1' is wrong; expecting 'us-east-1'\
                </Message><Region>us-east-1</Region></Error>";
    assert!(matches!(
        fail(classify(400, None, body, &ctx(None))),
        StoreError::InvalidConfig(_)
    ));
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let e = retry(classify(
        503,
        None,
        &error_xml("SlowDown", "Please reduce your request rate."),
        &ctx(None),
    ));
    assert!(matches!(e, StoreError::Throttled(m) if m.contains("SlowDown")));
    assert!(matches!(
        retry(classify(429, None, "", &ctx(None))),
        StoreError::Throttled(_)
    ));
    for status in [500, 502, 504] {
        assert!(matches!(
            retry(classify(status, None, "", &ctx(None))),
            StoreError::Unavailable(_)
        ));
    }
    assert!(matches!(
        retry(classify(500, None, &error_xml("InternalError", "x"), &ctx(None))),
        StoreError::Unavailable(m) if m.contains("InternalError")
    ));
}

#[test]
fn other_errors_fail_with_the_status_and_code() {
    let e = fail(classify(
        400,
        None,
        &error_xml("EntityTooSmall", "too small"),
        &ctx(Some("k")),
    ));
    assert!(matches!(e, StoreError::Other(m) if m.contains("400") && m.contains("EntityTooSmall")));
    let e = fail(classify(
        400,
        None,
        &error_xml("InvalidBucketName", "bad"),
        &ctx(None),
    ));
    assert!(matches!(e, StoreError::InvalidConfig(m) if m.contains("store.container")));
}

#[test]
fn transport_errors_are_retried_but_refusals_are_not() {
    use druid_plugin_sdk::http::Error;
    let e = retry(transport(
        &Error::Transport("connection refused".into()),
        &ctx(None),
    ));
    assert!(matches!(e, StoreError::Unavailable(m) if m.contains("connection refused")));
    let e = fail(transport(
        &Error::Denied("s3.evil.example: destination not allowed".into()),
        &ctx(None),
    ));
    assert!(matches!(e, StoreError::Unavailable(m) if m.contains("destination not allowed")));
    assert!(matches!(
        fail(transport(&Error::InvalidUrl("x".into()), &ctx(None))),
        StoreError::InvalidConfig(_)
    ));
}

#[test]
fn a_complete_answered_200_with_an_error_body_fails() {
    let ok = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult \
              xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>x</Location>\
              <Bucket>b</Bucket><Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>\
              </CompleteMultipartUploadResult>";
    assert!(complete_outcome(ok, &ctx(Some("k"))).is_ok());
    let internal = error_xml(
        "InternalError",
        "We encountered an internal error. Please try again.",
    );
    let e = retry(complete_outcome(&internal, &ctx(Some("k"))).unwrap_err());
    assert!(matches!(e, StoreError::Unavailable(_)));
    let bad = error_xml(
        "InvalidPart",
        "One or more of the specified parts could not be found.",
    );
    assert!(matches!(
        fail(complete_outcome(&bad, &ctx(Some("k"))).unwrap_err()),
        StoreError::Other(_)
    ));
}

// --- Listing, metadata, ranges, keys --------------------------------------

#[test]
fn listings_parse_with_continuation_tokens_and_times() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>etcd-backups</Name><Prefix>v2/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <Contents><Key>v2/Full-00000000-00000001-1</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>"fba9dede5f27731c9771645a39863328"</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>v2/Incr-00000002-00000003-2+x%2By</Key><LastModified>bogus</LastModified>
    <ETag>"x"</ETag><Size>7</Size><StorageClass>STANDARD</StorageClass></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
    let page = parse_list(body, &ctx(None)).unwrap();
    assert_eq!(page.objects.len(), 2);
    assert_eq!(page.objects[0].key, "v2/Full-00000000-00000001-1");
    assert_eq!(page.objects[0].size, 434_234);
    assert_eq!(page.objects[0].last_modified, Some(1_255_369_830));
    assert_eq!(
        page.objects[1].key, "v2/Incr-00000002-00000003-2 x+y",
        "URL-decoded"
    );
    assert_eq!(page.objects[1].last_modified, None);
    assert_eq!(
        page.next_token.as_deref(),
        Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
    );

    let last = r#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
      <Name>etcd-backups</Name><IsTruncated>false</IsTruncated></ListBucketResult>"#;
    let page = parse_list(last, &ctx(None)).unwrap();
    assert!(page.objects.is_empty());
    assert_eq!(page.next_token, None);

    assert!(matches!(
        parse_list("<html/>", &ctx(None)),
        Err(StoreError::Other(_))
    ));
}

#[test]
fn keys_a_url_cannot_carry_are_refused() {
    assert!(check_key("v2/Full-00000000-00000001-1").is_ok());
    assert!(check_key("a b/ü+%").is_ok());
    for bad in ["", ".", "a/../b", "./a", "a/."] {
        assert!(
            matches!(check_key(bad), Err(StoreError::InvalidConfig(_))),
            "{bad}"
        );
    }
}

// --- Pod wiring -----------------------------------------------------------

fn spec(provider: &str, secret: Option<&str>) -> StoreSpec {
    StoreSpec {
        provider: provider.into(),
        container: "etcd-backups".into(),
        prefix: "etcd-main".into(),
        secret_name: secret.map(Into::into),
    }
}

#[test]
fn pod_config_mounts_the_secret_and_names_the_credentials_variable() {
    for (provider, var) in [
        ("S3", "AWS_APPLICATION_CREDENTIALS"),
        ("aws", "AWS_APPLICATION_CREDENTIALS"),
        ("stackit", "AWS_APPLICATION_CREDENTIALS"),
        ("OCS", "OPENSHIFT_APPLICATION_CREDENTIALS"),
        ("openshift", "OPENSHIFT_APPLICATION_CREDENTIALS"),
        ("ECS", "ECS_APPLICATION_CREDENTIALS"),
        ("dell", "ECS_APPLICATION_CREDENTIALS"),
    ] {
        let cfg = pod_config(&spec(provider, Some("backup-secret"))).unwrap();
        let env: Vec<(&str, &str)> = cfg
            .env
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("STORAGE_CONTAINER", "etcd-backups"),
                (var, "/var/etcd-backup")
            ],
            "{provider}"
        );
        assert_eq!(cfg.volumes.len(), 1);
        assert_eq!(cfg.volumes[0].name, "etcd-backup-secret");
        assert!(matches!(cfg.volumes[0].source, VolumeSource::StoreSecret));
        assert_eq!(cfg.volumes[0].mount_path, "/var/etcd-backup");
    }
}

#[test]
fn pod_config_needs_a_secret_except_for_the_pods_web_identity() {
    // AWS: without a Secret, the pod's own web identity signs.
    for provider in ["S3", "aws", "stackit"] {
        let cfg = pod_config(&spec(provider, None)).unwrap();
        assert!(cfg.volumes.is_empty(), "{cfg:?}");
        assert_eq!(cfg.env.len(), 1, "{cfg:?}");
        assert_eq!(cfg.env[0].name, "STORAGE_CONTAINER");
    }
    let m = pod_config(&spec("OCS", None)).unwrap_err();
    assert!(m.contains("store.secretRef is required"), "{m}");
    let m = pod_config(&spec("Local", Some("s"))).unwrap_err();
    assert!(m.contains("not served"), "{m}");
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_string()).collect()
}

#[test]
fn check_secret_accepts_complete_secrets() {
    assert_eq!(
        check_secret("S3", &keys(&["region", "accessKeyID", "secretAccessKey"])),
        Ok(())
    );
    assert_eq!(
        check_secret(
            "aws",
            &keys(&[
                "region",
                "accessKeyID",
                "secretAccessKey",
                "endpoint",
                "s3ForcePathStyle"
            ])
        ),
        Ok(())
    );
    assert_eq!(
        check_secret(
            "OCS",
            &keys(&[
                "endpoint",
                "region",
                "accessKeyID",
                "secretAccessKey",
                "disableSSL"
            ])
        ),
        Ok(())
    );
    assert_eq!(
        check_secret(
            "dell",
            &keys(&["ECS_ENDPOINT", "ECS_ACCESS_KEY_ID", "ECS_SECRET_ACCESS_KEY"])
        ),
        Ok(())
    );
    assert_eq!(
        check_secret(
            "ECS",
            &keys(&["endpoint", "accessKeyID", "secretAccessKey"])
        ),
        Ok(())
    );
}

#[test]
fn check_secret_names_each_missing_key() {
    let problems = check_secret("S3", &keys(&[])).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    for key in ["`region`", "`accessKeyID`", "`secretAccessKey`"] {
        assert!(
            problems.iter().any(|p| p.contains(key)),
            "{key}: {problems:?}"
        );
    }
    let problems = check_secret(
        "openshift",
        &keys(&["region", "accessKeyID", "secretAccessKey"]),
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("`endpoint`"), "{problems:?}");
    let problems = check_secret("ECS", &keys(&["accessKeyID", "secretAccessKey"])).unwrap_err();
    assert!(
        problems[0].contains("`endpoint` or `ECS_ENDPOINT`"),
        "{problems:?}"
    );
}

#[test]
fn check_secret_flags_half_an_access_key() {
    let problems = check_secret("S3", &keys(&["region", "accessKeyID"])).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no key `secretAccessKey`")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("needs both")),
        "{problems:?}"
    );
}

#[test]
fn check_secret_flags_unsupported_keys() {
    let problems = check_secret(
        "S3",
        &keys(&[
            "region",
            "accessKeyID",
            "secretAccessKey",
            "sseCustomerKey",
            "sseCustomerAlgorithm",
        ]),
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("`sseCustomerKey`, `sseCustomerAlgorithm`"),
        "{problems:?}"
    );
}

#[test]
fn check_secret_accepts_the_json_form() {
    assert_eq!(check_secret("S3", &keys(&["credentials.json"])), Ok(()));
    assert_eq!(check_secret("OCS", &keys(&["secret.json"])), Ok(()));
    // Plain keys next to it are still checked.
    assert!(check_secret("S3", &keys(&["credentials.json", "region"])).is_err());
}

#[test]
fn check_secret_refuses_other_providers() {
    let problems = check_secret("GCS", &keys(&["serviceaccount.json"])).unwrap_err();
    assert!(problems[0].contains("not served"), "{problems:?}");
}

// --- Web identity ---------------------------------------------------------

/// A token shaped like a projected service-account token (three parts).
const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
const ROLE: &str = "arn:aws:iam::123456789012:role/etcd-backup";

fn web_identity(s: &Settings) -> &crate::sts::WebIdentity {
    match &s.auth {
        config::Auth::WebIdentity(w) => w,
        config::Auth::Keys { .. } => panic!("an access key, not web identity"),
    }
}

#[test]
fn web_identity_assumes_the_role_at_the_regional_sts_endpoint() {
    let s = parse_ok(
        "S3",
        None,
        &[
            ("region", "eu-west-1"),
            ("roleARN", ROLE),
            ("token", &format!("{JWT}\n")),
        ],
    );
    let w = web_identity(&s);
    assert_eq!(w.role_arn, ROLE);
    assert_eq!(w.token, JWT, "the token is trimmed");
    assert_eq!(w.sts_endpoint, "https://sts.eu-west-1.amazonaws.com");
    assert_eq!(w.url(), "https://sts.eu-west-1.amazonaws.com/");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // Its debug form never shows the token.
    let debug = format!("{s:?}");
    assert!(!debug.contains(JWT) && debug.contains(ROLE), "{debug}");
    // The S3 endpoint stays AWS's.
    assert_eq!(s.endpoint, "https://s3.eu-west-1.amazonaws.com");
}

#[test]
fn web_identity_takes_an_sts_endpoint_and_warns_about_an_unused_access_key() {
    let s = parse_ok(
        "stackit",
        Some("http://127.0.0.1:9000"),
        &with(&[
            ("roleARN", "arn:minio:iam:::role/abc"),
            ("token", JWT),
            ("stsEndpoint", "http://127.0.0.1:9000/"),
        ]),
    );
    let w = web_identity(&s);
    assert_eq!(w.sts_endpoint, "http://127.0.0.1:9000");
    assert!(
        s.warnings
            .iter()
            .any(|m| m.contains("access key is not used")),
        "{:?}",
        s.warnings
    );
    let s = parse_ok(
        "aws",
        None,
        &[
            ("region", "us-east-1"),
            ("roleARN", ROLE),
            ("token", JWT),
            ("stsEndpoint", "sts.example.com"),
        ],
    );
    assert_eq!(web_identity(&s).sts_endpoint, "https://sts.example.com");
}

#[test]
fn web_identity_errors_say_what_to_fix() {
    let m = invalid_config("S3", None, &[("region", "eu-west-1"), ("roleARN", ROLE)]);
    assert!(m.contains("no `token`") && m.contains("add it"), "{m}");
    let m = invalid_config("S3", None, &[("region", "eu-west-1"), ("token", JWT)]);
    assert!(m.contains("`roleARN`") && m.contains("add it"), "{m}");
    let m = invalid_config(
        "S3",
        None,
        &[
            ("region", "eu-west-1"),
            ("roleARN", ROLE),
            ("tokenPath", "/var/run/token"),
        ],
    );
    assert!(
        m.contains("`tokenPath`") && m.contains("key `token`"),
        "{m}"
    );
    let m = invalid_config(
        "S3",
        None,
        &[
            ("region", "eu-west-1"),
            ("roleARN", "etcd-backup"),
            ("token", JWT),
        ],
    );
    assert!(m.contains("not a role ARN"), "{m}");
    let m = invalid_config(
        "S3",
        None,
        &[
            ("region", "eu-west-1"),
            ("roleARN", ROLE),
            ("token", "not-a-jwt"),
        ],
    );
    assert!(
        m.contains("not a JSON web token") && !m.contains("not-a-jwt"),
        "{m}"
    );
    let m = invalid_config(
        "S3",
        None,
        &[
            ("region", "eu-west-1"),
            ("roleARN", ROLE),
            ("token", JWT),
            ("stsEndpoint", "ftp://x"),
        ],
    );
    assert!(m.contains("`stsEndpoint`"), "{m}");
    let m = invalid_config(
        "OCS",
        Some("https://ocs.example.com"),
        &[("region", "r"), ("roleARN", ROLE), ("token", JWT)],
    );
    assert!(m.contains("S3, aws and stackit only"), "{m}");
    let m = invalid_config("S3", None, &[("roleARN", ROLE), ("token", JWT)]);
    assert!(m.contains("`region`"), "{m}");
    let m = invalid_config(
        "S3",
        Some("https://minio.example.com"),
        &[("region", "eu-west-1"), ("roleARN", ROLE), ("token", JWT)],
    );
    assert!(
        m.contains("no STS endpoint")
            && m.contains("`stsEndpoint`")
            && m.contains("sts.eu-west-1.amazonaws.com"),
        "{m}"
    );
}

#[test]
fn the_aws_contract_lets_the_plugin_reach_sts() {
    let c = Family::Aws.contract();
    assert!(c.endpoint_keys.iter().any(|k| k == "stsEndpoint"), "{c:?}");
    assert!(
        c.official_endpoints
            .iter()
            .any(|e| e == "https://sts.{region}.amazonaws.com"),
        "{c:?}"
    );
}

#[test]
fn check_secret_takes_web_identity_instead_of_an_access_key() {
    assert_eq!(
        check_secret("S3", &keys(&["region", "roleARN", "token"])),
        Ok(())
    );
    assert_eq!(
        check_secret("aws", &keys(&["region", "roleARN", "token", "stsEndpoint"])),
        Ok(())
    );
    let problems = check_secret("S3", &keys(&["region", "roleARN"])).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`token`"), "{problems:?}");
    let problems = check_secret("S3", &keys(&["token"])).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    let problems =
        check_secret("OCS", &keys(&["endpoint", "region", "roleARN", "token"])).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("S3, aws and stackit only")),
        "{problems:?}"
    );
}

#[test]
fn sts_request_and_answer() {
    let w = crate::sts::WebIdentity {
        role_arn: ROLE.into(),
        token: JWT.into(),
        sts_endpoint: "https://sts.eu-west-1.amazonaws.com".into(),
    };
    let body = w.request_body();
    assert!(
        body.starts_with("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&"),
        "{body}"
    );
    assert!(
        body.contains("&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fetcd-backup&"),
        "{body}"
    );
    assert!(
        body.contains("&RoleSessionName=druid-etcd-backup&"),
        "{body}"
    );
    assert!(
        body.ends_with(&format!("&WebIdentityToken={JWT}")),
        "{body}"
    );

    // AWS's documented answer (shortened).
    let answer = "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
        <AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>\
        <Credentials><SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>\
        <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\
        <Expiration>2014-10-24T23:00:23Z</Expiration><AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>\
        </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
    let t = crate::sts::parse_response(answer).unwrap();
    assert_eq!(t.credentials.key(), "ASgeIAIOSFODNN7EXAMPLE");
    assert_eq!(
        t.credentials.secret(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
    );
    assert_eq!(
        t.credentials.token(),
        Some("AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE")
    );
    assert_eq!(t.expires, 1_414_191_623);
    assert!(t.fresh(1_414_191_623 - 301, 300));
    assert!(!t.fresh(1_414_191_623 - 300, 300));
    let e = crate::sts::parse_response(
        &answer.replace("<Expiration>2014-10-24T23:00:23Z</Expiration>", ""),
    )
    .err()
    .unwrap();
    assert!(
        e.contains("<Expiration>") && !e.contains("EXAMPLEKEY"),
        "{e}"
    );
    assert!(crate::sts::parse_response("<html>hi</html>").is_err());

    let refusal = |status, code: &str| {
        let body = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>why</Message></Error></ErrorResponse>"
        );
        crate::sts::classify(status, &body, &w)
    };
    match refusal(400, "InvalidIdentityToken") {
        Attempt::Fail(StoreError::AccessDenied(m)) => {
            assert!(
                m.contains("InvalidIdentityToken: why") && m.contains("trust policy"),
                "{m}"
            );
            assert!(m.contains(ROLE) && !m.contains(JWT), "{m}");
        }
        other => panic!("{other:?}"),
    }
    match refusal(400, "ExpiredTokenException") {
        Attempt::Fail(StoreError::AccessDenied(m)) => assert!(m.contains("renew"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        refusal(503, "ServiceUnavailable"),
        Attempt::Retry(_)
    ));
    assert!(matches!(
        refusal(400, "IDPCommunicationError"),
        Attempt::Retry(_)
    ));
    assert!(matches!(
        refusal(404, ""),
        Attempt::Fail(StoreError::InvalidConfig(_))
    ));
    assert!(crate::sts::renew_on("ExpiredToken"));
    assert!(!crate::sts::renew_on("AccessDenied"));
}

#[test]
fn refusals_under_a_role_name_the_role() {
    let c = Ctx {
        role: Some(ROLE),
        ..ctx(Some("k"))
    };
    match classify(403, None, &error_xml("AccessDenied", "Access Denied."), &c) {
        Attempt::Fail(StoreError::AccessDenied(m)) => {
            assert!(m.contains(ROLE) && !m.contains("secretAccessKey"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_pods_web_identity_signs_without_a_secret() {
    let pod = [
        ("AWS_ROLE_ARN", ROLE),
        ("AWS_WEB_IDENTITY_TOKEN", JWT),
        ("AWS_REGION", "eu-central-1"),
    ];
    let s = parse_ok("S3", None, &pod);
    assert_eq!(s.region, "eu-central-1");
    let w = web_identity(&s);
    assert_eq!((w.role_arn.as_str(), w.token.as_str()), (ROLE, JWT));
    assert_eq!(w.sts_endpoint, "https://sts.eu-central-1.amazonaws.com");
    // The Secret's region wins over the pod's; $AWS_ENDPOINT_URL_STS is the
    // STS endpoint.
    let mut with_secret = pod.to_vec();
    with_secret.push(("region", "us-west-2"));
    with_secret.push(("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9000"));
    let s = parse_ok("S3", Some("http://127.0.0.1:9000"), &with_secret);
    assert_eq!(s.region, "us-west-2");
    assert_eq!(web_identity(&s).sts_endpoint, "http://127.0.0.1:9000");
    // A Secret's access key wins over the pod's identity.
    let mut keys = AWS_KEYS.to_vec();
    keys.extend(pod);
    let s = parse_ok("S3", None, &keys);
    assert_eq!(access_key(&s).0, "AKIAIOSFODNN7EXAMPLE");
    // Half an identity, or none at all, says what to set.
    let m = invalid_config(
        "S3",
        None,
        &[("AWS_ROLE_ARN", ROLE), ("AWS_REGION", "eu-west-1")],
    );
    assert!(m.contains("$AWS_WEB_IDENTITY_TOKEN_FILE"), "{m}");
    let m = invalid_config(
        "S3",
        None,
        &[("AWS_WEB_IDENTITY_TOKEN", JWT), ("AWS_REGION", "eu-west-1")],
    );
    assert!(m.contains("no $AWS_ROLE_ARN"), "{m}");
    let m = invalid_config("aws", None, &[]);
    assert!(
        m.contains("no credentials")
            && m.contains("store.secretRef")
            && m.contains("$AWS_ROLE_ARN"),
        "{m}"
    );
    let m = invalid_config(
        "S3",
        None,
        &[("AWS_ROLE_ARN", ROLE), ("AWS_WEB_IDENTITY_TOKEN", JWT)],
    );
    assert!(m.contains("`region` or `AWS_REGION`"), "{m}");
}

#[test]
fn the_aws_contract_reads_the_pods_identity_variables() {
    let c = Family::Aws.contract();
    assert!(!c.credentials_required);
    assert!(
        c.credential_value_variables.contains(&(
            "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            "AWS_WEB_IDENTITY_TOKEN".into()
        )),
        "{c:?}"
    );
    assert!(c.endpoint_keys.iter().any(|k| k == "AWS_ENDPOINT_URL_STS"));
    assert!(
        c.official_endpoints
            .iter()
            .any(|e| e == "https://sts.{AWS_REGION}.amazonaws.com")
    );
    assert!(Family::Openshift.contract().credentials_required);
}
