//! The `Local` storage provider plugin: objects are files in a directory.
//!
//! The plugin has no ambient filesystem. For a `Local` store the host
//! preopens the container's directory (`<local root>/<container>`) as `/`,
//! and nothing else; keys are paths below it. When the container directory
//! does not exist, nothing is preopened and every call says so.
//!
//! Uploads go to a hidden temporary file next to the target, are synced and
//! then renamed, so a reader never sees half an object.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use druid_plugin_sdk::store::{
    ByteRange, Download, GuestDownload, GuestStore, GuestUpload, ListPage, ObjectInfo, Store,
    StoreConfig, StoreError, Upload,
};
use druid_plugin_sdk::wiring::{EnvVar, SidecarConfig, StoreSpec, Volume, VolumeSource};
use druid_plugin_sdk::{plugin_info, provider, store, wiring};

/// Where the sidecar finds the node's backup directory (the container is a
/// directory below it).
pub const SIDECAR_ROOT: &str = "/var/etcd-backup-local";
/// The node directory holding the containers.
pub const NODE_ROOT: &str = "/var/lib/druid/local-backupbuckets";
/// Prefix of temporary upload files; listings skip them.
const TEMP_PREFIX: &str = ".druid-upload-";
/// The root the host preopens.
const ROOT: &str = "/";

/// The plugin.
pub struct Local;

impl provider::Guest for Local {
    fn describe() -> provider::PluginInfo {
        plugin_info("local", env!("CARGO_PKG_VERSION"), &["Local"])
    }
}

impl wiring::Guest for Local {
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        let plain = !spec.container.is_empty()
            && spec.container.len() <= 255
            && !spec.container.starts_with('.')
            && spec
                .container
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !plain {
            return Err(format!(
                "store.container {:?} is not a plain directory name: use letters, digits, '.', \
                 '_' and '-', not starting with '.'",
                spec.container
            ));
        }
        Ok(SidecarConfig {
            env: vec![
                EnvVar {
                    name: "STORAGE_CONTAINER".into(),
                    value: spec.container.clone(),
                },
                EnvVar {
                    name: "LOCAL_STORE_ROOT".into(),
                    value: SIDECAR_ROOT.into(),
                },
            ],
            volumes: vec![Volume {
                name: "local-backup".into(),
                source: VolumeSource::HostPath(NODE_ROOT.into()),
                mount_path: SIDECAR_ROOT.into(),
            }],
        })
    }

    fn check_secret(_provider: String, _keys: Vec<String>) -> Result<(), Vec<String>> {
        // The Local provider needs no credentials; any secret is ignored.
        Ok(())
    }
}

impl store::Guest for Local {
    /// No credentials and no endpoint: the host grants the store's
    /// directory instead.
    fn contract(_provider: String) -> store::StoreContract {
        druid_plugin_sdk::no_credentials_contract()
    }

    type Store = LocalStore;
    type Upload = LocalUpload;
    type Download = LocalDownload;
}

/// A directory store.
pub struct LocalStore {
    container: String,
}

fn io_error(what: &str, key: &str, e: &std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotFound(format!("{key}: {what}: not found")),
        std::io::ErrorKind::PermissionDenied => {
            StoreError::AccessDenied(format!("{key}: {what}: permission denied"))
        }
        _ => StoreError::Other(format!("{key}: {what}: {e}")),
    }
}

/// Checks that `key` is a relative path without `..`, and returns it below
/// the root.
fn key_path(key: &str) -> Result<PathBuf, StoreError> {
    let rel = Path::new(key);
    let clean = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !clean {
        return Err(StoreError::InvalidConfig(format!(
            "{key:?} is not a valid key: keys are relative paths without '.' or '..'"
        )));
    }
    Ok(Path::new(ROOT).join(rel))
}

fn modified(meta: &fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

impl LocalStore {
    fn check_root(&self) -> Result<(), StoreError> {
        match fs::metadata(ROOT) {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(StoreError::NoSuchContainer(format!(
                "the Local container directory {:?} does not exist under the local store root: \
                 create it (or fix store.container)",
                self.container
            ))),
        }
    }

    /// Collects every file below `dir` whose key starts with `prefix`.
    fn walk(
        dir: &Path,
        rel: &str,
        prefix: &str,
        out: &mut Vec<ObjectInfo>,
    ) -> Result<(), StoreError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("listing", rel, &e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error("listing", rel, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // Prune directories that cannot hold a matching key.
            let could_match = key.starts_with(prefix) || prefix.starts_with(&format!("{key}/"));
            if !could_match {
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(|e| io_error("listing", &key, &e))?;
            if meta.is_dir() {
                Self::walk(&entry.path(), &key, prefix, out)?;
            } else if key.starts_with(prefix) {
                out.push(ObjectInfo {
                    size: meta.len(),
                    last_modified: modified(&meta),
                    key,
                });
            }
        }
        Ok(())
    }
}

impl GuestStore for LocalStore {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        Ok(Store::new(LocalStore {
            container: config.container,
        }))
    }

    fn list(
        &self,
        prefix: String,
        page_token: Option<String>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        self.check_root()?;
        let mut all = Vec::new();
        Self::walk(Path::new(ROOT), "", &prefix, &mut all)?;
        all.sort_by(|a, b| a.key.cmp(&b.key));
        let start = match &page_token {
            Some(after) => all.partition_point(|o| o.key.as_str() <= after.as_str()),
            None => 0,
        };
        let max = usize::try_from(max_keys.max(1)).unwrap_or(1000);
        let objects: Vec<ObjectInfo> = all.into_iter().skip(start).take(max + 1).collect();
        let (objects, next_token) = if objects.len() > max {
            let mut page = objects;
            page.truncate(max);
            let last = page.last().map(|o| o.key.clone());
            (page, last)
        } else {
            (objects, None)
        };
        Ok(ListPage {
            objects,
            next_token,
        })
    }

    fn head(&self, key: String) -> Result<ObjectInfo, StoreError> {
        self.check_root()?;
        let path = key_path(&key)?;
        let meta = fs::metadata(&path).map_err(|e| io_error("head", &key, &e))?;
        if meta.is_dir() {
            return Err(StoreError::NotFound(format!(
                "{key}: is a directory, not an object"
            )));
        }
        Ok(ObjectInfo {
            size: meta.len(),
            last_modified: modified(&meta),
            key,
        })
    }

    fn delete(&self, key: String) -> Result<(), StoreError> {
        self.check_root()?;
        let path = key_path(&key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", &key, &e)),
        }
    }

    fn upload(&self, key: String, _size_hint: Option<u64>) -> Result<Upload, StoreError> {
        self.check_root()?;
        let target = key_path(&key)?;
        let dir = target.parent().unwrap_or(Path::new(ROOT)).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_error("creating the directory", &key, &e))?;
        sweep_stale_uploads(&dir);
        let file_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let nonce = druid_plugin_sdk::provider::wasi::random::random::get_random_u64();
        let temp = dir.join(format!("{TEMP_PREFIX}{file_name}-{nonce:016x}"));
        let file =
            File::create(&temp).map_err(|e| io_error("creating the upload file", &key, &e))?;
        Ok(Upload::new(LocalUpload {
            key,
            target,
            temp,
            file: std::cell::RefCell::new(Some(file)),
        }))
    }

    fn download(&self, key: String, range: Option<ByteRange>) -> Result<Download, StoreError> {
        self.check_root()?;
        let path = key_path(&key)?;
        let mut file = File::open(&path).map_err(|e| io_error("download", &key, &e))?;
        let size = file
            .metadata()
            .map_err(|e| io_error("download", &key, &e))?
            .len();
        let (start, remaining) = match range {
            Some(r) => {
                let start = r.start.min(size);
                let rest = size - start;
                (start, r.length.map_or(rest, |l| l.min(rest)))
            }
            None => (0, size),
        };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_error("download", &key, &e))?;
        Ok(Download::new(LocalDownload {
            key,
            state: std::cell::RefCell::new((file, remaining)),
        }))
    }
}

/// How long a temporary upload file may go unwritten before an upload to
/// the same directory removes it: it belongs to an upload that was
/// interrupted (a killed process, a call that timed out) and never aborted.
/// Every write touches the file, so a live upload is never this old.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the temporary files of interrupted uploads in `dir` (best
/// effort: a file that cannot be read or removed is left for the next
/// sweep).
fn sweep_stale_uploads(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age >= STALE_UPLOAD);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// An object being written to a temporary file.
pub struct LocalUpload {
    key: String,
    target: PathBuf,
    temp: PathBuf,
    file: std::cell::RefCell<Option<File>>,
}

impl GuestUpload for LocalUpload {
    fn write(&self, chunk: Vec<u8>) -> Result<(), StoreError> {
        let mut file = self.file.borrow_mut();
        let f = file
            .as_mut()
            .ok_or_else(|| StoreError::Other(format!("{}: upload already finished", self.key)))?;
        f.write_all(&chunk)
            .map_err(|e| io_error("write", &self.key, &e))
    }

    fn finish(&self) -> Result<ObjectInfo, StoreError> {
        let file =
            self.file.borrow_mut().take().ok_or_else(|| {
                StoreError::Other(format!("{}: upload already finished", self.key))
            })?;
        file.sync_all()
            .map_err(|e| io_error("sync", &self.key, &e))?;
        let meta = file
            .metadata()
            .map_err(|e| io_error("sync", &self.key, &e))?;
        drop(file);
        fs::rename(&self.temp, &self.target).map_err(|e| io_error("rename", &self.key, &e))?;
        Ok(ObjectInfo {
            key: self.key.clone(),
            size: meta.len(),
            last_modified: modified(&meta),
        })
    }

    fn abort(&self) -> Result<(), StoreError> {
        drop(self.file.borrow_mut().take());
        match fs::remove_file(&self.temp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("abort", &self.key, &e)),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // An upload dropped without finish leaves nothing behind.
        if self.file.get_mut().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// An object being read.
pub struct LocalDownload {
    key: String,
    state: std::cell::RefCell<(File, u64)>,
}

impl GuestDownload for LocalDownload {
    fn read(&self, max: u32) -> Result<Vec<u8>, StoreError> {
        let mut state = self.state.borrow_mut();
        let (file, remaining) = &mut *state;
        let want = u64::from(max).min(*remaining);
        let mut buf = vec![0u8; usize::try_from(want).unwrap_or(0)];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .map_err(|e| io_error("read", &self.key, &e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        *remaining -= filled as u64;
        Ok(buf)
    }
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Local);

#[cfg(test)]
mod tests {
    use super::*;
    use druid_plugin_sdk::provider::Guest as _;
    use druid_plugin_sdk::wiring::Guest as _;

    #[test]
    fn describe_names_the_local_provider() {
        let info = Local::describe();
        assert_eq!(info.name, "local");
        assert_eq!(info.providers, vec!["Local".to_string()]);
        assert_eq!(info.api_version, druid_plugin_sdk::API_VERSION);
    }

    #[test]
    fn keys_must_stay_below_the_root() {
        assert!(key_path("v2/Full-00000000-00000001-1").is_ok());
        for bad in ["", "../x", "a/../../b", "/etc/passwd", "./a"] {
            assert!(
                matches!(key_path(bad), Err(StoreError::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn pod_config_mounts_the_node_directory_and_names_the_container() {
        let spec = StoreSpec {
            provider: "Local".into(),
            container: "default.bkp".into(),
            prefix: "etcd-main".into(),
            secret_name: None,
        };
        let cfg = Local::pod_config(spec).unwrap();
        assert!(
            cfg.env
                .iter()
                .any(|e| e.name == "STORAGE_CONTAINER" && e.value == "default.bkp")
        );
        assert_eq!(cfg.volumes.len(), 1);
        assert_eq!(cfg.volumes[0].mount_path, SIDECAR_ROOT);
        for container in ["../x", ".", "..", ".hidden", "a/b", "", "a b"] {
            let bad = StoreSpec {
                provider: "Local".into(),
                container: container.into(),
                prefix: String::new(),
                secret_name: None,
            };
            assert!(
                Local::pod_config(bad)
                    .unwrap_err()
                    .contains("not a plain directory name"),
                "{container:?}"
            );
        }
    }
}
