//! The copy and its checks.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The largest plugin installed (the shipped ones are 2 to 8 MiB).
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// The first eight bytes of a WebAssembly component: the magic number and
/// the component model's version and layer.
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Why nothing could be installed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugins directory of the image cannot be read.
    #[error("cannot read the image's plugins directory {path}: {source}")]
    From {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The plugins volume cannot be written.
    #[error("cannot write {path} in the plugins volume: {source}")]
    To {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// What was installed and what was skipped.
#[derive(Debug, Default)]
pub struct Report {
    /// Installed plugins: file name, size, SHA-256 (hex).
    pub installed: Vec<(String, u64, String)>,
    /// Skipped files and why.
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// One line per plugin, for the container's log.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .installed
            .iter()
            .map(|(name, size, sha)| {
                format!("installed plugin {name} ({size} bytes, sha256 {sha})")
            })
            .collect();
        out.extend(
            self.skipped
                .iter()
                .map(|(name, why)| format!("skipped {name}: {why}")),
        );
        out.push(format!(
            "{} plugin(s) installed, {} skipped",
            self.installed.len(),
            self.skipped.len()
        ));
        out
    }
}

/// Why `file` is not installed, if it is not a plugin.
fn check(file: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_PLUGIN_BYTES {
        return Err(format!(
            "{} bytes, over the limit of {MAX_PLUGIN_BYTES} bytes",
            meta.len()
        ));
    }
    let mut header = [0u8; 8];
    std::fs::File::open(file)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|_| "shorter than a WebAssembly header".to_string())?;
    if header != COMPONENT_HEADER {
        return Err(if header[..4] == COMPONENT_HEADER[..4] {
            "a core WebAssembly module, not a component: build it for wasm32-wasip2 \
             (scripts/build-plugin.sh)"
                .into()
        } else {
            "not a WebAssembly component".into()
        });
    }
    Ok(())
}

/// Which side of a copy failed.
enum Copy {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Streams `src` into `dst` in 64 KiB pieces (memory stays flat whatever
/// the plugin's size); its size and SHA-256 (hex).
fn copy_hashed(src: &Path, dst: &Path) -> Result<(u64, String), Copy> {
    use std::io::Write;
    let mut input = std::fs::File::open(src).map_err(Copy::Read)?;
    let mut output = std::fs::File::create(dst).map_err(Copy::Write)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(Copy::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(Copy::Write)?;
        size += n as u64;
    }
    output.sync_all().map_err(Copy::Write)?;
    let sha = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sha))
}

/// Copies every valid `*.wasm` file of `from` into `to` (created if
/// needed), each through a temporary file renamed into place, and removes
/// `*.wasm` files of `to` that `from` no longer has (a restarted pod keeps
/// its volume). Invalid files are skipped and reported.
pub fn install(from: &Path, to: &Path) -> Result<Report, Error> {
    let read_from = |source| Error::From {
        path: from.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(from) {
        // An image without plugins installs none: etcd still starts, and
        // the Etcd's status names any provider no plugin serves.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut report = Report::default();
            report.skipped.push((
                from.display().to_string(),
                "the image has no such directory: no plugin installed".into(),
            ));
            std::fs::create_dir_all(to).map_err(|source| Error::To {
                path: to.to_path_buf(),
                source,
            })?;
            return Ok(report);
        }
        other => other.map_err(read_from)?,
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wasm") && !n.starts_with('.'))
        .collect();
    names.sort();
    std::fs::create_dir_all(to).map_err(|source| Error::To {
        path: to.to_path_buf(),
        source,
    })?;
    let mut report = Report::default();
    for name in &names {
        let src = from.join(name);
        if let Err(why) = check(&src) {
            report.skipped.push((name.clone(), why));
            continue;
        }
        let tmp = to.join(format!(".{name}.tmp"));
        let dst = to.join(name);
        let (size, sha) = match copy_hashed(&src, &tmp) {
            Ok(done) => done,
            Err(Copy::Read(e)) => {
                let _ = std::fs::remove_file(&tmp);
                report
                    .skipped
                    .push((name.clone(), format!("cannot read it: {e}")));
                continue;
            }
            Err(Copy::Write(source)) => return Err(Error::To { path: tmp, source }),
        };
        std::fs::rename(&tmp, &dst).map_err(|source| Error::To { path: dst, source })?;
        report.installed.push((name.clone(), size, sha));
    }
    // A plugin the image no longer carries must not keep serving.
    for entry in std::fs::read_dir(to).map_err(|source| Error::To {
        path: to.to_path_buf(),
        source,
    })? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.ends_with(".wasm") && !report.installed.iter().any(|(n, _, _)| *n == name);
        if stale {
            std::fs::remove_file(entry.path()).map_err(|source| Error::To {
                path: entry.path(),
                source,
            })?;
        }
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn component(body: &[u8]) -> Vec<u8> {
        let mut v = COMPONENT_HEADER.to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn plugins_are_copied_and_anything_else_is_skipped_with_the_reason() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::write(from.path().join("acme.wasm"), component(b"acme")).unwrap();
        std::fs::write(from.path().join("text.wasm"), b"not wasm at all").unwrap();
        std::fs::write(from.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(from.path().join("short.wasm"), b"\0as").unwrap();
        std::fs::create_dir(from.path().join("dir.wasm")).unwrap();
        std::fs::write(from.path().join("README"), b"ignored").unwrap();
        // A stale plugin from an earlier image, and a file of another kind.
        std::fs::write(to.path().join("old.wasm"), component(b"old")).unwrap();
        std::fs::write(to.path().join("keep.txt"), b"x").unwrap();

        let report = install(from.path(), to.path()).unwrap();
        assert_eq!(
            std::fs::read(to.path().join("acme.wasm")).unwrap(),
            component(b"acme")
        );
        assert_eq!(report.installed.len(), 1);
        assert_eq!(report.installed[0].0, "acme.wasm");
        assert_eq!(report.installed[0].2.len(), 64);
        let skipped: Vec<(&str, &str)> = report
            .skipped
            .iter()
            .map(|(n, w)| (n.as_str(), w.as_str()))
            .collect();
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped.contains(&("text.wasm", "not a WebAssembly component")));
        assert!(
            skipped
                .iter()
                .any(|(n, w)| *n == "core.wasm" && w.contains("not a component"))
        );
        assert!(skipped.contains(&("short.wasm", "shorter than a WebAssembly header")));
        assert!(skipped.contains(&("dir.wasm", "not a regular file")));
        assert!(!to.path().join("text.wasm").exists());
        assert!(!to.path().join("old.wasm").exists(), "a stale plugin stays");
        assert!(to.path().join("keep.txt").exists());
        let lines = report.lines();
        assert_eq!(lines.last().unwrap(), "1 plugin(s) installed, 4 skipped");
    }

    #[test]
    fn an_unreadable_source_or_destination_is_an_error() {
        let from = tempfile::tempdir().unwrap();
        let report = install(&from.path().join("missing"), &from.path().join("to")).unwrap();
        assert!(report.installed.is_empty());
        assert!(
            report.skipped[0].1.contains("no such directory"),
            "{:?}",
            report.skipped
        );
        let not_a_dir = from.path().join("plain");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let e = install(&not_a_dir, &from.path().join("to")).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read the image's plugins directory"),
            "{e}"
        );
        let file = from.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = install(from.path(), &file.join("sub")).unwrap_err();
        assert!(e.to_string().contains("cannot write"), "{e}");
    }
}
