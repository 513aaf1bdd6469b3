//! A store whose credentials follow the mounted Secret. Kubernetes rewrites
//! a Secret volume when the Secret changes, and a projected or requested
//! token is renewed before it expires; the sidecar runs for months. Like
//! the Go sidecar (which compares the files' modification times before each
//! snapshot), the store re-reads its credentials before a request when
//! [`RECHECK`] has passed since the last read, and when they changed it
//! opens the store again with them. Requests under way keep the store they
//! started with. Credentials that cannot be read keep the previous ones in
//! use (logged once per distinct failure).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use druid_plugin_host::{
    ByteRange, DownloadStream, ListPage, ObjectInfo, Registry, SnapshotStore, StoreConfig,
    StoreError, UploadStream,
};

use super::Error;

/// How often, at most, the credentials are read again.
pub const RECHECK: Duration = Duration::from_secs(10);

/// Reads the store's credentials afresh.
pub type Reread = Box<dyn Fn() -> Result<BTreeMap<String, String>, Error> + Send + Sync>;

struct State {
    store: Arc<dyn SnapshotStore>,
    credentials: BTreeMap<String, String>,
    checked: Instant,
    last_failure: Option<String>,
}

/// A store opened again whenever its credentials change.
pub struct RotatingStore {
    registry: Arc<Registry>,
    config: StoreConfig,
    reread: Reread,
    every: Duration,
    state: Mutex<State>,
}

impl RotatingStore {
    /// The store of `config` (opened through `registry`), whose credentials
    /// `reread` reads again every `every` at most.
    pub fn new(
        registry: Arc<Registry>,
        config: StoreConfig,
        reread: Reread,
        every: Duration,
    ) -> Result<Self, Error> {
        let store: Arc<dyn SnapshotStore> = Arc::new(registry.store(config.clone())?);
        Ok(Self {
            state: Mutex::new(State {
                store,
                credentials: config.credentials.clone(),
                checked: Instant::now(),
                last_failure: None,
            }),
            registry,
            config,
            reread,
            every,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The store for the next request, opened again first if the
    /// credentials changed.
    fn current(&self) -> Arc<dyn SnapshotStore> {
        let mut state = self.lock();
        if state.checked.elapsed() < self.every {
            return Arc::clone(&state.store);
        }
        state.checked = Instant::now();
        let failure = match (self.reread)() {
            Ok(credentials) if credentials == state.credentials => None,
            Ok(credentials) => {
                let mut config = self.config.clone();
                config.credentials = credentials.clone();
                match self.registry.store(config) {
                    Ok(store) => {
                        let changed: Vec<&String> = credentials
                            .iter()
                            .filter(|(k, v)| state.credentials.get(*k) != Some(*v))
                            .map(|(k, _)| k)
                            .chain(
                                state
                                    .credentials
                                    .keys()
                                    .filter(|k| !credentials.contains_key(*k)),
                            )
                            .collect();
                        tracing::info!(
                            store = %self.config.provider,
                            keys = ?changed,
                            "the store credentials changed: the store is opened again with them"
                        );
                        state.store = Arc::new(store);
                        state.credentials = credentials;
                        None
                    }
                    Err(e) => Some(format!(
                        "the store credentials changed, but the store cannot be opened with \
                         them: {e}"
                    )),
                }
            }
            Err(e) => Some(format!("cannot read the store credentials again: {e}")),
        };
        if failure != state.last_failure {
            if let Some(f) = &failure {
                tracing::warn!(
                    store = %self.config.provider,
                    error = %f,
                    "the previous store credentials stay in use"
                );
            }
            state.last_failure = failure;
        }
        Arc::clone(&state.store)
    }
}

#[async_trait]
impl SnapshotStore for RotatingStore {
    async fn list_page(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        self.current().list_page(prefix, page_token, max_keys).await
    }

    fn label(&self) -> String {
        self.lock().store.label()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.current().list(prefix).await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.current().head(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.current().delete(key).await
    }

    async fn upload(
        &self,
        key: &str,
        size_hint: Option<u64>,
    ) -> Result<Box<dyn UploadStream>, StoreError> {
        self.current().upload(key, size_hint).await
    }

    async fn download(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Box<dyn DownloadStream>, StoreError> {
        self.current().download(key, range).await
    }
}
