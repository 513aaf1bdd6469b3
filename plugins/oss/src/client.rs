//! OSS's object API: each request signed with V4 afresh for each attempt
//! and sent over the SDK's blocking `wasi:http` client, retried on its
//! own with backoff.

use std::rc::Rc;

use druid_plugin_sdk::download::range_header;
use druid_plugin_sdk::exchange::{Exchange, MAX_ERROR_BYTES, Reply, Target};
use druid_plugin_sdk::http::{Method, Response, encode};
use druid_plugin_sdk::object::{ObjectClient, head_info, log_open};
use druid_plugin_sdk::parts::PartSink;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::{ByteRange, ListPage, ObjectInfo, StoreConfig, StoreError};
use druid_plugin_sdk::time::now_unix;

use crate::config::{self, Settings};
use crate::errors::{self, Ctx};
use crate::listing::{complete_body, parse_error, parse_list, parse_upload_id};
use crate::sign::{self, Key, query_string};
use crate::upload::MAX_PARTS;

/// The most of a listing or multipart answer that is read.
const MAX_XML_BYTES: usize = 16 << 20;
/// OSS's page size limit.
pub const MAX_KEYS: u32 = 1000;
/// The longest object key OSS takes.
const MAX_KEY_BYTES: usize = 1023;

/// Refuses keys OSS cannot store: empty, longer than 1,023 bytes,
/// starting with `/` or `\`, or holding a control character (XML listings
/// cannot carry those).
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty()
        || key.len() > MAX_KEY_BYTES
        || key.starts_with(['/', '\\'])
        || key.chars().any(char::is_control)
    {
        return Err(StoreError::Other(format!(
            "{key:?} is not an object key OSS takes (1 to {MAX_KEY_BYTES} bytes, not starting \
             with / or \\, no control characters)"
        )));
    }
    Ok(())
}

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// An OSS bucket and the key that signs its requests.
pub struct Client {
    settings: Settings,
}

impl Client {
    /// A client for checked settings (no request is made).
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    fn ctx<'a>(&'a self, op: &'a str, key: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            op,
            key,
            bucket: &self.settings.bucket,
            region: &self.settings.region,
        }
    }

    /// The URL of the bucket (`key` none) or of an object, with `query`.
    pub fn url(&self, key: Option<&str>, query: &[(String, String)]) -> String {
        let s = &self.settings;
        let mut url = s.origin.clone();
        if s.path_style {
            url.push('/');
            url.push_str(&encode(&s.bucket, false));
        }
        url.push('/');
        if let Some(k) = key {
            url.push_str(&encode(k, true));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query_string(query));
        }
        url
    }

    /// Sends `request` about `key` (none: the bucket) with `query`, signed
    /// afresh for each attempt: a 2xx response, or one whose status
    /// `request.pass` lists.
    fn execute(
        &self,
        ctx: &Ctx<'_>,
        key: Option<&str>,
        query: &[(String, String)],
        request: &Exchange<'_>,
    ) -> Result<Reply, StoreError> {
        let what = ctx.what();
        let url = self.url(key, query);
        let s = &self.settings;
        request.send(
            &what,
            |_| {
                let signed = sign::Request {
                    method: request.method.as_str(),
                    bucket: &s.bucket,
                    key,
                    query,
                    headers: &request.headers,
                };
                let signing = Key {
                    access_key: &s.access_key,
                    secret: &s.secret.0,
                    region: &s.region,
                };
                Ok(Target {
                    url: url.clone(),
                    headers: sign::sign(&signed, &signing, now_unix()),
                })
            },
            |e| errors::transport(e, &what),
            |_, response, body| errors::classify(response.status, body, ctx),
        )
    }

    /// PutObject: `body` as the whole object.
    fn put_object(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let ctx = self.ctx("upload", Some(key));
        let request = Exchange::new(Method::Put)
            .header("content-type", "application/octet-stream")
            .body(body);
        self.execute(&ctx, Some(key), &[], &request).map(drop)
    }

    /// InitiateMultipartUpload: the new upload's id.
    fn initiate(&self, key: &str) -> Result<String, StoreError> {
        let ctx = self.ctx("start the multipart upload of", Some(key));
        let request = Exchange::new(Method::Post)
            .header("content-type", "application/octet-stream")
            .read(MAX_XML_BYTES);
        let reply = self.execute(&ctx, Some(key), &query(&[("uploads", "")]), &request)?;
        parse_upload_id(&String::from_utf8_lossy(&reply.body)).map_err(|e| {
            StoreError::Other(format!("{}: cannot read OSS's answer: {e}", ctx.what()))
        })
    }

    /// UploadPart: part `number` (from 1); its ETag.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        body: &[u8],
    ) -> Result<String, StoreError> {
        let op = format!("upload part {number} of");
        let ctx = self.ctx(&op, Some(key));
        let number = number.to_string();
        let q = query(&[("partNumber", &number), ("uploadId", upload_id)]);
        let reply = self.execute(&ctx, Some(key), &q, &Exchange::new(Method::Put).body(body))?;
        reply
            .response
            .header("etag")
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| StoreError::Other(format!("{}: the answer has no ETag", ctx.what())))
    }

    /// CompleteMultipartUpload over the parts' ETags.
    fn complete(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<(), StoreError> {
        let ctx = self.ctx("complete the multipart upload of", Some(key));
        let body = complete_body(etags);
        let request = Exchange::new(Method::Post)
            .header("content-type", "application/xml")
            .body(body.as_bytes())
            .read(MAX_XML_BYTES);
        let reply = self.execute(
            &ctx,
            Some(key),
            &query(&[("uploadId", upload_id)]),
            &request,
        )?;
        // S3-compatible servers may answer 200 and then report a failure
        // in the body.
        let text = String::from_utf8_lossy(&reply.body);
        if text.contains("<Error>") {
            return Err(final_error(errors::classify(500, &text, &ctx)));
        }
        Ok(())
    }

    /// AbortMultipartUpload; an upload already gone is not an error.
    fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let ctx = self.ctx("abort the multipart upload of", Some(key));
        let request = Exchange::new(Method::Delete).pass(&[404]);
        self.execute(
            &ctx,
            Some(key),
            &query(&[("uploadId", upload_id)]),
            &request,
        )
        .map(drop)
    }
}

impl ObjectClient for Client {
    type Sink = HttpSink;

    fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let s = config::parse(config)?;
        log_open(
            &s.warnings,
            &format!(
                "{} bucket {:?} at {} ({:?}, {} style), signing for region {} ({:?})",
                s.provider,
                s.bucket,
                s.origin,
                s.endpoint_source,
                if s.path_style {
                    "path"
                } else {
                    "virtual-hosted"
                },
                s.region,
                s.region_source,
            ),
        );
        Ok(Self::new(s))
    }

    /// One page of the objects whose keys start with `prefix`, from the
    /// continuation token `token`.
    fn list(&self, prefix: &str, token: Option<&str>, max: u32) -> Result<ListPage, StoreError> {
        let max = max.clamp(1, MAX_KEYS).to_string();
        let mut q = query(&[("list-type", "2"), ("max-keys", &max)]);
        if !prefix.is_empty() {
            q.push(("prefix".into(), prefix.into()));
        }
        if let Some(t) = token {
            q.push(("continuation-token".into(), t.into()));
        }
        let ctx = self.ctx("list", None);
        let reply = self.execute(
            &ctx,
            None,
            &q,
            &Exchange::new(Method::Get).read(MAX_XML_BYTES),
        )?;
        parse_list(&String::from_utf8_lossy(&reply.body)).map_err(|e| {
            StoreError::Other(format!("{}: cannot read OSS's listing: {e}", ctx.what()))
        })
    }

    /// The object's size and last modification.
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let ctx = self.ctx("head", Some(key));
        let reply = self.execute(&ctx, Some(key), &[], &Exchange::new(Method::Head))?;
        let r = &reply.response;
        head_info(
            key,
            r.header("content-length"),
            r.header("last-modified"),
            &ctx.what(),
        )
    }

    /// Deletes the object; a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let ctx = self.ctx("delete", Some(key));
        let request = Exchange::new(Method::Delete)
            .pass(&[404])
            .read(MAX_ERROR_BYTES);
        let reply = self.execute(&ctx, Some(key), &[], &request)?;
        // A 404 about the bucket is not a deleted object.
        let text = String::from_utf8_lossy(&reply.body);
        if reply.response.status == 404
            && parse_error(&text).code.as_deref() == Some("NoSuchBucket")
        {
            return Err(final_error(errors::classify(404, &text, &ctx)));
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
        let reply = self.execute(&ctx, Some(key), &[], &request)?;
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

/// The error of an answer given after the retries.
fn final_error(attempt: Attempt<StoreError>) -> StoreError {
    match attempt {
        Attempt::Fail(e) | Attempt::Retry(e) => e,
    }
}

/// The requests of one object's upload: one PutObject, or a multipart
/// upload (InitiateMultipartUpload when the first part fills, UploadPart,
/// CompleteMultipartUpload; AbortMultipartUpload on abort or drop).
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
    /// The multipart upload's id.
    type Session = String;
    const MAX_PARTS: usize = MAX_PARTS;

    fn put_whole(&self, body: &[u8]) -> Result<(), StoreError> {
        self.client.put_object(&self.key, body)
    }

    fn begin(&self) -> Result<String, StoreError> {
        self.client.initiate(&self.key)
    }

    fn put_part(
        &self,
        upload_id: &String,
        index: usize,
        body: &[u8],
    ) -> Result<String, StoreError> {
        self.client
            .upload_part(&self.key, upload_id, index + 1, body)
    }

    fn complete(&self, upload_id: &String, etags: &[String]) -> Result<(), StoreError> {
        self.client.complete(&self.key, upload_id, etags)
    }

    fn abort(&self, upload_id: &String) -> Result<(), StoreError> {
        self.client.abort(&self.key, upload_id)
    }
}
