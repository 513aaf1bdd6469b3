//! The plugin host: runs druid plugins (WebAssembly components built against
//! the `druid:plugin` WIT package) in wasmtime, and gives the rest of the
//! host a typed API over them.
//!
//! - [`PluginHost`]: one engine per process, components compiled once and
//!   cached on disk, limits that are always on (a linear-memory cap, CPU time
//!   per call through epoch deadlines, a wall-clock timeout for calls waiting
//!   on I/O, bounded return sizes). A trap, a timeout or a limit hit is an
//!   error for that call, and the instance that hit it is dropped (a store's
//!   instance may serve its next calls only after one that ended well), so
//!   the host keeps serving.
//! - Capabilities ([`grants`]): a plugin may send HTTP only to its store's
//!   endpoint (or the provider's official one); no environment, sockets or
//!   files, except the `Local` store's directory. Credentials are read by the
//!   host from the mounted secret and handed to the plugin as configuration.
//! - [`Registry`]: the plugins of a directory plus built-in ones, by
//!   `storageProvider` value (with the upstream aliases).
//! - [`PluginStore`] and the [`SnapshotStore`] trait: list, head, delete,
//!   streamed upload and download, with errors in host terms. The sidecar and
//!   the operator never touch wasmtime types.

// Modules, from the bottom up: limits, listing, redact, config,
// contract, credentials, cache, grants, runtime, wiring, provider, store, compact,
// conformance, registry; each uses only those before it (the crate README says what
// each owns).
mod cache;
mod compact;
mod config;
pub mod conformance;
pub mod contract;
pub mod credentials;
pub mod grants;
mod limits;
mod listing;
mod provider;
pub mod redact;
mod registry;
mod runtime;
mod store;
pub mod wiring;

pub use cache::CompiledFrom;
pub use compact::{CompactJob, CompactionError, Compactor};
pub use config::{StoreConfig, canonical_provider, plain_name};
pub use contract::StoreContract;
pub use druid_etcd_db::{CompactOptions, CompactReport, SnapshotInfo};
pub use limits::{Limits, truncate};
pub use provider::ProviderPlugin;
pub use registry::{
    PluginKind, PluginSource, RefusedPlugin, RegisteredPlugin, Registry, RegistryOptions,
};
pub use runtime::lent::{BlobReader, BlobWriter};
pub use runtime::{Plugin, PluginHost};
pub use store::{
    ByteRange, DownloadStream, ListPage, ObjectInfo, PluginStore, SnapshotStore, StoreError,
    UploadStream,
};
pub use wiring::{
    CheckedWiring, SidecarConfig, SidecarVolume, VolumeSource, WiringError, WiringPolicy,
    WiringRequest,
};

use std::path::PathBuf;
use std::time::Duration;

/// The plugins built into this binary, as `(file stem, component)` pairs
/// for [`Registry::load`]: the shipped components found at build time in
/// `DRUID_EMBED_PLUGINS` (default: the workspace's `target/plugins`, which
/// `scripts/build-plugins.sh` fills). Empty when the build found none.
pub fn builtin_plugins() -> &'static [(&'static str, &'static [u8])] {
    BUILTIN_PLUGINS
}

static BUILTIN_PLUGINS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The WIT package version this host serves.
pub const API_VERSION: &str = "0.2.0";

/// Errors of the plugin host. Each names the plugin it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not be set up.
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(#[source] wasmtime::Error),
    /// The plugin file could not be read or is not a valid component.
    #[error("plugin {path}: cannot load component: {source}")]
    Load {
        /// The plugin file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: wasmtime::Error,
    },
    /// The plugins directory could not be read.
    #[error("plugins directory {path}: {source}")]
    PluginsDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The component does not fit the `druid:plugin` contract (missing
    /// exports, imports the host does not grant, another API version).
    #[error("plugin {plugin}: does not fit the druid:plugin contract: {source}")]
    Contract {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        #[source]
        source: wasmtime::Error,
    },
    /// The plugin was built for a WIT version this host does not serve.
    #[error(
        "plugin {plugin}: built for druid:plugin@{plugin_api}, this host serves \
         druid:plugin@{host_api} and loads plugins built for {}: rebuild the plugin against \
         a matching SDK",
        compatible_range()
    )]
    ApiVersion {
        /// The plugin.
        plugin: String,
        /// The API version the plugin reports.
        plugin_api: String,
        /// The API version of this host.
        host_api: &'static str,
    },
    /// Two plugins claim the same `storageProvider` value.
    #[error(
        "storage provider {provider:?} is claimed by two plugins, {first} and {second}: \
         remove one of them from the plugins directory"
    )]
    DuplicateProvider {
        /// The provider value.
        provider: String,
        /// The plugin registered first.
        first: String,
        /// The plugin that claimed it again.
        second: String,
    },
    /// A plugin names itself or a provider in a way the host cannot serve.
    #[error(
        "plugin {plugin:?} ({source_desc}) claims the {what} {name:?}, which {problem}: a \
         name is 1 to 63 letters, digits, '_' or '-', starting with a letter; rebuild the \
         plugin with a valid name"
    )]
    InvalidName {
        /// Why the name is not valid (`is empty`, ...).
        problem: &'static str,
        /// The plugin's name as it reports it.
        plugin: String,
        /// Where it was loaded from.
        source_desc: String,
        /// `plugin name` or `storage provider`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A provider's store contract breaks the host's rules; the provider
    /// is not served.
    #[error(
        "plugin {plugin}: the store contract of provider {provider:?} is refused: {problems}; \
         the provider is not served until the plugin is fixed (the plugin API reference, \
         store-contract, gives the rules)"
    )]
    InvalidContract {
        /// The plugin.
        plugin: String,
        /// The provider value.
        provider: String,
        /// What is wrong, one problem after another.
        problems: String,
    },
    /// No plugin serves the provider.
    #[error(
        "unknown storage provider {provider:?}: no plugin serves it (known: {known}){refused}; \
         fix store.provider or add a plugin for it to the plugins directory"
    )]
    UnknownProvider {
        /// The provider value asked for.
        provider: String,
        /// The providers that are served, comma separated.
        known: String,
        /// The refused plugin files whose providers are not known (they
        /// failed before describing themselves), as `; plugin files
        /// refused: <file>: <reason>`; empty when there are none.
        refused: String,
    },
    /// The provider's plugin file was refused when the registry loaded.
    #[error(
        "storage provider {provider:?} is claimed by the plugin file {}, which was refused: \
         {reason}; fix, rebuild or remove that file",
        file.display()
    )]
    PluginRefused {
        /// The provider value asked for.
        provider: String,
        /// The plugin file.
        file: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A plugin file has the name of a built-in plugin, and replacing
    /// built-in plugins is not allowed.
    #[error(
        "plugin file {} is named {plugin:?}, like the built-in plugin {plugin:?}: it would \
         replace the built-in one, which needs --plugins-override-builtin \
         (RegistryOptions::allow_builtin_override); the built-in plugin serves instead, \
         rename the plugin or allow the override",
        file.display()
    )]
    BuiltinOverride {
        /// The plugin's name.
        plugin: String,
        /// The plugin file.
        file: PathBuf,
    },
    /// The call ran past its CPU-time limit.
    #[error("plugin {plugin}: call `{call}` exceeded its CPU-time limit of {limit:?}")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The limit in force.
        limit: Duration,
    },
    /// The call waited longer than its wall-clock limit (e.g. on I/O).
    #[error("plugin {plugin}: call `{call}` did not finish within {limit:?} and was cancelled")]
    WallTimeout {
        /// The plugin.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The limit in force.
        limit: Duration,
    },
    /// The plugin asked for more linear memory than its cap.
    #[error(
        "plugin {plugin}: call `{call}` hit the memory limit: asked for {requested} bytes, \
         the cap is {limit} bytes (raise the plugin memory limit if this plugin needs more)"
    )]
    MemoryLimit {
        /// The plugin.
        plugin: String,
        /// The export called (or `instantiate`).
        call: &'static str,
        /// The memory size asked for.
        requested: usize,
        /// The cap in force.
        limit: usize,
    },
    /// The plugin returned more than the host accepts.
    #[error(
        "plugin {plugin}: call `{call}` returned {what} of {size} bytes, over the limit of {limit} bytes"
    )]
    ReturnTooLarge {
        /// The plugin.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The plugin trapped (a panic, an unreachable instruction, ...). The
    /// message names the trap (`wasm trap: unreachable`); the wasm
    /// backtrace is in the source chain only, so a log that prints the
    /// chain shows it once. A panic's own message reaches the log through
    /// the SDK's panic hook, as the plugin's error line.
    #[error("plugin {plugin}: call `{call}` trapped: {}", source.root_cause())]
    Trap {
        /// The plugin.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The trap.
        #[source]
        source: wasmtime::Error,
    },
    /// The store's grants could not be set up (e.g. its directory).
    #[error("plugin {plugin}: cannot grant {what}: {source}")]
    Grant {
        /// The plugin.
        plugin: String,
        /// What was to be granted.
        what: String,
        /// What went wrong.
        #[source]
        source: wasmtime::Error,
    },
}

/// What a plugin says about itself through `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The WIT package version it was built against.
    pub api_version: String,
    /// The `storageProvider` values it serves.
    pub providers: Vec<String>,
}

/// The WIT versions whose plugins this host loads, e.g. `0.2.0 to 0.2.0`
/// (0.x: the same minor version) or `1.0.0 to 1.4.2`.
pub fn compatible_range() -> String {
    let mut parts = API_VERSION.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}.0 to {API_VERSION}"),
        (Some(major), _) => format!("{major}.0.0 to {API_VERSION}"),
        _ => API_VERSION.to_string(),
    }
}

/// Whether a plugin built against `plugin_api` can run on this host:
/// the same major version, or for 0.x the same minor version, and not
/// newer than the host.
pub fn api_compatible(plugin_api: &str) -> bool {
    fn parse(v: &str) -> Option<(u64, u64, u64)> {
        let mut it = v.trim().splitn(3, '.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next()?.split(['-', '+']).next()?.parse().ok()?;
        Some((major, minor, patch))
    }
    let (Some(p), Some(h)) = (parse(plugin_api), parse(API_VERSION)) else {
        return false;
    };
    if p.0 != h.0 || (h.0 == 0 && p.1 != h.1) {
        return false;
    }
    (p.1, p.2) <= (h.1, h.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_checked_by_semver() {
        assert!(api_compatible(API_VERSION));
        assert!(api_compatible("0.2.0"));
        assert!(!api_compatible("0.1.0"), "0.x minor bumps are breaking");
        assert!(!api_compatible("0.3.0"), "0.x minor bumps are breaking");
        assert!(!api_compatible("1.2.0"));
        assert!(!api_compatible("0.2.99"), "newer than the host");
        assert!(!api_compatible("garbage"));
    }
}
