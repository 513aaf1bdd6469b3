//! The HttpStore storage-provider plugin: a worked example of a provider
//! written out of tree with the SDK, for the small HTTP object store of
//! druid-rs's tests (`tests/support/src/httpstore.rs`, whose module docs
//! give the protocol):
//!
//! - `GET|HEAD|DELETE <endpoint>/<container>/<key>`, `Range` on GET;
//! - uploads in two steps: `PUT <endpoint>/<container>/<key>?stage` (the
//!   body, streamed; answers the upload's id and the bytes received), then
//!   `POST <endpoint>/<container>/<key>?commit=<id>&size=<n>` makes it the
//!   object, so an upload that breaks off is never seen;
//! - `GET <endpoint>/<container>?prefix=P&after=K&max=N` lists
//!   `{"objects":[{"key":..,"size":..}],"next":..}` in byte order;
//! - `Authorization: Bearer <token>` on every request;
//! - errors carry `X-Store-Error` (`not-found`, `no-such-container`, ...).
//!
//! Made with `scripts/new-plugin.sh --provider HttpStore httpstore DIR`;
//! the steps below are the template's. The pure logic (URLs, error mapping,
//! the listing's JSON) is unit-tested natively (`cargo test`).

use std::cell::{Cell, RefCell};

use druid_plugin_sdk::http::{self, Method, RequestWriter, Response};
use druid_plugin_sdk::retry::{Attempt, Backoff, with_backoff};
use druid_plugin_sdk::store::{
    ByteRange, Download, GuestDownload, GuestStore, GuestUpload, ListPage, ObjectInfo, Store,
    StoreConfig, StoreError, Upload,
};
use druid_plugin_sdk::wiring::{EnvVar, SidecarConfig, StoreSpec, Volume, VolumeSource};
use druid_plugin_sdk::{credential_owned, missing_keys, plugin_info, provider, store, wiring};

/// Step 1: the secret keys the store needs.
const REQUIRED_KEYS: &[&str] = &["storeURL", "token"];

/// The largest listing page read (the store's pages are far smaller).
const MAX_LISTING_BYTES: usize = 16 << 20;
/// The most of an error body put into a message.
const MAX_ERROR_BYTES: usize = 2 << 10;

/// The plugin.
pub struct Httpstore;

impl provider::Guest for Httpstore {
    /// Step 2: the plugin's name and the `storageProvider` values it serves.
    fn describe() -> provider::PluginInfo {
        plugin_info("httpstore", env!("CARGO_PKG_VERSION"), &["HttpStore"])
    }
}

impl wiring::Guest for Httpstore {
    /// Step 3: the secret mounted at `/var/etcd-backup` and an env var
    /// naming it.
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        let Some(_secret) = spec.secret_name else {
            return Err(
                "store.secretRef is required for the HttpStore provider (keys storeURL, token)"
                    .into(),
            );
        };
        Ok(SidecarConfig {
            env: vec![
                EnvVar {
                    name: "STORAGE_CONTAINER".into(),
                    value: spec.container,
                },
                EnvVar {
                    name: "HTTPSTORE_APPLICATION_CREDENTIALS".into(),
                    value: "/var/etcd-backup".into(),
                },
            ],
            volumes: vec![Volume {
                name: "etcd-backup-secret".into(),
                source: VolumeSource::StoreSecret,
                mount_path: "/var/etcd-backup".into(),
            }],
        })
    }

    fn check_secret(provider: String, keys: Vec<String>) -> Result<(), Vec<String>> {
        let problems = missing_keys(&keys, REQUIRED_KEYS, &provider);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl store::Guest for Httpstore {
    /// Step 4: where your store's credentials come from (the store Secret,
    /// named by `HTTPSTORE_APPLICATION_CREDENTIALS` as `pod_config` sets it;
    /// every key reaches `open`), which of its keys hold an endpoint the
    /// user chose, and your service's own endpoints (`https://` patterns,
    /// e.g. `https://{container}.store.example.com`), if any. The host
    /// lets the plugin reach nothing else.
    fn contract(_provider: String) -> store::StoreContract {
        druid_plugin_sdk::secret_contract("HTTPSTORE", true, &["storeURL"], &[])
    }

    type Store = HttpstoreStore;
    type Upload = HttpstoreUpload;
    type Download = HttpstoreDownload;
}

/// Step 5: the store, from the configuration: no request here.
#[derive(Clone)]
pub struct HttpstoreStore {
    /// `<endpoint>/<container>`, percent-encoded.
    base: String,
    container: String,
    token: String,
}

impl GuestStore for HttpstoreStore {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let endpoint = config
            .endpoint
            .or_else(|| credential_owned(&config.credentials, "storeURL"))
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                StoreError::InvalidConfig(
                    "set the secret's `storeURL` (or store.endpointOverride), e.g. http://store:8080"
                        .into(),
                )
            })?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(StoreError::InvalidConfig(format!(
                "the secret's `storeURL` must start with http:// or https://, not {endpoint:?}"
            )));
        }
        let token = credential_owned(&config.credentials, "token")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| StoreError::InvalidConfig("set the secret's `token`".into()))?;
        Ok(Store::new(HttpstoreStore {
            base: format!("{endpoint}/{}", encode(&config.container, false)),
            container: config.container,
            token,
        }))
    }

    /// Step 6: the calls, with `druid_plugin_sdk::http`.
    fn list(
        &self,
        prefix: String,
        token: Option<String>,
        max: u32,
    ) -> Result<ListPage, StoreError> {
        let mut url = format!("{}?prefix={}&max={max}", self.base, encode(&prefix, true));
        if let Some(after) = &token {
            url.push_str(&format!("&after={}", encode(after, true)));
        }
        let mut response = self.send(Method::Get, &url, &[], "list")?;
        let body = response
            .read_to_end(MAX_LISTING_BYTES)
            .map_err(|e| StoreError::Unavailable(format!("list {prefix:?}: {e}")))?;
        parse_listing(&body)
    }

    fn head(&self, key: String) -> Result<ObjectInfo, StoreError> {
        let response = self.send(Method::Head, &self.url(&key), &[], "head")?;
        let size = response
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| StoreError::Other(format!("head {key:?}: no Content-Length")))?;
        Ok(ObjectInfo {
            key,
            size,
            last_modified: None,
        })
    }

    fn delete(&self, key: String) -> Result<(), StoreError> {
        match self.send(Method::Delete, &self.url(&key), &[], "delete") {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The body is streamed as it is written (chunked transfer encoding)
    /// to a staged upload, which `finish` commits once the store says it
    /// received every byte: an aborted upload (the request dropped
    /// unfinished) is never committed, so it leaves nothing.
    fn upload(&self, key: String, _size_hint: Option<u64>) -> Result<Upload, StoreError> {
        let url = format!("{}?stage", self.url(&key));
        let writer = http::start(Method::Put, &url, &[self.auth()])
            .map_err(|e| transport(&e, &format!("upload {key:?}")).into_inner())?;
        Ok(Upload::new(HttpstoreUpload {
            store: self.clone(),
            key,
            writer: RefCell::new(Some(writer)),
            written: Cell::new(0),
        }))
    }

    fn download(&self, key: String, range: Option<ByteRange>) -> Result<Download, StoreError> {
        if let Some(ByteRange {
            length: Some(0), ..
        }) = range
        {
            // Nothing to read; still say whether the object exists.
            self.head(key)?;
            return Ok(Download::new(HttpstoreDownload::empty()));
        }
        let headers: Vec<(String, String)> = range
            .as_ref()
            .map(|r| ("range".to_string(), range_header(r)))
            .into_iter()
            .collect();
        let response = match self.send(Method::Get, &self.url(&key), &headers, "download") {
            Ok(r) => r,
            // The range starts at or past the end: nothing to read.
            Err(StoreError::Other(m)) if m.contains("HTTP 416") => {
                return Ok(Download::new(HttpstoreDownload::empty()));
            }
            Err(e) => return Err(e),
        };
        if range.is_some() && response.status != 206 {
            return Err(StoreError::Other(format!(
                "download {key:?}: the store ignored the range (HTTP {})",
                response.status
            )));
        }
        Ok(Download::new(HttpstoreDownload {
            key,
            response: RefCell::new(Some(response)),
        }))
    }
}

impl HttpstoreStore {
    fn url(&self, key: &str) -> String {
        format!("{}/{}", self.base, encode(key, false))
    }

    fn auth(&self) -> (String, String) {
        ("authorization".into(), format!("Bearer {}", self.token))
    }

    /// Sends a request without a body, retrying transient failures (step
    /// 6: errors mapped by `status_error`); a response with a 2xx status.
    fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        what: &str,
    ) -> Result<Response, StoreError> {
        let mut all = headers.to_vec();
        all.push(self.auth());
        let what = format!("{what} in {:?}", self.container);
        with_backoff(Backoff::default(), |_| {
            let mut response =
                http::send(method, url, &all, &[]).map_err(|e| transport(&e, &what))?;
            if (200..300).contains(&response.status) {
                return Ok(response);
            }
            let code = response.header("x-store-error").unwrap_or("").to_string();
            let body = if method == Method::Head {
                String::new()
            } else {
                response.text(MAX_ERROR_BYTES)
            };
            Err(status_error(response.status, &code, body.trim(), &what))
        })
    }
}

/// Step 7: an upload, streamed: `http::start` in `upload`, `write_all` per
/// chunk, `finish` for the store's answer and the commit.
pub struct HttpstoreUpload {
    store: HttpstoreStore,
    key: String,
    writer: RefCell<Option<RequestWriter>>,
    written: Cell<u64>,
}

impl GuestUpload for HttpstoreUpload {
    fn write(&self, chunk: Vec<u8>) -> Result<(), StoreError> {
        let mut guard = self.writer.borrow_mut();
        let Some(writer) = guard.as_mut() else {
            return Err(StoreError::Other(format!(
                "upload {:?}: already finished or failed",
                self.key
            )));
        };
        if let Err(e) = writer.write_all(&chunk) {
            // The store may have answered early (e.g. 401): say what it said.
            let what = format!("upload {:?}", self.key);
            return Err(match guard.take().map(RequestWriter::finish) {
                Some(Ok(mut r)) if !(200..300).contains(&r.status) => {
                    let code = r.header("x-store-error").unwrap_or("").to_string();
                    status_error(r.status, &code, r.text(MAX_ERROR_BYTES).trim(), &what)
                        .into_inner()
                }
                _ => transport(&e, &what).into_inner(),
            });
        }
        self.written.set(self.written.get() + chunk.len() as u64);
        Ok(())
    }

    fn finish(&self) -> Result<ObjectInfo, StoreError> {
        let what = format!("upload {:?}", self.key);
        let writer = self
            .writer
            .borrow_mut()
            .take()
            .ok_or_else(|| StoreError::Other(format!("{what}: already finished or failed")))?;
        let mut response = writer
            .finish()
            .map_err(|e| transport(&e, &what).into_inner())?;
        if !(200..300).contains(&response.status) {
            let code = response.header("x-store-error").unwrap_or("").to_string();
            let body = response.text(MAX_ERROR_BYTES);
            return Err(status_error(response.status, &code, body.trim(), &what).into_inner());
        }
        let body = response
            .read_to_end(MAX_ERROR_BYTES)
            .map_err(|e| StoreError::Unavailable(format!("{what}: the answer broke off: {e}")))?;
        let (upload, received) = parse_staged(&body)
            .ok_or_else(|| StoreError::Other(format!("{what}: the store's answer is not valid")))?;
        let written = self.written.get();
        if received != written {
            return Err(StoreError::Unavailable(format!(
                "{what}: the store received {received} of {written} bytes; not committed"
            )));
        }
        let commit = format!(
            "{}?commit={}&size={written}",
            self.store.url(&self.key),
            encode(&upload, true)
        );
        self.store.send(Method::Post, &commit, &[], "commit")?;
        Ok(ObjectInfo {
            key: self.key.clone(),
            size: written,
            last_modified: None,
        })
    }

    /// Dropping the request unfinished breaks the transfer off; whatever
    /// the store received stays staged, never committed, so nothing is
    /// seen. (A store with one-shot uploads could not promise that: an
    /// HTTP server may take a chunked body cut off mid-chunk for a whole
    /// one.)
    fn abort(&self) -> Result<(), StoreError> {
        drop(self.writer.borrow_mut().take());
        Ok(())
    }
}

/// Step 8: a download: the GET's response, read in chunks.
pub struct HttpstoreDownload {
    key: String,
    response: RefCell<Option<Response>>,
}

impl HttpstoreDownload {
    fn empty() -> Self {
        Self {
            key: String::new(),
            response: RefCell::new(None),
        }
    }
}

impl GuestDownload for HttpstoreDownload {
    fn read(&self, max: u32) -> Result<Vec<u8>, StoreError> {
        let mut guard = self.response.borrow_mut();
        let Some(response) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        let max = usize::try_from(max.max(1)).unwrap_or(1 << 20);
        response.read(max).map_err(|e| {
            StoreError::Unavailable(format!(
                "download {:?}: the transfer broke off: {e}",
                self.key
            ))
        })
    }
}

/// Step 6: how a status maps to a store error: 404 `NotFound`, or
/// `NoSuchContainer` when the store says so (`X-Store-Error`), 401/403
/// `AccessDenied`, 429/503 `Throttled` (retried first), others `Other`.
pub fn status_error(status: u16, code: &str, body: &str, what: &str) -> Attempt<StoreError> {
    let message = if body.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {body}")
    };
    match status {
        404 if code == "no-such-container" => Attempt::Fail(StoreError::NoSuchContainer(message)),
        404 => Attempt::Fail(StoreError::NotFound(message)),
        401 | 403 => Attempt::Fail(StoreError::AccessDenied(format!(
            "{message} (check the secret's `token`)"
        ))),
        429 | 503 => Attempt::Retry(StoreError::Throttled(message)),
        500..=599 => Attempt::Retry(StoreError::Unavailable(message)),
        _ => Attempt::Fail(StoreError::Other(message)),
    }
}

/// A request that got no response: a refused destination is final, a
/// broken connection is retried.
pub fn transport(e: &http::Error, what: &str) -> Attempt<StoreError> {
    match e {
        http::Error::Denied(m) => Attempt::Fail(StoreError::Unavailable(format!(
            "{what}: {m} (is the secret's `storeURL` the store's address?)"
        ))),
        http::Error::InvalidUrl(m) => {
            Attempt::Fail(StoreError::InvalidConfig(format!("{what}: {m}")))
        }
        http::Error::Transport(m) => {
            Attempt::Retry(StoreError::Unavailable(format!("{what}: {m}")))
        }
    }
}

/// The error an attempt carries, retryable or not.
trait IntoInner {
    fn into_inner(self) -> StoreError;
}

impl IntoInner for Attempt<StoreError> {
    fn into_inner(self) -> StoreError {
        match self {
            Attempt::Retry(e) | Attempt::Fail(e) => e,
        }
    }
}

/// The `Range` header of `range` (a length of 0 is handled before).
pub fn range_header(range: &ByteRange) -> String {
    match range.length {
        Some(len) => format!(
            "bytes={}-{}",
            range.start,
            range.start.saturating_add(len.max(1)) - 1
        ),
        None => format!("bytes={}-", range.start),
    }
}

/// Percent-encodes `s` for a URL: unreserved characters stay, and `/` too
/// in a path (`query` false).
pub fn encode(s: &str, query: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && !query) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A staged upload's answer, `{"upload":..,"size":..}`: its id and the
/// bytes the store received.
pub fn parse_staged(body: &[u8]) -> Option<(String, u64)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some((
        value.get("upload")?.as_str()?.to_string(),
        value.get("size")?.as_u64()?,
    ))
}

/// A listing page: `{"objects":[{"key":..,"size":..}],"next":..}`; `next`
/// (the last key returned, while more follow) is the continuation token.
pub fn parse_listing(body: &[u8]) -> Result<ListPage, StoreError> {
    let bad = |why: &str| StoreError::Other(format!("the store's listing is not valid: {why}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let objects = value
        .get("objects")
        .and_then(|o| o.as_array())
        .ok_or_else(|| bad("no objects array"))?
        .iter()
        .map(|o| {
            Some(ObjectInfo {
                key: o.get("key")?.as_str()?.to_string(),
                size: o.get("size")?.as_u64()?,
                last_modified: None,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("an object without a key or size"))?;
    let next_token = match value.get("next") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("next is not a string")),
    };
    Ok(ListPage {
        objects,
        next_token,
    })
}

// The exports exist only in the wasm build (their names are not valid
// native symbols; native builds are for unit tests).
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Httpstore);

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails on error")]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_with_their_slashes_and_queries_without() {
        assert_eq!(encode("a b/c+d%", false), "a%20b/c%2Bd%25");
        assert_eq!(encode("many/0100", true), "many%2F0100");
        assert_eq!(encode("ü", false), "%C3%BC");
    }

    #[test]
    fn ranges_become_inclusive_headers() {
        let r = |start, length| ByteRange { start, length };
        assert_eq!(range_header(&r(1000, Some(5000))), "bytes=1000-5999");
        assert_eq!(range_header(&r(7, None)), "bytes=7-");
    }

    #[test]
    fn statuses_map_to_store_errors() {
        let e = |s, c| status_error(s, c, "no container \"x\"", "list").into_inner();
        assert!(matches!(
            e(404, "no-such-container"),
            StoreError::NoSuchContainer(_)
        ));
        assert!(matches!(e(404, "not-found"), StoreError::NotFound(_)));
        assert!(matches!(
            e(401, "unauthorized"),
            StoreError::AccessDenied(_)
        ));
        assert!(matches!(e(403, ""), StoreError::AccessDenied(_)));
        assert!(matches!(
            status_error(503, "", "", "x"),
            Attempt::Retry(StoreError::Throttled(_))
        ));
        assert!(matches!(e(400, "bad-request"), StoreError::Other(_)));
    }

    #[test]
    fn listings_parse_with_next_as_the_token() {
        let page = parse_listing(
            br#"{"objects":[{"key":"a/1","size":3},{"key":"a/2","size":0}],"next":"a/2"}"#,
        )
        .unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "a/1");
        assert_eq!(page.objects[0].size, 3);
        assert_eq!(page.next_token.as_deref(), Some("a/2"));
        let last = parse_listing(br#"{"objects":[],"next":null}"#).unwrap();
        assert!(last.objects.is_empty() && last.next_token.is_none());
        assert!(parse_listing(b"<html>").is_err());
    }

    #[test]
    fn a_staged_answer_gives_the_id_and_the_bytes_received() {
        assert_eq!(
            parse_staged(br#"{"upload":"7-3","size":1048576}"#),
            Some(("7-3".to_string(), 1_048_576))
        );
        assert_eq!(parse_staged(br#"{"upload":"7-3"}"#), None);
        assert_eq!(parse_staged(b"created"), None);
    }
}
