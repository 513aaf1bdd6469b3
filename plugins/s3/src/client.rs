//! Presigned S3 requests over the SDK's blocking HTTP, each retried on its
//! own with backoff, and the pure helpers around them (listing parsing,
//! range headers, key checks).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use druid_plugin_sdk::download::range_header;
use druid_plugin_sdk::http::{self, Method, Response};
use druid_plugin_sdk::log;
use druid_plugin_sdk::retry::{Attempt, Backoff, with_backoff};
use druid_plugin_sdk::store::{ByteRange, ListPage, ObjectInfo, StoreConfig, StoreError};
use druid_plugin_sdk::time::now_unix;
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action};

use crate::config::{self, Auth, Settings};
use crate::errors::{self, Ctx};
use crate::incomplete;
use crate::sts::{self, Temporary, WebIdentity};
use druid_plugin_sdk::object::{ObjectClient, head_info, log_open};
use druid_plugin_sdk::parts::PartSink;

use crate::upload::MAX_PARTS;

/// How long a presigned URL stays valid. Each attempt signs afresh.
pub const SIGN_FOR: Duration = Duration::from_secs(3600);
/// The most of an error body that is read.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// The most of a listing or multipart response that is read.
const XML_BODY_LIMIT: usize = 16 << 20;
/// S3's page size limit.
pub const MAX_KEYS: u32 = 1000;

/// An HTTP request's method, headers and body, and the statuses besides
/// 2xx that are not errors for it.
pub struct Request<'a> {
    method: Method,
    headers: &'a [(String, String)],
    body: &'a [u8],
    pass: &'a [u16],
}

impl<'a> Request<'a> {
    /// A request without headers or body.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            headers: &[],
            body: &[],
            pass: &[],
        }
    }

    /// With these headers.
    pub fn headers(self, headers: &'a [(String, String)]) -> Self {
        Self { headers, ..self }
    }

    /// With this body.
    pub fn body(self, body: &'a [u8]) -> Self {
        Self { body, ..self }
    }

    /// Letting these statuses through to the caller.
    pub fn pass(self, pass: &'a [u16]) -> Self {
        Self { pass, ..self }
    }
}

/// How the client gets the credentials it signs with.
enum Signer {
    /// A long-lived access key.
    Static(Credentials),
    /// A role assumed with a web identity token, and the temporary
    /// credentials held (renewed [`RENEW_MARGIN`] before they expire).
    WebIdentity {
        identity: WebIdentity,
        held: RefCell<Option<Temporary>>,
    },
}

/// Temporary credentials are renewed when they have less than this left
/// (seconds): no request of one upload part outlives them.
const RENEW_MARGIN: i64 = 300;
/// The largest STS answer read.
const STS_BODY_LIMIT: usize = 64 << 10;
/// What the plugin may reach, for an STS endpoint the host refused.
const STS_REACH: &str = "the plugin reaches only the store's endpoint and the STS endpoint \
     (`stsEndpoint`, $AWS_ENDPOINT_URL_STS, or AWS's regional STS for a store without an \
     endpoint of its own)";

/// A bucket and the credentials to sign its requests with.
pub struct Client {
    /// The bucket (endpoint, addressing style, name, region).
    pub bucket: Bucket,
    /// Where the credentials come from.
    signer: Signer,
    /// How old an incomplete multipart upload's marker must be before the
    /// upload counts as abandoned (see [`crate::incomplete`]).
    pub incomplete_upload_expiry: Duration,
}

impl Client {
    /// The client for checked settings.
    pub fn new(settings: &Settings) -> Result<Self, StoreError> {
        Ok(Self {
            bucket: settings.bucket()?,
            signer: match &settings.auth {
                Auth::Keys {
                    access_key,
                    secret_key,
                } => Signer::Static(Credentials::new(access_key.clone(), secret_key.clone())),
                Auth::WebIdentity(identity) => Signer::WebIdentity {
                    identity: identity.clone(),
                    held: RefCell::new(None),
                },
            },
            incomplete_upload_expiry: settings.incomplete_upload_expiry,
        })
    }

    /// The context of a request, for messages.
    pub fn ctx<'a>(&'a self, op: &'a str, key: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            op,
            key,
            bucket: self.bucket.name(),
            region: self.bucket.region(),
            role: self.role(),
        }
    }

    /// The credentials for the next request: the access key, or the
    /// temporary credentials held while they have [`RENEW_MARGIN`] left,
    /// else new ones from STS.
    pub fn credentials(&self) -> Result<Credentials, StoreError> {
        let (identity, held) = match &self.signer {
            Signer::Static(credentials) => return Ok(credentials.clone()),
            Signer::WebIdentity { identity, held } => (identity, held),
        };
        if let Some(t) = held.borrow().as_ref()
            && t.fresh(now_unix(), RENEW_MARGIN)
        {
            return Ok(t.credentials.clone());
        }
        let temporary = assume_role(identity)?;
        let credentials = temporary.credentials.clone();
        *held.borrow_mut() = Some(temporary);
        Ok(credentials)
    }

    /// Drops the temporary credentials held (the store no longer takes
    /// them), so that the next request gets new ones.
    fn forget_credentials(&self) {
        if let Signer::WebIdentity { held, .. } = &self.signer {
            held.borrow_mut().take();
        }
    }

    /// Sends one request, retrying transient failures with backoff. `sign`
    /// gives a freshly presigned URL per attempt; the body is resent as it
    /// is on each attempt. A 2xx response, or one whose status the request
    /// lets pass, is given to `on_success`, which may still fail or ask for a
    /// retry (e.g. when the body breaks off).
    pub fn execute<T>(
        &self,
        ctx: &Ctx<'_>,
        req: &Request<'_>,
        sign: impl Fn(&Credentials) -> String,
        mut on_success: impl FnMut(Response) -> Result<T, Attempt<StoreError>>,
    ) -> Result<T, StoreError> {
        let policy = Backoff::default();
        with_backoff(policy, |attempt| {
            let url = sign(&self.credentials().map_err(Attempt::Fail)?);
            let outcome = match http::send(req.method, &url, req.headers, req.body) {
                Ok(resp)
                    if (200..300).contains(&resp.status) || req.pass.contains(&resp.status) =>
                {
                    on_success(resp)
                }
                Ok(mut resp) => {
                    let region = resp.header("x-amz-bucket-region").map(str::to_owned);
                    let text = if req.method == Method::Head {
                        String::new()
                    } else {
                        resp.text(ERROR_BODY_LIMIT)
                    };
                    let code = errors::parse_error(&text).code.unwrap_or_default();
                    if self.role().is_some() && sts::renew_on(&code) {
                        // Temporary credentials the store no longer takes:
                        // the next attempt assumes the role again.
                        self.forget_credentials();
                        Err(Attempt::Retry(StoreError::AccessDenied(format!(
                            "{}: the store no longer takes the role's temporary credentials \
                             ({code}), and new ones did not help",
                            ctx.what()
                        ))))
                    } else {
                        Err(errors::classify(resp.status, region.as_deref(), &text, ctx))
                    }
                }
                Err(e) => Err(errors::transport(&e, ctx)),
            };
            if let Err(Attempt::Retry(e)) = &outcome
                && attempt < policy.attempts
            {
                log::warn(&format!(
                    "attempt {attempt} of {} failed, retrying: {}",
                    policy.attempts,
                    errors::message(e)
                ));
            }
            outcome
        })
    }

    /// The role assumed, if the client signs with temporary credentials.
    fn role(&self) -> Option<&str> {
        match &self.signer {
            Signer::Static(_) => None,
            Signer::WebIdentity { identity, .. } => Some(&identity.role_arn),
        }
    }

    /// Reads a (small) XML response body; a broken-off body is retried.
    fn read_xml(resp: &mut Response, ctx: &Ctx<'_>) -> Result<String, Attempt<StoreError>> {
        let bytes = resp
            .read_to_end(XML_BODY_LIMIT)
            .map_err(|e| errors::transport(&e, ctx))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// PutObject of `body` at `key`.
    pub fn put_object(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let ctx = self.ctx("put", Some(key));
        let sign = |credentials: &Credentials| {
            self.bucket
                .put_object(Some(credentials), key)
                .sign(SIGN_FOR)
                .to_string()
        };
        self.execute(
            &ctx,
            &Request::new(Method::Put).body(body),
            sign,
            |_| Ok(()),
        )
    }

    /// AbortMultipartUpload; an upload that is gone already is not an
    /// error.
    pub fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let ctx = self.ctx("abort the multipart upload of", Some(key));
        let sign = |credentials: &Credentials| {
            self.bucket
                .abort_multipart_upload(Some(credentials), key, upload_id)
                .sign(SIGN_FOR)
                .to_string()
        };
        // 404: the upload is gone already.
        self.execute(
            &ctx,
            &Request::new(Method::Delete).pass(&[404]),
            sign,
            |_| Ok(()),
        )
    }

    /// Deletes the in-progress marker of an upload that was finished or
    /// aborted (best effort: a marker left behind only makes a later sweep
    /// abort an upload that is gone already).
    pub fn forget_marker(&self, key: &str, upload_id: &str) {
        let marker = incomplete::marker_key(key, upload_id);
        if let Err(e) = self.delete(&marker) {
            log::debug(&format!("cannot delete the marker {marker:?}: {e}"));
        }
    }

    /// Aborts the multipart uploads whose markers are past the expiry, and
    /// deletes those markers (best effort, at most
    /// [`incomplete::MAX_PER_SWEEP`] markers). See [`crate::incomplete`].
    pub fn sweep_incomplete_uploads(&self) {
        let now = druid_plugin_sdk::time::now_unix();
        let page = match self.list(incomplete::MARKER_ROOT, None, incomplete::MAX_PER_SWEEP) {
            Ok(p) => p,
            Err(e) => {
                log::debug(&format!("cannot list incomplete uploads: {e}"));
                return;
            }
        };
        for marker in page.objects {
            let Some(key) = incomplete::key_of_marker(&marker.key) else {
                continue;
            };
            if !incomplete::is_stale(marker.last_modified, now, self.incomplete_upload_expiry) {
                continue;
            }
            let upload_id = match self.get(&marker.key, None) {
                Ok(Some(mut resp)) => resp.text(4096).trim().to_string(),
                Ok(None) => String::new(),
                Err(e) => {
                    log::debug(&format!("cannot read the marker {:?}: {e}", marker.key));
                    continue;
                }
            };
            if !upload_id.is_empty() {
                if let Err(e) = self.abort_multipart(key, &upload_id) {
                    log::warn(&format!(
                        "cannot abort the abandoned multipart upload of {key:?}: {e}"
                    ));
                    continue;
                }
                log::info(&format!(
                    "aborted the abandoned multipart upload of {key:?} (its marker is older than \
                     {} s)",
                    self.incomplete_upload_expiry.as_secs()
                ));
            }
            if let Err(e) = self.delete(&marker.key) {
                log::debug(&format!("cannot delete the marker {:?}: {e}", marker.key));
            }
        }
    }
}

impl ObjectClient for Client {
    type Sink = HttpSink;

    fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let settings = config::parse(config)?;
        log_open(
            &settings.warnings,
            &format!(
                "{} bucket {:?} at {} ({}, {} style, region {})",
                settings.provider,
                settings.bucket,
                settings.endpoint,
                settings.endpoint_source,
                if settings.path_style {
                    "path"
                } else {
                    "virtual-hosted"
                },
                settings.region
            ),
        );
        Self::new(&settings)
    }

    /// One page of ListObjectsV2.
    fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let ctx = self.ctx("list", None);
        let max = usize::try_from(max_keys.clamp(1, MAX_KEYS)).unwrap_or(1000);
        let sign = |credentials: &Credentials| {
            let mut action = self.bucket.list_objects_v2(Some(credentials));
            if !prefix.is_empty() {
                action.with_prefix(prefix);
            }
            if let Some(token) = page_token {
                action.with_continuation_token(token);
            }
            action.with_max_keys(max);
            action.sign(SIGN_FOR).to_string()
        };
        self.execute(&ctx, &Request::new(Method::Get), sign, |mut resp| {
            let text = Self::read_xml(&mut resp, &ctx)?;
            parse_list(&text, &ctx).map_err(Attempt::Fail)
        })
    }

    /// HeadObject.
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let ctx = self.ctx("head", Some(key));
        let sign = |credentials: &Credentials| {
            self.bucket
                .head_object(Some(credentials), key)
                .sign(SIGN_FOR)
                .to_string()
        };
        self.execute(&ctx, &Request::new(Method::Head), sign, |resp| {
            head_info(
                key,
                resp.header("content-length"),
                resp.header("last-modified"),
                &ctx.what(),
            )
            .map_err(Attempt::Fail)
        })
    }

    /// DeleteObject; a missing object is not an error (a missing bucket is).
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let ctx = self.ctx("delete", Some(key));
        let sign = |credentials: &Credentials| {
            self.bucket
                .delete_object(Some(credentials), key)
                .sign(SIGN_FOR)
                .to_string()
        };
        self.execute(
            &ctx,
            &Request::new(Method::Delete).pass(&[404]),
            sign,
            |mut resp| {
                if resp.status != 404 {
                    return Ok(());
                }
                let text = resp.text(ERROR_BODY_LIMIT);
                match errors::parse_error(&text).code.as_deref() {
                    Some("NoSuchBucket") => Err(errors::classify(404, None, &text, &ctx)),
                    _ => Ok(()),
                }
            },
        )
    }

    /// GetObject, of `range` if given. `None` when the range starts at or
    /// after the end of the object (S3's 416).
    fn get(&self, key: &str, range: Option<&ByteRange>) -> Result<Option<Response>, StoreError> {
        check_key(key)?;
        let ctx = self.ctx("download", Some(key));
        let headers: Vec<(String, String)> = range
            .map(|r| vec![("range".to_string(), range_header(r))])
            .unwrap_or_default();
        let sign = |credentials: &Credentials| {
            self.bucket
                .get_object(Some(credentials), key)
                .sign(SIGN_FOR)
                .to_string()
        };
        self.execute(
            &ctx,
            &Request::new(Method::Get).headers(&headers).pass(&[416]),
            sign,
            |resp| Ok((resp.status != 416).then_some(resp)),
        )
    }

    fn check_key(key: &str) -> Result<(), StoreError> {
        check_key(key)
    }

    fn part_size(size_hint: Option<u64>) -> usize {
        crate::upload::part_size(size_hint)
    }

    fn sink(client: Rc<Self>, key: String, _part_size: usize) -> HttpSink {
        HttpSink::new(client, key)
    }
}

/// The requests of one object's upload.
pub struct HttpSink {
    client: Rc<Client>,
    key: String,
}

impl HttpSink {
    /// The sink uploading `key` through `client`.
    pub fn new(client: Rc<Client>, key: String) -> Self {
        Self { client, key }
    }
}

impl PartSink for HttpSink {
    /// The multipart upload's ID.
    type Session = String;
    const MAX_PARTS: usize = MAX_PARTS;

    fn put_whole(&self, body: &[u8]) -> Result<(), StoreError> {
        self.client.put_object(&self.key, body)
    }

    fn begin(&self) -> Result<String, StoreError> {
        let c = &self.client;
        c.sweep_incomplete_uploads();
        let id = self.start_multipart()?;
        // The marker that lets a later upload abort this one if it is
        // never finished (see `incomplete`); without it, only a lifecycle
        // rule would.
        if let Err(e) = c.put_object(&incomplete::marker_key(&self.key, &id), id.as_bytes()) {
            log::warn(&format!(
                "cannot record the multipart upload of {:?} as in progress ({e}); if it is never \
                 finished, only a bucket lifecycle rule removes its parts",
                self.key
            ));
        }
        Ok(id)
    }

    fn put_part(
        &self,
        upload_id: &String,
        index: usize,
        body: &[u8],
    ) -> Result<String, StoreError> {
        // Parts are numbered from 1; the upload keeps below MAX_PARTS.
        let number = u16::try_from(index + 1).map_err(|_| {
            StoreError::Other(format!(
                "upload of {:?}: part {index} is past S3's limit",
                self.key
            ))
        })?;
        let c = &self.client;
        let op = format!("upload part {number} of");
        let ctx = c.ctx(&op, Some(&self.key));
        let sign = |credentials: &Credentials| {
            c.bucket
                .upload_part(Some(credentials), &self.key, number, upload_id)
                .sign(SIGN_FOR)
                .to_string()
        };
        c.execute(&ctx, &Request::new(Method::Put).body(body), sign, |resp| {
            resp.header("etag").map(str::to_owned).ok_or_else(|| {
                Attempt::Fail(StoreError::Other(format!(
                    "upload part {number} of {:?}: the store's answer has no ETag header",
                    self.key
                )))
            })
        })
    }

    fn complete(&self, upload_id: &String, etags: &[String]) -> Result<(), StoreError> {
        let c = &self.client;
        let ctx = c.ctx("complete the multipart upload of", Some(&self.key));
        let body = CompleteMultipartUpload::new(
            &c.bucket,
            None,
            &self.key,
            upload_id,
            etags.iter().map(String::as_str),
        )
        .body();
        let sign = |credentials: &Credentials| {
            CompleteMultipartUpload::new(
                &c.bucket,
                Some(credentials),
                &self.key,
                upload_id,
                etags.iter().map(String::as_str),
            )
            .sign(SIGN_FOR)
            .to_string()
        };
        let headers = [("content-type".to_string(), "application/xml".to_string())];
        c.execute(
            &ctx,
            &Request::new(Method::Post)
                .headers(&headers)
                .body(body.as_bytes()),
            sign,
            |mut resp| {
                let text = Client::read_xml(&mut resp, &ctx)?;
                complete_outcome(&text, &ctx)
            },
        )?;
        c.forget_marker(&self.key, upload_id);
        Ok(())
    }

    fn abort(&self, upload_id: &String) -> Result<(), StoreError> {
        self.client.abort_multipart(&self.key, upload_id)?;
        self.client.forget_marker(&self.key, upload_id);
        Ok(())
    }
}

impl HttpSink {
    /// CreateMultipartUpload; returns the upload ID.
    fn start_multipart(&self) -> Result<String, StoreError> {
        let c = &self.client;
        let ctx = c.ctx("start the multipart upload of", Some(&self.key));
        let sign = |credentials: &Credentials| {
            c.bucket
                .create_multipart_upload(Some(credentials), &self.key)
                .sign(SIGN_FOR)
                .to_string()
        };
        c.execute(&ctx, &Request::new(Method::Post), sign, |mut resp| {
            let text = Client::read_xml(&mut resp, &ctx)?;
            CreateMultipartUpload::parse_response(&text)
                .map(|r| r.upload_id().to_string())
                .map_err(|e| {
                    Attempt::Fail(StoreError::Other(format!(
                        "start the multipart upload of {:?}: cannot read the store's answer: {e}",
                        self.key
                    )))
                })
        })
    }
}

/// Assumes the role with the web identity token (STS
/// `AssumeRoleWithWebIdentity`, retrying transient failures).
fn assume_role(identity: &WebIdentity) -> Result<Temporary, StoreError> {
    let url = identity.url();
    let what = format!(
        "assume role {:?} at {}",
        identity.role_arn,
        http::display_url(&url)
    );
    let headers = [(
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    let body = identity.request_body();
    with_backoff(Backoff::default(), |_| {
        let mut response = http::send(Method::Post, &url, &headers, body.as_bytes())
            .map_err(|e| druid_plugin_sdk::exchange::transport(&e, &what, STS_REACH))?;
        let text = response.text(STS_BODY_LIMIT);
        if (200..300).contains(&response.status) {
            sts::parse_response(&text).map_err(|e| {
                Attempt::Fail(StoreError::AccessDenied(format!(
                    "{what}: {e}: check `stsEndpoint` in the store secret"
                )))
            })
        } else {
            Err(sts::classify(response.status, &text, identity))
        }
    })
}

/// CompleteMultipartUpload answers `200 OK` and may still fail: the error
/// is then in the body.
pub fn complete_outcome(body: &str, ctx: &Ctx<'_>) -> Result<(), Attempt<StoreError>> {
    if !errors::is_error_document(body) {
        return Ok(());
    }
    let code = errors::parse_error(body).code.unwrap_or_default();
    Err(errors::classify(
        errors::status_of_code(&code),
        None,
        body,
        ctx,
    ))
}

/// Refuses keys a URL cannot carry: empty ones, and `.`/`..` segments,
/// which URL normalization would resolve into another key.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.split('/').any(|s| s == "." || s == "..") {
        return Err(StoreError::InvalidConfig(format!(
            "{key:?} is not a valid object key: keys must be non-empty and have no '.' or '..' \
             segments"
        )));
    }
    Ok(())
}

/// A listing page from a ListObjectsV2 body.
pub fn parse_list(body: &str, ctx: &Ctx<'_>) -> Result<ListPage, StoreError> {
    let parsed = ListObjectsV2::parse_response(body).map_err(|e| {
        StoreError::Other(format!(
            "{} in bucket {:?}: cannot read the store's listing: {e}",
            ctx.op, ctx.bucket
        ))
    })?;
    Ok(ListPage {
        objects: parsed
            .contents
            .into_iter()
            .map(|o| ObjectInfo {
                size: o.size.unwrap_or(0),
                last_modified: o
                    .last_modified
                    .as_deref()
                    .and_then(druid_plugin_sdk::time::parse_iso8601),
                key: o.key,
            })
            .collect(),
        next_token: parsed.next_continuation_token,
    })
}
