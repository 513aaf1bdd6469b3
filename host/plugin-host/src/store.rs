//! The typed store API: what the sidecar and the operator use. A call runs
//! in a plugin instance with the store open; an upload or a download is one
//! session. A store keeps a few idle instances whose last call ended well
//! and hands them to its next calls ([`Pool`]), so that what the plugin
//! holds for the store (a token from the provider's sign-in) serves many
//! calls, as a client library's would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmtime::component::ResourceAny;

use crate::Error;
use crate::config::StoreConfig;
use crate::grants::Grants;
#[cfg(doc)]
use crate::limits::{MAX_LIST_PAGES, MAX_LISTED_OBJECTS};
use crate::limits::{MAX_MESSAGE, MAX_PAGE_OBJECTS, truncate};
use crate::listing::{ListingCheck, page_problem};
use crate::provider::ProviderPlugin;
use crate::runtime::bindings::provider::Provider;
use crate::runtime::bindings::provider::exports::druid::plugin::object_store as wit;
use crate::runtime::{Session, guarded};

/// Objects asked for per listing page.
pub const LIST_PAGE: u32 = 1000;

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, Unix seconds, if known.
    pub last_modified: Option<i64>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The objects.
    pub objects: Vec<ObjectInfo>,
    /// The token of the next page.
    pub next_token: Option<String>,
}

/// A byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Length, or to the end.
    pub length: Option<u64>,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{store}: not found: {message}")]
    NotFound {
        /// Which store.
        store: String,
        /// The plugin's message.
        message: String,
    },
    /// The credentials were refused.
    #[error("{store}: access denied: {message}")]
    AccessDenied {
        /// Which store.
        store: String,
        /// The plugin's message.
        message: String,
    },
    /// The bucket or container does not exist.
    #[error("{store}: no such container: {message}")]
    NoSuchContainer {
        /// Which store.
        store: String,
        /// The plugin's message.
        message: String,
    },
    /// The store throttled and retries did not help.
    #[error("{store}: throttled: {message}")]
    Throttled {
        /// Which store.
        store: String,
        /// The plugin's message.
        message: String,
    },
    /// The configuration or credentials are invalid.
    #[error("{store}: invalid configuration: {message}")]
    InvalidConfig {
        /// Which store.
        store: String,
        /// The plugin's message.
        message: String,
    },
    /// The store could not be reached.
    #[error("{store}: unavailable: {message}")]
    Unavailable {
        /// Which store.
        store: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin tried to reach destinations the store does not grant.
    #[error(
        "{store}: the host refused the plugin's HTTP request to {destinations:?}: only the \
         store's endpoint may be reached (set store.endpointOverride or the secret's endpoint \
         if the store lives elsewhere)"
    )]
    DestinationRefused {
        /// Which store.
        store: String,
        /// The refused destinations.
        destinations: Vec<String>,
    },
    /// Any other store failure.
    #[error("{store}: {message}")]
    Other {
        /// Which store.
        store: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin failed (trap, limit, contract).
    #[error(transparent)]
    Plugin(#[from] Error),
}

impl StoreError {
    /// Whether the error says the object is missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// The store API the rest of the host programs against.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// One page of the objects below `prefix`.
    async fn list_page(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError>;

    /// Which store, for messages.
    fn label(&self) -> String {
        "store".into()
    }

    /// Every object below `prefix`, page by page. A listing that cannot
    /// end or is not what the WIT promises is an error, not a hang or an
    /// unbounded allocation: a page larger than asked for, pages that do
    /// not continue in byte order (a key twice), a continuation token seen
    /// before, more than [`MAX_LIST_PAGES`] pages or more than
    /// [`MAX_LISTED_OBJECTS`] objects (each page alone is checked by
    /// [`SnapshotStore::list_page`]).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut all = Vec::new();
        let mut token = None;
        let mut check = ListingCheck::default();
        let bad = |message: String| StoreError::Other {
            store: self.label(),
            message,
        };
        loop {
            let page = self.list_page(prefix, token, LIST_PAGE).await?;
            if let Some(problem) = page_problem(
                prefix,
                None,
                LIST_PAGE,
                page.objects.iter().map(|o| o.key.as_str()),
                None,
            ) {
                return Err(bad(problem));
            }
            check
                .page(
                    prefix,
                    page.objects.first().map(|o| o.key.as_str()),
                    page.objects.last().map(|o| o.key.as_str()),
                    page.objects.len(),
                    page.next_token.as_deref(),
                )
                .map_err(bad)?;
            all.extend(page.objects);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }

    /// An object's metadata.
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError>;

    /// Deletes an object (a missing one is not an error).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Starts writing `key`.
    async fn upload(
        &self,
        key: &str,
        size_hint: Option<u64>,
    ) -> Result<Box<dyn UploadStream>, StoreError>;

    /// Starts reading `key`, or a range of it.
    async fn download(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Box<dyn DownloadStream>, StoreError>;

    /// Writes `data` as `key` in chunks.
    async fn put(&self, key: &str, data: &[u8]) -> Result<ObjectInfo, StoreError> {
        let mut up = self.upload(key, Some(data.len() as u64)).await?;
        for chunk in data.chunks(4 << 20) {
            if let Err(e) = up.write(chunk).await {
                let _ = up.abort().await;
                return Err(e);
            }
        }
        up.finish().await
    }

    /// Reads `key` (or a range) into memory.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Vec<u8>, StoreError> {
        let mut down = self.download(key, range).await?;
        let mut out = Vec::new();
        loop {
            let chunk = down.read(4 << 20).await?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }
}

/// An object being written.
#[async_trait]
pub trait UploadStream: Send {
    /// Appends bytes.
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError>;
    /// Completes the object.
    async fn finish(self: Box<Self>) -> Result<ObjectInfo, StoreError>;
    /// Gives up; nothing stays behind.
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// An object being read.
#[async_trait]
pub trait DownloadStream: Send {
    /// Up to `max` bytes; empty at the end.
    async fn read(&mut self, max: u32) -> Result<Vec<u8>, StoreError>;
}

/// How long an opened store instance may serve calls (from its `open`).
/// Well below the hour that the providers' tokens last (Keystone's,
/// Google's, STS's), which the plugins renew themselves anyway; and a
/// rotated secret means a new [`PluginStore`], so new instances.
pub const POOL_MAX_AGE: Duration = Duration::from_secs(600);
/// The most calls one instance serves.
pub const POOL_MAX_CALLS: u32 = 10_000;
/// The most idle instances a store keeps.
pub const POOL_MAX_IDLE: usize = 2;
/// An instance whose linear memory grew past this (a large upload's
/// buffers, touched and so resident) is not kept: an idle instance
/// should cost the process little. (A small upload reserves its 16 MiB
/// part buffer but touches only what it wrote.)
pub const POOL_MAX_MEMORY: usize = 32 << 20;

/// Idle instances of one store, each with the store resource open, for
/// its next calls. An instance is kept only after a call that ended
/// without a trap, a limit, a timeout or a refused destination, for
/// [`POOL_MAX_AGE`] and [`POOL_MAX_CALLS`], and while its memory is at
/// most [`POOL_MAX_MEMORY`]; so a plugin that misbehaves once starts
/// afresh, and one instance never grows without bound. A store with a
/// directory (Local) keeps none: its directory is opened when an instance
/// starts, and a directory moved or replaced since must not be written
/// through an old handle (found by the sidecar's store-outage test).
struct Pool {
    idle: Mutex<Vec<Open>>,
    /// Whether instances are kept at all.
    enabled: bool,
}

impl Pool {
    /// An idle instance young enough to serve another call.
    fn take(&self) -> Option<Open> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(open) = idle.pop() {
            if open.fit() {
                return Some(open);
            }
        }
        None
    }

    /// Keeps `open` for a later call if it may serve one.
    fn give_back(&self, open: Open) {
        if !self.enabled || !open.fit() || !open.session.reusable() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL_MAX_IDLE
        {
            idle.push(open);
        }
    }
}

/// A store served by a plugin.
#[derive(Clone)]
pub struct PluginStore {
    provider: ProviderPlugin,
    config: StoreConfig,
    grants: Grants,
    label: String,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for PluginStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginStore")
            .field("plugin", &self.provider.name())
            .field("store", &self.label)
            .finish()
    }
}

/// A session with the store resource open.
struct Open {
    session: Session,
    instance: Provider,
    store: ResourceAny,
    /// When `open` ran.
    opened: Instant,
    /// Calls served.
    calls: u32,
}

impl Open {
    /// Whether the instance is young and small enough to serve a call.
    fn fit(&self) -> bool {
        self.opened.elapsed() < POOL_MAX_AGE
            && self.calls < POOL_MAX_CALLS
            && self.session.memory_bytes() <= POOL_MAX_MEMORY
    }
}

impl PluginStore {
    /// A store for `config`, served by `provider`.
    pub(crate) fn new(provider: ProviderPlugin, config: StoreConfig) -> Self {
        let grants = Grants::for_store(&config, provider.contract(&config.provider));
        let pooled = grants.dir.is_none();
        let label = format!(
            "{} store {:?} (plugin {})",
            config.provider,
            config.container,
            provider.name()
        );
        Self {
            provider,
            config,
            grants,
            label,
            pool: Arc::new(Pool {
                idle: Mutex::default(),
                enabled: pooled,
            }),
        }
    }

    /// The grants the plugin gets for this store.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    fn wit_config(&self) -> wit::StoreConfig {
        wit::StoreConfig {
            provider: self.config.provider.clone(),
            container: self.config.container.clone(),
            endpoint: self.config.endpoint.clone(),
            credentials: self
                .config
                .credentials
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    fn map_error(&self, session: &Session, e: wit::StoreError) -> StoreError {
        let refused = session.refused();
        let store = self.label.clone();
        if !refused.is_empty() {
            return StoreError::DestinationRefused {
                store,
                destinations: refused,
            };
        }
        let msg = |m: String| {
            self.grants
                .redactor
                .redact(truncate(&m, MAX_MESSAGE))
                .into_owned()
        };
        match e {
            wit::StoreError::NotFound(m) => StoreError::NotFound {
                store,
                message: msg(m),
            },
            wit::StoreError::AccessDenied(m) => StoreError::AccessDenied {
                store,
                message: msg(m),
            },
            wit::StoreError::NoSuchContainer(m) => StoreError::NoSuchContainer {
                store,
                message: msg(m),
            },
            wit::StoreError::Throttled(m) => StoreError::Throttled {
                store,
                message: msg(m),
            },
            wit::StoreError::InvalidConfig(m) => StoreError::InvalidConfig {
                store,
                message: msg(m),
            },
            wit::StoreError::Unavailable(m) => StoreError::Unavailable {
                store,
                message: msg(m),
            },
            wit::StoreError::Other(m) => StoreError::Other {
                store,
                message: msg(m),
            },
        }
    }

    /// An instance with the store open: an idle one of the pool, or a new
    /// one.
    async fn open(&self) -> Result<Open, StoreError> {
        if let Some(mut open) = self.pool.take() {
            open.calls += 1;
            return Ok(open);
        }
        let (mut session, instance) = self.provider.instantiate(&self.grants).await?;
        let config = self.wit_config();
        let opened = guarded!(&mut session, "store.open", |store| instance
            .druid_plugin_object_store()
            .store()
            .call_open(store, &config))?;
        match opened {
            Ok(store) => Ok(Open {
                session,
                instance,
                store,
                opened: Instant::now(),
                calls: 1,
            }),
            Err(e) => Err(self.map_error(&session, e)),
        }
    }

    /// A plugin's store error in host terms; the instance answered as the
    /// WIT says, so it may serve the store's next call.
    fn plugin_error(&self, open: Open, e: wit::StoreError) -> StoreError {
        let e = self.map_error(&open.session, e);
        self.pool.give_back(open);
        e
    }

    /// A listing page as the host takes it: within the return limits and
    /// the listing contract (docs/plugin-api.md).
    fn checked_page(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        max_keys: u32,
        page: wit::ListPage,
    ) -> Result<ListPage, StoreError> {
        let limit = self.provider.host().limits().max_return_bytes;
        self.check_size(
            "store.list",
            "a listing page (objects)",
            page.objects.len(),
            MAX_PAGE_OBJECTS,
        )?;
        let bytes: usize = page.objects.iter().map(|o| o.key.len() + 24).sum::<usize>()
            + page.next_token.as_ref().map_or(0, String::len);
        self.check_size("store.list", "a listing page", bytes, limit)?;
        if let Some(problem) = page_problem(
            prefix,
            page_token,
            max_keys,
            page.objects.iter().map(|o| o.key.as_str()),
            page.next_token.as_deref(),
        ) {
            return Err(StoreError::Other {
                store: self.label.clone(),
                message: problem,
            });
        }
        Ok(ListPage {
            objects: page.objects.into_iter().map(object).collect(),
            next_token: page.next_token,
        })
    }

    fn check_size(
        &self,
        call: &'static str,
        what: &'static str,
        size: usize,
        limit: usize,
    ) -> Result<(), StoreError> {
        if size > limit {
            return Err(StoreError::Plugin(Error::ReturnTooLarge {
                plugin: self.provider.name().to_string(),
                call,
                what,
                size,
                limit,
            }));
        }
        Ok(())
    }
}

fn object(o: wit::ObjectInfo) -> ObjectInfo {
    ObjectInfo {
        key: o.key,
        size: o.size,
        last_modified: o.last_modified,
    }
}

#[async_trait]
impl SnapshotStore for PluginStore {
    fn label(&self) -> String {
        self.label.clone()
    }

    async fn list_page(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let mut open = self.open().await?;
        let (instance, handle) = (&open.instance, open.store);
        let result = guarded!(&mut open.session, "store.list", |store| instance
            .druid_plugin_object_store()
            .store()
            .call_list(store, handle, prefix, page_token.as_deref(), max_keys))?;
        let page = match result {
            Ok(page) => page,
            Err(e) => return Err(self.plugin_error(open, e)),
        };
        // A page over a limit or against the contract drops the instance.
        let page = self.checked_page(prefix, page_token.as_deref(), max_keys, page)?;
        self.pool.give_back(open);
        Ok(page)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let mut open = self.open().await?;
        let (instance, handle) = (&open.instance, open.store);
        let result = guarded!(&mut open.session, "store.head", |store| instance
            .druid_plugin_object_store()
            .store()
            .call_head(store, handle, key))?;
        let info = match result {
            Ok(info) => info,
            Err(e) => return Err(self.plugin_error(open, e)),
        };
        self.check_size("store.head", "a key", info.key.len(), MAX_MESSAGE)?;
        self.pool.give_back(open);
        Ok(object(info))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut open = self.open().await?;
        let (instance, handle) = (&open.instance, open.store);
        let result = guarded!(&mut open.session, "store.delete", |store| instance
            .druid_plugin_object_store()
            .store()
            .call_delete(store, handle, key))?;
        match result {
            Ok(()) => {
                self.pool.give_back(open);
                Ok(())
            }
            Err(e) => Err(self.plugin_error(open, e)),
        }
    }

    async fn upload(
        &self,
        key: &str,
        size_hint: Option<u64>,
    ) -> Result<Box<dyn UploadStream>, StoreError> {
        let mut open = self.open().await?;
        let (instance, handle) = (&open.instance, open.store);
        let result = guarded!(&mut open.session, "store.upload", |store| instance
            .druid_plugin_object_store()
            .store()
            .call_upload(store, handle, key, size_hint))?;
        let upload = result.map_err(|e| self.map_error(&open.session, e))?;
        Ok(Box::new(PluginUpload {
            inner: Some(UploadSession {
                owner: self.clone(),
                open,
                upload,
                key: key.to_string(),
            }),
        }))
    }

    async fn download(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Box<dyn DownloadStream>, StoreError> {
        let mut open = self.open().await?;
        let (instance, handle) = (&open.instance, open.store);
        let range = range.map(|r| wit::ByteRange {
            start: r.start,
            length: r.length,
        });
        let result = guarded!(&mut open.session, "store.download", |store| instance
            .druid_plugin_object_store()
            .store()
            .call_download(store, handle, key, range))?;
        let download = result.map_err(|e| self.map_error(&open.session, e))?;
        Ok(Box::new(PluginDownload {
            owner: self.clone(),
            open,
            download,
        }))
    }
}

/// An upload: one plugin store for the whole object. Dropped before
/// `finish` or `abort` (a timeout around it, a cancelled task), it is
/// aborted in the background, so that no temporary file or multipart
/// upload stays behind when the plugin can still be reached.
struct PluginUpload {
    inner: Option<UploadSession>,
}

struct UploadSession {
    owner: PluginStore,
    open: Open,
    upload: ResourceAny,
    key: String,
}

impl UploadSession {
    async fn abort(&mut self) -> Result<(), StoreError> {
        let (instance, handle) = (&self.open.instance, self.upload);
        let result = guarded!(&mut self.open.session, "upload.abort", |store| instance
            .druid_plugin_object_store()
            .upload()
            .call_abort(store, handle))?;
        result.map_err(|e| self.owner.map_error(&self.open.session, e))
    }
}

impl PluginUpload {
    fn session(&mut self) -> Result<&mut UploadSession, StoreError> {
        // `finish` and `abort` consume the upload, so a session is always
        // there while it can be called.
        self.inner.as_mut().ok_or_else(|| StoreError::Other {
            store: String::new(),
            message: "the upload is already finished or aborted".into(),
        })
    }
}

impl Drop for PluginUpload {
    fn drop(&mut self) {
        let Some(mut session) = self.inner.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %session.key, "an unfinished upload was dropped outside a runtime; it cannot be aborted");
            return;
        };
        runtime.spawn(async move {
            match session.abort().await {
                Ok(()) => tracing::info!(key = %session.key, store = %session.owner.label, "an unfinished upload was aborted"),
                Err(e) => tracing::warn!(key = %session.key, store = %session.owner.label, error = %e, "an unfinished upload could not be aborted; the store may keep its parts until they are swept"),
            }
        });
    }
}

#[async_trait]
impl UploadStream for PluginUpload {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let this = self.session()?;
        let (instance, handle) = (&this.open.instance, this.upload);
        let result = guarded!(&mut this.open.session, "upload.write", |store| instance
            .druid_plugin_object_store()
            .upload()
            .call_write(store, handle, chunk))?;
        result.map_err(|e| this.owner.map_error(&this.open.session, e))
    }

    async fn finish(mut self: Box<Self>) -> Result<ObjectInfo, StoreError> {
        let this = self.session()?;
        let (instance, handle) = (&this.open.instance, this.upload);
        let result = guarded!(&mut this.open.session, "upload.finish", |store| instance
            .druid_plugin_object_store()
            .upload()
            .call_finish(store, handle));
        // Only a finished object needs no abort; a failed or interrupted
        // finish leaves the upload to the drop, which aborts it.
        let info = result?.map_err(|e| this.owner.map_error(&this.open.session, e))?;
        if let Some(mut session) = self.inner.take() {
            // The finished upload's resource goes; the instance may serve
            // the store's next call.
            let dropped = session
                .upload
                .resource_drop_async(&mut session.open.session.store)
                .await;
            if dropped.is_ok() {
                session.owner.pool.give_back(session.open);
            }
        }
        Ok(object(info))
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        let Some(mut session) = self.inner.take() else {
            return Ok(());
        };
        session.abort().await
    }
}

/// A download session.
struct PluginDownload {
    owner: PluginStore,
    open: Open,
    download: ResourceAny,
}

#[async_trait]
impl DownloadStream for PluginDownload {
    async fn read(&mut self, max: u32) -> Result<Vec<u8>, StoreError> {
        let (instance, handle) = (&self.open.instance, self.download);
        let result = guarded!(&mut self.open.session, "download.read", |store| instance
            .druid_plugin_object_store()
            .download()
            .call_read(store, handle, max))?;
        let chunk = result.map_err(|e| self.owner.map_error(&self.open.session, e))?;
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        self.owner.check_size(
            "download.read",
            "a chunk (more than asked for)",
            chunk.len(),
            limit,
        )?;
        Ok(chunk)
    }
}
