//! The JSON API's requests: each is built, given the service account's
//! bearer token (held by the store, fetched when it has none and renewed
//! before it expires; none for an emulator) and sent over the SDK's blocking
//! `wasi:http` client, retried on its own with backoff.

use std::cell::Cell;
use std::rc::Rc;

use druid_plugin_sdk::download::range_header;
use druid_plugin_sdk::exchange::{Exchange, MAX_ERROR_BYTES, Reply, Target};
use druid_plugin_sdk::http::{Method, Response, encode};
use druid_plugin_sdk::oauth::{HeldToken, form_headers, request_token};
use druid_plugin_sdk::object::{ObjectClient, log_open};
use druid_plugin_sdk::parts::PartSink;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::{ByteRange, ListPage, ObjectInfo, StoreConfig, StoreError};
use druid_plugin_sdk::time::now_unix;

use crate::auth::{
    ExternalAccount, ServiceAccount, Token, parse_impersonation_response, parse_token_response,
};
use crate::config::{self, Auth, Settings};
use crate::errors::{self, Ctx};
use crate::listing::{LIST_FIELDS, parse_list, parse_object};
use crate::upload::MAX_PARTS;

/// The largest listing page or object resource read.
const MAX_JSON_BYTES: usize = 32 << 20;
/// The service's page limit.
const MAX_RESULTS: u32 = 1000;
/// The longest object name the service takes.
const MAX_KEY_BYTES: usize = 1024;
/// A token is renewed when it has less than this left (seconds): no
/// request of one upload part outlives it.
const TOKEN_MARGIN: i64 = 300;

/// Refuses keys the service cannot store.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty()
        || key.len() > MAX_KEY_BYTES
        || key.contains(['\r', '\n'])
        || key == "."
        || key == ".."
        || key.starts_with(".well-known/acme-challenge/")
    {
        return Err(StoreError::Other(format!(
            "{key:?} is not an object name GCS takes (1 to {MAX_KEY_BYTES} bytes, no CR or LF, \
             not . or .., not below .well-known/acme-challenge/)"
        )));
    }
    Ok(())
}

/// A bucket of the JSON API.
pub struct Client {
    settings: Settings,
    token: HeldToken,
}

impl Client {
    /// A client for the configured bucket (no request is made).
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            token: HeldToken::default(),
        }
    }

    fn ctx<'a>(&'a self, op: &'a str, key: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            op,
            key,
            bucket: &self.settings.bucket,
        }
    }

    /// `<origin><base>/storage/v1/b/<bucket>/o` and `tail`.
    fn objects_url(&self, tail: &str) -> String {
        format!(
            "{}{}/storage/v1/b/{}/o{tail}",
            self.settings.origin,
            self.settings.base_path,
            encode(&self.settings.bucket, false)
        )
    }

    /// The object's resource URL (its name is one path segment: `/`
    /// becomes `%2F`).
    fn object_url(&self, key: &str) -> String {
        self.objects_url(&format!("/{}", encode(key, false)))
    }

    /// The upload URL with `query`.
    fn upload_url(&self, query: &str) -> String {
        format!(
            "{}{}/upload/storage/v1/b/{}/o?{query}",
            self.settings.origin,
            self.settings.base_path,
            encode(&self.settings.bucket, false)
        )
    }

    /// The bearer token for the next request: the one held while it has
    /// [`TOKEN_MARGIN`] left, else a new one from the token endpoint; none
    /// for an emulator.
    fn bearer(&self) -> Result<Option<String>, StoreError> {
        match &self.settings.auth {
            Auth::Emulator => Ok(None),
            Auth::ServiceAccount(account) => self
                .token
                .get(TOKEN_MARGIN, || fetch_token(account))
                .map(Some),
            Auth::ExternalAccount(account) => self
                .token
                .get(TOKEN_MARGIN, || fetch_federated_token(account))
                .map(Some),
        }
    }

    /// Sends `request` to `url` (retrying transient failures) with the
    /// bearer token: a 2xx response, or one whose status `request.pass`
    /// lists.
    fn execute(
        &self,
        ctx: &Ctx<'_>,
        url: &str,
        request: &Exchange<'_>,
    ) -> Result<Reply, StoreError> {
        let what = ctx.what();
        request.send(
            &what,
            |_| {
                let mut headers = Vec::new();
                if let Some(token) = self.bearer().map_err(Attempt::Fail)? {
                    headers.push(("authorization".into(), format!("Bearer {token}")));
                }
                Ok(Target {
                    url: url.to_string(),
                    headers,
                })
            },
            |e| errors::transport(e, &what),
            |_, response, body| {
                if response.status == 401 {
                    // A token the service no longer takes: the next call
                    // gets a new one.
                    self.token.forget();
                }
                errors::classify(response.status, body, ctx)
            },
        )
    }

    fn json<T>(
        &self,
        ctx: &Ctx<'_>,
        reply: &Reply,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        parse(&String::from_utf8_lossy(&reply.body)).map_err(|e| {
            StoreError::Other(format!(
                "{}: cannot read the service's answer: {e}",
                ctx.what()
            ))
        })
    }

    /// Stores a whole object with one request.
    fn put_whole(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let ctx = self.ctx("upload", Some(key));
        let url = self.upload_url(&format!("uploadType=media&name={}", encode(key, false)));
        let request = Exchange::new(Method::Post)
            .header("content-type", "application/octet-stream")
            .body(body);
        self.execute(&ctx, &url, &request).map(drop)
    }

    /// Starts a resumable upload; returns its session's upload id.
    fn begin_resumable(&self, key: &str) -> Result<String, StoreError> {
        let ctx = self.ctx("start a resumable upload of", Some(key));
        let url = self.upload_url("uploadType=resumable");
        let metadata = serde_json::json!({ "name": key }).to_string();
        let request = Exchange::new(Method::Post)
            .header("content-type", "application/json; charset=UTF-8")
            .header("x-upload-content-type", "application/octet-stream")
            .body(metadata.as_bytes());
        let reply = self.execute(&ctx, &url, &request)?;
        // The session is named by its upload id; the URL is built here
        // rather than followed, so a redirect to another host is never
        // taken.
        reply
            .response
            .header("location")
            .and_then(upload_id)
            .ok_or_else(|| {
                StoreError::Other(format!(
                    "{}: the answer has no Location with an upload_id",
                    ctx.what()
                ))
            })
    }

    fn session_url(&self, upload_id: &str) -> String {
        self.upload_url(&format!(
            "uploadType=resumable&upload_id={}",
            encode(upload_id, false)
        ))
    }

    /// Sends bytes `[start, start + body.len())` of a resumable upload;
    /// `total` is the object's size when this is its last piece. Checks
    /// that the service kept every byte.
    fn put_range(
        &self,
        key: &str,
        upload_id: &str,
        start: u64,
        body: &[u8],
        total: Option<u64>,
    ) -> Result<(), StoreError> {
        let ctx = self.ctx("upload a part of", Some(key));
        let end = start + body.len() as u64;
        let total_text = total.map_or_else(|| "*".to_string(), |t| t.to_string());
        let range = if body.is_empty() {
            format!("bytes */{total_text}")
        } else {
            format!("bytes {start}-{}/{total_text}", end - 1)
        };
        let request = Exchange::new(Method::Put)
            .header("content-range", range)
            .body(body)
            .pass(&[308]);
        let reply = self.execute(&ctx, &self.session_url(upload_id), &request)?;
        let status = reply.response.status;
        if total.is_some() {
            // The last piece: the object exists now (200 or 201).
            return if status == 308 {
                Err(StoreError::Unavailable(format!(
                    "{}: the service did not complete the upload (it still waits for bytes)",
                    ctx.what()
                )))
            } else {
                Ok(())
            };
        }
        // 308 Resume Incomplete: the bytes it holds are `Range: bytes=0-N`.
        let kept = reply
            .response
            .header("range")
            .and_then(|r| r.trim().strip_prefix("bytes=0-"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        if kept != end {
            return Err(StoreError::Unavailable(format!(
                "{}: the service kept {kept} of the {end} bytes sent",
                ctx.what()
            )));
        }
        Ok(())
    }

    /// Cancels a resumable upload (the service answers 499).
    fn cancel(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let ctx = self.ctx("cancel the upload of", Some(key));
        let request = Exchange::new(Method::Delete).pass(&[404, 410, 499]);
        self.execute(&ctx, &self.session_url(upload_id), &request)
            .map(drop)
    }
}

/// The `upload_id` parameter of a resumable session's URL.
pub fn upload_id(location: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    query
        .split('&')
        .find_map(|p| p.strip_prefix("upload_id="))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

/// Exchanges the service account's signed JWT for a bearer token.
fn fetch_token(account: &ServiceAccount) -> Result<Token, StoreError> {
    request_token(
        &account.token_uri,
        &form_headers(),
        || ServiceAccount::token_request_body(&account.assertion(now_unix())),
        parse_token_response,
        errors::SERVICE_ACCOUNT_REFUSED,
        errors::REACH,
    )
}

/// Exchanges the external account's subject token at the STS for a
/// federated token, and that for the impersonated service account's token
/// when the account names one.
fn fetch_federated_token(account: &ExternalAccount) -> Result<Token, StoreError> {
    let federated = request_token(
        &account.token_url,
        &form_headers(),
        || account.exchange_body(),
        parse_token_response,
        errors::EXCHANGE_REFUSED,
        errors::REACH,
    )?;
    let Some(url) = &account.impersonation_url else {
        return Ok(federated);
    };
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (
            "authorization".to_string(),
            format!("Bearer {}", federated.access_token),
        ),
    ];
    request_token(
        url,
        &headers,
        ExternalAccount::impersonation_body,
        parse_impersonation_response,
        errors::IMPERSONATION_REFUSED,
        errors::REACH,
    )
}

impl ObjectClient for Client {
    type Sink = HttpSink;

    fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let settings = config::parse(config)?;
        log_open(
            &settings.warnings,
            &format!(
                "{} bucket {:?} at {} ({:?}, {})",
                settings.provider,
                settings.bucket,
                settings.origin,
                settings.endpoint_source,
                match &settings.auth {
                    config::Auth::ServiceAccount(a) => format!("service account {}", a.email),
                    config::Auth::ExternalAccount(a) => match &a.impersonation_url {
                        Some(_) => format!(
                            "workload identity federation ({}), impersonating a service account",
                            a.audience
                        ),
                        None => format!("workload identity federation ({})", a.audience),
                    },
                    config::Auth::Emulator => "no token (an emulator over plain http)".into(),
                }
            ),
        );
        Ok(Self::new(settings))
    }

    /// One page of the objects whose names start with `prefix`, after the
    /// page `page_token` ended.
    fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        max: u32,
    ) -> Result<ListPage, StoreError> {
        let mut query = vec![
            format!("maxResults={}", max.clamp(1, MAX_RESULTS)),
            format!("fields={}", encode(LIST_FIELDS, false)),
        ];
        if !prefix.is_empty() {
            query.push(format!("prefix={}", encode(prefix, false)));
        }
        if let Some(token) = page_token {
            query.push(format!("pageToken={}", encode(token, false)));
        }
        let url = self.objects_url(&format!("?{}", query.join("&")));
        let ctx = self.ctx("list", None);
        let reply = self.execute(&ctx, &url, &Exchange::new(Method::Get).read(MAX_JSON_BYTES))?;
        self.json(&ctx, &reply, parse_list)
    }

    /// The object's size and last modification.
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let ctx = self.ctx("head", Some(key));
        let url = format!("{}?fields=name,size,updated", self.object_url(key));
        let reply = self.execute(&ctx, &url, &Exchange::new(Method::Get).read(MAX_JSON_BYTES))?;
        let mut info = self.json(&ctx, &reply, parse_object)?;
        info.key = key.to_string();
        Ok(info)
    }

    /// Deletes the object; a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let ctx = self.ctx("delete", Some(key));
        let request = Exchange::new(Method::Delete)
            .pass(&[404])
            .read(MAX_ERROR_BYTES);
        let reply = self.execute(&ctx, &self.object_url(key), &request)?;
        if reply.response.status == 404 {
            let body = String::from_utf8_lossy(&reply.body);
            if let Attempt::Fail(e @ StoreError::NoSuchContainer(_)) =
                errors::classify(404, &body, &ctx)
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The object's content, or the bytes of `range`; none when the range
    /// starts past the end (the service's 416).
    fn get(&self, key: &str, range: Option<&ByteRange>) -> Result<Option<Response>, StoreError> {
        check_key(key)?;
        let ctx = self.ctx("download", Some(key));
        let url = format!("{}?alt=media", self.object_url(key));
        let mut request = Exchange::new(Method::Get).pass(&[416]);
        if let Some(r) = range {
            request = request.header("range", range_header(r));
        }
        let reply = self.execute(&ctx, &url, &request)?;
        Ok((reply.response.status != 416).then_some(reply.response))
    }

    fn check_key(key: &str) -> Result<(), StoreError> {
        check_key(key)
    }

    fn part_size(size_hint: Option<u64>) -> usize {
        crate::upload::part_size(size_hint)
    }

    fn sink(client: Rc<Self>, key: String, part_size: usize) -> HttpSink {
        HttpSink::new(client, key, part_size)
    }
}

/// The requests of one object's upload: one simple upload, or a
/// resumable session whose parts are sent in order and whose last part
/// (or an empty request, when the object ended on a part boundary)
/// completes it.
pub struct HttpSink {
    client: Rc<Client>,
    key: String,
    /// Bytes sent so far.
    sent: Cell<u64>,
    /// The size parts have; a shorter part is the last one.
    part_size: usize,
    /// Whether the last part went out (with the object's size).
    completed: Cell<bool>,
}

impl HttpSink {
    /// The sink for uploading `key` in parts of `part_size` bytes.
    pub fn new(client: Rc<Client>, key: String, part_size: usize) -> Self {
        Self {
            client,
            key,
            sent: Cell::new(0),
            part_size,
            completed: Cell::new(false),
        }
    }
}

impl PartSink for HttpSink {
    /// The resumable session's upload id.
    type Session = String;
    const MAX_PARTS: usize = MAX_PARTS;

    fn put_whole(&self, body: &[u8]) -> Result<(), StoreError> {
        self.client.put_whole(&self.key, body)
    }

    fn begin(&self) -> Result<String, StoreError> {
        self.client.begin_resumable(&self.key)
    }

    fn put_part(&self, session: &String, index: usize, body: &[u8]) -> Result<String, StoreError> {
        let start = self.sent.get();
        // Only the last part is short: it carries the object's size and
        // completes the upload (the service takes only multiples of 256
        // KiB before that).
        let last = body.len() < self.part_size;
        let total = last.then(|| start + body.len() as u64);
        self.client
            .put_range(&self.key, session, start, body, total)?;
        self.sent.set(start + body.len() as u64);
        self.completed.set(last);
        Ok(index.to_string())
    }

    fn complete(&self, session: &String, _parts: &[String]) -> Result<(), StoreError> {
        if self.completed.get() {
            return Ok(());
        }
        let total = self.sent.get();
        self.client
            .put_range(&self.key, session, total, &[], Some(total))?;
        self.completed.set(true);
        Ok(())
    }

    fn abort(&self, session: &String) -> Result<(), StoreError> {
        self.client.cancel(&self.key, session)
    }
}
