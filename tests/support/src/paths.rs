//! Where things are: the repository, the project cache, the installed test
//! servers and this run's server directories.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{Error, Result};

/// How many past runs' server directories are kept for reading logs.
const KEEP_RUNS: usize = 20;

/// The repository's root directory, found at run time.
///
/// Not baked in at compile time: the cargo target directory is shared
/// between clones (it lives in the project cache), so a test binary built in
/// one clone may run for another. `$DRUID_REPO_ROOT` wins; otherwise the
/// nearest ancestor of `$CARGO_MANIFEST_DIR` (which cargo sets when it runs a
/// test) or of the working directory whose Cargo.toml is the workspace's.
pub fn repo_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(root) = std::env::var_os("DRUID_REPO_ROOT") {
            return PathBuf::from(root);
        }
        let starts = [
            std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
            std::env::current_dir().ok(),
        ];
        starts
            .into_iter()
            .flatten()
            .find_map(|start| {
                start
                    .ancestors()
                    .find(|d| is_workspace_root(d))
                    .map(Path::to_path_buf)
            })
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
    })
    .clone()
}

fn is_workspace_root(dir: &Path) -> bool {
    dir.join("wit").is_dir()
        && std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|manifest| manifest.lines().any(|l| l.trim() == "[workspace]"))
}

/// The project cache outside the clone (same rule as `tests/scripts/lib.sh`):
/// `$DRUID_CACHE`, else `$XDG_CACHE_HOME/druid-rs`, else `~/.cache/druid-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DRUID_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("druid-rs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/druid-rs")
}

fn bin_dir() -> PathBuf {
    std::env::var_os("DRUID_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("bin"))
}

/// Finds an installed test binary: first in the project's bin directory
/// (`$DRUID_BIN`, where the install scripts link versioned builds), then on
/// `PATH`. `install` names the `tests/scripts/install-servers.sh` argument
/// that installs it.
///
/// `etcd`, `etcdctl` and `etcdutl` come from the etcd version that
/// `DRUID_ETCD_VERSION` names when it is set (`3.6` or `v3.6.17`: the
/// newest matching build of `tests/scripts/install-etcd-versions.sh`),
/// so that a whole test binary runs on that version.
pub fn find_binary(name: &str, install: &str) -> Result<PathBuf> {
    if matches!(name, "etcd" | "etcdctl" | "etcdutl")
        && let Some(wanted) = std::env::var_os("DRUID_ETCD_VERSION")
        && !wanted.is_empty()
    {
        return versioned_etcd_binary(name, &wanted.to_string_lossy());
    }
    installed_binary(name, install)
}

/// `name` (`etcd`, `etcdctl` or `etcdutl`) of etcd `version` (`3.5`,
/// `3.6.17`) whatever `DRUID_ETCD_VERSION` says, for tests that need two
/// versions at once: the newest build of `install-etcd-versions.sh`, or,
/// for a version not built there (3.4), the installed binary if it is that
/// version.
pub fn etcd_binary_of(name: &str, version: &str) -> Result<PathBuf> {
    versioned_etcd_binary(name, version).or_else(|not_built| {
        let installed = installed_binary(name, "etcd")?;
        let flag = if name == "etcd" {
            "--version"
        } else {
            "version"
        };
        let printed = std::process::Command::new(&installed)
            .arg(flag)
            .env("ETCDCTL_API", "3")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let wanted = version.trim_start_matches('v');
        let matches = druid_etcd_version::version_line(&printed)
            .is_some_and(|v| v == wanted || v.starts_with(&format!("{wanted}.")));
        if matches {
            Ok(installed)
        } else {
            Err(not_built)
        }
    })
}

/// `name` in the project's bin directory, else on `PATH`.
fn installed_binary(name: &str, install: &str) -> Result<PathBuf> {
    let bin = bin_dir();
    let candidate = bin.join(name);
    if is_executable(&candidate) {
        return Ok(candidate);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
    {
        return Ok(found);
    }
    Err(Error::NotInstalled {
        binary: name.to_string(),
        searched: format!("{} and PATH", bin.display()),
        script: format!("tests/scripts/install-servers.sh {install}"),
    })
}

/// `name` of the newest etcd build under `<cache>/etcd/` whose version
/// starts with `wanted` (with or without its `v`).
fn versioned_etcd_binary(name: &str, wanted: &str) -> Result<PathBuf> {
    let root = cache_dir().join("etcd");
    let prefix = format!("v{}", wanted.trim_start_matches('v'));
    let numbers = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split('.')
            .map(|n| n.parse().unwrap_or(0))
            .collect()
    };
    let newest = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|v| v == &prefix || v.starts_with(&format!("{prefix}.")))
        .filter(|v| is_executable(&root.join(v).join(name)))
        .max_by_key(|v| numbers(v));
    match newest {
        Some(v) => Ok(root.join(v).join(name)),
        None => Err(Error::NotInstalled {
            binary: format!("{name} {prefix} (DRUID_ETCD_VERSION)"),
            searched: root.display().to_string(),
            script: format!("tests/scripts/install-etcd-versions.sh {prefix}.<patch>"),
        }),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// This test process's directory for server data and logs:
/// `target/test-servers/<test binary>-<pid>`. Older runs beyond the newest
/// few are removed when it is first created.
pub fn run_dir() -> Result<&'static Path> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = repo_root().join("target/test-servers");
        prune_old_runs(&base);
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "test".into());
        let dir = base.join(format!("{exe}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map(|()| dir.clone())
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
    });
    match dir {
        Ok(d) => Ok(d.as_path()),
        Err(e) => Err(Error::Io {
            context: e.clone(),
            source: std::io::Error::other("run directory"),
        }),
    }
}

/// Creates and returns `<run dir>/<name>`, a server's own directory for its
/// data and log.
pub fn server_dir(name: &str) -> Result<PathBuf> {
    let dir = run_dir()?.join(name);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
    Ok(dir)
}

/// Whether the run directory belongs to a test process still running.
fn pid_alive(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the oldest run directories, keeping the newest `KEEP_RUNS`.
fn prune_old_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let mut runs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !pid_alive(&e.path()))
        .filter_map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, e.path()))
        })
        .collect();
    runs.sort();
    let excess = runs.len().saturating_sub(KEEP_RUNS);
    for (_, path) in runs.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repo_root_is_this_checkout() {
        let root = repo_root();
        assert!(is_workspace_root(&root), "{}", root.display());
        // The checkout this test's sources are in, whatever the build dir.
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert_eq!(root.canonicalize().unwrap(), here.canonicalize().unwrap());
        assert!(root.join("scripts/build-plugins.sh").is_file());
    }

    #[test]
    fn a_missing_binary_names_the_script_that_installs_it() {
        let err = find_binary("druid-no-such-server", "minio").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("tests/scripts/install-servers.sh minio"),
            "{text}"
        );
        assert!(text.contains("druid-no-such-server"), "{text}");
    }

    #[test]
    fn an_installed_binary_is_found_on_path() {
        let sh = find_binary("sh", "none").unwrap();
        assert!(sh.ends_with("sh"), "{}", sh.display());
    }

    #[test]
    fn server_dirs_are_inside_this_runs_directory() {
        let dir = server_dir("paths-test").unwrap();
        assert!(dir.is_dir());
        assert!(dir.starts_with(run_dir().unwrap()));
        let pid = std::process::id().to_string();
        let run = run_dir()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(run.ends_with(&pid), "{run}");
    }
}
