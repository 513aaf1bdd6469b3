//! Running the workspace's own binaries from another crate's tests, and
//! the flags every `etcdbr` under test gets.
//!
//! Cargo only builds a package's binaries for that package's tests
//! (`CARGO_BIN_EXE_*`); a test that runs another package's binary (the
//! etcd-wrapper tests run `etcdbr`) builds it here, once per test process,
//! into the same target directory and profile as the test itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::{Error, Result, cache_dir, find_binary, plugin_components, repo_root};

/// Builds binary `bin` of workspace package `package` (once per test
/// process; cargo's build is incremental) and returns its path.
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(std::collections::HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(bin) {
        return Ok(path.clone());
    }
    // <target>/<profile dir>/deps/<test binary>
    let exe = std::env::current_exe().map_err(Error::io("cannot find the test binary"))?;
    let profile_dir = exe.parent().and_then(Path::parent).ok_or_else(|| {
        Error::io("the test binary is not in <target>/<profile>/deps")(std::io::Error::other(
            exe.display().to_string(),
        ))
    })?;
    let target_dir = profile_dir.parent().unwrap_or(profile_dir);
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(repo_root())
        .args([
            "build",
            "--quiet",
            "--profile",
            &profile,
            // The whole workspace's feature set, as `cargo test
            // --workspace` built it: `-p` alone resolves the package's
            // own features and rebuilds dependencies (minutes) that the
            // test build already has.
            "--workspace",
            "--bin",
            bin,
        ])
        .arg("--target-dir")
        .arg(target_dir);
    // Not the variables cargo set for this test process: build scripts
    // (ring's, for one) rerun when one of them differs from the outer
    // build's, and the nested build then recompiled ring, rustls, kube and
    // every crate above them in place (23 crates), which the next outer
    // build compiled back.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_tests) {
            command.env_remove(&name);
        }
    }
    let shown = format!("{command:?} (binary {bin} of package {package})");
    let output = command
        .output()
        .map_err(Error::io(format!("cannot run {shown}")))?;
    if !output.status.success() {
        return Err(Error::Build {
            command: shown,
            reason: format!(
                "{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    let path = profile_dir.join(bin);
    built.insert(bin.to_string(), path.clone());
    Ok(path)
}

/// Whether `name` is a variable cargo sets for the test process it runs
/// (the package's, the crate's, the binaries' paths), as opposed to one
/// that configures cargo (`CARGO_HOME`, `CARGO_TARGET_DIR`,
/// `CARGO_INCREMENTAL`, ...).
fn set_by_cargo_for_tests(name: &str) -> bool {
    name == "OUT_DIR"
        || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || name.starts_with("CARGO_BIN_")
        || name.starts_with("CARGO_CFG_")
        || matches!(
            name,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// Adds what every `etcdbr` under test needs: the test plugins and their
/// compile cache, the etcd binaries, plain logs, and no pod identity.
pub fn etcdbr_tool_flags(c: &mut Command) -> Result<()> {
    etcdbr_tool_flags_with_plugins(c, plugin_components().dir())
}

/// [`etcdbr_tool_flags`] with `plugins_dir` as the plugins directory.
pub fn etcdbr_tool_flags_with_plugins(c: &mut Command, plugins_dir: &Path) -> Result<()> {
    etcdbr_store_tool_flags(c, plugins_dir);
    c.arg(format!(
        "--etcd-binary={}",
        find_binary("etcd", "etcd")?.display()
    ))
    .arg(format!("--etcdctl-binary={}", restore_binary()?.display()));
    Ok(())
}

/// What an `etcdbr` command that only talks to stores (`copy`) needs: the
/// plugins of `plugins_dir` and their compile cache, plain logs, and no
/// pod identity.
pub fn etcdbr_store_tool_flags(c: &mut Command, plugins_dir: &Path) {
    c.arg(format!("--plugins-dir={}", plugins_dir.display()))
        .arg(format!(
            "--plugin-cache-dir={}",
            cache_dir().join("plugin-cache").display()
        ))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME");
}

/// What restores a snapshot on the etcd version under test: etcdutl where
/// it exists (3.5 and later; 3.6 removed `etcdctl snapshot restore`), else
/// etcdctl (3.4).
pub fn restore_binary() -> Result<PathBuf> {
    find_binary("etcdutl", "etcd").or_else(|_| find_binary("etcdctl", "etcd"))
}

/// Adds the flags of a Local store: container `container` under `root`.
pub fn local_store_flags(c: &mut Command, root: &Path, container: &str) {
    c.arg("--storage-provider=Local")
        .arg(format!("--store-container={container}"))
        .env("LOCAL_STORE_ROOT", root);
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_variables_cargo_sets_for_tests_are_dropped() {
        for dropped in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_EXE_etcdbr",
            "CARGO_TARGET_TMPDIR",
            "OUT_DIR",
        ] {
            assert!(super::set_by_cargo_for_tests(dropped), "{dropped}");
        }
        for kept in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CARGO_TERM_COLOR",
            "CARGO_BUILD_JOBS",
            "CARGO_PROFILE_DEV_DEBUG",
        ] {
            assert!(!super::set_by_cargo_for_tests(kept), "{kept}");
        }
    }
}
