//! Keeps credentials and signed URLs out of every message a plugin can
//! produce (its errors and its log lines), whatever the plugin does.
//!
//! Plugins built on the SDK already strip query strings from the URLs in
//! their errors; this is the host's own net under every plugin, including
//! third-party ones: the values of the store secret are replaced, and so
//! are URL query strings and the signature parameters of the providers'
//! signed URLs.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// What replaces a hidden value.
pub const REDACTED: &str = "[redacted]";

/// Secret keys whose values are settings, not credentials, and stay
/// readable in messages (a region in "the bucket is in region X").
/// Every other key of a store secret is treated as a credential.
const NOT_SECRET: &[&str] = &[
    "region",
    "endpoint",
    "s3forcepathstyle",
    "disablessl",
    "insecureskipverify",
    "bucketname",
    "storageaccount",
    "domain",
    "domainname",
    "tenantname",
    "tenantid",
    "projectid",
    "authurl",
    "regionname",
    "emulatorhost",
    "storageapiendpoint",
    "emulatorenabled",
    "usessl",
    "sse_customer_algorithm",
    // Cloud identities: which role, client, tenant or pool, and where
    // the token goes; the tokens themselves stay hidden.
    "rolearn",
    "stsendpoint",
    "aws_role_arn",
    "aws_region",
    "aws_endpoint_url_sts",
    "azure_client_id",
    "azure_tenant_id",
    "azure_authority_host",
    "type",
    "audience",
    "subject_token_type",
    "token_url",
    "service_account_impersonation_url",
];

/// Values shorter than this are not searched for (a `true` or a `1` would
/// blank out unrelated words); no credential is that short.
const MIN_SECRET_LEN: usize = 6;

/// Query parameters of signed URLs (S3 presigned, Azure SAS, GCS signed,
/// Swift temp URLs, OSS) whose values are hidden even outside a URL.
const SIGNATURE_PARAMS: &[&str] = &[
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
    "signature",
    "sig",
    "x-goog-signature",
    "x-goog-credential",
    "googleaccessid",
    "temp_url_sig",
    "ossaccesskeyid",
    "security-token",
];

/// Hides a store's credential values, URL query strings and signature
/// parameters in text.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is hidden whole.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    /// The redactor for a store secret's keys and values. A value that is
    /// a JSON document (a service-account file) also has its string
    /// fields hidden one by one.
    pub fn for_credentials(credentials: &BTreeMap<String, String>) -> Self {
        let mut secrets = Vec::new();
        for (key, value) in credentials {
            if NOT_SECRET.contains(&key.to_ascii_lowercase().as_str()) {
                continue;
            }
            push_secret(&mut secrets, value.trim());
            if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(value) {
                for v in fields.values() {
                    if let serde_json::Value::String(s) = v {
                        push_secret(&mut secrets, s);
                        // As it appears inside the JSON text (escaped).
                        if let Ok(quoted) = serde_json::to_string(s) {
                            push_secret(&mut secrets, quoted.trim_matches('"'));
                        }
                        for line in s.lines() {
                            push_secret(&mut secrets, line.trim());
                        }
                    }
                }
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every secret value, URL query string and signature
    /// parameter value replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        match redact_urls(&out) {
            Cow::Borrowed(_) => out,
            Cow::Owned(s) => Cow::Owned(s),
        }
    }
}

fn push_secret(secrets: &mut Vec<String>, value: &str) {
    if value.len() >= MIN_SECRET_LEN && !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_string());
    }
}

/// Whether `c` ends a URL or a parameter value in running text.
fn ends_token(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | '}' | ',')
}

/// Drops the query string (and fragment) of every URL in `text`, and the
/// value of every signature parameter (`X-Amz-Signature=...`) anywhere.
pub fn redact_urls(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let has_url_query = lower.contains("://") && text.contains(['?', '#', '@']);
    let has_param = SIGNATURE_PARAMS
        .iter()
        .any(|p| lower.contains(&format!("{p}=")));
    if !has_url_query && !has_param {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // URLs: keep scheme://authority/path, drop ?query#fragment.
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let mut end = after.find(ends_token).unwrap_or(after.len());
        // A colon or a full stop that ends the token ends the sentence.
        while end > 3 && after[..end].ends_with([':', '.', ';']) {
            end -= 1;
        }
        let url = &after[..end];
        let cut = url.find(['?', '#']).unwrap_or(url.len());
        // Userinfo (user:password@host) goes too.
        let kept = &url[..cut];
        let kept = match (kept.find('@'), kept[3..].find('/')) {
            (Some(a), Some(s)) if a < s + 3 => format!("://{REDACTED}@{}", &kept[a + 1..]),
            (Some(a), None) => format!("://{REDACTED}@{}", &kept[a + 1..]),
            _ => kept.to_string(),
        };
        out.push_str(&kept);
        if cut < url.len() {
            out.push('?');
            out.push_str(REDACTED);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    // Signature parameters outside URLs (a message quoting a query).
    for param in SIGNATURE_PARAMS {
        let needle = format!("{param}=");
        let mut searched = 0;
        loop {
            let lower = out.to_ascii_lowercase();
            let Some(pos) = lower[searched..].find(&needle).map(|p| p + searched) else {
                break;
            };
            // Only at a parameter boundary (not "mysig=").
            let boundary = pos == 0
                || out[..pos].chars().next_back().is_some_and(|c| {
                    matches!(c, '&' | '?' | ';' | ' ' | '"' | '\'' | '(' | ',') || c.is_whitespace()
                });
            let start = pos + needle.len();
            if !boundary {
                searched = start;
                continue;
            }
            let end = out[start..]
                .find(|c: char| c == '&' || ends_token(c))
                .map_or(out.len(), |e| e + start);
            if &out[start..end] != REDACTED {
                out.replace_range(start..end, REDACTED);
            }
            searched = start + REDACTED.len();
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn presigned_urls_lose_their_query() {
        let text = "GET http://127.0.0.1:9000/bucket/v2/Full-1?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261204&X-Amz-Signature=abcdef0123: connection refused";
        let out = redact_urls(text);
        assert_eq!(
            out,
            "GET http://127.0.0.1:9000/bucket/v2/Full-1?[redacted]: connection refused"
        );
    }

    #[test]
    fn userinfo_and_fragments_go_and_plain_urls_stay() {
        assert_eq!(
            redact_urls("see https://user:pw@host.example/path#frag now"),
            "see https://[redacted]@host.example/path?[redacted] now"
        );
        assert_eq!(
            redact_urls("see https://host.example/path now"),
            "see https://host.example/path now"
        );
        assert!(matches!(redact_urls("no url here"), Cow::Borrowed(_)));
    }

    #[test]
    fn signature_parameters_outside_urls_are_hidden() {
        let out =
            redact_urls("query was sv=2021&sig=SECRETSIG%3D&se=2026 and X-Amz-Signature=ff00");
        assert!(!out.contains("SECRETSIG") && !out.contains("ff00"), "{out}");
        assert!(out.contains("sv=2021") && out.contains("se=2026"), "{out}");
        // Not a parameter boundary: left alone.
        assert_eq!(redact_urls("mysig=keep"), "mysig=keep");
    }

    #[test]
    fn credential_values_are_hidden_settings_stay() {
        let r = Redactor::for_credentials(&creds(&[
            ("accessKeyID", "AKIAEXAMPLE123"),
            ("secretAccessKey", "wJalrXUtnFEMI/K7MDENG"),
            ("region", "eu-west-1"),
            ("s3ForcePathStyle", "true"),
        ]));
        let out = r.redact("key AKIAEXAMPLE123 secret wJalrXUtnFEMI/K7MDENG in eu-west-1");
        assert_eq!(out, "key [redacted] secret [redacted] in eu-west-1");
    }

    #[test]
    fn json_credential_files_are_hidden_field_by_field() {
        let sa = r#"{"type":"service_account","private_key_id":"0123456789abcdef","private_key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"}"#;
        let r = Redactor::for_credentials(&creds(&[("serviceaccount.json", sa)]));
        let out =
            r.redact("auth failed for key 0123456789abcdef: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC");
        assert!(!out.contains("0123456789abcdef"), "{out}");
        assert!(!out.contains("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "{out}");
    }

    #[test]
    fn a_store_config_debug_shows_keys_not_values() {
        let config = crate::config::StoreConfig {
            provider: "S3".into(),
            container: "bucket".into(),
            prefix: "etcd".into(),
            endpoint: Some("https://u:p@s3.example?sig=abc".into()),
            credentials: creds(&[("secretAccessKey", "wJalrXUtnFEMI/K7MDENG")]),
            local_root: None,
        };
        let debug = format!("{config:?}");
        assert!(debug.contains("secretAccessKey"), "{debug}");
        assert!(!debug.contains("wJalrXUtnFEMI"), "{debug}");
        assert!(
            !debug.contains("sig=abc") && !debug.contains("u:p@"),
            "{debug}"
        );
    }

    #[test]
    fn short_values_are_not_searched() {
        let r = Redactor::for_credentials(&creds(&[("password", "abc")]));
        assert_eq!(r.redact("abc def"), "abc def");
    }
}
