//! Restoring a data directory from the store: the latest full snapshot plus
//! the deltas after it.
//!
//! How:
//! 1. download the full snapshot, decompressing while streaming, and check
//!    its SHA-256 trailer (a corrupt or truncated snapshot is refused with
//!    the key named, never restored);
//! 2. with deltas (`--restore-method=compaction`, the default): the
//!    compactor plugin merges the full snapshot and the deltas into one
//!    database, verified before use ([`crate::compaction`]): every live key
//!    at its original revisions, with its lease, and the revision never
//!    lower than the last delta's. No etcd runs and nothing is replayed;
//! 3. `etcdctl snapshot restore` (etcd 3.4) or `etcdutl snapshot restore`
//!    (3.5+) of that database into `<data-dir>.part`;
//! 4. swap `<data-dir>.part` in. The old data directory, if any, is moved
//!    to `<data-dir>.bak` (the two before it to `.bak.1` and `.bak.2`, as
//!    room allows) rather than deleted, so nothing is lost if the restore
//!    was the wrong call.
//!
//! `--restore-method=replay` keeps upstream's way for comparison and as a
//! fallback: the full snapshot is restored, a temporary etcd process on
//! loopback starts on it and every delta is replayed with one transaction
//! per original revision (checked after each delta). It is slow (about
//! 1,500 revisions/s on disk) and, as upstream, replayed keys lose their
//! leases (upstream issue #1045).

pub mod initializer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use etcd_client::{Client, Txn, TxnOp};
use futures::StreamExt as _;

use crate::compaction;
use crate::config::{RestoreArgs, RestoreMethod};
use crate::etcd::etcdctl::{self, EtcdctlError};
use crate::etcd::temp::{TempEtcd, TempEtcdError};
use crate::formats::delta::{self, DeltaError, EventType};
use crate::formats::names::Snapshot;
use crate::formats::version::{self, TargetVersion, VersionError};
use crate::metrics::{Metrics, RestoreLabels};
use crate::store::{self, Cutoff, SnapshotSet, Snapstore};

/// Why a restore failed. The data directory was left as it was.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The store failed, or the full snapshot is corrupt.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// The store holds deltas but no full snapshot.
    #[error("the store holds deltas but no full snapshot to apply them to")]
    NoFullSnapshot,
    /// A delta is corrupt.
    #[error("delta snapshot {key} is corrupt and was NOT applied: {source}")]
    CorruptDelta {
        /// The object.
        key: String,
        /// What is wrong.
        #[source]
        source: DeltaError,
    },
    /// Deltas do not follow each other.
    #[error(
        "delta {delta} does not follow {previous}: it starts at revision {start} but the previous \
         snapshot ends at {end}; revisions would be missing"
    )]
    Gap {
        /// The delta.
        delta: String,
        /// The snapshot before it.
        previous: String,
        /// The delta's first revision.
        start: i64,
        /// The previous snapshot's last revision.
        end: i64,
    },
    /// A replayed revision did not land where it was recorded.
    #[error(
        "after applying {key} etcd is at revision {actual}, expected {expected} (mismatched event revision)"
    )]
    Mismatch {
        /// The delta.
        key: String,
        /// Expected revision.
        expected: i64,
        /// Actual revision.
        actual: i64,
    },
    /// One revision of a delta holds more operations than one transaction
    /// may.
    #[error("revision {revision} of {key} has {ops} operations, over --max-txn-ops={max}")]
    TooManyOps {
        /// The delta.
        key: String,
        /// The revision.
        revision: i64,
        /// Its operations.
        ops: usize,
        /// `--max-txn-ops`.
        max: u64,
    },
    /// The temporary etcd refused a revision of a delta.
    #[error("temporary etcd: applying revision {revision} of {key}: {source}")]
    Apply {
        /// The delta.
        key: String,
        /// The revision.
        revision: i64,
        /// etcd's error.
        #[source]
        source: etcd_client::Error,
    },
    /// The temporary etcd did not report its revision.
    #[error("temporary etcd: {0}")]
    Status(#[source] etcd_client::Error),
    /// `etcdctl snapshot restore` failed.
    #[error(transparent)]
    Etcdctl(#[from] EtcdctlError),
    /// The temporary etcd did not start.
    #[error(transparent)]
    TempEtcd(#[from] TempEtcdError),
    /// A local file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The compactor could not merge the snapshots, or its output failed
    /// verification.
    #[error("compaction: {0}")]
    Compaction(#[from] compaction::Error),
    /// The full snapshot was written by a newer etcd minor version than the
    /// one that will run on it, or its version is unreadable.
    #[error(transparent)]
    Version(#[from] VersionError),
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The base.
    pub full: Snapshot,
    /// Deltas applied.
    pub deltas: usize,
    /// The revision of the restored data.
    pub revision: i64,
}

/// A local file error, naming what was done to which path.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError {
    let path = path.to_path_buf();
    move |source| RestoreError::Io { what, path, source }
}

/// Checks that the deltas follow the base and each other.
pub fn check_continuity(full: &Snapshot, deltas: &[Snapshot]) -> Result<(), RestoreError> {
    let mut prev = full;
    for d in deltas {
        let ok = if std::ptr::eq(prev, full) {
            d.start_revision <= full.last_revision + 1
        } else {
            d.start_revision == prev.last_revision + 1
        };
        if !ok {
            return Err(RestoreError::Gap {
                delta: d.name(),
                previous: prev.name(),
                start: d.start_revision,
                end: prev.last_revision,
            });
        }
        prev = d;
    }
    Ok(())
}

/// Restores `set` into `args.data_dir`.
pub async fn restore(
    args: &RestoreArgs,
    store: &Snapstore,
    set: &SnapshotSet,
    metrics: &Metrics,
) -> Result<RestoreReport, RestoreError> {
    restore_to(args, store, set, None, metrics).await
}

/// [`restore`] up to `cut` (a point in time): `set` is what
/// [`crate::store::Listing::set_at`] chose for it, and the events past the
/// cut in its last delta are dropped. A point-in-time restore with deltas
/// always merges them through the compactor.
pub async fn restore_to(
    args: &RestoreArgs,
    store: &Snapstore,
    set: &SnapshotSet,
    cut: Option<Cutoff>,
    metrics: &Metrics,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let result = restore_inner(args, store, set, cut).await;
    metrics
        .restoration_duration
        .get_or_create(&RestoreLabels::from_store(result.is_ok()))
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(r) => {
            tracing::info!(full = %r.full.name(), deltas = r.deltas, revision = r.revision, elapsed_s = started.elapsed().as_secs_f64(), "restore finished")
        }
        Err(e) => {
            tracing::error!(error = %e, "restore failed; the data directory was left as it was")
        }
    }
    result
}

async fn restore_inner(
    args: &RestoreArgs,
    store: &Snapstore,
    set: &SnapshotSet,
    cut: Option<Cutoff>,
) -> Result<RestoreReport, RestoreError> {
    let full = set.full.as_ref().ok_or(RestoreError::NoFullSnapshot)?;
    check_continuity(full, &set.deltas)?;
    let temp = &args.restoration_temp_snapshots_dir;
    let _ = std::fs::remove_dir_all(temp);
    std::fs::create_dir_all(temp).map_err(io("cannot create", temp))?;
    let db = temp.join("snapshot.db");
    tracing::info!(full = %full.name(), deltas = set.deltas.len(), "restoring from the store");
    store.download_full(full, &db, args.skip_hash_check).await?;
    check_version(args, &db, &store.key(full)).await?;
    let part = suffixed(&args.data_dir, ".part");
    let _ = std::fs::remove_dir_all(&part);
    let revision = if set.deltas.is_empty() {
        etcdctl::snapshot_restore(args, &db, &part).await?;
        full.last_revision
    } else if cut.is_some() || args.compaction.restore_method == RestoreMethod::Compaction {
        by_compaction(args, store, full, &db, &set.deltas, cut, &part).await?
    } else {
        by_replay(args, store, &db, &set.deltas, &part).await?
    };
    swap_in(&args.data_dir, &part)?;
    let _ = std::fs::remove_dir_all(temp);
    Ok(RestoreReport {
        full: full.clone(),
        deltas: set.deltas.len(),
        revision,
    })
}

/// The etcd version that will run on the restored data: the one the
/// etcd-wrapper reported, else `--etcd-version`, else the version the
/// restore tool prints. `None` when none of them tells.
pub async fn target_version(args: &RestoreArgs) -> Option<TargetVersion> {
    if let Some(target) = stated_version(args) {
        return Some(target);
    }
    let v = etcdctl::version(&args.etcdctl_binary).await?;
    Some(TargetVersion {
        version: v,
        source: format!("the version of {}", args.etcdctl_binary.display()),
    })
}

/// The etcd version that runs on the data as stated by the etcd-wrapper's
/// report or `--etcd-version`, without the restore tool's fallback: what
/// the check of an existing data directory trusts (a wrong guess there
/// would keep a healthy member down).
pub fn stated_version(args: &RestoreArgs) -> Option<TargetVersion> {
    if let Some(v) = args.wrapper_etcd_version {
        return Some(TargetVersion {
            version: v,
            source: "reported by the etcd-wrapper".into(),
        });
    }
    args.etcd_version.map(|v| TargetVersion {
        version: v,
        source: "--etcd-version".into(),
    })
}

/// Refuses the full snapshot `db` (the object `key`) if a newer etcd minor
/// version wrote it than the one that will run on the restored data.
async fn check_version(args: &RestoreArgs, db: &Path, key: &str) -> Result<(), RestoreError> {
    let written = version::written_by(db)?;
    let Some(target) = target_version(args).await else {
        tracing::warn!(
            snapshot = key,
            written_by = %written.version,
            restore_tool = %args.etcdctl_binary.display(),
            "cannot tell which etcd version will run on the restored data (set --etcd-version); \
             a restore that downgrades it across minor versions cannot be refused"
        );
        return Ok(());
    };
    version::check_restore(key, &written, &target)?;
    tracing::info!(
        snapshot = key,
        written_by = %written.version,
        etcd = %target.version,
        etcd_version_source = %target.source,
        "the snapshot's storage version suits the etcd that will run on it"
    );
    Ok(())
}

/// Merges the base `db` and `deltas` into one database through the
/// compactor plugin and restores that into `part`; returns its revision.
async fn by_compaction(
    args: &RestoreArgs,
    store: &Snapstore,
    full: &Snapshot,
    db: &Path,
    deltas: &[Snapshot],
    cut: Option<Cutoff>,
    part: &Path,
) -> Result<i64, RestoreError> {
    let workdir = args.restoration_temp_snapshots_dir.join("compaction");
    let compacted = compaction::compact_set(
        &args.compaction,
        args.max_fetchers,
        store,
        full,
        db,
        deltas,
        cut,
        &workdir,
    )
    .await?;
    etcdctl::snapshot_restore(args, &compacted.path, part).await?;
    Ok(compacted.report.revision)
}

/// Restores the base `db` into `part`, then replays `deltas` through a
/// temporary etcd on it; returns the final revision.
async fn by_replay(
    args: &RestoreArgs,
    store: &Snapstore,
    db: &Path,
    deltas: &[Snapshot],
    part: &Path,
) -> Result<i64, RestoreError> {
    etcdctl::snapshot_restore(args, db, part).await?;
    let _ = std::fs::remove_file(db);
    let etcd = TempEtcd::start(args, part).await?;
    let replayed = replay(args, store, &etcd.client, deltas).await;
    etcd.stop().await;
    replayed
}

/// `path` with `suffix` appended to its last component.
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// How many earlier data directories are kept: `<data-dir>.bak` (the
/// newest), `<data-dir>.bak.1`, `<data-dir>.bak.2` (the oldest).
pub const KEPT_DATA_DIRS: usize = 3;

/// Where the `i`-th newest earlier data directory is kept.
pub fn kept_data_dir(data_dir: &Path, i: usize) -> PathBuf {
    if i == 0 {
        suffixed(data_dir, ".bak")
    } else {
        suffixed(data_dir, &format!(".bak.{i}"))
    }
}

/// Moves an existing data directory to `<data_dir>.bak` instead of deleting
/// it, shifting earlier ones to `.bak.1` and `.bak.2` (the oldest beyond
/// [`KEPT_DATA_DIRS`] is deleted); returns where it went. Older copies are
/// then deleted, oldest first, while the volume has less room than the
/// newest copy takes: a restore must not fail for room that old copies
/// hold, and the newest copy is always kept.
pub fn move_aside(data_dir: &Path) -> Result<Option<PathBuf>, RestoreError> {
    if !data_dir.exists() {
        return Ok(None);
    }
    let kept: Vec<PathBuf> = (0..KEPT_DATA_DIRS)
        .map(|i| kept_data_dir(data_dir, i))
        .collect();
    if let Some(oldest) = kept.last()
        && oldest.exists()
    {
        std::fs::remove_dir_all(oldest).map_err(io("cannot delete", oldest))?;
    }
    for i in (1..KEPT_DATA_DIRS).rev() {
        if kept[i - 1].exists() {
            std::fs::rename(&kept[i - 1], &kept[i])
                .map_err(io("cannot move aside", &kept[i - 1]))?;
        }
    }
    let bak = kept[0].clone();
    std::fs::rename(data_dir, &bak).map_err(io("cannot move aside", data_dir))?;
    tracing::warn!(old = %bak.display(), "the previous data directory was moved aside");
    let needed = dir_size(&bak);
    for old in kept[1..].iter().rev() {
        if free_bytes(&bak).is_none_or(|free| free >= needed) {
            break;
        }
        if old.exists() {
            std::fs::remove_dir_all(old).map_err(io("cannot delete", old))?;
            tracing::warn!(deleted = %old.display(), needed_bytes = needed, "an older copy of the data directory was deleted to make room");
        }
    }
    Ok(Some(bak))
}

/// Bytes of the files below `dir` (best effort).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes an unprivileged writer can still use on the volume of `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Moves `part` to `data_dir`, keeping the old data directory as
/// `<data_dir>.bak`.
fn swap_in(data_dir: &Path, part: &Path) -> Result<(), RestoreError> {
    move_aside(data_dir)?;
    std::fs::rename(part, data_dir).map_err(io("cannot move the restored data to", data_dir))
}

/// Replays `deltas` into the etcd behind `client`; returns the final
/// revision.
async fn replay(
    args: &RestoreArgs,
    store: &Snapstore,
    client: &Client,
    deltas: &[Snapshot],
) -> Result<i64, RestoreError> {
    let mut client = client.clone();
    let mut current = client
        .status()
        .await
        .map_err(RestoreError::Status)?
        .header()
        .map_or(0, |h| h.revision());
    let store = Arc::new(store.clone());
    let fetchers = args.max_fetchers.max(1);
    // Prefetched deltas are kept compressed; each is decoded just before
    // it is applied, so memory holds at most one decoded delta.
    let mut downloads = futures::stream::iter(deltas.iter().cloned().map(|d| {
        let store = store.clone();
        async move {
            let raw = store.download_raw(&d).await?;
            Ok::<_, store::Error>((d, raw))
        }
    }))
    .buffered(fetchers);
    let max_ops = usize::try_from(args.max_txn_ops)
        .unwrap_or(usize::MAX)
        .max(1);
    while let Some(item) = downloads.next().await {
        let (snap, raw) = item?;
        let key = store.key(&snap);
        let events =
            delta::decode(&raw, snap.compression).map_err(|source| RestoreError::CorruptDelta {
                key: key.clone(),
                source,
            })?;
        drop(raw);
        if current >= snap.last_revision {
            tracing::info!(delta = %snap.name(), current, "delta already covered by the base; skipped");
            continue;
        }
        let mut pending: VecDeque<delta::DeltaEvent> = events.into();
        while let Some(first) = pending.pop_front() {
            let rev = first.event.kv.mod_revision;
            let mut group = vec![first];
            while pending
                .front()
                .is_some_and(|e| e.event.kv.mod_revision == rev)
            {
                if let Some(e) = pending.pop_front() {
                    group.push(e);
                }
            }
            if rev <= current {
                continue;
            }
            if group.len() > max_ops {
                return Err(RestoreError::TooManyOps {
                    key,
                    revision: rev,
                    ops: group.len(),
                    max: args.max_txn_ops,
                });
            }
            let ops: Vec<TxnOp> = group
                .into_iter()
                .map(|e| match e.event.kind {
                    EventType::Put => TxnOp::put(e.event.kv.key, e.event.kv.value, None),
                    EventType::Delete => TxnOp::delete(e.event.kv.key, None),
                })
                .collect();
            let resp = client
                .txn(Txn::new().and_then(ops))
                .await
                .map_err(|source| RestoreError::Apply {
                    key: key.clone(),
                    revision: rev,
                    source,
                })?;
            current = resp.header().map_or(current, |h| h.revision());
        }
        if current != snap.last_revision {
            return Err(RestoreError::Mismatch {
                key,
                expected: snap.last_revision,
                actual: current,
            });
        }
        tracing::info!(delta = %snap.name(), revision = current, "delta applied");
    }
    Ok(current)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
    use super::*;

    #[test]
    fn earlier_data_directories_are_kept_three_deep() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        assert_eq!(move_aside(&data).unwrap(), None);
        for generation in 0..5 {
            std::fs::create_dir_all(data.join("member")).unwrap();
            std::fs::write(data.join("member/gen"), generation.to_string()).unwrap();
            let bak = move_aside(&data).unwrap().unwrap();
            assert_eq!(bak, suffixed(&data, ".bak"));
            assert!(!data.exists());
        }
        for (i, generation) in [(0, "4"), (1, "3"), (2, "2")] {
            let kept = kept_data_dir(&data, i);
            assert_eq!(
                std::fs::read_to_string(kept.join("member/gen")).unwrap(),
                generation,
                "{}",
                kept.display()
            );
        }
        assert!(!suffixed(&data, ".bak.3").exists());
        assert!(free_bytes(root.path()).is_some_and(|f| f > 0));
        assert_eq!(dir_size(&kept_data_dir(&data, 0)), 1);
    }

    /// A small real filesystem (tmpfs, mounted by the test: needs root, as
    /// the node tests do), unmounted on drop.
    struct SmallVolume(tempfile::TempDir);

    impl SmallVolume {
        fn new(bytes: u64) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let out = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "cannot mount a tmpfs (this test needs root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            SmallVolume(dir)
        }
    }

    impl Drop for SmallVolume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    #[test]
    fn older_copies_go_first_when_the_volume_runs_short() {
        const MIB: usize = 1 << 20;
        let volume = SmallVolume::new(4 * MIB as u64);
        let data = volume.0.path().join("data");
        let generation = |n: u8| {
            std::fs::create_dir_all(data.join("member")).unwrap();
            // 1.2 MiB each: three fit in 4 MiB, with less than one left.
            std::fs::write(data.join("member/db"), vec![n; MIB * 6 / 5]).unwrap();
        };
        generation(0);
        move_aside(&data).unwrap();
        generation(1);
        move_aside(&data).unwrap();
        assert!(kept_data_dir(&data, 0).exists() && kept_data_dir(&data, 1).exists());
        // A third copy would leave 0.4 MiB, less than the newest copy
        // takes: the oldest is deleted, the two newest stay.
        generation(2);
        let bak = move_aside(&data).unwrap().unwrap();
        assert_eq!(std::fs::read(bak.join("member/db")).unwrap()[0], 2);
        assert_eq!(
            std::fs::read(kept_data_dir(&data, 1).join("member/db")).unwrap()[0],
            1
        );
        assert!(
            !kept_data_dir(&data, 2).exists(),
            "the oldest copy made room"
        );
        assert!(free_bytes(&bak).unwrap() >= (MIB * 6 / 5) as u64);
    }
}
