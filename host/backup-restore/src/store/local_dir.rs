//! `etcdbr prepare-local-store`: gives a Local store's directory to the
//! sidecar's user before the sidecar starts.
//!
//! A Local store is a node directory (a hostPath volume). The kubelet
//! creates it owned by root, and the sidecar runs as a non-root user, so
//! the pod's first init container runs this as root with only the CHOWN
//! capability. The upstream operator does the same with `chown -R` in a
//! shell image; our images have no shell, so the sidecar binary does it.
//!
//! The walk never follows a symbolic link (a link in the store is changed
//! itself, not its target: a tenant cannot hand a node file to the
//! sidecar's user), stays on the directory's filesystem, and is bounded in
//! depth (the store's layout is `<prefix>/v2/<snapshot>`).

use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Gid, Uid, chownat};

/// How deep below the store directory ownership is changed.
pub const MAX_DEPTH: usize = 8;

/// Why the directory could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The directory is not an absolute path.
    #[error("--dir {0} is not an absolute path")]
    NotAbsolute(PathBuf),
    /// A file system call failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was tried.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> PrepareError + 'a {
    move |source| PrepareError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`prepare`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// Entries whose owner was changed (the directory itself included).
    pub changed: u64,
    /// Entries already owned by the user.
    pub unchanged: u64,
}

/// Creates `dir` if needed and makes it, and everything below it (to
/// [`MAX_DEPTH`]), owned by `uid:gid`, without following links.
pub fn prepare(dir: &Path, uid: u32, gid: u32) -> Result<Prepared, PrepareError> {
    if !dir.is_absolute() {
        return Err(PrepareError::NotAbsolute(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let device = std::fs::symlink_metadata(dir)
        .map_err(io("inspect", dir))
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))?;
    let mut done = Prepared::default();
    walk(dir, device, uid, gid, 0, &mut done)?;
    Ok(done)
}

fn walk(
    path: &Path,
    device: u64,
    uid: u32,
    gid: u32,
    depth: usize,
    done: &mut Prepared,
) -> Result<(), PrepareError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path).map_err(io("inspect", path))?;
    if meta.dev() != device {
        // Another filesystem mounted inside the store: not ours to change.
        return Ok(());
    }
    if meta.uid() == uid && meta.gid() == gid {
        done.unchanged += 1;
    } else {
        chownat(
            CWD,
            path,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| PrepareError::Io {
            what: "change the owner of",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        done.changed += 1;
    }
    if meta.file_type().is_dir() && depth < MAX_DEPTH {
        for entry in std::fs::read_dir(path).map_err(io("list", path))? {
            let entry = entry.map_err(io("list", path))?;
            walk(&entry.path(), device, uid, gid, depth + 1, done)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn the_store_becomes_the_users_and_links_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, "node file").unwrap();
        let store = root.path().join("ns/container");
        std::fs::create_dir_all(store.join("prefix/v2")).unwrap();
        std::fs::write(store.join("prefix/v2/Full-00000000-00000001-1"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, store.join("prefix/link")).unwrap();
        let (uid, gid) = (65532, 65532);
        let done = prepare(&store, uid, gid).unwrap();
        // The directory, prefix, v2, the snapshot and the link itself.
        assert_eq!(done.changed, 5, "{done:?}");
        for p in [
            "",
            "prefix",
            "prefix/v2",
            "prefix/v2/Full-00000000-00000001-1",
        ] {
            let m = std::fs::symlink_metadata(store.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{p}");
        }
        let link = std::fs::symlink_metadata(store.join("prefix/link")).unwrap();
        assert_eq!(link.uid(), uid, "the link itself changes");
        let target = std::fs::metadata(&outside).unwrap();
        assert_ne!(target.uid(), uid, "the link's target does not");
        // Run again: nothing to change.
        let again = prepare(&store, uid, gid).unwrap();
        assert_eq!((again.changed, again.unchanged), (0, 5));
    }

    #[test]
    fn a_relative_directory_is_refused() {
        let err = prepare(Path::new("var/backup"), 1, 1).unwrap_err();
        assert!(err.to_string().contains("not an absolute path"), "{err}");
    }
}
