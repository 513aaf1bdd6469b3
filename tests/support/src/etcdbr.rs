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

/// Adds what every `etcdbr` under test needs: the test plugins and their
/// compile cache, the etcd binaries, plain logs, and no pod identity.
pub fn etcdbr_tool_flags(c: &mut Command) -> Result<()> {
    etcdbr_tool_flags_with_plugins(c, plugin_components().dir())
}

/// [`etcdbr_tool_flags`] with `plugins_dir` as the plugins directory.
pub fn etcdbr_tool_flags_with_plugins(c: &mut Command, plugins_dir: &Path) -> Result<()> {
    c.arg(format!("--plugins-dir={}", plugins_dir.display()))
        .arg(format!(
            "--plugin-cache-dir={}",
            cache_dir().join("plugin-cache").display()
        ))
        .arg(format!(
            "--etcd-binary={}",
            find_binary("etcd", "etcd")?.display()
        ))
        .arg(format!("--etcdctl-binary={}", restore_binary()?.display()))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME");
    Ok(())
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
