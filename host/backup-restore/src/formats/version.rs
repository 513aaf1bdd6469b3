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
//! How a database's version is read: the higher of the `meta` bucket's
//! `storageVersion` (3.6+) and the `cluster` bucket's `clusterVersion`
//! (every version; etcd refuses to run a member older than it) when
//! either is there (*recorded*); else a raft `term` means 3.5 (3.5 added
//! it) and nothing means 3.4 or older (*inferred*).
//!
//! The same rule guards a data directory that is already there
//! ([`check_data_dir`]): a member whose image went back to an older etcd
//! than the cluster ran at is not started on its data. That check acts
//! only on a recorded version: a 3.5 member of a cluster still at 3.4
//! writes a term, and etcd supports taking such a member back to 3.4.

use std::path::{Path, PathBuf};

use druid_etcd_db::Db;
pub use druid_etcd_version::{EtcdVersion, parse_version_output};

/// The version of the etcd that will run on restored data, and how it was
/// learnt (for the messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetVersion {
    /// The version.
    pub version: EtcdVersion,
    /// Where it came from, e.g. `reported by the etcd-wrapper`.
    pub source: String,
}

/// Which etcd version wrote a database, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBy {
    /// The version (3.4 for "3.4 or older").
    pub version: EtcdVersion,
    /// What in the database says so.
    pub evidence: String,
    /// Whether the database records the version (`storageVersion`,
    /// `clusterVersion`) rather than it being inferred from a term.
    pub recorded: bool,
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
    /// `storageVersion` or `clusterVersion` holds something that is not a
    /// version.
    #[error("{path} holds {key} {value:?}, which is not an etcd version")]
    BadVersion {
        /// The database file.
        path: PathBuf,
        /// Which key (`storageVersion`, `clusterVersion`).
        key: &'static str,
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
    /// The data directory holds data of a newer minor version than the
    /// member's etcd.
    #[error(
        "the data directory's database {db} was last run by etcd {written} ({evidence}) but this \
         member's etcd is {target} ({learnt_from}); etcd does not run data of a newer minor \
         version. Nothing was changed and etcd is not started. Run etcd {written} or newer on \
         this member (the Etcd's spec.etcd.image); to go back to {target} for good, downgrade \
         the cluster with etcd's own procedure (etcdctl downgrade enable {target}, etcd 3.6 and \
         later) while it still runs {written}, then change the image"
    )]
    DataDirDowngrade {
        /// The database file.
        db: PathBuf,
        /// The version recorded in it.
        written: EtcdVersion,
        /// What says so.
        evidence: String,
        /// The version of the member's etcd.
        target: EtcdVersion,
        /// Where that version came from.
        learnt_from: String,
    },
}

/// Reads which etcd version wrote the database at `path` (a snapshot,
/// whose trailing SHA-256 is ignored, or a data directory's `member/snap/db`).
pub fn written_by(path: &Path) -> Result<WrittenBy, VersionError> {
    let unreadable = |reason: String| VersionError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let db = Db::open(file).map_err(|e| unreadable(e.to_string()))?;
    let parse = |key: &'static str, text: Option<String>| {
        text.map(|text| match EtcdVersion::parse(&text) {
            Some(version) => Ok((key, text, version)),
            None => Err(VersionError::BadVersion {
                path: path.to_path_buf(),
                key,
                value: text,
            }),
        })
        .transpose()
    };
    let storage = parse(
        "storageVersion",
        db.storage_version()
            .map_err(|e| unreadable(e.to_string()))?,
    )?;
    let cluster = parse(
        "clusterVersion",
        db.cluster_version()
            .map_err(|e| unreadable(e.to_string()))?,
    )?;
    let recorded: Vec<_> = storage.into_iter().chain(cluster).collect();
    if let Some(version) = recorded.iter().map(|(_, _, v)| *v).max() {
        let evidence = recorded
            .iter()
            .map(|(key, text, _)| format!("{key} {text}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Ok(WrittenBy {
            version,
            evidence: format!("it records {evidence}"),
            recorded: true,
        });
    }
    if db.term().map_err(|e| unreadable(e.to_string()))?.is_some() {
        return Ok(WrittenBy {
            version: EtcdVersion { major: 3, minor: 5 },
            evidence: "its meta bucket has a raft term and it records no version".into(),
            recorded: false,
        });
    }
    Ok(WrittenBy {
        version: EtcdVersion { major: 3, minor: 4 },
        evidence: "it has no raft term and records no version".into(),
        recorded: false,
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

/// Refuses (with [`VersionError::DataDirDowngrade`]) to start `target` on
/// the data directory database `db` when the version the database records
/// is a newer minor version. An inferred version never refuses: a term
/// alone is also what a 3.5 member of a cluster still at 3.4 writes, and
/// etcd supports taking that member back to 3.4.
pub fn check_data_dir(
    db: &Path,
    written: &WrittenBy,
    target: &TargetVersion,
) -> Result<(), VersionError> {
    if written.recorded && written.version > target.version {
        return Err(VersionError::DataDirDowngrade {
            db: db.to_path_buf(),
            written: written.version,
            evidence: written.evidence.clone(),
            target: target.version,
            learnt_from: target.source.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32) -> EtcdVersion {
        EtcdVersion { major, minor }
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
            recorded: false,
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

    #[test]
    fn a_data_directory_is_refused_only_on_a_recorded_newer_version() {
        let target = TargetVersion {
            version: v(3, 5),
            source: "reported by the etcd-wrapper".into(),
        };
        let written = |minor, recorded| WrittenBy {
            version: v(3, minor),
            evidence: "it records clusterVersion 3.6.0".into(),
            recorded,
        };
        let db = Path::new("/var/etcd/data/new.etcd/member/snap/db");
        for (w, recorded, refused) in [
            (6, true, true),
            (5, true, false),
            (4, true, false),
            // A term alone: a 3.5 member of a cluster still at 3.4 writes
            // one too, and may go back.
            (5, false, false),
            (6, false, false),
        ] {
            let result = check_data_dir(db, &written(w, recorded), &target);
            assert_eq!(
                result.is_err(),
                refused,
                "written by 3.{w} (recorded: {recorded})"
            );
        }
        let message = check_data_dir(db, &written(6, true), &target)
            .unwrap_err()
            .to_string();
        for part in [
            "/var/etcd/data/new.etcd/member/snap/db",
            "last run by etcd 3.6 (it records clusterVersion 3.6.0)",
            "this member's etcd is 3.5 (reported by the etcd-wrapper)",
            "Nothing was changed and etcd is not started",
            "spec.etcd.image",
            "etcdctl downgrade enable 3.5",
        ] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
    }
}
