//! The files the host lends a plugin as `blobs` handles: what the
//! generated bindings name as the resources' host types.

use std::fs::File;
use std::path::Path;

/// An input file lent to the plugin, read-only.
pub struct BlobReader {
    pub(super) file: File,
    pub(super) size: u64,
}

/// An output or scratch file lent to the plugin, capped in size.
pub struct BlobWriter {
    pub(super) file: File,
    pub(super) cap: u64,
}

impl BlobReader {
    /// Opens `path` to lend it read-only.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(Self { file, size })
    }
}

impl BlobWriter {
    /// Creates (or empties) `path` to lend it for writing, at most `cap`
    /// bytes.
    pub(crate) fn create(path: &Path, cap: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Self { file, cap })
    }
}
