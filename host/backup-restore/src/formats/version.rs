//! Which etcd minor version wrote a snapshot, which one will run on the
//! restored data, and the refusal of a restore that would move data to an
//! older minor version.
//!
//! etcd upgrades its storage schema when a newer minor version first runs
//! on the data (3.6 writes `storageVersion` = `3.6.0` into the `meta`
//! bucket, 3.7 `3.7.0`) and supports going back only through its own
//! downgrade procedure. Measured with etcd 3.4.23, 3.5.36, 3.6.17 and 3.7.4
//! (every snapshot restored with every version's restore tool, then served
//! by that version): 3.4 and 3.5 silently start on data that 3.6 or 3.7
//! wrote, and 3.6 refuses 3.7's (`version "3.7.0" is not supported`) only
//! after the restore replaced the data directory. The sidecar refuses such
//! a restore before anything is touched, with the versions named.
//!
//! What the restore tool says it is: `crate::etcd::etcdctl::version`.
//!
//! How a snapshot's version is read (the `meta` bucket):
//! `storageVersion` when present (3.6+); else a raft `term` means 3.5
//! (3.5 added it); else 3.4 or older.

use std::fmt;
use std::path::{Path, PathBuf};

use druid_etcd_db::Db;

/// An etcd major.minor version: what decides whether data may move between
/// two etcd builds (patch releases share a storage schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtcdVersion {
    /// The major version (3).
    pub major: u32,
    /// The minor version.
    pub minor: u32,
}

impl EtcdVersion {
    /// Parses `3.6`, `3.6.17`, `v3.6.17`, `3.7.0-rc.1`; `None` for anything
    /// else.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let mut parts = t.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The version of the etcd that will run on restored data, and how it was
/// learnt (for the messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetVersion {
    /// The version.
    pub version: EtcdVersion,
    /// Where it came from, e.g. `reported by the etcd-wrapper`.
    pub source: String,
}

/// Which etcd version wrote a snapshot database, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBy {
    /// The version (3.4 for "3.4 or older").
    pub version: EtcdVersion,
    /// What in the `meta` bucket says so.
    pub evidence: String,
}

/// Why a snapshot's version could not be read, or why a restore is
/// refused.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The snapshot database is unreadable.
    #[error("cannot read the storage version of {path}: {reason}")]
    Unreadable {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// `storageVersion` holds something that is not a version.
    #[error(
        "the meta bucket of {path} holds storageVersion {value:?}, which is not an etcd version"
    )]
    BadStorageVersion {
        /// The database file.
        path: PathBuf,
        /// The value.
        value: String,
    },
    /// The restore would move the data to an older minor version.
    #[error(
        "full snapshot {snapshot} was written by etcd {written} ({evidence}) but the etcd that \
         will run on the restored data is {target} ({learnt_from}); restoring it would downgrade the \
         data across minor versions, which etcd does not support. Nothing was restored and the \
         data directory is unchanged. Run etcd {written} or newer on this member (the Etcd's \
         spec.etcd.image), or restore from a backup taken while the cluster ran etcd {target}"
    )]
    Downgrade {
        /// The full snapshot's key.
        snapshot: String,
        /// The version that wrote it.
        written: EtcdVersion,
        /// What says so.
        evidence: String,
        /// The version that would run on it.
        target: EtcdVersion,
        /// Where that version came from.
        learnt_from: String,
    },
}

/// Reads which etcd version wrote the snapshot database at `path` (a
/// trailing SHA-256 is ignored).
pub fn written_by(path: &Path) -> Result<WrittenBy, VersionError> {
    let unreadable = |reason: String| VersionError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let db = Db::open(file).map_err(|e| unreadable(e.to_string()))?;
    if let Some(text) = db
        .storage_version()
        .map_err(|e| unreadable(e.to_string()))?
    {
        let version = EtcdVersion::parse(&text).ok_or_else(|| VersionError::BadStorageVersion {
            path: path.to_path_buf(),
            value: text.clone(),
        })?;
        return Ok(WrittenBy {
            version,
            evidence: format!("its meta bucket's storageVersion is {text}"),
        });
    }
    if db.term().map_err(|e| unreadable(e.to_string()))?.is_some() {
        return Ok(WrittenBy {
            version: EtcdVersion { major: 3, minor: 5 },
            evidence: "its meta bucket has a raft term and no storageVersion".into(),
        });
    }
    Ok(WrittenBy {
        version: EtcdVersion { major: 3, minor: 4 },
        evidence: "its meta bucket has neither a raft term nor a storageVersion".into(),
    })
}

/// Refuses (with [`VersionError::Downgrade`]) a snapshot written by a
/// newer minor version than `target`.
pub fn check_restore(
    snapshot: &str,
    written: &WrittenBy,
    target: &TargetVersion,
) -> Result<(), VersionError> {
    if written.version > target.version {
        return Err(VersionError::Downgrade {
            snapshot: snapshot.to_string(),
            written: written.version,
            evidence: written.evidence.clone(),
            target: target.version,
            learnt_from: target.source.clone(),
        });
    }
    Ok(())
}

/// The version an etcd, etcdctl or etcdutl binary prints: the first line
/// of the form `<name> version: X.Y.Z` (`etcd --version` prints
/// `etcd Version: 3.5.36`, `etcdutl version` `etcdutl version: 3.6.17`).
pub fn parse_version_output(output: &str) -> Option<EtcdVersion> {
    output.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        let tool = name.strip_suffix(" version")?;
        matches!(tool, "etcd" | "etcdctl" | "etcdutl")
            .then(|| EtcdVersion::parse(value))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32) -> EtcdVersion {
        EtcdVersion { major, minor }
    }

    #[test]
    fn parses_versions_as_etcd_prints_them() {
        assert_eq!(EtcdVersion::parse("3.6.17"), Some(v(3, 6)));
        assert_eq!(EtcdVersion::parse("v3.5.36"), Some(v(3, 5)));
        assert_eq!(EtcdVersion::parse("3.7"), Some(v(3, 7)));
        assert_eq!(EtcdVersion::parse(" 3.7.0-rc.1 "), Some(v(3, 7)));
        assert_eq!(EtcdVersion::parse("3.10.0"), Some(v(3, 10)));
        for bad in ["", "3", "three.six", "3.x.1", "latest"] {
            assert_eq!(EtcdVersion::parse(bad), None, "{bad:?}");
        }
        assert!(v(3, 10) > v(3, 9), "minor versions compare as numbers");
        assert_eq!(v(3, 6).to_string(), "3.6");
    }

    #[test]
    fn reads_the_version_lines_of_etcd_etcdctl_and_etcdutl() {
        let etcd = "etcd Version: 3.5.36\nGit SHA: Not provided\nGo Version: go1.26.8\n";
        assert_eq!(parse_version_output(etcd), Some(v(3, 5)));
        let etcdutl = "etcdutl version: 3.6.17\nAPI version: 3.6\n";
        assert_eq!(parse_version_output(etcdutl), Some(v(3, 6)));
        let etcdctl = "etcdctl version: 3.4.23\nAPI version: 3.4\n";
        assert_eq!(parse_version_output(etcdctl), Some(v(3, 4)));
        assert_eq!(parse_version_output("Go Version: go1.26.8\n"), None);
        assert_eq!(parse_version_output("usage: etcdctl\n"), None);
    }

    #[test]
    fn refuses_only_a_move_to_an_older_minor_version() {
        let target = |minor| TargetVersion {
            version: v(3, minor),
            source: "test".into(),
        };
        let written = |minor| WrittenBy {
            version: v(3, minor),
            evidence: "test".into(),
        };
        for (w, t, refused) in [
            (5, 6, false),
            (4, 6, false),
            (6, 6, false),
            (6, 5, true),
            (7, 6, true),
            (5, 4, true),
        ] {
            let result = check_restore("Full-1", &written(w), &target(t));
            assert_eq!(result.is_err(), refused, "written by 3.{w}, target 3.{t}");
        }
        let message = check_restore("Full-00000000-00000010-1", &written(7), &target(6))
            .unwrap_err()
            .to_string();
        for part in [
            "Full-00000000-00000010-1",
            "written by etcd 3.7",
            "is 3.6 (test)",
            "downgrade",
            "Nothing was restored",
            "spec.etcd.image",
        ] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
    }
}
