//! Swift and Keystone error responses to `store-error`s: the status, what
//! the request was about, and whether a retry may help. Pure logic,
//! tested natively.

use druid_plugin_sdk::http;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::StoreError;

use crate::auth::keystone_error;

/// What a request was about, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The operation, e.g. "head" or "upload a segment of".
    pub op: &'a str,
    /// The object, if the request is about one.
    pub key: Option<&'a str>,
    /// The container.
    pub container: &'a str,
    /// Whether a 404 means the container is missing (a listing, or a
    /// write, which Swift refuses with 404 only then).
    pub container_404: bool,
}

impl Ctx<'_> {
    /// "head \"v2/Full-…\" in container \"c\"".
    pub fn what(&self) -> String {
        match self.key {
            Some(key) => format!("{} {key:?} in container {:?}", self.op, self.container),
            None => format!("{} in container {:?}", self.op, self.container),
        }
    }
}

/// The hint for a refused token.
const ACCESS_HINT: &str = "check that the store secret's user or application credential has a \
                           role that may read and write the container (member, or the \
                           object-store operator role of the cloud)";

/// The first line of a Swift error body (HTML or text), short.
fn detail(status: u16, body: &str) -> String {
    let text: String = body
        .lines()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with('<'))
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    }
}

/// Maps a Swift error response to a `store-error`, saying whether to
/// retry.
pub fn classify(status: u16, body: &str, ctx: &Ctx<'_>) -> Attempt<StoreError> {
    let message = format!("{}: {}", ctx.what(), detail(status, body));
    match status {
        404 if ctx.container_404 => Attempt::Fail(StoreError::NoSuchContainer(format!(
            "{message} (create the container, or fix store.container)"
        ))),
        404 => Attempt::Fail(StoreError::NotFound(message)),
        401 | 403 => Attempt::Fail(StoreError::AccessDenied(format!(
            "{message} ({ACCESS_HINT})"
        ))),
        // 498: rate limited (Swift's ratelimit middleware).
        429 | 498 => Attempt::Retry(StoreError::Throttled(message)),
        408 | 500..=599 => Attempt::Retry(StoreError::Unavailable(message)),
        _ => Attempt::Fail(StoreError::Other(message)),
    }
}

/// Maps Keystone's error response to a token request to a `store-error`.
pub fn classify_keystone(status: u16, body: &str, auth_url: &str) -> Attempt<StoreError> {
    let detail = keystone_error(body).unwrap_or_else(|| format!("HTTP {status}"));
    let message = format!(
        "sign in to Keystone at {}: {detail}",
        http::display_url(auth_url)
    );
    match status {
        400 | 401 | 403 => Attempt::Fail(StoreError::AccessDenied(format!(
            "{message} (Keystone refused the store secret's credential: check `username`, \
             `password`, `domainName` and `tenantName`, or the application credential's id and \
             secret, and that it has not expired)"
        ))),
        404 => Attempt::Fail(StoreError::InvalidConfig(format!(
            "{message} (no Keystone v3 API there: check the store secret's `authURL`, e.g. \
             https://keystone.example.com:5000/v3)"
        ))),
        429 => Attempt::Retry(StoreError::Throttled(message)),
        408 | 500..=599 => Attempt::Retry(StoreError::Unavailable(message)),
        _ => Attempt::Fail(StoreError::Other(message)),
    }
}

/// A request that got no response: a refused destination is final, a
/// broken connection is retried. A refused object store says how to allow
/// it.
pub fn transport(e: &http::Error, what: &str) -> Attempt<StoreError> {
    druid_plugin_sdk::exchange::transport(
        e,
        what,
        "the plugin reaches only the store secret's `authURL` and store.endpointOverride: when \
         Keystone's catalog names an object store on another host, set store.endpointOverride \
         to it",
    )
}
