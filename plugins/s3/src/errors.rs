//! S3 error responses to `store-error`s: the status, the XML `<Code>` of the
//! body when there is one, and whether a retry may help. Pure logic, tested
//! natively.

use druid_plugin_sdk::http;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::StoreError;

/// What a request was about, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The operation, e.g. "head" or "upload part 3 of".
    pub op: &'a str,
    /// The object key, if the request is about one object.
    pub key: Option<&'a str>,
    /// The bucket.
    pub bucket: &'a str,
    /// The signing region.
    pub region: &'a str,
    /// The role assumed with a web identity token, if any (for the hints
    /// of refusals).
    pub role: Option<&'a str>,
}

impl Ctx<'_> {
    /// What the request was about, e.g. `head "k" in bucket "b"`.
    pub fn what(&self) -> String {
        match self.key {
            Some(key) => format!("{} {key:?} in bucket {:?}", self.op, self.bucket),
            None => format!("{} in bucket {:?}", self.op, self.bucket),
        }
    }
}

/// The fields of an S3 `<Error>` document that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Error {
    /// `<Code>`, e.g. `NoSuchKey`.
    pub code: Option<String>,
    /// `<Message>`.
    pub message: Option<String>,
    /// `<Region>` (redirects and region errors name the bucket's region).
    pub region: Option<String>,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of the first `<name>…</name>` element of `xml`, unescaped.
pub(crate) fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let text = unescape(xml[start..start + len].trim());
    (!text.is_empty()).then_some(text)
}

/// Whether `body` is an S3 `<Error>` document.
pub fn is_error_document(body: &str) -> bool {
    body.contains("<Error>") && body.contains("<Code>")
}

/// Reads the code, message and region of an S3 error body (empty fields
/// when the body is not an error document, e.g. for HEAD requests).
pub fn parse_error(body: &str) -> S3Error {
    if !body.contains("<Error") {
        return S3Error::default();
    }
    S3Error {
        code: element(body, "Code"),
        message: element(body, "Message"),
        region: element(body, "Region"),
    }
}

/// The status S3 uses for an error code: for `<Error>` bodies that come
/// with a `200 OK` (CompleteMultipartUpload).
pub fn status_of_code(code: &str) -> u16 {
    match code {
        "NoSuchKey" | "NoSuchBucket" | "NoSuchUpload" => 404,
        "AccessDenied"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "RequestTimeTooSkewed" => 403,
        "PermanentRedirect" => 301,
        "SlowDown" | "ServiceUnavailable" => 503,
        "InternalError" => 500,
        _ => 400,
    }
}

/// Maps an error response to a `store-error`, saying whether to retry.
/// `bucket_region` is the `x-amz-bucket-region` header, if any.
pub fn classify(
    status: u16,
    bucket_region: Option<&str>,
    body: &str,
    ctx: &Ctx<'_>,
) -> Attempt<StoreError> {
    let err = parse_error(body);
    let code = err.code.as_deref().unwrap_or("");
    let what = ctx.what();
    let detail = match (&err.code, &err.message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => format!("HTTP {status}"),
    };
    let actual_region = err
        .region
        .as_deref()
        .or(bucket_region)
        .filter(|r| !r.is_empty());

    let mentions_region = err.message.as_deref().is_some_and(|m| m.contains("region"));
    let region_error = status == 301
        || matches!(
            code,
            "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException"
        )
        || code == "AuthorizationQueryParametersError" && (err.region.is_some() || mentions_region);
    if region_error {
        let hint = match actual_region {
            Some(r) => format!("; the bucket is in region {r:?}"),
            None => String::new(),
        };
        return Attempt::Fail(StoreError::InvalidConfig(format!(
            "{what}: the bucket cannot be reached in region {:?} (S3 {}{hint}): set `region` in \
             the store secret to the bucket's region (or the endpoint to the bucket's regional \
             endpoint)",
            ctx.region,
            if code.is_empty() {
                "301 Moved Permanently"
            } else {
                code
            },
        )));
    }

    match status {
        404 => match code {
            "NoSuchBucket" => Attempt::Fail(no_such_bucket(ctx)),
            "NoSuchUpload" => Attempt::Fail(StoreError::Other(format!(
                "{what}: the multipart upload no longer exists (S3 NoSuchUpload): it was \
                 aborted or completed elsewhere"
            ))),
            // A bucket-level request (list) without a key: the bucket is
            // what is missing.
            "" if ctx.key.is_none() => Attempt::Fail(no_such_bucket(ctx)),
            _ => Attempt::Fail(StoreError::NotFound(format!(
                "{what}: no such object ({detail})"
            ))),
        },
        403 if ctx.role.is_some() => Attempt::Fail(StoreError::AccessDenied(format!(
            "{what}: S3 refused the request ({detail}): check that role {:?} (the store \
             secret's `roleARN`) may read, write, list and delete objects in bucket {:?}",
            ctx.role.unwrap_or_default(),
            ctx.bucket
        ))),
        403 => {
            let hint = match code {
                "InvalidAccessKeyId" => "check `accessKeyID` in the store secret".to_string(),
                "SignatureDoesNotMatch" => {
                    "check `secretAccessKey` in the store secret".to_string()
                }
                "RequestTimeTooSkewed" => {
                    "the clock of this node is off: fix its time sync".to_string()
                }
                _ => format!(
                    "check `accessKeyID` and `secretAccessKey` in the store secret, and that the \
                     key may read, write, list and delete objects in bucket {:?}",
                    ctx.bucket
                ),
            };
            Attempt::Fail(StoreError::AccessDenied(format!(
                "{what}: S3 refused the request ({detail}): {hint}"
            )))
        }
        429 | 503 => Attempt::Retry(StoreError::Throttled(format!(
            "{what}: the store asked to slow down ({detail}) and retries did not help"
        ))),
        500 | 502 | 504 => Attempt::Retry(StoreError::Unavailable(format!(
            "{what}: the store failed with HTTP {status} ({detail}) and retries did not help"
        ))),
        // A temporary redirect (a new bucket's DNS name is not ready yet).
        307 => Attempt::Retry(StoreError::Unavailable(format!(
            "{what}: the store redirected the request temporarily ({detail})"
        ))),
        400 if code == "InvalidBucketName" => Attempt::Fail(StoreError::InvalidConfig(format!(
            "{what}: {:?} is not a valid bucket name ({detail}): fix store.container",
            ctx.bucket
        ))),
        _ => Attempt::Fail(StoreError::Other(format!(
            "{what}: the store answered HTTP {status} ({detail})"
        ))),
    }
}

fn no_such_bucket(ctx: &Ctx<'_>) -> StoreError {
    StoreError::NoSuchContainer(format!(
        "bucket {:?} does not exist (S3 NoSuchBucket): the bucket must exist and be spelled as \
         in store.container",
        ctx.bucket
    ))
}

/// Maps a failure to get a response: transport errors may be retried; a
/// destination the host refuses never is.
pub fn transport(e: &http::Error, ctx: &Ctx<'_>) -> Attempt<StoreError> {
    let what = ctx.what();
    match e {
        http::Error::Denied(m) => Attempt::Fail(StoreError::Unavailable(format!(
            "{what}: the host refused the request: {m}"
        ))),
        http::Error::InvalidUrl(m) => Attempt::Fail(StoreError::InvalidConfig(format!(
            "{what}: the request URL is invalid: {m}: check the endpoint"
        ))),
        http::Error::Transport(m) => Attempt::Retry(StoreError::Unavailable(format!(
            "{what}: the store could not be reached: {m}"
        ))),
    }
}

/// The message of a `store-error`, for logs.
pub fn message(e: &StoreError) -> &str {
    match e {
        StoreError::NotFound(m)
        | StoreError::AccessDenied(m)
        | StoreError::NoSuchContainer(m)
        | StoreError::Throttled(m)
        | StoreError::InvalidConfig(m)
        | StoreError::Unavailable(m)
        | StoreError::Other(m) => m,
    }
}
