//! OSS V4 signatures (`OSS4-HMAC-SHA256` in the `Authorization` header):
//! the canonical request (method, the escaped `/<bucket>/<key>`, the
//! sorted query, the `content-type`, `content-md5` and `x-oss-*` headers,
//! `UNSIGNED-PAYLOAD`), the string to sign scoped to a day, region and
//! `oss`, and the HMAC-SHA256 chain from `aliyun_v4<secret>`. Pure logic,
//! tested natively against a vector of Alibaba's Go SDK; the test gateway
//! (tests/peers/oss) checks every request of the conformance tests with
//! that SDK's signer.
//!
//! V1 signatures (`OSS <id>:<signature>`) are not made: OSS takes V4 for
//! every request this plugin sends, and Alibaba closed V1 to new accounts
//! (March 2025) and new buckets (September 2025).

use druid_plugin_sdk::http::encode;
use druid_plugin_sdk::time::format_iso8601_basic;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

/// The payload hash every request declares: bodies are not hashed (the
/// TLS connection protects them, as with the SDKs' default).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What of a request is signed.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The bucket.
    pub bucket: &'a str,
    /// The object key, unescaped (none for a bucket request).
    pub key: Option<&'a str>,
    /// The query parameters, unescaped (an empty value is a bare name,
    /// e.g. `uploads`).
    pub query: &'a [(String, String)],
    /// The request's own headers (names in any case); the signature's
    /// headers are added by [`sign`].
    pub headers: &'a [(String, String)],
}

/// The key and scope a request is signed with.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    /// The AccessKey ID.
    pub access_key: &'a str,
    /// The AccessKey secret.
    pub secret: &'a str,
    /// The region, e.g. `cn-hangzhou`.
    pub region: &'a str,
}

/// The query string of `query` as sent and signed: each name and value
/// percent-encoded (unreserved characters kept), sorted by name, an empty
/// value written as the bare name.
pub fn query_string(query: &[(String, String)]) -> String {
    let mut params: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode(k, false), encode(v, false)))
        .collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a header is signed by default: `content-type`, `content-md5`
/// and `x-oss-*`.
fn signed_header(lower: &str) -> bool {
    lower.starts_with("x-oss-") || lower == "content-type" || lower == "content-md5"
}

/// The canonical request of `request` with the signature's own headers
/// (`x-oss-date`, `x-oss-content-sha256`) among `headers`.
pub fn canonical_request(request: &Request<'_>, headers: &[(String, String)]) -> String {
    let mut uri = format!("/{}/", request.bucket);
    if let Some(key) = request.key {
        uri.push_str(key);
    }
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(k, _)| signed_header(k))
        .collect();
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    format!(
        "{}\n{}\n{}\n{canonical_headers}\n\n{UNSIGNED_PAYLOAD}",
        request.method,
        encode(&uri, true),
        query_string(request.query),
    )
}

/// `<yyyymmdd>/<region>/oss/aliyun_v4_request`.
fn scope(date: &str, region: &str) -> String {
    format!("{date}/{region}/oss/aliyun_v4_request")
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC takes a key of any length: this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The headers that sign `request` at `unix` seconds with `key`:
/// `x-oss-date`, `x-oss-content-sha256` and `Authorization`.
pub fn sign(request: &Request<'_>, key: &Key<'_>, unix: i64) -> Vec<(String, String)> {
    let datetime = format_iso8601_basic(unix);
    let date = &datetime[..8];
    let ours = |k: &str| {
        k.eq_ignore_ascii_case("x-oss-date") || k.eq_ignore_ascii_case("x-oss-content-sha256")
    };
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(k, _)| !ours(k))
        .cloned()
        .collect();
    let own = vec![
        ("x-oss-date".to_string(), datetime.clone()),
        (
            "x-oss-content-sha256".to_string(),
            UNSIGNED_PAYLOAD.to_string(),
        ),
    ];
    headers.extend(own.iter().cloned());
    let canonical = canonical_request(request, &headers);
    let scope = scope(date, key.region);
    let string_to_sign = format!(
        "OSS4-HMAC-SHA256\n{datetime}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut signing_key = hmac(format!("aliyun_v4{}", key.secret).as_bytes(), date);
    for part in [key.region, "oss", "aliyun_v4_request"] {
        signing_key = hmac(&signing_key, part);
    }
    let signature = hex::encode(hmac(&signing_key, &string_to_sign));
    let mut out = own;
    out.push((
        "authorization".to_string(),
        format!(
            "OSS4-HMAC-SHA256 Credential={}/{scope},Signature={signature}",
            key.access_key
        ),
    ));
    out
}
