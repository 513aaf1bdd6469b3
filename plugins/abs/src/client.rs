//! The Blob service requests: each is built, authorized (Shared Key
//! signed afresh for each attempt, or the SAS token appended) and sent over
//! the SDK's blocking `wasi:http` client, retried on its own with backoff.

use std::rc::Rc;

use druid_plugin_sdk::download::range_header;
use druid_plugin_sdk::exchange::{Exchange, Reply, Target};
use druid_plugin_sdk::http::{Method, Response, encode};
use druid_plugin_sdk::oauth::{HeldToken, form_headers, parse_token_response, request_token};
use druid_plugin_sdk::object::{ObjectClient, head_info, log_open};
use druid_plugin_sdk::parts::PartSink;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::{ByteRange, ListPage, ObjectInfo, StoreConfig, StoreError};

use crate::config::{self, Auth, Settings, WorkloadIdentity};
use crate::errors::{self, Ctx};
use crate::listing::{block_id, block_list, parse_list};
use crate::sign::{self, API_VERSION, Signed};
use crate::upload::MAX_BLOCKS;

/// The largest listing page read (5,000 blobs with long names).
const MAX_LISTING_BYTES: usize = 32 << 20;
/// The service's page limit.
const MAX_RESULTS: u32 = 5000;
/// The longest blob name the service takes.
const MAX_KEY_BYTES: usize = 1024;

/// Refuses keys the service cannot store.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.contains(['\0', '\\']) {
        return Err(StoreError::Other(format!(
            "{key:?} is not a blob name Azure takes (1 to {MAX_KEY_BYTES} bytes, no NUL or \\)"
        )));
    }
    Ok(())
}

/// A token is renewed when it has less than this left (seconds): no
/// request of one block outlives it.
const TOKEN_MARGIN: i64 = 300;
/// The longest an Entra ID token is taken to live.
const TOKEN_LIFETIME: i64 = 24 * 3600;

/// What a refused workload identity should check.
const IDENTITY_REFUSED: &str = "Entra ID refused the pod's workload identity: check \
     $AZURE_CLIENT_ID and $AZURE_TENANT_ID, and that the identity has a federated credential \
     whose issuer is the cluster's service-account issuer, whose subject is \
     system:serviceaccount:<namespace>:<name> of the etcd pods, and whose audience is \
     api://AzureADTokenExchange";

/// What the plugin may reach, for a destination the host refused.
const REACH: &str = "the plugin reaches only the account's blob endpoint, the store's endpoint \
     override and the Entra ID authority ($AZURE_AUTHORITY_HOST)";

/// A container of a storage account.
pub struct Client {
    settings: Settings,
    token: HeldToken,
}

impl Client {
    /// A client for the configured container (no request is made).
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
            container: &self.settings.container,
            account: &self.settings.account,
            identity: match &self.settings.auth {
                Auth::WorkloadIdentity(w) => Some(&w.client_id),
                Auth::SharedKey(_) | Auth::Sas(_) => None,
            },
        }
    }

    /// The bearer token of the workload identity: the one held while it
    /// has [`TOKEN_MARGIN`] left, else a new one from Entra ID (the
    /// federated token as the client assertion).
    fn bearer(&self, identity: &WorkloadIdentity) -> Result<String, StoreError> {
        self.token.get(TOKEN_MARGIN, || {
            request_token(
                &identity.token_url(),
                &form_headers(),
                || identity.token_request_body(),
                |body, now| parse_token_response(body, now, TOKEN_LIFETIME),
                IDENTITY_REFUSED,
                REACH,
            )
        })
    }

    /// The URL path of the container or of one blob, percent-encoded.
    fn path(&self, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("{}/{}", self.settings.container_path, encode(key, true)),
            None => self.settings.container_path.clone(),
        }
    }

    /// Where one attempt of `request` on `key` (none: the container) with
    /// `query` goes, and its headers: a fresh `x-ms-date`, and the Shared
    /// Key signature (over the request's own headers too) or the SAS token.
    fn address(
        &self,
        key: Option<&str>,
        query: &[(String, String)],
        request: &Exchange<'_>,
    ) -> Result<Target, StoreError> {
        let path = self.path(key);
        let mut query_text: Vec<String> = query
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
        match &self.settings.auth {
            Auth::SharedKey(secret) => {
                let mut signed = headers.clone();
                signed.extend(request.headers.iter().cloned());
                let to_sign = sign::string_to_sign(&Signed {
                    method: request.method.as_str(),
                    content_length: request.body.len() as u64,
                    ms_headers: &signed,
                    account: &self.settings.account,
                    path: &path,
                    query,
                });
                headers.push((
                    "authorization".to_string(),
                    sign::authorization(&self.settings.account, secret, &to_sign),
                ));
            }
            Auth::Sas(token) => query_text.push(token.clone()),
            Auth::WorkloadIdentity(identity) => headers.push((
                "authorization".to_string(),
                format!("Bearer {}", self.bearer(identity)?),
            )),
        }
        let mut url = format!("{}{path}", self.settings.origin);
        if !query_text.is_empty() {
            url.push('?');
            url.push_str(&query_text.join("&"));
        }
        Ok(Target { url, headers })
    }

    /// Sends `request` on `key` (none: the container) with `query`,
    /// retrying transient failures: a 2xx response, or one whose status
    /// `request.pass` lists.
    fn execute(
        &self,
        op: &str,
        key: Option<&str>,
        query: &[(String, String)],
        request: &Exchange<'_>,
    ) -> Result<Reply, StoreError> {
        let ctx = self.ctx(op, key);
        request.send(
            &ctx.what(),
            |_| self.address(key, query, request).map_err(Attempt::Fail),
            |e| errors::transport(e, &ctx),
            |_, response, body| {
                if response.status == 401 {
                    // A token the service no longer takes: the next
                    // attempt gets a new one.
                    self.token.forget();
                }
                let code = response.header("x-ms-error-code");
                errors::classify(response.status, code, body, &ctx)
            },
        )
    }

    fn put_blob(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let request = Exchange::new(Method::Put)
            .header("x-ms-blob-type", "BlockBlob")
            .body(body);
        self.execute("upload", Some(key), &[], &request).map(drop)
    }

    fn put_block(&self, key: &str, id: &str, body: &[u8]) -> Result<(), StoreError> {
        let query = [
            ("comp".to_string(), "block".to_string()),
            ("blockid".into(), id.into()),
        ];
        let request = Exchange::new(Method::Put).body(body);
        self.execute("upload a block of", Some(key), &query, &request)
            .map(drop)
    }

    fn put_block_list(&self, key: &str, ids: &[String]) -> Result<(), StoreError> {
        let body = block_list(ids);
        let query = [("comp".to_string(), "blocklist".to_string())];
        let request = Exchange::new(Method::Put).body(body.as_bytes());
        self.execute("commit the blocks of", Some(key), &query, &request)
            .map(drop)
    }
}

impl ObjectClient for Client {
    type Sink = HttpSink;

    fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let settings = config::parse(config)?;
        log_open(
            &settings.warnings,
            &format!(
                "{} container {:?} of storage account {:?} at {} ({:?}, {})",
                settings.provider,
                settings.container,
                settings.account,
                settings.origin,
                settings.endpoint_source,
                match &settings.auth {
                    config::Auth::SharedKey(_) => "shared key".to_string(),
                    config::Auth::Sas(_) => "SAS token".to_string(),
                    config::Auth::WorkloadIdentity(w) =>
                        format!("workload identity, client {}", w.client_id),
                }
            ),
        );
        Ok(Self::new(settings))
    }

    /// One page of the blobs whose names start with `prefix`, after the
    /// page `marker` ended.
    fn list(&self, prefix: &str, marker: Option<&str>, max: u32) -> Result<ListPage, StoreError> {
        let mut query = vec![
            ("restype".to_string(), "container".to_string()),
            ("comp".into(), "list".into()),
            ("maxresults".into(), max.clamp(1, MAX_RESULTS).to_string()),
        ];
        if !prefix.is_empty() {
            query.push(("prefix".into(), prefix.into()));
        }
        if let Some(marker) = marker {
            query.push(("marker".into(), marker.into()));
        }
        let request = Exchange::new(Method::Get).read(MAX_LISTING_BYTES);
        let reply = self.execute("list", None, &query, &request)?;
        let ctx = self.ctx("list", None);
        let text = String::from_utf8_lossy(&reply.body);
        parse_list(&text).map_err(|e| {
            StoreError::Other(format!(
                "{}: cannot read the service's listing: {e}",
                ctx.what()
            ))
        })
    }

    /// The blob's size and last modification.
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let response = self
            .execute("head", Some(key), &[], &Exchange::new(Method::Head))?
            .response;
        head_info(
            key,
            response.header("content-length"),
            response.header("last-modified"),
            &self.ctx("head", Some(key)).what(),
        )
    }

    /// Deletes the blob; a missing blob is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        // Snapshots of the blob (none are made here) go with it.
        let request = Exchange::new(Method::Delete)
            .header("x-ms-delete-snapshots", "include")
            .pass(&[404]);
        let response = self.execute("delete", Some(key), &[], &request)?.response;
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
    fn get(&self, key: &str, range: Option<&ByteRange>) -> Result<Option<Response>, StoreError> {
        check_key(key)?;
        let mut request = Exchange::new(Method::Get).pass(&[416]);
        if let Some(r) = range {
            request = request.header("x-ms-range", range_header(r));
        }
        let response = self.execute("download", Some(key), &[], &request)?.response;
        Ok((response.status != 416).then_some(response))
    }

    fn check_key(key: &str) -> Result<(), StoreError> {
        check_key(key)
    }

    fn part_size(size_hint: Option<u64>) -> usize {
        crate::upload::block_size(size_hint)
    }

    fn sink(client: Rc<Self>, key: String, _part_size: usize) -> HttpSink {
        HttpSink::new(client, key)
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
