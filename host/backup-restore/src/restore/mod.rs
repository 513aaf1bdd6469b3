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
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use futures::StreamExt as _;

use crate::config::{RestoreArgs, RestoreMethod};
use crate::formats::delta::{self, EventType};
use crate::formats::full::TrailerCheck;
use crate::formats::names::Snapshot;
use crate::metrics::{Metrics, Succeeded};
use crate::store::{self, SnapshotSet, Snapstore};

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// The full snapshot is corrupt or truncated.
    #[error(
        "full snapshot {key} is corrupt or truncated and was NOT restored: {detail}; \
         delete or exclude it so the previous one is used, or restore from another copy"
    )]
    CorruptFull {
        /// The object.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A delta is corrupt.
    #[error("delta snapshot {key} is corrupt and was NOT applied: {detail}")]
    CorruptDelta {
        /// The object.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// Deltas do not follow each other.
    #[error("{0}")]
    Gap(String),
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
    /// A command failed.
    #[error("{0}")]
    Command(String),
    /// The temporary etcd failed.
    #[error("temporary etcd: {0}")]
    Etcd(String),
    /// A local file failed.
    #[error("{0}")]
    Io(String),
    /// The compactor could not merge the snapshots, or its output failed
    /// verification.
    #[error("compaction: {0}")]
    Compaction(String),
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
pub(crate) fn io(what: &str, path: &Path, e: std::io::Error) -> RestoreError {
    RestoreError::Io(format!("{what} {}: {e}", path.display()))
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
            return Err(RestoreError::Gap(format!(
                "delta {} does not follow {}: it starts at revision {} but the previous snapshot ends at {}; \
                 revisions would be missing",
                d.name(),
                prev.name(),
                d.start_revision,
                prev.last_revision
            )));
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
    let started = Instant::now();
    let result = restore_inner(args, store, set).await;
    metrics
        .restoration_duration
        .get_or_create(&Succeeded::new(result.is_ok()))
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
) -> Result<RestoreReport, RestoreError> {
    let Some(full) = &set.full else {
        return Err(RestoreError::Gap(
            "the store holds deltas but no full snapshot to apply them to".into(),
        ));
    };
    check_continuity(full, &set.deltas)?;
    let temp = &args.restoration_temp_snapshots_dir;
    let _ = std::fs::remove_dir_all(temp);
    std::fs::create_dir_all(temp).map_err(|e| io("cannot create", temp, e))?;
    let db = temp.join("snapshot.db");
    tracing::info!(full = %full.name(), deltas = set.deltas.len(), "restoring from the store");
    download_full(store, full, &db, args.skip_hash_check).await?;
    let part = suffixed(&args.data_dir, ".part");
    let _ = std::fs::remove_dir_all(&part);
    let by_compaction =
        !set.deltas.is_empty() && args.compaction.restore_method == RestoreMethod::Compaction;
    if by_compaction {
        let compacted = crate::compaction::compact_set(
            &args.compaction,
            args.max_fetchers,
            store,
            full,
            &db,
            &set.deltas,
            &temp.join("compaction"),
        )
        .await?;
        etcdctl_restore(args, &compacted.path, &part).await?;
        swap_in(&args.data_dir, &part)?;
        let _ = std::fs::remove_dir_all(temp);
        return Ok(RestoreReport {
            full: full.clone(),
            deltas: set.deltas.len(),
            revision: compacted.report.revision,
        });
    }
    etcdctl_restore(args, &db, &part).await?;
    let _ = std::fs::remove_file(&db);

    let mut revision = full.last_revision;
    if !set.deltas.is_empty() {
        let etcd = TempEtcd::start(args, &part).await?;
        let replay = replay(args, store, &etcd.client, &set.deltas).await;
        etcd.stop().await;
        revision = replay?;
    }
    swap_in(&args.data_dir, &part)?;
    let _ = std::fs::remove_dir_all(temp);
    Ok(RestoreReport {
        full: full.clone(),
        deltas: set.deltas.len(),
        revision,
    })
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
        std::fs::remove_dir_all(oldest).map_err(|e| io("cannot delete", oldest, e))?;
    }
    for i in (1..KEPT_DATA_DIRS).rev() {
        if kept[i - 1].exists() {
            std::fs::rename(&kept[i - 1], &kept[i])
                .map_err(|e| io("cannot move aside", &kept[i - 1], e))?;
        }
    }
    let bak = kept[0].clone();
    std::fs::rename(data_dir, &bak).map_err(|e| io("cannot move aside", data_dir, e))?;
    tracing::warn!(old = %bak.display(), "the previous data directory was moved aside");
    let needed = dir_size(&bak);
    for old in kept[1..].iter().rev() {
        if free_bytes(&bak).is_none_or(|free| free >= needed) {
            break;
        }
        if old.exists() {
            std::fs::remove_dir_all(old).map_err(|e| io("cannot delete", old, e))?;
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
    std::fs::rename(part, data_dir).map_err(|e| io("cannot move the restored data to", data_dir, e))
}

/// Downloads `full` decompressed into `path` and checks its SHA-256 trailer
/// (unless the user skips the check): a corrupt or truncated snapshot is
/// refused with its key named.
pub async fn download_full(
    store: &Snapstore,
    full: &Snapshot,
    path: &Path,
    skip_hash_check: bool,
) -> Result<(), RestoreError> {
    store.download_to_file(full, path).await?;
    if !skip_hash_check {
        verify_full(path).map_err(|detail| RestoreError::CorruptFull {
            key: store.key(full),
            detail,
        })?;
    }
    Ok(())
}

/// Checks a decompressed full snapshot's SHA-256 trailer.
pub fn verify_full(path: &Path) -> Result<(), String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut check = TrailerCheck::new();
    std::io::copy(&mut file, &mut check)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    check.finish().map(|_| ()).map_err(|e| e.to_string())
}

async fn etcdctl_restore(args: &RestoreArgs, db: &Path, out: &Path) -> Result<(), RestoreError> {
    let output = tokio::process::Command::new(&args.etcdctl_binary)
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(db)
        .arg(format!("--data-dir={}", out.display()))
        .arg(format!("--name={}", args.name))
        .arg(format!("--initial-cluster={}", args.initial_cluster))
        .arg(format!(
            "--initial-cluster-token={}",
            args.initial_cluster_token
        ))
        .arg(format!(
            "--initial-advertise-peer-urls={}",
            args.initial_advertise_peer_urls.join(",")
        ))
        // The trailer was checked above (or the user asked to skip it).
        .arg("--skip-hash-check=true")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            RestoreError::Command(format!(
                "cannot run {} (set --etcdctl-binary): {e}",
                args.etcdctl_binary.display()
            ))
        })?;
    if !output.status.success() {
        return Err(RestoreError::Command(format!(
            "{} snapshot restore failed ({}): {}",
            args.etcdctl_binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// A temporary etcd on loopback, for replaying deltas or letting a data
/// directory replay its WAL.
pub struct TempEtcd {
    child: tokio::process::Child,
    /// A client connected to it.
    pub client: Client,
}

fn free_port() -> Result<u16, RestoreError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| RestoreError::Etcd(format!("no free port: {e}")))
}

impl TempEtcd {
    /// Starts etcd on `data_dir` and waits until it answers (60 s).
    pub async fn start(args: &RestoreArgs, data_dir: &Path) -> Result<Self, RestoreError> {
        let client_url = format!("http://127.0.0.1:{}", free_port()?);
        let peer_url = format!("http://127.0.0.1:{}", free_port()?);
        let log = suffixed(data_dir, ".etcd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| io("cannot create", &log, e))?;
        let child = tokio::process::Command::new(&args.etcd_binary)
            .arg(format!("--name={}", args.name))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!(
                "--quota-backend-bytes={}",
                args.embedded_etcd_quota_bytes
            ))
            .arg(format!("--max-request-bytes={}", args.max_request_bytes))
            .arg(format!("--max-txn-ops={}", args.max_txn_ops))
            .arg(format!(
                "--auto-compaction-mode={}",
                args.auto_compaction_mode
            ))
            .arg(format!(
                "--auto-compaction-retention={}",
                args.auto_compaction_retention
            ))
            .env_remove("ETCD_CONF")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                RestoreError::Etcd(format!(
                    "cannot start {} (set --etcd-binary): {e}",
                    args.etcd_binary.display()
                ))
            })?;
        let mut etcd = TempEtcdStarting { child: Some(child) };
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(300));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = etcd.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(10).collect();
                return Err(RestoreError::Etcd(format!(
                    "etcd exited ({status}) before serving: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
            if let Ok(mut client) =
                Client::connect([client_url.as_str()], Some(options.clone())).await
                && client.status().await.is_ok()
            {
                let child = etcd
                    .child
                    .take()
                    .ok_or_else(|| RestoreError::Etcd("lost the child".into()))?;
                return Ok(TempEtcd { child, client });
            }
            if Instant::now() > deadline {
                return Err(RestoreError::Etcd(format!(
                    "etcd did not serve within 60s; see {}",
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops etcd (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Kills a temporary etcd that never became ready.
struct TempEtcdStarting {
    child: Option<tokio::process::Child>,
}

impl Drop for TempEtcdStarting {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
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
        .map_err(|e| RestoreError::Etcd(e.to_string()))?
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
            Ok::<_, RestoreError>((d, raw))
        }
    }))
    .buffered(fetchers);
    let max_ops = usize::try_from(args.max_txn_ops)
        .unwrap_or(usize::MAX)
        .max(1);
    while let Some(item) = downloads.next().await {
        let (snap, raw) = item?;
        let key = store.key(&snap);
        let events = crate::formats::compression::decompress(snap.compression, &raw)
            .map_err(|e| e.to_string())
            .and_then(|payload| delta::decode_payload(&payload).map_err(|e| e.to_string()))
            .map_err(|detail| RestoreError::CorruptDelta {
                key: key.clone(),
                detail,
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
                return Err(RestoreError::Etcd(format!(
                    "revision {rev} of {key} has {} operations, over --max-txn-ops={}",
                    group.len(),
                    args.max_txn_ops
                )));
            }
            let ops: Vec<TxnOp> = group
                .into_iter()
                .map(|e| match e.event.kind {
                    EventType::Put => TxnOp::put(e.event.kv.key, e.event.kv.value, None),
                    EventType::Delete => TxnOp::delete(e.event.kv.key, None),
                })
                .collect();
            let resp = client.txn(Txn::new().and_then(ops)).await.map_err(|e| {
                RestoreError::Etcd(format!("applying revision {rev} of {key}: {e}"))
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
