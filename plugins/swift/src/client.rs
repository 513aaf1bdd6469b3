//! Swift's object API and Keystone's token request: each request carries
//! the token (held by the store, fetched when it has none and renewed
//! before it expires)
//! and goes over the SDK's blocking `wasi:http` client, retried on its own
//! with backoff.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use druid_plugin_sdk::download::range_header;
use druid_plugin_sdk::exchange::{Exchange, MAX_ERROR_BYTES, Reply, Target};
use druid_plugin_sdk::http::{self, Method, Response, encode};
use druid_plugin_sdk::object::{ObjectClient, head_info, log_open};
use druid_plugin_sdk::parts::PartSink;
use druid_plugin_sdk::retry::{Attempt, Backoff, with_backoff};
use druid_plugin_sdk::store::{ByteRange, ListPage, ObjectInfo, StoreConfig, StoreError};
use druid_plugin_sdk::time::now_unix;
use serde_json::json;

use crate::auth::{Session, parse_token_answer, storage_url, token_request};
use crate::config::{self, Settings};
use crate::errors::{self, Ctx};
use crate::listing::{parse_list, segment_name, segment_names};
use crate::upload::MAX_PARTS;
use crate::upload::{parse_part, part_token};

/// The largest listing page or token answer read (a catalog can be long).
const MAX_JSON_BYTES: usize = 32 << 20;
/// Swift's page limit.
const MAX_LIMIT: u32 = 10_000;
/// The longest object name Swift takes.
const MAX_KEY_BYTES: usize = 1024;
/// A token is renewed when it has less than this left (seconds).
const TOKEN_MARGIN: i64 = 300;

/// Refuses keys Swift cannot store.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.contains('\0') {
        return Err(StoreError::Other(format!(
            "{key:?} is not an object name Swift takes (1 to {MAX_KEY_BYTES} bytes, no NUL)"
        )));
    }
    Ok(())
}

/// A Swift container.
pub struct Client {
    settings: Settings,
    session: RefCell<Option<Session>>,
}

impl Client {
    /// A client for the configured container (no request is made).
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            session: RefCell::new(None),
        }
    }

    fn ctx<'a>(&'a self, op: &'a str, key: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            op,
            key,
            container: &self.settings.container,
            container_404: false,
        }
    }

    /// The context of a listing or a write: Swift answers 404 to those
    /// only when the container is missing.
    fn container_ctx<'a>(&'a self, op: &'a str, key: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            container_404: true,
            ..self.ctx(op, key)
        }
    }

    /// The object's path below the container.
    fn object_tail(key: &str) -> String {
        format!("/{}", encode(key, true))
    }

    /// The session for the next request: the one held while its token
    /// has [`TOKEN_MARGIN`] left, else a new one from Keystone.
    fn session(&self) -> Result<Session, StoreError> {
        if let Some(s) = self.session.borrow().as_ref()
            && s.fresh(now_unix(), TOKEN_MARGIN)
        {
            return Ok(s.clone());
        }
        let session = sign_in(&self.settings)?;
        *self.session.borrow_mut() = Some(session.clone());
        Ok(session)
    }

    /// Sends `request` to `tail` below the container (`/<key>`, or
    /// `?<query>`) with the token (retrying transient failures, and a
    /// refused token once with a new one): a 2xx response, or one whose
    /// status `request.pass` lists.
    fn execute(
        &self,
        ctx: &Ctx<'_>,
        tail: &str,
        request: &Exchange<'_>,
    ) -> Result<Reply, StoreError> {
        let what = ctx.what();
        request.send(
            &what,
            |_| {
                let session = self.session().map_err(Attempt::Fail)?;
                Ok(Target {
                    url: format!(
                        "{}/{}{tail}",
                        session.storage_url,
                        encode(&self.settings.container, false)
                    ),
                    headers: vec![("x-auth-token".into(), session.token)],
                })
            },
            |e| errors::transport(e, &what),
            |attempt, response, body| {
                if response.status == 401 {
                    // A token Keystone revoked or that expired early: sign
                    // in again, once.
                    self.session.borrow_mut().take();
                    if attempt == 1 {
                        return Attempt::Retry(StoreError::AccessDenied(what.clone()));
                    }
                }
                errors::classify(response.status, body, ctx)
            },
        )
    }

    /// Deletes the segments `<key>/NNNNNNNNNN` that exist, page by page.
    fn delete_segments(&self, key: &str) -> Result<(), StoreError> {
        let prefix = format!("{key}/");
        let ctx = self.container_ctx("delete the segments of", Some(key));
        let mut marker: Option<String> = None;
        loop {
            // `list` leaves segments out: read the raw names.
            let mut query = format!(
                "?format=json&limit={MAX_LIMIT}&prefix={}",
                encode(&prefix, false)
            );
            if let Some(m) = &marker {
                query.push_str(&format!("&marker={}", encode(m, false)));
            }
            let request = Exchange::new(Method::Get).read(MAX_JSON_BYTES);
            let reply = self.execute(&ctx, &query, &request)?;
            let page =
                segment_names(&String::from_utf8_lossy(&reply.body), &prefix).map_err(|e| {
                    StoreError::Other(format!("{}: cannot read Swift's listing: {e}", ctx.what()))
                })?;
            for name in &page.segments {
                self.delete_one(name)?;
            }
            if page.names < MAX_LIMIT as usize {
                return Ok(());
            }
            marker = page.last;
        }
    }

    fn delete_one(&self, name: &str) -> Result<(), StoreError> {
        let ctx = self.ctx("delete", Some(name));
        let request = Exchange::new(Method::Delete).pass(&[404]);
        self.execute(&ctx, &Self::object_tail(name), &request)
            .map(drop)
    }

    /// Stores `body` as `name`; returns Swift's ETag (the MD5 of the
    /// bytes it stored).
    fn put(&self, op: &str, name: &str, body: &[u8]) -> Result<String, StoreError> {
        let ctx = self.container_ctx(op, Some(name));
        let request = Exchange::new(Method::Put)
            .header("content-type", "application/octet-stream")
            .body(body);
        let reply = self.execute(&ctx, &Self::object_tail(name), &request)?;
        reply
            .response
            .header("etag")
            .map(|e| e.trim().trim_matches('"').to_string())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| StoreError::Other(format!("{}: the answer has no ETag", ctx.what())))
    }

    /// Writes the static large object manifest of `key` over its
    /// segments (`(etag, size)` each, in order).
    fn put_manifest(&self, key: &str, segments: &[(String, u64)]) -> Result<(), StoreError> {
        let ctx = self.container_ctx("write the manifest of", Some(key));
        let manifest: Vec<_> = segments
            .iter()
            .enumerate()
            .map(|(i, (etag, size))| {
                json!({
                    "path": format!("/{}/{}", self.settings.container, segment_name(key, i)),
                    "etag": etag,
                    "size_bytes": size,
                })
            })
            .collect();
        let body = serde_json::Value::Array(manifest).to_string();
        let tail = format!("{}?multipart-manifest=put", Self::object_tail(key));
        let request = Exchange::new(Method::Put)
            .header("content-type", "application/octet-stream")
            .body(body.as_bytes())
            .read(MAX_ERROR_BYTES);
        self.execute(&ctx, &tail, &request).map(drop)
    }
}

/// Checks the answer of a `multipart-manifest=delete` (JSON with
/// `Response Status` and `Errors`; empty for a plain object).
fn check_bulk_answer(ctx: &Ctx<'_>, body: &[u8]) -> Result<(), StoreError> {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(());
    };
    let status = answer
        .get("Response Status")
        .and_then(|s| s.as_str())
        .unwrap_or("200 OK");
    let errors = answer
        .get("Errors")
        .and_then(|e| e.as_array())
        .map_or(0, Vec::len);
    if (status.starts_with('2') || status.starts_with("404")) && errors == 0 {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "{}: Swift answered {status} with {errors} errors deleting the segments",
            ctx.what()
        )))
    }
}

/// Signs in to Keystone with the store secret's credential; returns the
/// token and the object store's URL (retrying transient failures).
fn sign_in(settings: &Settings) -> Result<Session, StoreError> {
    let url = format!("{}/auth/tokens", settings.auth_url);
    let what = format!(
        "sign in to Keystone at {} as {}",
        http::display_url(&settings.auth_url),
        settings.credential.describe()
    );
    let body = token_request(&settings.credential);
    with_backoff(Backoff::default(), |_| {
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let mut response = http::send(Method::Post, &url, &headers, body.as_bytes())
            .map_err(|e| errors::transport(&e, &what))?;
        let status = response.status;
        if !(200..300).contains(&status) {
            let text = response.text(MAX_ERROR_BYTES);
            return Err(errors::classify_keystone(status, &text, &settings.auth_url));
        }
        let token = response
            .header("x-subject-token")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                Attempt::Fail(StoreError::Other(format!(
                    "{what}: the answer has no X-Subject-Token"
                )))
            })?;
        let text = response
            .read_to_end(MAX_JSON_BYTES)
            .map_err(|e| Attempt::Retry(StoreError::Unavailable(format!("{what}: {e}"))))?;
        let answer =
            parse_token_answer(&String::from_utf8_lossy(&text), settings.region.as_deref())
                .map_err(|e| Attempt::Fail(StoreError::InvalidConfig(format!("{what}: {e}"))))?;
        let storage_url =
            storage_url(&answer.storage_url, settings.endpoint_override.as_deref())
                .map_err(|e| Attempt::Fail(StoreError::InvalidConfig(format!("{what}: {e}"))))?;
        Ok(Session {
            token,
            expires_at: answer.expires_at,
            storage_url,
        })
    })
}

impl ObjectClient for Client {
    type Sink = HttpSink;

    fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let settings = config::parse(config)?;
        log_open(
            &settings.warnings,
            &format!(
                "{} container {:?} through Keystone at {} as {}{}",
                settings.provider,
                settings.container,
                druid_plugin_sdk::http::display_url(&settings.auth_url),
                settings.credential.describe(),
                settings
                    .endpoint_override
                    .as_deref()
                    .map(|e| format!(", object store {}", druid_plugin_sdk::http::display_url(e)))
                    .unwrap_or_default()
            ),
        );
        Ok(Self::new(settings))
    }

    /// One page of the objects whose names start with `prefix`, after the
    /// object `marker` (the page token); large objects' segments are left
    /// out.
    fn list(&self, prefix: &str, marker: Option<&str>, max: u32) -> Result<ListPage, StoreError> {
        let limit = max.clamp(1, MAX_LIMIT);
        let mut query = vec![format!("format=json&limit={limit}")];
        if !prefix.is_empty() {
            query.push(format!("prefix={}", encode(prefix, false)));
        }
        if let Some(m) = marker {
            query.push(format!("marker={}", encode(m, false)));
        }
        let ctx = self.container_ctx("list", None);
        let tail = format!("?{}", query.join("&"));
        let reply = self.execute(
            &ctx,
            &tail,
            &Exchange::new(Method::Get).read(MAX_JSON_BYTES),
        )?;
        parse_list(&String::from_utf8_lossy(&reply.body), limit).map_err(|e| {
            StoreError::Other(format!("{}: cannot read Swift's listing: {e}", ctx.what()))
        })
    }

    /// The object's size and last modification (a large object's whole
    /// size).
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let ctx = self.ctx("head", Some(key));
        let reply = self.execute(&ctx, &Self::object_tail(key), &Exchange::new(Method::Head))?;
        let r = &reply.response;
        head_info(
            key,
            r.header("content-length"),
            r.header("last-modified"),
            &ctx.what(),
        )
    }

    /// Deletes the object and its segments (a static large object's with
    /// its manifest, a dynamic one's, as upstream writes them, after it);
    /// a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let ctx = self.ctx("delete", Some(key));
        let tail = Self::object_tail(key);
        let head = Exchange::new(Method::Head).pass(&[404]);
        let found = self.execute(&ctx, &tail, &head)?.response;
        let missing = found.status == 404;
        let dlo = found.header("x-object-manifest").is_some();
        if !missing {
            let slo = found
                .header("x-static-large-object")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
            // `multipart-manifest=delete` deletes a static large object
            // with its segments (Swift refuses it for any other object).
            let (tail, request) = if slo {
                (
                    format!("{tail}?multipart-manifest=delete"),
                    Exchange::new(Method::Delete)
                        .header("accept", "application/json")
                        .read(MAX_ERROR_BYTES),
                )
            } else {
                (tail, Exchange::new(Method::Delete))
            };
            let reply = self.execute(&ctx, &tail, &request.pass(&[404]))?;
            if slo {
                check_bulk_answer(&ctx, &reply.body)?;
            }
        }
        // What is below `<key>/`: a dynamic large object's segments, or
        // (for a missing object) those of an upload that stopped half-way.
        if missing || dlo {
            self.delete_segments(key)?;
        }
        Ok(())
    }

    /// The object's content, or the bytes of `range`; none when the range
    /// starts past the end (416).
    fn get(&self, key: &str, range: Option<&ByteRange>) -> Result<Option<Response>, StoreError> {
        check_key(key)?;
        let ctx = self.ctx("download", Some(key));
        let mut request = Exchange::new(Method::Get).pass(&[416]);
        if let Some(r) = range {
            request = request.header("range", range_header(r));
        }
        let reply = self.execute(&ctx, &Self::object_tail(key), &request)?;
        Ok((reply.response.status != 416).then_some(reply.response))
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

/// The requests of one object's upload: one PUT, or segments
/// `<key>/0000000001`… sent in order and a static large object manifest
/// over them. An aborted upload deletes the segments it sent.
pub struct HttpSink {
    client: Rc<Client>,
    key: String,
    /// The segments sent so far.
    sent: Cell<usize>,
}

impl HttpSink {
    /// The sink for uploading `key`.
    pub fn new(client: Rc<Client>, key: String) -> Self {
        Self {
            client,
            key,
            sent: Cell::new(0),
        }
    }
}

impl PartSink for HttpSink {
    type Session = ();
    const MAX_PARTS: usize = MAX_PARTS;

    fn put_whole(&self, body: &[u8]) -> Result<(), StoreError> {
        self.client.put("upload", &self.key, body).map(drop)
    }

    fn begin(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn put_part(&self, _session: &(), index: usize, body: &[u8]) -> Result<String, StoreError> {
        let name = segment_name(&self.key, index);
        let etag = self.client.put("upload a segment of", &name, body)?;
        self.sent.set(self.sent.get().max(index + 1));
        Ok(part_token(&etag, body.len()))
    }

    fn complete(&self, _session: &(), parts: &[String]) -> Result<(), StoreError> {
        let segments = parts
            .iter()
            .map(|p| {
                parse_part(p).ok_or_else(|| {
                    StoreError::Other(format!(
                        "upload of {:?}: a segment's record {p:?} is not `<etag> <size>`",
                        self.key
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.client.put_manifest(&self.key, &segments)
    }

    fn abort(&self, _session: &()) -> Result<(), StoreError> {
        for index in 0..self.sent.get() {
            self.client.delete_one(&segment_name(&self.key, index))?;
        }
        Ok(())
    }
}
