//! Native unit tests of the pure logic. (Requests need the wasi imports and
//! are tested through the host against MinIO behind the OSS gateway of
//! tests/peers/oss, which checks each signature with Alibaba's Go SDK.)
#![allow(clippy::unwrap_used, clippy::panic, reason = "a test fails on error")]

use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::{StoreConfig, StoreError};
use druid_plugin_sdk::wiring::{StoreSpec, VolumeSource};

use crate::client::{Client, check_key};
use crate::config::{self, EndpointSource, RegionSource, region_of_host};
use crate::errors::{Ctx, classify};
use crate::listing::{complete_body, parse_error, parse_list, parse_upload_id};
use crate::sign::{self, Key, canonical_request, query_string};
use crate::upload::part_size;
use crate::wiring::{check_secret, pod_config};

fn creds(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn secret(endpoint: &str) -> Vec<(String, String)> {
    creds(&[
        ("accessKeyID", "LTAI5tExampleKeyId"),
        ("accessKeySecret", "example-access-key-secret"),
        ("storageEndpoint", endpoint),
    ])
}

fn store_config(endpoint: Option<&str>, credentials: Vec<(String, String)>) -> StoreConfig {
    StoreConfig {
        provider: "OSS".into(),
        container: "etcd-backups".into(),
        endpoint: endpoint.map(Into::into),
        credentials,
    }
}

fn invalid(config: &StoreConfig) -> String {
    match config::parse(config) {
        Err(StoreError::InvalidConfig(m)) => m,
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

/// A vector of Alibaba's Go SDK (alibabacloud-oss-go-sdk-v2 v1.6.1,
/// oss/signer `TestV4AuthHeader`, case 1): a key with `+`, query names
/// that need escaping and bare names, signed and unsigned headers.
#[test]
fn the_signature_matches_alibabas_go_sdk() {
    let query = creds(&[
        ("param1", "value1"),
        ("+param1", "value3"),
        ("|param1", "value4"),
        ("+param2", ""),
        ("|param2", ""),
        ("param2", ""),
    ]);
    let headers = creds(&[
        ("x-oss-head1", "value"),
        ("abc", "value"),
        ("ZAbc", "value"),
        ("XYZ", "value"),
        ("content-type", "text/plain"),
        ("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
    ]);
    let request = sign::Request {
        method: "PUT",
        bucket: "bucket",
        key: Some("1234+-/123/1.txt"),
        query: &query,
        headers: &headers,
    };
    let key = Key {
        access_key: "ak",
        secret: "sk",
        region: "cn-hangzhou",
    };
    let signed = sign::sign(&request, &key, 1_702_743_657);
    let get = |name: &str| {
        signed
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    };
    assert_eq!(
        get("authorization"),
        "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,\
         Signature=e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe"
    );
    assert_eq!(get("x-oss-date"), "20231216T162057Z");
    assert_eq!(get("x-oss-content-sha256"), "UNSIGNED-PAYLOAD");
    // A changed byte anywhere signed changes the signature.
    let other = sign::sign(
        &sign::Request {
            key: Some("1234+-/123/2.txt"),
            ..request
        },
        &key,
        1_702_743_657,
    );
    assert_ne!(other, signed);
}

#[test]
fn the_canonical_request_escapes_the_path_sorts_the_query_and_signs_oss_headers_only() {
    let query = creds(&[("uploadId", "a b/c"), ("partNumber", "2"), ("uploads", "")]);
    assert_eq!(
        query_string(&query),
        "partNumber=2&uploadId=a%20b%2Fc&uploads"
    );
    let headers = creds(&[
        ("Content-Type", " application/xml "),
        ("range", "bytes=0-1"),
        ("x-oss-date", "20240101T000000Z"),
    ]);
    let request = sign::Request {
        method: "POST",
        bucket: "b",
        key: Some("v2/Full-0-1 x"),
        query: &query,
        headers: &headers,
    };
    assert_eq!(
        canonical_request(&request, &headers),
        "POST\n/b/v2/Full-0-1%20x\npartNumber=2&uploadId=a%20b%2Fc&uploads\n\
         content-type:application/xml\nx-oss-date:20240101T000000Z\n\n\nUNSIGNED-PAYLOAD"
    );
    let bucket_request = sign::Request {
        key: None,
        query: &[],
        ..request
    };
    assert!(canonical_request(&bucket_request, &[]).starts_with("POST\n/b/\n\n"));
}

#[test]
fn the_region_comes_from_the_endpoint_or_the_secret() {
    for (host, region) in [
        ("oss-cn-hangzhou.aliyuncs.com", Some("cn-hangzhou")),
        (
            "oss-eu-central-1-internal.aliyuncs.com",
            Some("eu-central-1"),
        ),
        (
            "bucket.oss-ap-southeast-1.aliyuncs.com",
            Some("ap-southeast-1"),
        ),
        ("OSS-US-WEST-1.ALIYUNCS.COM", Some("us-west-1")),
        ("oss-accelerate.aliyuncs.com", None),
        ("oss-accelerate-overseas.aliyuncs.com", None),
        ("backups.example.com", None),
        ("oss-cn-hangzhou.aliyuncs.com.evil.example", None),
        ("127.0.0.1", None),
    ] {
        assert_eq!(region_of_host(host).as_deref(), region, "{host}");
    }
    let s = config::parse(&store_config(None, secret("oss-eu-central-1.aliyuncs.com"))).unwrap();
    assert_eq!(s.region, "eu-central-1");
    assert_eq!(s.region_source, RegionSource::Endpoint);
    assert_eq!(
        s.origin,
        "https://etcd-backups.oss-eu-central-1.aliyuncs.com"
    );
    assert!(!s.path_style);
    assert_eq!(s.endpoint_source, EndpointSource::Secret);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);

    let mut with_region = secret("https://oss-accelerate.aliyuncs.com");
    with_region.push(("region".into(), "cn-shanghai".into()));
    let s = config::parse(&store_config(None, with_region)).unwrap();
    assert_eq!(
        (s.region.as_str(), s.region_source),
        ("cn-shanghai", RegionSource::Secret)
    );

    let m = invalid(&store_config(None, secret("https://backups.example.com")));
    assert!(m.contains("add `region`"), "{m}");
    let mut bad = secret("oss-cn-hangzhou.aliyuncs.com");
    bad.push(("region".into(), "CN Hangzhou".into()));
    assert!(invalid(&store_config(None, bad)).contains("region id"));
    let mut differs = secret("oss-cn-hangzhou.aliyuncs.com");
    differs.push(("region".into(), "cn-beijing".into()));
    let s = config::parse(&store_config(None, differs)).unwrap();
    assert!(s.warnings[0].contains("differs"), "{:?}", s.warnings);
}

#[test]
fn endpoints_default_to_https_virtual_hosted_and_a_gateway_on_an_ip_is_path_style() {
    let s = config::parse(&store_config(
        Some("http://127.0.0.1:9000"),
        creds(&[
            ("accessKeyID", "id"),
            ("accessKeySecret", "secret"),
            ("storageEndpoint", "oss-cn-hangzhou.aliyuncs.com"),
            ("region", "cn-hangzhou"),
        ]),
    ))
    .unwrap();
    assert_eq!(s.origin, "http://127.0.0.1:9000");
    assert!(s.path_style);
    assert_eq!(s.endpoint_source, EndpointSource::Override);
    assert!(s.warnings[0].contains("ignored"), "{:?}", s.warnings);
    let client = Client::new(s);
    assert_eq!(
        client.url(Some("v2/Full 1"), &creds(&[("uploads", "")])),
        "http://127.0.0.1:9000/etcd-backups/v2/Full%201?uploads"
    );
    assert_eq!(
        client.url(None, &creds(&[("list-type", "2"), ("prefix", "v2/")])),
        "http://127.0.0.1:9000/etcd-backups/?list-type=2&prefix=v2%2F"
    );

    let s = config::parse(&store_config(
        None,
        secret("http://oss-cn-hangzhou.aliyuncs.com"),
    ))
    .unwrap();
    assert_eq!(s.origin, "http://etcd-backups.oss-cn-hangzhou.aliyuncs.com");
    assert!(s.warnings[0].contains("unencrypted"), "{:?}", s.warnings);
    let s = config::parse(&store_config(
        None,
        secret("etcd-backups.oss-cn-hangzhou.aliyuncs.com"),
    ))
    .unwrap();
    assert_eq!(
        s.origin,
        "https://etcd-backups.oss-cn-hangzhou.aliyuncs.com"
    );
    assert_eq!(
        Client::new(s).url(Some("k"), &[]),
        "https://etcd-backups.oss-cn-hangzhou.aliyuncs.com/k"
    );

    let m = invalid(&store_config(
        None,
        secret("https://oss-cn-hangzhou.aliyuncs.com/path"),
    ));
    assert!(m.contains("has a path"), "{m}");
    let m = invalid(&store_config(
        None,
        secret("ftp://oss-cn-hangzhou.aliyuncs.com"),
    ));
    assert!(m.contains("storageEndpoint"), "{m}");
}

#[test]
fn missing_keys_and_bad_bucket_names_say_what_to_fix_and_never_show_the_secret() {
    let full = secret("oss-cn-hangzhou.aliyuncs.com");
    for (missing, says) in [
        ("accessKeyID", "no `accessKeyID`"),
        ("accessKeySecret", "no `accessKeySecret`"),
        ("storageEndpoint", "no `storageEndpoint`"),
    ] {
        let without: Vec<_> = full.iter().filter(|(k, _)| k != missing).cloned().collect();
        let m = invalid(&store_config(None, without));
        assert!(m.contains(says), "{missing}: {m}");
    }
    let blank: Vec<_> = full
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if k == "accessKeySecret" {
                    " ".into()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    assert!(invalid(&store_config(None, blank)).contains("no `accessKeySecret`"));
    for bucket in ["ab", "Etcd", "-etcd", "etcd_backups", "etcd-"] {
        let mut c = store_config(None, full.clone());
        c.container = bucket.into();
        assert!(invalid(&c).contains("not an OSS bucket name"), "{bucket}");
    }
    let s = config::parse(&store_config(None, full)).unwrap();
    let shown = format!("{s:?}");
    assert!(!shown.contains("example-access-key-secret"), "{shown}");
    assert!(shown.contains("[redacted]"));
}

#[test]
fn listings_parse_with_their_continuation_and_bad_ones_are_refused() {
    let page = parse_list(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult>
  <Name>etcd-backups</Name><Prefix>v2/</Prefix><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>CgJiYw--</NextContinuationToken>
  <Contents><Key>v2/Full-1 &amp; 2</Key><LastModified>2024-02-29T23:59:59.000Z</LastModified>
    <ETag>"5B3C1A2E053D763E1B002CC607C5A0FE"</ETag><Type>Normal</Type><Size>344606</Size>
    <StorageClass>Standard</StorageClass></Contents>
  <Contents><Key>v2/Incr-2</Key><LastModified>2024-03-01T00:00:00.000Z</LastModified>
    <Size>0</Size></Contents>
  <KeyCount>2</KeyCount>
</ListBucketResult>"#,
    )
    .unwrap();
    assert_eq!(page.objects.len(), 2);
    assert_eq!(page.objects[0].key, "v2/Full-1 & 2");
    assert_eq!(page.objects[0].size, 344_606);
    assert_eq!(page.objects[0].last_modified, Some(1_709_251_199));
    assert_eq!(page.next_token.as_deref(), Some("CgJiYw--"));
    let last = parse_list(
        "<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>",
    )
    .unwrap();
    assert!(last.objects.is_empty() && last.next_token.is_none());
    assert!(
        parse_list("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")
            .unwrap_err()
            .contains("no NextContinuationToken")
    );
    assert!(parse_list("<html>proxy error</html>").is_err());
    assert!(
        parse_list(
            "<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents></ListBucketResult>"
        )
        .is_err()
    );

    assert_eq!(
        parse_upload_id("<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>0004B9894A22E5B1888A1E29F823</UploadId></InitiateMultipartUploadResult>").unwrap(),
        "0004B9894A22E5B1888A1E29F823"
    );
    assert!(
        parse_upload_id(
            "<InitiateMultipartUploadResult><UploadId> </UploadId></InitiateMultipartUploadResult>"
        )
        .is_err()
    );
    assert_eq!(
        complete_body(&["\"a\"".into(), "\"b&\"".into()]),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload>\
         <Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part>\
         <Part><PartNumber>2</PartNumber><ETag>&quot;b&amp;&quot;</ETag></Part>\
         </CompleteMultipartUpload>"
    );
}

fn ctx(key: Option<&str>) -> Ctx<'_> {
    Ctx {
        op: "head",
        key,
        bucket: "etcd-backups",
        region: "cn-hangzhou",
    }
}

fn error_doc(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>5C3D9175B6FC201293AD</RequestId>\
         <HostId>etcd-backups.oss-cn-hangzhou.aliyuncs.com</HostId><EC>0002-00000040</EC></Error>"
    )
}

#[test]
fn oss_errors_map_to_store_errors_that_say_what_to_fix() {
    let doc = error_doc(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match",
    );
    assert_eq!(parse_error(&doc).ec.as_deref(), Some("0002-00000040"));
    let Attempt::Fail(StoreError::AccessDenied(m)) = classify(403, &doc, &ctx(Some("k"))) else {
        panic!()
    };
    assert!(
        m.contains("check `accessKeySecret`") && m.contains("EC 0002-00000040"),
        "{m}"
    );
    let doc = error_doc(
        "InvalidAccessKeyId",
        "The OSS Access Key Id you provided does not exist",
    );
    assert!(matches!(classify(403, &doc, &ctx(None)),
        Attempt::Fail(StoreError::AccessDenied(m)) if m.contains("check `accessKeyID`")));
    let doc = error_doc("NoSuchBucket", "The specified bucket does not exist.");
    assert!(matches!(classify(404, &doc, &ctx(Some("k"))),
        Attempt::Fail(StoreError::NoSuchContainer(m)) if m.contains("cn-hangzhou")));
    let doc = error_doc("NoSuchKey", "The specified key does not exist.");
    assert!(matches!(
        classify(404, &doc, &ctx(Some("k"))),
        Attempt::Fail(StoreError::NotFound(_))
    ));
    // A HEAD's 404 has no body.
    assert!(matches!(
        classify(404, "", &ctx(Some("k"))),
        Attempt::Fail(StoreError::NotFound(_))
    ));
    assert!(matches!(
        classify(404, "", &ctx(None)),
        Attempt::Fail(StoreError::NoSuchContainer(_))
    ));
    let doc = error_doc("RequestTimeTooSkewed", "too large");
    assert!(matches!(classify(403, &doc, &ctx(None)),
        Attempt::Fail(StoreError::AccessDenied(m)) if m.contains("clock")));
    let doc = error_doc(
        "SecondLevelDomainForbidden",
        "Please use virtual hosted style to access.",
    );
    assert!(matches!(
        classify(403, &doc, &ctx(None)),
        Attempt::Fail(StoreError::InvalidConfig(_))
    ));
    let doc = error_doc(
        "InvalidArgument",
        "Invalid signing region in Authorization header.",
    );
    assert!(matches!(classify(400, &doc, &ctx(None)),
        Attempt::Fail(StoreError::InvalidConfig(m)) if m.contains("set `region`")));
    let doc = error_doc("AccessDenied", "You have no right to access this object.");
    assert!(matches!(classify(403, &doc, &ctx(None)),
        Attempt::Fail(StoreError::AccessDenied(m)) if m.contains("RAM user")));
    assert!(matches!(
        classify(503, "", &ctx(None)),
        Attempt::Retry(StoreError::Throttled(_))
    ));
    assert!(matches!(
        classify(500, "", &ctx(None)),
        Attempt::Retry(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        classify(409, "", &ctx(None)),
        Attempt::Fail(StoreError::Other(_))
    ));
}

#[test]
fn keys_parts_and_pod_wiring() {
    assert!(check_key("v2/Full-00000000-00000001-1").is_ok());
    for bad in ["", "/abs", "\\abs", "a\nb", &"k".repeat(1024)] {
        assert!(check_key(bad).is_err(), "{bad:?}");
    }
    assert_eq!(part_size(None), 8 << 20);
    assert_eq!(part_size(Some(100 << 30)), 12 << 20);

    let spec = StoreSpec {
        provider: "OSS".into(),
        container: "etcd-backups".into(),
        prefix: "p".into(),
        secret_name: Some("oss-secret".into()),
    };
    let wiring = pod_config(&spec).unwrap();
    let env: Vec<_> = wiring
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert!(env.contains(&("ALICLOUD_APPLICATION_CREDENTIALS", "/var/etcd-backup")));
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
    let alias = StoreSpec {
        provider: "alicloud".into(),
        ..spec.clone()
    };
    assert!(pod_config(&alias).is_ok());
    assert!(
        pod_config(&StoreSpec {
            provider: "oss".into(),
            ..spec
        })
        .unwrap_err()
        .contains("case-sensitive")
    );

    let keys = |ks: &[&str]| ks.iter().map(|k| (*k).to_string()).collect::<Vec<_>>();
    assert!(
        check_secret(
            "OSS",
            &keys(&["accessKeyID", "accessKeySecret", "storageEndpoint"])
        )
        .is_ok()
    );
    assert!(check_secret("alicloud", &keys(&["credentials.json"])).is_ok());
    let problems = check_secret("OSS", &keys(&["accessKeyID"])).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("`accessKeySecret`"));
}
