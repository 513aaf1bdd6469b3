//! The engine, the per-call stores and the limits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

mod blobs;
pub(crate) mod lent;

use crate::grants::{Grants, HttpGate};
use crate::limits::{MAX_LOG_LINE, truncate};
use crate::{Error, Limits, PluginInfo, cache};

pub(crate) mod bindings;

use bindings::provider::druid::plugin::logging;

/// How often the epoch ticker advances the engine's epoch.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

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

/// The state a plugin's store holds: WASI with only the store's grants, the
/// HTTP gate, the resource table, the limits and the plugin's name for its
/// log lines.
pub(crate) struct HostState {
    plugin: String,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    gate: HttpGate,
    /// Hides the store's credentials in the plugin's log lines.
    redactor: crate::redact::Redactor,
    pub(crate) table: ResourceTable,
    /// Largest read a plugin may ask of a blob.
    pub(crate) max_read: usize,
    limits: MemoryCap,
    /// Epoch ticks during which the current call ran.
    cpu_ticks: u64,
    /// The CPU tick budget of a call.
    cpu_budget: u64,
    /// Set when the budget ran out, so the trap is reported as a timeout.
    cpu_exhausted: bool,
    /// Host work done for the plugin during this store's calls.
    host_spent: Duration,
    /// Ticks of `host_spent` already charged.
    host_ticks_charged: u64,
}

/// Most linear memories, tables and table elements one store (all the
/// instances of one call) may hold. A plugin built from Rust has one or two
/// memories and a table of a few thousand functions; a component crafted
/// with many memories cannot multiply the memory cap.
pub(crate) const MAX_MEMORIES: usize = 8;
/// See [`MAX_MEMORIES`].
pub(crate) const MAX_TABLES: usize = 32;
/// See [`MAX_MEMORIES`].
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// wasmtime's store limits, plus one cap on the bytes of all the store's
/// memories together (wasmtime's applies to each memory alone),
/// remembering a denied growth so that the error can name the limit
/// instead of a bare trap.
pub(crate) struct MemoryCap {
    inner: StoreLimits,
    denied: Option<usize>,
    /// Bytes of all the store's memories.
    total: usize,
    /// The cap on `total`.
    cap: usize,
}

impl MemoryCap {
    /// Limits for a store whose memories may hold `cap` bytes in all.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(cap)
                .memories(MAX_MEMORIES)
                .tables(MAX_TABLES)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(8)
                .trap_on_grow_failure(true)
                .build(),
            denied: None,
            total: 0,
            cap,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.cap {
            self.denied = Some(total);
            return Err(wasmtime::Error::msg(format!(
                "the plugin's memories would hold {total} bytes in all, over the cap of {} bytes",
                self.cap
            )));
        }
        let result = self.inner.memory_growing(current, desired, maximum);
        if matches!(result, Ok(true)) {
            self.total = total;
        } else {
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

impl HostState {
    /// Charges host work done for the plugin (hashing a blob) to the
    /// call's CPU budget, as if the plugin had run that long: a plugin
    /// cannot spend the host's CPU without limit by asking it to work.
    /// Once the budget is spent the work is refused, and the next tick
    /// interrupts the call.
    pub(crate) fn charge(&mut self, spent: std::time::Duration) -> Result<(), String> {
        // Short pieces of work add up: whole ticks of the running total
        // are charged, the remainder waits for the next piece.
        self.host_spent = self.host_spent.saturating_add(spent);
        let whole =
            u64::try_from(self.host_spent.as_millis() / EPOCH_TICK.as_millis()).unwrap_or(u64::MAX);
        self.cpu_ticks = self
            .cpu_ticks
            .saturating_add(whole.saturating_sub(self.host_ticks_charged));
        self.host_ticks_charged = whole;
        self.budget_left()
    }

    /// `Err` once the call's CPU budget is spent.
    pub(crate) fn budget_left(&mut self) -> Result<(), String> {
        if self.cpu_ticks > self.cpu_budget {
            self.cpu_exhausted = true;
            return Err("the call's CPU time budget is spent".into());
        }
        Ok(())
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

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

impl logging::Host for HostState {
    fn log(&mut self, level: logging::Level, message: String) {
        let plugin = self.plugin.as_str();
        let message = self.redactor.redact(truncate(&message, MAX_LOG_LINE));
        match level {
            logging::Level::Trace => tracing::trace!(plugin, "{message}"),
            logging::Level::Debug => tracing::debug!(plugin, "{message}"),
            logging::Level::Info => tracing::info!(plugin, "{message}"),
            logging::Level::Warn => tracing::warn!(plugin, "{message}"),
            logging::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// What kind of plugin a component is, from its exports.
#[derive(Clone)]
pub(crate) enum Pre {
    Provider(bindings::provider::ProviderPre<HostState>),
    Compactor(bindings::compactor::CompactorPre<HostState>),
}

/// A compiled plugin component, linked and ready to be instantiated.
#[derive(Clone)]
pub struct Plugin {
    name: String,
    pub(crate) pre: Pre,
    compiled_from: cache::CompiledFrom,
}

impl Plugin {
    /// Where the plugin's machine code came from (cache or compiler).
    pub fn compiled_from(&self) -> cache::CompiledFrom {
        self.compiled_from
    }

    /// The plugin's name (its file name until `describe` is called).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The first `druid:plugin` version among a component's import and export
/// names that this host does not serve (see [`crate::api_compatible`]).
fn incompatible_wit_version<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    names
        .filter_map(|n| n.strip_prefix("druid:plugin/")?.split_once('@'))
        .map(|(_, version)| version)
        .find(|version| !crate::api_compatible(version))
        .map(|version| crate::limits::truncate(version, 64).to_string())
}

/// One wasmtime engine with its limits; load plugins through it.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache: Option<cache::ComponentCache>,
    _ticker: EpochTicker,
}

/// A store with one instance of a plugin, for one call or one session
/// (e.g. an upload). A store's session may serve its next calls (see
/// `store::Pool`); any other is dropped afterwards.
pub(crate) struct Session {
    pub(crate) store: Store<HostState>,
    pub(crate) plugin: String,
    pub(crate) limits: Limits,
}

impl Session {
    /// Resets the per-call CPU budget before a call.
    pub(crate) fn begin_call(&mut self) {
        let state = self.store.data_mut();
        state.cpu_ticks = 0;
        state.cpu_exhausted = false;
        state.host_spent = Duration::ZERO;
        state.host_ticks_charged = 0;
        // The callback runs at every tick the guest observes.
        self.store.set_epoch_deadline(1);
    }

    /// Turns a failed call into an error that names the plugin and the
    /// limit that was hit.
    pub(crate) fn call_error(&self, call: &'static str, source: wasmtime::Error) -> Error {
        let state = self.store.data();
        if let Some(requested) = state.limits.denied {
            Error::MemoryLimit {
                plugin: self.plugin.clone(),
                call,
                requested,
                limit: self.limits.memory_bytes,
            }
        } else if state.cpu_exhausted
            || matches!(source.downcast_ref::<Trap>(), Some(Trap::Interrupt))
        {
            Error::Timeout {
                plugin: self.plugin.clone(),
                call,
                limit: self.limits.call_cpu_time,
            }
        } else {
            Error::Trap {
                plugin: self.plugin.clone(),
                call,
                source,
            }
        }
    }

    /// The CPU-time error of `call` if the host refused the plugin work
    /// because the call's budget was spent: a plugin that returns its own
    /// error after that still ran out of CPU time, and the user should
    /// read that, not the plugin's wording of it.
    pub(crate) fn budget_spent(&self, call: &'static str) -> Option<Error> {
        self.store.data().cpu_exhausted.then(|| Error::Timeout {
            plugin: self.plugin.clone(),
            call,
            limit: self.limits.call_cpu_time,
        })
    }

    /// The error for a call cancelled by the wall-clock timeout.
    pub(crate) fn wall_timeout(&self, call: &'static str) -> Error {
        Error::WallTimeout {
            plugin: self.plugin.clone(),
            call,
            limit: self.limits.call_timeout,
        }
    }

    /// The destinations the plugin was refused during this session.
    pub(crate) fn refused(&self) -> Vec<String> {
        self.store.data().gate.refused()
    }

    /// Bytes of the instance's linear memories.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store.data().limits.total
    }

    /// Whether the session may serve another call: its last call ended
    /// without a trap, a limit or a refused destination (a session that
    /// hit one is dropped, so the next call starts afresh).
    pub(crate) fn reusable(&self) -> bool {
        let state = self.store.data();
        state.limits.denied.is_none() && !state.cpu_exhausted && state.gate.refused().is_empty()
    }
}

/// Runs one guarded call on a session: resets the CPU budget, applies the
/// wall-clock timeout and maps failures to [`Error`]. Evaluates to
/// `Result<T, Error>`.
macro_rules! guarded {
    ($session:expr, $call:literal, |$store:ident| $body:expr) => {{
        let session: &mut $crate::runtime::Session = $session;
        session.begin_call();
        let timeout = session.limits.call_timeout;
        let outcome = {
            let $store = &mut session.store;
            tokio::time::timeout(timeout, $body).await
        };
        match outcome {
            Err(_) => Err(session.wall_timeout($call)),
            Ok(Err(e)) => Err(session.call_error($call, e)),
            Ok(Ok(v)) => Ok(v),
        }
    }};
}
pub(crate) use guarded;

impl PluginHost {
    /// Creates the engine (one per process is intended) with `limits`.
    pub fn new(limits: Limits) -> Result<Self, Error> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(Error::Engine)?;
        let mut linker = Linker::new(&engine);
        // All of WASI p2 is linked so that a std-built guest links, but the
        // context grants nothing beyond the store's grants: no env, args,
        // sockets or name lookup, and files only for a Local store.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(Error::Engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(Error::Engine)?;
        logging::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(Error::Engine)?;
        bindings::compactor::druid::plugin::blobs::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
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
    pub fn with_component_cache(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cache = Some(cache::ComponentCache::new(dir.into()));
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Where the cache keeps the compiled form of `wasm`, if a cache is set.
    pub fn cache_entry(&self, wasm: &[u8]) -> Option<std::path::PathBuf> {
        self.cache.as_ref().map(|c| c.path(&self.engine, wasm))
    }

    /// Loads, compiles and links the component in `path`.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, Error> {
        let wasm = std::fs::read(path).map_err(|e| Error::Load {
            path: path.to_path_buf(),
            source: wasmtime::Error::from(e),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.load_bytes(&name, &wasm).map_err(|e| match e {
            Error::Load { source, .. } => Error::Load {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Loads, compiles and links a component from memory (e.g. a plugin
    /// built into the binary).
    pub fn load_bytes(&self, name: &str, wasm: &[u8]) -> Result<Plugin, Error> {
        let (component, compiled_from) = match &self.cache {
            Some(cache) => cache.load(&self.engine, wasm, name),
            None => Component::new(&self.engine, wasm).map(|c| (c, cache::CompiledFrom::Compiled)),
        }
        .map_err(|source| Error::Load {
            path: name.into(),
            source,
        })?;
        let contract = |source| Error::Contract {
            plugin: name.to_string(),
            source,
        };
        let ty = component.component_type();
        // The WIT version first, from the names the component imports and
        // exports (`druid:plugin/object-store@0.1.0`): a plugin built for
        // another version gets the version message, not the linker's.
        let names = ty
            .imports(&self.engine)
            .map(|(n, _)| n)
            .chain(ty.exports(&self.engine).map(|(n, _)| n));
        if let Some(version) = incompatible_wit_version(names) {
            return Err(Error::ApiVersion {
                plugin: name.to_string(),
                plugin_api: version,
                host_api: crate::API_VERSION,
            });
        }
        let exports_store = ty
            .exports(&self.engine)
            .any(|(export, _)| export.starts_with("druid:plugin/object-store@"));
        // Linking is checked here, so a missing import or export is a
        // contract error at load, not a surprise at the first call.
        let instance_pre = self.linker.instantiate_pre(&component).map_err(contract)?;
        let pre = if exports_store {
            Pre::Provider(bindings::provider::ProviderPre::new(instance_pre).map_err(contract)?)
        } else {
            Pre::Compactor(bindings::compactor::CompactorPre::new(instance_pre).map_err(contract)?)
        };
        Ok(Plugin {
            name: name.to_string(),
            pre,
            compiled_from,
        })
    }

    /// A fresh store for `plugin` with `grants`.
    pub(crate) fn session(&self, plugin: &str, grants: &Grants) -> Result<Session, Error> {
        self.session_with_limits(plugin, grants, &self.limits)
    }

    /// A fresh store for `plugin` with `grants` and `limits` instead of the
    /// host's (e.g. the longer CPU time of a compaction).
    pub(crate) fn session_with_limits(
        &self,
        plugin: &str,
        grants: &Grants,
        limits: &Limits,
    ) -> Result<Session, Error> {
        let wasi = grants.wasi_ctx().map_err(|source| Error::Grant {
            plugin: plugin.to_string(),
            what: grants.describe_dir(),
            source,
        })?;
        let cpu_budget = u64::try_from(limits.call_cpu_time.as_millis() / EPOCH_TICK.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let state = HostState {
            plugin: plugin.to_string(),
            wasi,
            http: WasiHttpCtx::new(),
            gate: grants.http_gate(plugin),
            redactor: grants.redactor.clone(),
            table: ResourceTable::new(),
            max_read: limits.max_return_bytes,
            limits: MemoryCap::new(limits.memory_bytes),
            cpu_ticks: 0,
            cpu_budget,
            cpu_exhausted: false,
            host_spent: Duration::ZERO,
            host_ticks_charged: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > state.cpu_budget {
                state.cpu_exhausted = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield to the async runtime at every tick, so a busy plugin
            // does not starve the host's other tasks.
            Ok(UpdateDeadline::Yield(1))
        });
        Ok(Session {
            store,
            plugin: plugin.to_string(),
            limits: limits.clone(),
        })
    }

    /// Calls the plugin's `describe` export in a fresh store.
    pub async fn describe(&self, plugin: &Plugin) -> Result<PluginInfo, Error> {
        let mut session = self.session(&plugin.name, &Grants::none())?;
        let info = match &plugin.pre {
            Pre::Provider(pre) => {
                let instance = guarded!(&mut session, "instantiate", |store| pre
                    .instantiate_async(store))?;
                guarded!(&mut session, "describe", |store| instance
                    .call_describe(store))?
            }
            Pre::Compactor(pre) => {
                let instance = guarded!(&mut session, "instantiate", |store| pre
                    .instantiate_async(store))?;
                guarded!(&mut session, "describe", |store| instance
                    .call_describe(store))?
            }
        };
        let max = self.limits.max_return_bytes;
        let size = info.name.len()
            + info.version.len()
            + info.api_version.len()
            + info.providers.iter().map(String::len).sum::<usize>();
        if size > max {
            return Err(Error::ReturnTooLarge {
                plugin: plugin.name.clone(),
                call: "describe",
                what: "a plugin description",
                size,
                limit: max,
            });
        }
        Ok(PluginInfo {
            name: info.name,
            version: info.version,
            api_version: info.api_version,
            providers: info.providers,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use wasmtime::{Engine, Instance, Module, Store};

    use super::*;

    const PAGE: usize = 64 << 10;

    /// A store limited as a plugin's is, with the module `wat` in it.
    fn instantiate(wat: &str, cap: usize) -> Result<(Store<MemoryCap>, Instance), String> {
        let engine = Engine::default();
        let module = Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut store = Store::new(&engine, MemoryCap::new(cap));
        store.limiter(|s| s);
        let instance = Instance::new(&mut store, &module, &[]).map_err(|e| format!("{e:?}"))?;
        Ok((store, instance))
    }

    #[test]
    fn all_memories_count_together_against_the_cap() {
        assert!(instantiate("(module (memory 3))", 4 * PAGE).is_ok());
        // Each memory fits the cap alone; together they do not.
        let e = instantiate("(module (memory 3) (memory 3))", 4 * PAGE)
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains("in all, over the cap"), "{e}");
        // Growing the second memory later counts the first one too.
        let (mut store, instance) = instantiate(
            r#"(module (memory 2) (memory $b 1)
                 (func (export "grow") (result i32) (memory.grow $b (i32.const 2))))"#,
            4 * PAGE,
        )
        .unwrap();
        let grow = instance
            .get_typed_func::<(), i32>(&mut store, "grow")
            .unwrap();
        let e = grow.call(&mut store, ()).unwrap_err();
        assert!(format!("{e:?}").contains("in all, over the cap"), "{e:?}");
        assert_eq!(store.data().denied, Some(5 * PAGE));
    }

    #[test]
    fn memories_tables_and_table_elements_are_capped() {
        let memories: String = (0..=MAX_MEMORIES).map(|_| "(memory 0)").collect();
        assert!(instantiate(&format!("(module {memories})"), 4 * PAGE).is_err());
        let fits: String = (0..MAX_MEMORIES).map(|_| "(memory 0)").collect();
        assert!(instantiate(&format!("(module {fits})"), 4 * PAGE).is_ok());
        let tables: String = (0..=MAX_TABLES).map(|_| "(table 0 funcref)").collect();
        assert!(instantiate(&format!("(module {tables})"), 4 * PAGE).is_err());
        let big = format!("(module (table {} funcref))", MAX_TABLE_ELEMENTS + 1);
        assert!(instantiate(&big, 4 * PAGE).is_err());
    }
}
