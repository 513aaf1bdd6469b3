//! JSON API and token endpoint error responses to `store-error`s: the
//! status, the error's reason and message, and whether a retry may help.
//! Pure logic, tested natively.

use druid_plugin_sdk::http;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::StoreError;
use serde::Deserialize;

/// What a request was about, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The operation, e.g. "head" or "upload a part of".
    pub op: &'a str,
    /// The object, if the request is about one.
    pub key: Option<&'a str>,
    /// The bucket.
    pub bucket: &'a str,
}

impl Ctx<'_> {
    /// "head \"v2/Full-…\" in bucket \"b\"".
    pub fn what(&self) -> String {
        match self.key {
            Some(key) => format!("{} {key:?} in bucket {:?}", self.op, self.bucket),
            None => format!("{} in bucket {:?}", self.op, self.bucket),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Envelope {
    error: Option<Body>,
}

#[derive(Debug, Default, Deserialize)]
struct Body {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<Item>,
}

#[derive(Debug, Default, Deserialize)]
struct Item {
    reason: Option<String>,
}

/// The fields of a JSON API error that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcsError {
    /// The first error's reason, e.g. `notFound`, `forbidden`.
    pub reason: Option<String>,
    /// The message, e.g. "No such object: b/k".
    pub message: Option<String>,
}

/// Reads an error body (`{"error": {"code", "message", "errors": [...]}}`);
/// empty fields when it is not one.
pub fn parse_error(body: &str) -> GcsError {
    let e: Envelope = serde_json::from_str(body).unwrap_or_default();
    let body = e.error.unwrap_or_default();
    GcsError {
        reason: body.errors.into_iter().find_map(|i| i.reason),
        message: body
            .message
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty()),
    }
}

/// The hint for a refused credential.
const ACCESS_HINT: &str = "check the store secret's service account key and that the account \
                           may read, create, list and delete objects in the bucket \
                           (roles/storage.objectAdmin)";

/// Maps a JSON API error response to a `store-error`, saying whether to
/// retry.
pub fn classify(status: u16, body: &str, ctx: &Ctx<'_>) -> Attempt<StoreError> {
    let parsed = parse_error(body);
    let detail = match (&parsed.reason, &parsed.message) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (Some(r), None) => format!("{r} (HTTP {status})"),
        (None, Some(m)) => format!("HTTP {status}: {m}"),
        (None, None) => format!("HTTP {status}"),
    };
    let message = format!("{}: {detail}", ctx.what());
    // Google's words for a missing bucket; an object's message names the
    // bucket too ("No such object: <bucket>/<key>"), so the word "bucket"
    // alone (in a bucket's name) says nothing.
    let about_bucket = parsed
        .message
        .as_deref()
        .is_some_and(|m| m.to_ascii_lowercase().contains("bucket does not exist"));
    match status {
        // A listing's 404 is about the bucket; Google says "The specified
        // bucket does not exist." for an object's request in a missing one.
        404 if ctx.key.is_none() || about_bucket => Attempt::Fail(StoreError::NoSuchContainer(
            format!("{message} (create the bucket, or fix store.container)"),
        )),
        404 => Attempt::Fail(StoreError::NotFound(message)),
        401 | 403 => Attempt::Fail(StoreError::AccessDenied(format!(
            "{message} ({ACCESS_HINT})"
        ))),
        429 => Attempt::Retry(StoreError::Throttled(message)),
        408 | 500..=599 => Attempt::Retry(StoreError::Unavailable(message)),
        _ => Attempt::Fail(StoreError::Other(message)),
    }
}

/// What a refused service account should check.
pub const SERVICE_ACCOUNT_REFUSED: &str = "the token endpoint refused the store secret's service \
     account: check that the key file is current and the account is enabled";

/// What a refused token exchange should check.
pub const EXCHANGE_REFUSED: &str = "the token exchange refused the store secret's `token`: check \
     that it is current (whoever writes it renews it), that the pool provider in `audience` \
     trusts its issuer, and that the token's audience is one the provider allows";

/// What a refused impersonation should check.
pub const IMPERSONATION_REFUSED: &str = "the federated identity may not impersonate the service \
     account: grant it roles/iam.workloadIdentityUser on the account";

/// A request that got no response: a refused destination is final (the
/// host allows only Google's hosts, the token endpoint or the override),
/// a broken connection is retried.
pub fn transport(e: &http::Error, what: &str) -> Attempt<StoreError> {
    druid_plugin_sdk::exchange::transport(e, what, REACH)
}

/// What the plugin may reach, for a destination the host refused.
pub const REACH: &str = "the plugin reaches only storage.googleapis.com, the service account's \
     token_uri, the external account's token_url and impersonation URL, or \
     store.endpointOverride";
