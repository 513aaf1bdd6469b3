//! The validation mode and the `exit_code` file: the wrapper writes the
//! name of the signal it was stopped with (`terminated`, `interrupt`) after
//! etcd shut down cleanly, and the next start asks the sidecar for a quick
//! `sanity` validation instead of a `full` one.

use std::path::{Path, PathBuf};

use crate::Error;

/// How thoroughly the sidecar validates the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationMode {
    /// Structure and revision only (after a clean shutdown).
    Sanity,
    /// Also the WAL, the snapshots and every database page.
    Full,
}

impl ValidationMode {
    /// The `mode` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationMode::Sanity => "sanity",
            ValidationMode::Full => "full",
        }
    }
}

/// `<volume>/exit_code`.
pub fn exit_code_path(volume: &Path) -> PathBuf {
    volume.join("exit_code")
}

/// `<volume>/validation_marker`, written by the old etcd-custom-image.
pub fn validation_marker_path(volume: &Path) -> PathBuf {
    volume.join("validation_marker")
}

/// Removes the legacy `validation_marker` and returns `sanity` if
/// `exit_code` holds `terminated` or `interrupt`, else `full`.
pub fn determine(volume: &Path) -> ValidationMode {
    let marker = validation_marker_path(volume);
    if let Err(e) = remove_if_present(&marker) {
        tracing::warn!(path = %marker.display(), error = %e, "cannot remove the legacy validation marker");
    }
    let path = exit_code_path(volume);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let last = text.trim();
            if last == "terminated" || last == "interrupt" {
                tracing::info!(path = %path.display(), signal = last, "etcd was shut down cleanly last time: sanity validation");
                ValidationMode::Sanity
            } else {
                tracing::info!(path = %path.display(), content = last, "unexpected exit code record: full validation");
                ValidationMode::Full
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no record of a clean shutdown: full validation");
            ValidationMode::Full
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the exit code record: full validation");
            ValidationMode::Full
        }
    }
}

/// Records a clean shutdown by `signal` (`terminated` or `interrupt`).
pub fn write_exit_code(volume: &Path, signal: &str) -> Result<(), Error> {
    let path = exit_code_path(volume);
    std::fs::write(&path, signal).map_err(|source| Error::Write { path, source })
}

/// Forgets the last shutdown (done once etcd runs again, as upstream).
pub fn clear_exit_code(volume: &Path) -> Result<(), Error> {
    let path = exit_code_path(volume);
    remove_if_present(&path).map_err(|source| Error::Write { path, source })
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("etcd-wrapper-mode-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sanity_only_after_a_recorded_signal() {
        let v = volume("signal");
        assert_eq!(determine(&v), ValidationMode::Full);
        write_exit_code(&v, "terminated").unwrap();
        assert_eq!(determine(&v), ValidationMode::Sanity);
        write_exit_code(&v, "interrupt\n").unwrap();
        assert_eq!(determine(&v), ValidationMode::Sanity);
        write_exit_code(&v, "killed").unwrap();
        assert_eq!(determine(&v), ValidationMode::Full);
        clear_exit_code(&v).unwrap();
        clear_exit_code(&v).unwrap();
        assert!(!exit_code_path(&v).exists());
    }

    #[test]
    fn the_legacy_marker_is_removed() {
        let v = volume("marker");
        std::fs::write(validation_marker_path(&v), "x").unwrap();
        determine(&v);
        assert!(!validation_marker_path(&v).exists());
    }
}
