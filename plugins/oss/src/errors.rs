//! OSS error responses to `store-error`s: the status, the error document's
//! `<Code>`, what the request was about, and whether a retry may help.
//! Pure logic, tested natively.

use druid_plugin_sdk::http;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::StoreError;

use crate::listing::parse_error;

/// What a request was about, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The operation, e.g. "head" or "upload part 3 of".
    pub op: &'a str,
    /// The object key, if the request is about one object.
    pub key: Option<&'a str>,
    /// The bucket.
    pub bucket: &'a str,
    /// The region requests are signed for.
    pub region: &'a str,
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

/// Maps an OSS error response to a `store-error`, saying whether to
/// retry.
pub fn classify(status: u16, body: &str, ctx: &Ctx<'_>) -> Attempt<StoreError> {
    let err = parse_error(body);
    let code = err.code.as_deref().unwrap_or("");
    let what = ctx.what();
    let mut detail = match (&err.code, &err.message) {
        (Some(c), Some(m)) => format!("OSS {c}: {m}"),
        (Some(c), None) => format!("OSS {c}"),
        (None, Some(m)) => m.clone(),
        (None, None) => format!("HTTP {status}"),
    };
    if let Some(ec) = &err.ec {
        detail.push_str(&format!(", EC {ec}"));
    }
    match (status, code) {
        (_, "NoSuchBucket") => Attempt::Fail(StoreError::NoSuchContainer(format!(
            "{what}: the bucket does not exist ({detail}): create it in region {:?}, or fix \
             store.container",
            ctx.region
        ))),
        (404, "") if ctx.key.is_none() => Attempt::Fail(StoreError::NoSuchContainer(format!(
            "{what}: the bucket does not exist ({detail}): create it, or fix store.container"
        ))),
        (404, "NoSuchUpload") => Attempt::Fail(StoreError::Other(format!(
            "{what}: the multipart upload no longer exists ({detail}): it was aborted or \
             completed elsewhere"
        ))),
        (404, _) => Attempt::Fail(StoreError::NotFound(format!(
            "{what}: no such object ({detail})"
        ))),
        (_, "InvalidAccessKeyId") => Attempt::Fail(StoreError::AccessDenied(format!(
            "{what}: {detail}: check `accessKeyID` in the store secret"
        ))),
        (_, "SignatureDoesNotMatch") => Attempt::Fail(StoreError::AccessDenied(format!(
            "{what}: {detail}: check `accessKeySecret` in the store secret"
        ))),
        (_, "RequestTimeTooSkewed") => Attempt::Fail(StoreError::AccessDenied(format!(
            "{what}: {detail}: the clock of this node is off, fix its time sync"
        ))),
        (_, "SecondLevelDomainForbidden") => Attempt::Fail(StoreError::InvalidConfig(format!(
            "{what}: {detail}: OSS takes only virtual-hosted requests; set `storageEndpoint` to \
             the region's OSS endpoint (oss-<region>.aliyuncs.com), not an IP address"
        ))),
        (400, "InvalidArgument") if detail.contains("region") => {
            Attempt::Fail(StoreError::InvalidConfig(format!(
                "{what}: {detail}: the bucket is not in region {:?}; set `region` in the store \
                 secret (or `storageEndpoint`) to the bucket's region",
                ctx.region
            )))
        }
        (400, "InvalidBucketName") => Attempt::Fail(StoreError::InvalidConfig(format!(
            "{what}: {:?} is not a valid bucket name ({detail}): fix store.container",
            ctx.bucket
        ))),
        (401 | 403, _) => Attempt::Fail(StoreError::AccessDenied(format!(
            "{what}: OSS refused the request ({detail}): check that the RAM user of \
             `accessKeyID` may read, write, list and delete objects in bucket {:?}",
            ctx.bucket
        ))),
        (429 | 503, _) => Attempt::Retry(StoreError::Throttled(format!(
            "{what}: OSS asked to slow down ({detail}) and retries did not help"
        ))),
        (408 | 500..=599, _) => Attempt::Retry(StoreError::Unavailable(format!(
            "{what}: OSS failed ({detail}) and retries did not help"
        ))),
        _ => Attempt::Fail(StoreError::Other(format!(
            "{what}: OSS answered HTTP {status} ({detail})"
        ))),
    }
}

/// A request that got no response: a refused destination is final (the
/// plugin reaches only the endpoint), a broken connection is retried.
pub fn transport(e: &http::Error, what: &str) -> Attempt<StoreError> {
    druid_plugin_sdk::exchange::transport(
        e,
        what,
        "the plugin reaches only the store secret's `storageEndpoint` (and the bucket's host \
         below it) or store.endpointOverride",
    )
}
