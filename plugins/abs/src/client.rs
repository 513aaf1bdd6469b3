//! The Blob service requests: each is built, authorized (Shared Key
//! signed afresh for each attempt, or the SAS token appended) and sent over
//! the SDK's blocking `wasi:http` client, retried on its own with backoff.

use std::rc::Rc;

use druid_plugin_sdk::download::range_header;
use druid_plugin_sdk::http::{self, Method, Response, encode};
use druid_plugin_sdk::parts::PartSink;
use druid_plugin_sdk::retry::{Attempt, Backoff, with_backoff};
use druid_plugin_sdk::store::{ByteRange, ListPage, ObjectInfo, StoreError};

use crate::config::{Auth, Settings};
use crate::errors::{self, Ctx};
use crate::listing::{block_id, block_list, parse_list};
use crate::sign::{self, API_VERSION, Signed};
use crate::upload::MAX_BLOCKS;

/// The most of an error body read into a message.
const MAX_ERROR_BYTES: usize = 16 << 10;
/// The largest listing page read (5,000 blobs with long names).
const MAX_LISTING_BYTES: usize = 32 << 20;
/// The service's page limit.
const MAX_RESULTS: u32 = 5000;
/// The longest blob name the service takes.
const MAX_KEY_BYTES: usize = 1024;

/// One request before it is authorized.
struct Request<'a> {
    method: Method,
    /// The blob, or none for the container.
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: &'a [u8],
    /// Error statuses returned as responses rather than errors.
    pass: &'a [u16],
}

impl<'a> Request<'a> {
    fn new(method: Method, key: Option<&'a str>) -> Self {
        Self {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
            pass: &[],
        }
    }

    fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }

    fn pass(mut self, statuses: &'a [u16]) -> Self {
        self.pass = statuses;
        self
    }
}

/// Refuses keys the service cannot store.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.contains(['\0', '\\']) {
        return Err(StoreError::Other(format!(
            "{key:?} is not a blob name Azure takes (1 to {MAX_KEY_BYTES} bytes, no NUL or \\)"
        )));
    }
    Ok(())
}

/// A container of a storage account.
pub struct Client {
    settings: Settings,
}

impl Client {
    /// A client for the configured container (no request is made).
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    fn ctx<'a>(&'a self, op: &'a str, key: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            op,
            key,
            container: &self.settings.container,
            account: &self.settings.account,
        }
    }

    /// The URL path of the container or of one blob, percent-encoded.
    fn path(&self, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("{}/{}", self.settings.container_path, encode(key, true)),
            None => self.settings.container_path.clone(),
        }
    }

    /// The URL and headers of one attempt of `request`: a fresh
    /// `x-ms-date`, and the Shared Key signature or the SAS token.
    fn prepare(&self, request: &Request<'_>) -> (String, Vec<(String, String)>) {
        let path = self.path(request.key);
        let mut query: Vec<String> = request
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
            .collect();
        let mut headers = vec![
            (
                "x-ms-date".to_string(),
                druid_plugin_sdk::time::format_http_date(druid_plugin_sdk::time::now_unix()),
            ),
            ("x-ms-version".to_string(), API_VERSION.to_string()),
        ];
        headers.extend(request.headers.iter().cloned());
        match &self.settings.auth {
            Auth::SharedKey(key) => {
                let to_sign = sign::string_to_sign(&Signed {
                    method: request.method.as_str(),
                    content_length: request.body.len() as u64,
                    ms_headers: &headers,
                    account: &self.settings.account,
                    path: &path,
                    query: &request.query,
                });
                headers.push((
                    "authorization".to_string(),
                    sign::authorization(&self.settings.account, key, &to_sign),
                ));
            }
            Auth::Sas(token) => query.push(token.clone()),
        }
        let mut url = format!("{}{path}", self.settings.origin);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        (url, headers)
    }

    /// Sends `request` (retrying transient failures): a 2xx response, or
    /// one whose status `request.pass` lists.
    fn execute(&self, op: &str, request: &Request<'_>) -> Result<Response, StoreError> {
        self.execute_read(op, request, None)
            .map(|(response, _)| response)
    }

    /// [`Self::execute`], and with `read` the response's body (up to that
    /// many bytes) read inside the retry, so that a body cut off midway
    /// is retried like a failed request.
    fn execute_read(
        &self,
        op: &str,
        request: &Request<'_>,
        read: Option<usize>,
    ) -> Result<(Response, Vec<u8>), StoreError> {
        let ctx = self.ctx(op, request.key);
        with_backoff(Backoff::default(), |_| {
            let (url, headers) = self.prepare(request);
            let mut response = http::send(request.method, &url, &headers, request.body)
                .map_err(|e| errors::transport(&e, &ctx))?;
            if (200..300).contains(&response.status) || request.pass.contains(&response.status) {
                let body = match read {
                    Some(limit) => response.read_to_end(limit).map_err(|e| {
                        Attempt::Retry(StoreError::Unavailable(format!("{}: {e}", ctx.what())))
                    })?,
                    None => Vec::new(),
                };
                return Ok((response, body));
            }
            let code = response.header("x-ms-error-code").map(str::to_string);
            let body = if request.method == Method::Head {
                String::new()
            } else {
                response.text(MAX_ERROR_BYTES)
            };
            Err(errors::classify(
                response.status,
                code.as_deref(),
                &body,
                &ctx,
            ))
        })
    }

    /// One page of the blobs whose names start with `prefix`, after the
    /// page `marker` ended.
    pub fn list(
        &self,
        prefix: &str,
        marker: Option<&str>,
        max: u32,
    ) -> Result<ListPage, StoreError> {
        let mut request = Request::new(Method::Get, None)
            .query("restype", "container")
            .query("comp", "list")
            .query("maxresults", max.clamp(1, MAX_RESULTS).to_string());
        if !prefix.is_empty() {
            request = request.query("prefix", prefix);
        }
        if let Some(marker) = marker {
            request = request.query("marker", marker);
        }
        let (_, body) = self.execute_read("list", &request, Some(MAX_LISTING_BYTES))?;
        let ctx = self.ctx("list", None);
        let text = String::from_utf8_lossy(&body);
        parse_list(&text).map_err(|e| {
            StoreError::Other(format!(
                "{}: cannot read the service's listing: {e}",
                ctx.what()
            ))
        })
    }

    /// The blob's size and last modification.
    pub fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let response = self.execute("head", &Request::new(Method::Head, Some(key)))?;
        let size = response
            .header("content-length")
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| {
                StoreError::Other(format!(
                    "{}: the answer has no Content-Length",
                    self.ctx("head", Some(key)).what()
                ))
            })?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size,
            last_modified: response
                .header("last-modified")
                .and_then(druid_plugin_sdk::time::parse_http_date),
        })
    }

    /// Deletes the blob; a missing blob is not an error.
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        // Snapshots of the blob (none are made here) go with it.
        let request = Request::new(Method::Delete, Some(key))
            .header("x-ms-delete-snapshots", "include")
            .pass(&[404]);
        let response = self.execute("delete", &request)?;
        if response.status == 404 && response.header("x-ms-error-code") == Some("ContainerNotFound")
        {
            return Err(StoreError::NoSuchContainer(format!(
                "{}: ContainerNotFound",
                self.ctx("delete", Some(key)).what()
            )));
        }
        Ok(())
    }

    /// The blob's content, or the bytes of `range`; none when the range
    /// starts past the end (the service's 416).
    pub fn get(
        &self,
        key: &str,
        range: Option<&ByteRange>,
    ) -> Result<Option<Response>, StoreError> {
        check_key(key)?;
        let mut request = Request::new(Method::Get, Some(key)).pass(&[416]);
        if let Some(r) = range {
            request = request.header("x-ms-range", range_header(r));
        }
        let response = self.execute("download", &request)?;
        Ok((response.status != 416).then_some(response))
    }

    fn put_blob(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let request = Request::new(Method::Put, Some(key))
            .header("x-ms-blob-type", "BlockBlob")
            .body(body);
        self.execute("upload", &request).map(drop)
    }

    fn put_block(&self, key: &str, id: &str, body: &[u8]) -> Result<(), StoreError> {
        let request = Request::new(Method::Put, Some(key))
            .query("comp", "block")
            .query("blockid", id)
            .body(body);
        self.execute("upload a block of", &request).map(drop)
    }

    fn put_block_list(&self, key: &str, ids: &[String]) -> Result<(), StoreError> {
        let body = block_list(ids);
        let request = Request::new(Method::Put, Some(key))
            .query("comp", "blocklist")
            .body(body.as_bytes());
        self.execute("commit the blocks of", &request).map(drop)
    }
}

/// The requests of one blob's upload.
pub struct HttpSink {
    client: Rc<Client>,
    key: String,
}

impl HttpSink {
    /// The sink for uploading `key`.
    pub fn new(client: Rc<Client>, key: String) -> Self {
        Self { client, key }
    }
}

impl PartSink for HttpSink {
    /// Staged blocks need no upload id: they belong to the blob's name.
    type Session = ();
    const MAX_PARTS: usize = MAX_BLOCKS;

    fn put_whole(&self, body: &[u8]) -> Result<(), StoreError> {
        self.client.put_blob(&self.key, body)
    }

    fn begin(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn put_part(&self, _: &(), index: usize, body: &[u8]) -> Result<String, StoreError> {
        let id = block_id(index);
        self.client.put_block(&self.key, &id, body)?;
        Ok(id)
    }

    fn complete(&self, _: &(), ids: &[String]) -> Result<(), StoreError> {
        self.client.put_block_list(&self.key, ids)
    }

    /// Nothing to send: uncommitted blocks are never seen, and the service
    /// drops them.
    fn abort(&self, _: &()) -> Result<(), StoreError> {
        Ok(())
    }
}
