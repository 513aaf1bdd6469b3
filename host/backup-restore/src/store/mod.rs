//! The snapshot store: the upstream bucket layout on top of a provider
//! plugin. Every byte goes through the plugin host; this module only knows
//! keys, compression and streaming.

pub mod copy;
mod listing;
pub mod local_dir;
pub mod rotating;

pub use listing::{Cutoff, Listing, SnapshotSet};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use druid_plugin_host::{Limits, PluginHost, Registry};
use druid_plugin_host::{SnapshotStore, StoreConfig, StoreContract, StoreError};
use tokio::sync::mpsc;

use crate::config::StoreArgs;
use crate::formats::compression;
use crate::formats::names::{Chunk, Snapshot, SnapshotKind, StoreObject};

/// The prefix of a copy source's environment variables (upstream's).
pub const SOURCE_ENV_PREFIX: &str = "SOURCE_";

/// Size of the pieces streamed to and from the store.
const PIECE: usize = 4 << 20;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plugin host failed (loading plugins, unknown provider).
    #[error(transparent)]
    Plugin(#[from] druid_plugin_host::Error),
    /// The store is configured wrongly.
    #[error("{0}")]
    Config(String),
    /// A local file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A full snapshot's SHA-256 trailer does not match: it is corrupt or
    /// truncated, and nothing was done with it.
    #[error(
        "full snapshot {key} is corrupt or truncated and was NOT used: {source}; \
         delete or exclude it so the previous one is used, or restore from another copy"
    )]
    CorruptFull {
        /// The object.
        key: String,
        /// What the check found.
        #[source]
        source: crate::formats::full::FileCheckError,
    },
    /// Compressing or decompressing failed (corrupt object).
    #[error("{key}: {source}")]
    Codec {
        /// The object.
        key: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Reads a store's credentials as its provider's store contract says
/// (the plugin declares it; the host keeps no table of providers): the
/// first of the contract's credential variables that is set names the
/// mounted Secret (a directory, every key) or a JSON file; then its value
/// variables (upstream's `ECS_*`) override single keys. Without any, a
/// provider that requires credentials is refused, naming the variables.
/// With `env_prefix` (`SOURCE_` for a copy's source) every variable is
/// looked up with the prefix.
fn read_credentials(
    provider: &str,
    contract: &StoreContract,
    env_prefix: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let env = |name: &str| std::env::var_os(format!("{env_prefix}{name}"));
    let credentials = read_credentials_with(provider, contract, env)?;
    if let Some(variable) = contract
        .credential_variables
        .iter()
        .find(|v| env(v).is_some())
    {
        tracing::info!(provider, variable = %format!("{env_prefix}{variable}"), keys = credentials.len(), "store credentials read");
    }
    Ok(credentials)
}

/// [`read_credentials`] with the environment given as a lookup.
fn read_credentials_with(
    provider: &str,
    contract: &StoreContract,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<BTreeMap<String, String>, Error> {
    let mut credentials = BTreeMap::new();
    let mut found = false;
    for name in &contract.credential_variables {
        if let Some(path) = env(name) {
            let path = PathBuf::from(path);
            credentials = druid_plugin_host::credentials::read(&path).map_err(|e| {
                Error::Config(format!(
                    "{e} (from ${name}; mount the store secret there or fix the variable)"
                ))
            })?;
            found = true;
            break;
        }
    }
    for (var, key) in &contract.credential_value_variables {
        if let Some(v) = env(var) {
            // A `*_FILE` variable names a file holding the value (a
            // projected token, renewed in place by the kubelet).
            let value = if var.ends_with("_FILE") {
                druid_plugin_host::credentials::read_value_file(Path::new(&v)).map_err(|e| {
                    Error::Config(format!(
                        "{e} (from ${var}; mount the token there or fix the variable)"
                    ))
                })?
            } else {
                v.to_string_lossy().into_owned()
            };
            credentials.remove(var);
            credentials.insert(key.clone(), value);
            found = true;
        }
    }
    if found || contract.credential_variables.is_empty() {
        return Ok(credentials);
    }
    let wanted = contract
        .credential_variables
        .iter()
        .map(|v| format!("${v}"))
        .collect::<Vec<_>>()
        .join(" or ");
    if contract.credentials_required {
        return Err(Error::Config(format!(
            "no credentials for provider {provider}: set {wanted} to the mounted store secret \
             (a directory of key files, or for a _JSON variable a JSON file); the provider's \
             plugin declares these variables"
        )));
    }
    tracing::info!(provider, variables = %wanted, "no store credentials: none of the provider's credential variables is set");
    Ok(credentials)
}

/// Credential variables set in the environment that `contract` does not
/// declare: likely meant for this store, and ignored.
fn undeclared_credential_variables(
    contract: &StoreContract,
    names: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<String> {
    names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| {
            druid_plugin_host::contract::credentials_variable_kind(n).is_some()
                && !contract.credential_variables.contains(n)
        })
        .collect()
}

/// Builds the plugin registry: the built-in plugins plus `--plugins-dir`.
pub async fn registry(args: &StoreArgs) -> Result<Arc<Registry>, Error> {
    let mut host = PluginHost::new(Limits::default())?;
    if let Some(dir) = &args.plugin_cache_dir {
        host = host.with_component_cache(dir);
    }
    Ok(Arc::new(
        Registry::load_with(
            Arc::new(host),
            args.plugins_dir.as_deref(),
            druid_plugin_host::builtin_plugins(),
            &druid_plugin_host::RegistryOptions {
                allow_builtin_override: args.plugins_override_builtin,
            },
        )
        .await?,
    ))
}

/// The snapshot store of one Etcd: a provider plugin's store plus the
/// store prefix.
#[derive(Clone)]
pub struct Snapstore {
    store: Arc<dyn SnapshotStore>,
    prefix: String,
    label: String,
    registry: Option<Arc<Registry>>,
}

impl std::fmt::Debug for Snapstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

impl Snapstore {
    /// A store on top of any [`SnapshotStore`], below `prefix`.
    pub fn new(store: Arc<dyn SnapshotStore>, prefix: &str, label: String) -> Self {
        Snapstore {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            label,
            registry: None,
        }
    }

    /// Loads the provider plugins (the built-in ones plus `--plugins-dir`)
    /// and opens the store the flags configure with them: how the sidecar
    /// and each of its jobs open their store.
    pub async fn connect(args: &StoreArgs) -> Result<Self, Error> {
        let registry = registry(args).await?;
        Self::open(args, &registry).await
    }

    /// Opens the store the flags configure, through its provider plugin
    /// in an already loaded registry.
    pub async fn open(args: &StoreArgs, registry: &Arc<Registry>) -> Result<Self, Error> {
        Self::open_with_env(args, registry, "").await
    }

    /// As [`Snapstore::open`], reading the environment (credentials,
    /// `LOCAL_STORE_ROOT`) with `env_prefix` before each variable's name:
    /// `SOURCE_` for a copy's source, as upstream's.
    pub async fn open_with_env(
        args: &StoreArgs,
        registry: &Arc<Registry>,
        env_prefix: &'static str,
    ) -> Result<Self, Error> {
        if !args.has_store() {
            return Err(Error::Config("no --storage-provider configured".into()));
        }
        let local = druid_plugin_host::canonical_provider(&args.storage_provider) == "Local";
        let container = if args.store_container.is_empty() && local {
            "default.bkp".to_string()
        } else {
            args.store_container.clone()
        };
        if container.is_empty() {
            return Err(Error::Config(
                "no store container: set --store-container or $STORAGE_CONTAINER".into(),
            ));
        }
        if local && !druid_plugin_host::plain_name(&container) {
            return Err(Error::Config(format!(
                "Local store container {container:?} is not a plain directory name: use letters, \
                 digits, '.', '_' and '-', not starting with '.'"
            )));
        }
        let local_root = local.then(|| {
            std::env::var_os(format!("{env_prefix}LOCAL_STORE_ROOT"))
                .or_else(|| std::env::var_os("LOCAL_STORE_ROOT"))
                .or_else(|| std::env::var_os("HOME"))
                .map_or_else(|| PathBuf::from("/"), PathBuf::from)
        });
        if let Some(root) = &local_root {
            // As the Go sidecar: a Local store's directory that does not
            // exist yet is created (the plugin is granted only an existing
            // directory, and would answer "no such container" forever).
            let dir = root.join(&container);
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    what: "cannot create the Local store directory",
                    path: dir.clone(),
                    source,
                })?;
                tracing::info!(directory = %dir.display(), "created the Local store directory");
            }
        }
        let contract = registry.contract(&args.storage_provider)?;
        let ours = std::env::vars_os()
            .filter_map(|(n, _)| n.into_string().ok())
            // A copy's source variables (`SOURCE_*`) are the source's.
            .filter(|n| !env_prefix.is_empty() || !n.starts_with(SOURCE_ENV_PREFIX))
            .filter_map(|n| n.strip_prefix(env_prefix).map(std::ffi::OsString::from));
        for ignored in undeclared_credential_variables(contract, ours) {
            tracing::warn!(
                provider = %args.storage_provider,
                variable = %ignored,
                reads = ?contract.credential_variables,
                "a credentials variable is set that this store's provider does not read: it is ignored"
            );
        }
        let config = StoreConfig {
            provider: args.storage_provider.clone(),
            container: container.clone(),
            prefix: args.store_prefix.clone(),
            endpoint: args.store_endpoint_override.clone(),
            credentials: read_credentials(&args.storage_provider, contract, env_prefix)?,
            local_root,
        };
        // The credentials follow the mounted Secret (rotated keys, renewed
        // tokens) for as long as the process runs.
        let (provider, watched) = (args.storage_provider.clone(), contract.clone());
        let store = rotating::RotatingStore::new(
            Arc::clone(registry),
            config,
            Box::new(move || {
                read_credentials_with(&provider, &watched, |name| {
                    std::env::var_os(format!("{env_prefix}{name}"))
                })
            }),
            rotating::RECHECK,
        )?;
        let label = format!(
            "{} store {container}/{}",
            args.storage_provider, args.store_prefix
        );
        let mut snapstore = Self::new(Arc::new(store), &args.store_prefix, label);
        snapstore.registry = Some(registry.clone());
        Ok(snapstore)
    }

    /// The plugins the store was opened with (for the compactor).
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.as_ref()
    }

    /// The store prefix (without `v2`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn list_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// Lists every snapshot and chunk below the prefix (both layouts).
    /// Keys that are not snapshots are logged and skipped.
    pub async fn list(&self) -> Result<Listing, Error> {
        let base = self.list_prefix();
        let objects = self.store.list(&base).await?;
        let mut listing = Listing::default();
        for o in objects {
            let relative = o.key.strip_prefix(&base).unwrap_or(&o.key);
            if !(relative.starts_with("v2/") || relative.starts_with("v1/")) {
                continue;
            }
            match StoreObject::parse(relative) {
                Ok(StoreObject::Snapshot(s)) => {
                    listing.sizes.insert(s.name(), o.size);
                    listing.snapshots.push(s);
                }
                Ok(StoreObject::Chunk(c)) => listing.chunks.push(c),
                Err(e) => {
                    tracing::warn!(key = %o.key, error = %e, "ignoring an object that is not a snapshot");
                    listing.ignored.push(o.key);
                }
            }
        }
        listing.snapshots.sort();
        Ok(listing)
    }

    /// The key of a snapshot in this store.
    pub fn key(&self, snapshot: &Snapshot) -> String {
        snapshot.stored_key(&self.prefix)
    }

    /// Uploads `snapshot` from an uncompressed file, compressing on the way
    /// with the snapshot's compression. Memory stays at a few pieces
    /// whatever the file size. A failed upload is aborted, so nothing stays
    /// behind under the snapshot's name.
    pub async fn upload_file(&self, snapshot: &Snapshot, path: &Path) -> Result<u64, Error> {
        let key = self.key(snapshot);
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            what: "cannot open",
            path: path.to_path_buf(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).ok();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(2);
        let compression = snapshot.compression;
        let producer = tokio::task::spawn_blocking(move || {
            let writer = ChannelWriter {
                tx,
                buf: Vec::with_capacity(PIECE),
            };
            let mut writer = std::io::BufWriter::with_capacity(64 << 10, writer);
            let n = compression::compress_stream(
                compression,
                std::io::BufReader::with_capacity(1 << 20, file),
                &mut writer,
            )?;
            let inner = writer.into_inner().map_err(|e| e.into_error())?;
            inner.finish()?;
            Ok::<u64, std::io::Error>(n)
        });
        let mut up = self.store.upload(&key, size).await?;
        let mut written = 0u64;
        while let Some(piece) = rx.recv().await {
            written += piece.len() as u64;
            if let Err(e) = up.write(&piece).await {
                drop(rx);
                let _ = up.abort().await;
                let _ = producer.await;
                return Err(e.into());
            }
        }
        match producer.await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => {
                let _ = up.abort().await;
                return Err(Error::Io {
                    what: "cannot read or compress",
                    path: path.to_path_buf(),
                    source,
                });
            }
            Err(join) => {
                let _ = up.abort().await;
                return Err(Error::Config(format!("compression task failed: {join}")));
            }
        }
        up.finish().await?;
        Ok(written)
    }

    /// Uploads a small snapshot (a delta) that is already encoded.
    pub async fn upload_bytes(&self, snapshot: &Snapshot, data: &[u8]) -> Result<(), Error> {
        self.store.put(&self.key(snapshot), data).await?;
        Ok(())
    }

    /// Downloads the full snapshot `full` decompressed into `path` and
    /// checks its SHA-256 trailer (unless the user skips the check): a
    /// corrupt or truncated snapshot is [`Error::CorruptFull`], naming it.
    pub async fn download_full(
        &self,
        full: &Snapshot,
        path: &Path,
        skip_hash_check: bool,
    ) -> Result<(), Error> {
        self.download_to_file(full, path).await?;
        if !skip_hash_check {
            crate::formats::full::check_file(path).map_err(|source| Error::CorruptFull {
                key: self.key(full),
                source,
            })?;
        }
        Ok(())
    }

    /// Downloads a snapshot into `path`, decompressed, streaming; returns
    /// the decompressed size.
    pub async fn download_to_file(&self, snapshot: &Snapshot, path: &Path) -> Result<u64, Error> {
        let key = self.key(snapshot);
        let mut down = self.store.download(&key, None).await?;
        let file = std::fs::File::create(path).map_err(|source| Error::Io {
            what: "cannot create",
            path: path.to_path_buf(),
            source,
        })?;
        // A tokio channel: the async side awaits room instead of blocking
        // its worker thread while the decoder catches up.
        let (tx, rx) = mpsc::channel::<Vec<u8>>(2);
        let compression = snapshot.compression;
        // A delta is bounded (a decompression bomb stops there); a full
        // snapshot is as large as the database it holds.
        let max = match snapshot.kind {
            SnapshotKind::Incr => compression::MAX_DECODED_DELTA,
            SnapshotKind::Full => u64::MAX,
        };
        let consumer = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            };
            let mut out =
                compression::Bounded::new(std::io::BufWriter::with_capacity(1 << 20, file), max);
            let n = compression::decompress_stream(compression, reader, &mut out)?;
            let file = out.into_inner().into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok::<u64, std::io::Error>(n)
        });
        let mut failed = None;
        loop {
            match down.read(PIECE as u32).await {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        break; // the consumer failed; its error wins
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let result = consumer.await;
        if let Some(e) = failed {
            return Err(e.into());
        }
        match result {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(source)) => Err(Error::Codec { key, source }),
            Err(join) => Err(Error::Config(format!("decompression task failed: {join}"))),
        }
    }

    /// Downloads a snapshot into memory, decompressed (for deltas, which
    /// are bounded by the delta memory limit).
    pub async fn download_bytes(&self, snapshot: &Snapshot) -> Result<Vec<u8>, Error> {
        let key = self.key(snapshot);
        let raw = self.store.get(&key, None).await?;
        compression::decompress(snapshot.compression, &raw)
            .map_err(|source| Error::Codec { key, source })
    }

    /// Downloads a snapshot's stored (compressed) bytes.
    pub async fn download_raw(&self, snapshot: &Snapshot) -> Result<Vec<u8>, Error> {
        Ok(self.store.get(&self.key(snapshot), None).await?)
    }

    /// Deletes a snapshot.
    pub async fn delete(&self, snapshot: &Snapshot) -> Result<(), Error> {
        self.store.delete(&self.key(snapshot)).await?;
        Ok(())
    }

    /// Deletes a chunk object.
    pub async fn delete_chunk(&self, chunk: &Chunk) -> Result<(), Error> {
        self.store.delete(&chunk.stored_key(&self.prefix)).await?;
        Ok(())
    }
}

/// Sends what is written as pieces over a channel (blocking side).
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(piece)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stopped"))
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads pieces received over a channel (blocking side).
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(piece) => {
                    self.buf = piece;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
    use super::*;

    /// ECS's contract as the S3 plugin declares it.
    fn ecs_contract() -> StoreContract {
        StoreContract {
            credential_variables: vec![
                "ECS_APPLICATION_CREDENTIALS_JSON".into(),
                "ECS_APPLICATION_CREDENTIALS".into(),
            ],
            credentials_required: false,
            credential_value_variables: vec![
                ("ECS_ENDPOINT".into(), "endpoint".into()),
                ("ECS_ACCESS_KEY_ID".into(), "accessKeyID".into()),
            ],
            ..StoreContract::default()
        }
    }

    #[test]
    fn a_file_variable_passes_the_files_content_read_afresh_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "header.claims.signature\n").unwrap();
        let contract = StoreContract {
            credential_variables: vec!["AWS_APPLICATION_CREDENTIALS".into()],
            credential_value_variables: vec![
                ("AWS_ROLE_ARN".into(), "AWS_ROLE_ARN".into()),
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                    "AWS_WEB_IDENTITY_TOKEN".into(),
                ),
            ],
            ..StoreContract::default()
        };
        let path = token.as_os_str().to_owned();
        let env = |n: &str| match n {
            "AWS_ROLE_ARN" => Some("arn:aws:iam::1:role/r".into()),
            "AWS_WEB_IDENTITY_TOKEN_FILE" => Some(path.clone()),
            _ => None,
        };
        let c = read_credentials_with("S3", &contract, env).unwrap();
        assert_eq!(c["AWS_WEB_IDENTITY_TOKEN"], "header.claims.signature");
        assert_eq!(c["AWS_ROLE_ARN"], "arn:aws:iam::1:role/r");
        assert!(!c.contains_key("AWS_WEB_IDENTITY_TOKEN_FILE"));
        // Renewed in place: the next read has the new token.
        std::fs::write(&token, "header.claims.renewed").unwrap();
        let c = read_credentials_with("S3", &contract, env).unwrap();
        assert_eq!(c["AWS_WEB_IDENTITY_TOKEN"], "header.claims.renewed");
        // A file that is not there names the variable.
        std::fs::remove_file(&token).unwrap();
        let e = read_credentials_with("S3", &contract, env).unwrap_err();
        assert!(
            e.to_string().contains("$AWS_WEB_IDENTITY_TOKEN_FILE"),
            "{e}"
        );
    }

    #[test]
    fn credentials_come_from_the_contracts_variables_and_value_variables_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("endpoint"), "https://ecs.example:9021").unwrap();
        std::fs::write(dir.path().join("ECS_ACCESS_KEY_ID"), "from-file").unwrap();
        std::fs::write(dir.path().join("secretAccessKey"), "s3cr3t\n").unwrap();
        let mounted = dir.path().as_os_str().to_owned();
        let contract = ecs_contract();
        // As the operator wires it: the Secret mounted, its path in
        // ECS_APPLICATION_CREDENTIALS; every key is passed.
        let c = read_credentials_with("ECS", &contract, |n| {
            (n == "ECS_APPLICATION_CREDENTIALS").then(|| mounted.clone())
        })
        .unwrap();
        assert_eq!(c["endpoint"], "https://ecs.example:9021");
        assert_eq!(c["ECS_ACCESS_KEY_ID"], "from-file");
        assert_eq!(c["secretAccessKey"], "s3cr3t");
        // A value variable overrides the file's key.
        let c = read_credentials_with("ECS", &contract, |n| match n {
            "ECS_APPLICATION_CREDENTIALS" => Some(mounted.clone()),
            "ECS_ACCESS_KEY_ID" => Some("from-env".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c["accessKeyID"], "from-env");
        assert!(!c.contains_key("ECS_ACCESS_KEY_ID"));
        // Neither, and not required: empty (the plugin names missing keys).
        assert!(
            read_credentials_with("ECS", &contract, |_| None)
                .unwrap()
                .is_empty()
        );
        // Any provider name: the contract, not the name, says where.
        let acme = StoreContract {
            credential_variables: vec!["ACME_APPLICATION_CREDENTIALS".into()],
            credentials_required: true,
            ..StoreContract::default()
        };
        let c = read_credentials_with("acme-store", &acme, |n| {
            (n == "ACME_APPLICATION_CREDENTIALS").then(|| mounted.clone())
        })
        .unwrap();
        assert_eq!(c["secretAccessKey"], "s3cr3t");
        // Required and missing: refused, naming the variable.
        let e = read_credentials_with("acme-store", &acme, |n| {
            (n == "ACME_STORE_APPLICATION_CREDENTIALS").then(|| mounted.clone())
        })
        .unwrap_err();
        assert!(
            e.to_string().contains(
                "no credentials for provider acme-store: set $ACME_APPLICATION_CREDENTIALS"
            ),
            "{e}"
        );
        // No variables declared (Local): nothing read, no error.
        assert!(
            read_credentials_with("Local", &StoreContract::default(), |_| Some(
                mounted.clone()
            ))
            .unwrap()
            .is_empty()
        );
        // A credentials variable the contract does not declare is named.
        let undeclared = undeclared_credential_variables(
            &acme,
            [
                "ACME_STORE_APPLICATION_CREDENTIALS",
                "ACME_APPLICATION_CREDENTIALS",
                "PATH",
            ]
            .into_iter()
            .map(std::ffi::OsString::from),
        );
        assert_eq!(undeclared, vec!["ACME_STORE_APPLICATION_CREDENTIALS"]);
    }
}
