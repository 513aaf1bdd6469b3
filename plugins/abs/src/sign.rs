//! Shared Key authorization of Blob service requests: the string to sign
//! (the method, the standard headers, the `x-ms-*` headers and the
//! canonicalized resource) and its HMAC-SHA256 with the account key. Pure
//! logic, tested natively against a signature Azurite accepts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// The Blob service version every request asks for (`x-ms-version`).
pub const API_VERSION: &str = "2021-08-06";

/// What of a request is signed.
#[derive(Debug)]
pub struct Signed<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The body length (sent as `Content-Length`; signed as empty when 0).
    pub content_length: u64,
    /// The `x-ms-*` headers, names in lower case.
    pub ms_headers: &'a [(String, String)],
    /// The storage account.
    pub account: &'a str,
    /// The URL's path, percent-encoded as sent (path-style URLs start
    /// with the account).
    pub path: &'a str,
    /// The query parameters, decoded.
    pub query: &'a [(String, String)],
}

/// The string a Shared Key signature covers.
pub fn string_to_sign(s: &Signed<'_>) -> String {
    let length = if s.content_length == 0 {
        String::new()
    } else {
        s.content_length.to_string()
    };
    // VERB, Content-Encoding, Content-Language, Content-Length,
    // Content-MD5, Content-Type, Date, If-Modified-Since, If-Match,
    // If-None-Match, If-Unmodified-Since, Range.
    let mut out = format!("{}\n\n\n{length}\n\n\n\n\n\n\n\n\n", s.method);
    let mut headers: Vec<(String, &str)> = s
        .ms_headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .collect();
    headers.sort();
    for (name, value) in headers {
        out.push_str(&format!("{name}:{value}\n"));
    }
    out.push_str(&format!("/{}{}", s.account, s.path));
    let mut params: Vec<(String, &str)> = s
        .query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    params.sort();
    for (name, value) in params {
        out.push_str(&format!("\n{name}:{value}"));
    }
    out
}

/// The `Authorization` header's value: `SharedKey <account>:<signature>`.
pub fn authorization(account: &str, key: &[u8], string_to_sign: &str) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let signature = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(string_to_sign.as_bytes());
            BASE64.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("SharedKey {account}:{signature}")
}
