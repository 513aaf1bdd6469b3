//! The plugin host: runs druid plugins (WebAssembly components built against
//! the `druid:plugin` WIT package) in wasmtime.
//!
//! Limits are always on: every store has a linear-memory cap, and every call
//! has a CPU-time deadline enforced through epoch interruption. A trap, a
//! deadline or a limit hit is an error for that call, never a crash of the
//! host; the next call gets a fresh store.
//!
//! The rest of the host uses the typed API here and never touches wasmtime
//! types.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

#[allow(missing_docs, clippy::all)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "druid:plugin/provider",
    });
}

use bindings::druid::plugin::logging;

mod cache;
pub use cache::CompiledFrom;

/// How often the epoch ticker advances the engine's epoch.
const EPOCH_TICK: Duration = Duration::from_millis(10);

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
    /// The component does not fit the `druid:plugin` contract (missing
    /// exports, imports the host does not grant).
    #[error("plugin {plugin}: does not fit the druid:plugin contract: {source}")]
    Contract {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        #[source]
        source: wasmtime::Error,
    },
    /// The call ran past its CPU-time deadline.
    #[error("plugin {plugin}: call `{call}` exceeded its CPU-time limit of {limit:?}")]
    Timeout {
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
    /// The plugin trapped (a panic, an unreachable instruction, ...).
    #[error("plugin {plugin}: call `{call}` trapped: {source}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The trap.
        #[source]
        source: wasmtime::Error,
    },
}

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Cap on a plugin instance's linear memory, in bytes.
    pub memory_bytes: usize,
    /// CPU time one call may take before it is interrupted.
    pub call_cpu_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            call_cpu_time: Duration::from_secs(10),
        }
    }
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

/// Advances the engine's epoch so that deadlines fire; stops on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The state a plugin's store holds: WASI with nothing granted, the
/// resource table, the limits and the plugin's name for its log lines.
struct HostState {
    plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
}

/// wasmtime's store limits, remembering a denied memory growth so that the
/// error can name the limit instead of a bare trap.
struct MemoryCap {
    inner: StoreLimits,
    denied: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let result = self.inner.memory_growing(current, desired, maximum);
        if !matches!(result, Ok(true)) {
            self.denied = Some(desired);
        }
        result
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl logging::Host for HostState {
    fn log(&mut self, level: logging::Level, message: String) {
        let plugin = self.plugin.as_str();
        match level {
            logging::Level::Trace => tracing::trace!(plugin, "{message}"),
            logging::Level::Debug => tracing::debug!(plugin, "{message}"),
            logging::Level::Info => tracing::info!(plugin, "{message}"),
            logging::Level::Warn => tracing::warn!(plugin, "{message}"),
            logging::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// One wasmtime engine with its limits; load plugins through it.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache: Option<cache::ComponentCache>,
    _ticker: EpochTicker,
}

/// A compiled plugin component, ready to be called.
pub struct Plugin {
    name: String,
    component: Component,
    compiled_from: CompiledFrom,
}

impl Plugin {
    /// Where the plugin's machine code came from (cache or compiler).
    pub fn compiled_from(&self) -> CompiledFrom {
        self.compiled_from
    }

    /// The plugin's name (its file name until `describe` is called).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl PluginHost {
    /// Creates the engine (one per process is intended) with `limits`.
    pub fn new(limits: Limits) -> Result<Self, Error> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(Error::Engine)?;
        let mut linker = Linker::new(&engine);
        // WASI is linked with a context that grants nothing (no env, args,
        // preopens, sockets); a std-built guest needs its interfaces to link.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(Error::Engine)?;
        logging::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(Error::Engine)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            limits,
            cache: None,
            _ticker: ticker,
        })
    }

    /// Keeps precompiled components in `dir` (created when needed), so a
    /// plugin is compiled once per content and engine, not once per start.
    pub fn with_component_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(cache::ComponentCache::new(dir.into()));
        self
    }

    /// Where the cache keeps the compiled form of `wasm`, if a cache is set.
    pub fn cache_entry(&self, wasm: &[u8]) -> Option<PathBuf> {
        self.cache.as_ref().map(|c| c.path(&self.engine, wasm))
    }

    /// Loads and compiles the component in `path`.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, Error> {
        let load_error = |source| Error::Load {
            path: path.to_path_buf(),
            source,
        };
        let wasm = std::fs::read(path).map_err(|e| load_error(wasmtime::Error::from(e)))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (component, compiled_from) = match &self.cache {
            Some(cache) => cache.load(&self.engine, &wasm, &name),
            None => Component::new(&self.engine, &wasm).map(|c| (c, CompiledFrom::Compiled)),
        }
        .map_err(load_error)?;
        Ok(Plugin {
            name,
            component,
            compiled_from,
        })
    }

    fn store(&self, plugin: &Plugin) -> Store<HostState> {
        let state = HostState {
            plugin: plugin.name.clone(),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                inner: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .instances(8)
                    .trap_on_grow_failure(true)
                    .build(),
                denied: None,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = self.limits.call_cpu_time.as_millis() / EPOCH_TICK.as_millis();
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
        store.epoch_deadline_trap();
        store
    }

    fn call_error(
        &self,
        store: &Store<HostState>,
        plugin: &Plugin,
        call: &'static str,
        source: wasmtime::Error,
    ) -> Error {
        if let Some(requested) = store.data().limits.denied {
            Error::MemoryLimit {
                plugin: plugin.name.clone(),
                call,
                requested,
                limit: self.limits.memory_bytes,
            }
        } else if matches!(source.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            Error::Timeout {
                plugin: plugin.name.clone(),
                call,
                limit: self.limits.call_cpu_time,
            }
        } else {
            Error::Trap {
                plugin: plugin.name.clone(),
                call,
                source,
            }
        }
    }

    /// Instantiates the plugin in `store`. Start-up code that traps or hits a
    /// limit is reported as such; a link failure means the component does not
    /// fit the contract.
    fn instantiate(
        &self,
        store: &mut Store<HostState>,
        plugin: &Plugin,
    ) -> Result<bindings::Provider, Error> {
        // Linking is checked first, so a missing import or export is a
        // contract error and not confused with a trap in start-up code.
        let pre = self
            .linker
            .instantiate_pre(&plugin.component)
            .and_then(bindings::ProviderPre::new)
            .map_err(|source| Error::Contract {
                plugin: plugin.name.clone(),
                source,
            })?;
        pre.instantiate(&mut *store)
            .map_err(|e| self.call_error(store, plugin, "instantiate", e))
    }

    /// Calls the plugin's `describe` export in a fresh store.
    pub fn describe(&self, plugin: &Plugin) -> Result<PluginInfo, Error> {
        let mut store = self.store(plugin);
        let instance = self.instantiate(&mut store, plugin)?;
        let info = instance
            .call_describe(&mut store)
            .map_err(|e| self.call_error(&store, plugin, "describe", e))?;
        Ok(PluginInfo {
            name: info.name,
            version: info.version,
            api_version: info.api_version,
            providers: info.providers,
        })
    }
}
