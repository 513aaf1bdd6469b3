//! Blob service error responses to `store-error`s: the status, the error
//! code (the `x-ms-error-code` header, else the body's `<Code>`), and
//! whether a retry may help. Pure logic, tested natively.

use druid_plugin_sdk::http;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::StoreError;
use serde::Deserialize;

/// What a request was about, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The operation, e.g. "head" or "upload block 3 of".
    pub op: &'a str,
    /// The blob, if the request is about one.
    pub key: Option<&'a str>,
    /// The container.
    pub container: &'a str,
    /// The storage account.
    pub account: &'a str,
    /// The workload identity's client ID, when requests carry its token.
    pub identity: Option<&'a str>,
}

impl Ctx<'_> {
    /// "head \"v2/Full-…\" in container \"c\" of account \"a\"".
    pub fn what(&self) -> String {
        let place = format!(
            "in container {:?} of storage account {:?}",
            self.container, self.account
        );
        match self.key {
            Some(key) => format!("{} {key:?} {place}", self.op),
            None => format!("{} {place}", self.op),
        }
    }
}

/// The fields of an error body that matter here.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct AzureError {
    /// `<Code>`, e.g. `BlobNotFound`.
    #[serde(rename = "Code", default)]
    pub code: Option<String>,
    /// `<Message>`: its first line (the rest names the request id and time).
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
}

/// Reads an error body; empty fields when it is not an error document
/// (HEAD responses have no body).
pub fn parse_error(body: &str) -> AzureError {
    if !body.contains("<Error") {
        return AzureError::default();
    }
    let mut e: AzureError = quick_xml::de::from_str(body).unwrap_or_default();
    e.message = e
        .message
        .and_then(|m| m.lines().next().map(|l| l.trim().to_string()))
        .filter(|m| !m.is_empty());
    e
}

/// Maps an error response to a `store-error`, saying whether to retry.
/// `header_code` is the `x-ms-error-code` header, if any.
pub fn classify(
    status: u16,
    header_code: Option<&str>,
    body: &str,
    ctx: &Ctx<'_>,
) -> Attempt<StoreError> {
    let parsed = parse_error(body);
    let code = header_code
        .map(str::to_string)
        .or(parsed.code)
        .unwrap_or_default();
    let what = ctx.what();
    let detail = match (code.is_empty(), &parsed.message) {
        (false, Some(m)) => format!("{code}: {m}"),
        (false, None) => format!("{code} (HTTP {status})"),
        (true, Some(m)) => format!("HTTP {status}: {m}"),
        (true, None) => format!("HTTP {status}"),
    };
    let message = format!("{what}: {detail}");
    match (status, code.as_str()) {
        (404, "ContainerNotFound") => Attempt::Fail(StoreError::NoSuchContainer(format!(
            "{message} (create the container, or fix store.container)"
        ))),
        // A listing's bare 404 is about the container.
        (404, "") if ctx.key.is_none() => Attempt::Fail(StoreError::NoSuchContainer(message)),
        (404, _) => Attempt::Fail(StoreError::NotFound(message)),
        (401 | 403, _) | (400, "InvalidAuthenticationInfo" | "AuthenticationFailed")
            if ctx.identity.is_some() =>
        {
            Attempt::Fail(StoreError::AccessDenied(format!(
                "{message} (check that workload identity {} has the Storage Blob Data \
                 Contributor role on account {:?}, or on the container)",
                ctx.identity.unwrap_or_default(),
                ctx.account
            )))
        }
        (401 | 403, _) | (400, "InvalidAuthenticationInfo" | "AuthenticationFailed") => {
            Attempt::Fail(StoreError::AccessDenied(format!(
                "{message} (check the store secret's `storageAccount` and `storageKey` or \
                 `sasToken`, and that the credential may read, write, list and delete blobs)"
            )))
        }
        (400, "InvalidResourceName" | "OutOfRangeInput") if ctx.key.is_none() => {
            Attempt::Fail(StoreError::InvalidConfig(message))
        }
        (429 | 503, _) | (_, "ServerBusy") => Attempt::Retry(StoreError::Throttled(message)),
        (500..=599, _) | (408, _) => Attempt::Retry(StoreError::Unavailable(message)),
        _ => Attempt::Fail(StoreError::Other(message)),
    }
}

/// A request that got no response: a refused destination is final (the
/// host allows only the account's endpoint or the override), a broken
/// connection is retried.
pub fn transport(e: &http::Error, ctx: &Ctx<'_>) -> Attempt<StoreError> {
    druid_plugin_sdk::exchange::transport(
        e,
        &ctx.what(),
        "the plugin reaches only https://<storageAccount>.<domain> of Azure's clouds, or \
         store.endpointOverride",
    )
}
