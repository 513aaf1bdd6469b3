//! Embeds the shipped plugin components into the binary, so the operator and
//! the sidecar serve the shipped providers (Local, S3, ABS) without a
//! plugins directory.
//!
//! The components are built to wasm32-wasip2 by `scripts/build-plugins.sh`
//! before the host is compiled (a build script cannot run a second cargo
//! build for another target inside this one without deadlocking on the
//! target directory lock). `DRUID_EMBED_PLUGINS` names the directory to take
//! them from (default: `DRUID_PLUGIN_DIR`, where the plugin build puts them,
//! else the workspace's `target/plugins`); when it holds no
//! components, the binary is built without built-in plugins and says so at
//! build time. Test-only plugins (its `test-only/` subdirectory) are never
//! embedded.

#![allow(
    clippy::print_stdout,
    reason = "cargo reads build-script instructions from stdout"
)]

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DRUID_EMBED_PLUGINS");
    println!("cargo:rerun-if-env-changed=DRUID_PLUGIN_DIR");
    let dir = match std::env::var_os("DRUID_EMBED_PLUGINS")
        .or_else(|| std::env::var_os("DRUID_PLUGIN_DIR"))
    {
        Some(d) => PathBuf::from(d),
        // Read when the script runs, not baked in when it is compiled: the
        // compiled script is shared by every checkout that uses the same
        // target directory (cargo's hashes do not include the checkout's
        // path), so a baked path would point at another checkout.
        None => PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
            .join("../../target/plugins"),
    };
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        println!(
            "cargo:warning=no plugin components in {}: this build has no built-in plugins (run scripts/build-plugins.sh first, or set DRUID_EMBED_PLUGINS)",
            dir.display()
        );
    }
    let mut code = String::from("&[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = f.canonicalize().unwrap_or_else(|_| f.clone());
        let _ = writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    code.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("builtins.rs");
    if let Err(e) = std::fs::write(&out, code) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
