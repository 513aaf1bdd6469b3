//! On-disk cache of precompiled components.
//!
//! Compiling a component with Cranelift takes far longer than loading its
//! machine code, so the host keeps what it compiled in a directory of its
//! own. An entry's name is the SHA-256 of the `.wasm` bytes plus a hash of
//! the engine's compatibility settings (wasmtime version, target, compiler
//! flags): another wasmtime or configuration never loads it. A stale,
//! unreadable or corrupt entry is compiled again and replaced; a cache that
//! cannot be written is logged and skipped, never an error of the load.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded component's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    /// Loaded from the on-disk cache.
    Cache,
    /// Compiled now (no cache, or no entry yet); stored if a cache is set.
    Compiled,
    /// The cache entry could not be loaded (corrupt or unreadable); compiled
    /// again and the entry replaced.
    Recompiled,
}

/// A directory of precompiled components.
pub(crate) struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The entry name for `wasm` under `engine`.
    pub(crate) fn key(engine: &Engine, wasm: &[u8]) -> String {
        let digest = Sha256::digest(wasm);
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push_str(&format!("{byte:02x}"));
        }
        // DefaultHasher::new() has fixed keys: stable for one host build,
        // which is all the key must be (a new host may recompile once).
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{hex}-{:016x}.cwasm", hasher.finish())
    }

    /// The entry's path for `wasm` under `engine`.
    pub(crate) fn path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        self.dir.join(Self::key(engine, wasm))
    }

    /// Loads `wasm` from the cache, or compiles it and stores the result.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        plugin: &str,
    ) -> wasmtime::Result<(Component, CompiledFrom)> {
        let path = self.path(engine, wasm);
        let mut from = CompiledFrom::Compiled;
        if path.is_file() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, CompiledFrom::Cache)),
                Err(e) => {
                    tracing::warn!(plugin, entry = %path.display(), error = %e,
                        "precompiled plugin cache entry is unusable; compiling again");
                    from = CompiledFrom::Recompiled;
                }
            }
        }
        let machine_code = engine.precompile_component(wasm)?;
        if let Err(e) = store(&path, &machine_code) {
            tracing::warn!(plugin, entry = %path.display(), error = %e,
                "cannot write the precompiled plugin cache; continuing without it");
        }
        // SAFETY: these bytes were produced just now by this engine's
        // `precompile_component`.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &machine_code)? };
        Ok((component, from))
    }
}

/// Loads a cache entry.
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: deserializing trusts the file to be machine code this host
    // produced. The cache directory is the host's own (written only by
    // `store` below, named by content and engine hash), and wasmtime still
    // checks the header, version and engine compatibility before use.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, path)
    }
}

/// Writes an entry atomically: a reader never sees half a file.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
