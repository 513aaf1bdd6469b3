//! Copying the snapshots of one store to another (`etcdbr copy`, the
//! EtcdCopyBackupsTask's job): how users move backups between clouds.
//!
//! As upstream's copier: the newest full snapshots (at most
//! `--max-backups-to-copy`, none older than `--max-backup-age` days) with
//! the deltas after each, under the same names (the `.final` marker is
//! dropped on the copy: the copy is not the source's final state). Every
//! object is streamed from one provider's plugin to the other's, a few
//! 4 MiB pieces at a time, whatever its size; full snapshots go first, so
//! an interrupted copy never leaves deltas without their full snapshot.
//! Rerunning copies only what is missing: an object already there with
//! the same size and SHA-256 is skipped; one of a different size or
//! content is copied again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};

use super::{Error, Listing, PIECE, Snapstore};
use crate::formats::names::{Snapshot, SnapshotKind};

/// What to copy and how.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// The newest full snapshots to copy (`None`: all).
    pub max_backups: Option<usize>,
    /// Skip full snapshots older than this (`None`: any age).
    pub max_age: Option<Duration>,
    /// Objects copied at once.
    pub parallel: usize,
    /// Wait for the source's final full snapshot first: `Some(None)`
    /// without a limit, `Some(Some(t))` for at most `t`.
    pub wait_for_final: Option<Option<Duration>>,
    /// How often the source is listed while waiting.
    pub poll: Duration,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            max_backups: None,
            max_age: None,
            parallel: 10,
            wait_for_final: None,
            poll: Duration::from_secs(15),
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Snapshots copied.
    pub copied: usize,
    /// Snapshots already there (same size and SHA-256).
    pub skipped: usize,
    /// Bytes copied.
    pub bytes: u64,
}

/// The snapshots to copy from `listing` (upstream's selection, see the
/// module's comment), full snapshots first; `now` in Unix seconds.
pub fn select(listing: &Listing, options: &CopyOptions, now: i64) -> Vec<Snapshot> {
    let fulls: Vec<&Snapshot> = listing
        .snapshots
        .iter()
        .filter(|s| s.kind == SnapshotKind::Full)
        .collect();
    let oldest_allowed = options
        .max_age
        .map(|age| now.saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX)));
    let chosen: Vec<&Snapshot> = fulls
        .iter()
        .rev()
        .filter(|f| oldest_allowed.is_none_or(|t| f.created_at >= t))
        .take(options.max_backups.unwrap_or(usize::MAX))
        .copied()
        .collect();
    let Some(oldest) = chosen.last() else {
        return Vec::new();
    };
    // The deltas after the oldest chosen full snapshot (those between two
    // chosen fulls belong to the earlier one; a full snapshot that was
    // left out by age or count leaves its deltas covered by the next).
    let mut selected: Vec<Snapshot> = chosen.iter().rev().map(|s| (*s).clone()).collect();
    selected.extend(
        listing
            .snapshots
            .iter()
            .filter(|s| s.kind == SnapshotKind::Incr && s.last_revision > oldest.last_revision)
            .cloned(),
    );
    selected
}

/// `snapshot` as it is named in the copy: without the `.final` marker.
fn copied_name(snapshot: &Snapshot) -> Snapshot {
    let mut copy = snapshot.clone();
    copy.is_final = false;
    copy.stored_name = copy
        .stored_name
        .map(|n| n.strip_suffix(".final").map_or(n.clone(), str::to_string));
    copy
}

impl Snapstore {
    /// Waits until the newest of the 4 newest full snapshots is final
    /// (upstream's check), listing every `poll`; an error after `timeout`.
    async fn wait_for_final(&self, timeout: Option<Duration>, poll: Duration) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let listing = self.list().await?;
            let newest_final = listing
                .snapshots
                .iter()
                .rev()
                .filter(|s| s.kind == SnapshotKind::Full)
                .take(4)
                .find(|s| s.is_final);
            if let Some(f) = newest_final {
                tracing::info!(snapshot = %f.name(), "the source's final full snapshot is there");
                return Ok(());
            }
            if let Some(t) = timeout.filter(|t| started.elapsed() >= *t) {
                return Err(Error::Config(format!(
                    "no final full snapshot appeared in {self:?} within {}s (--wait-for-final-snapshot-timeout): \
                     nothing was copied; take one on the source (an EtcdOpsTask with isFinal: true, or \
                     hibernate or delete its Etcd) or copy without waiting",
                    t.as_secs()
                )));
            }
            tracing::info!(source = ?self, "waiting for the source's final full snapshot");
            tokio::time::sleep(poll).await;
        }
    }

    /// The SHA-256 of the stored object of `snapshot`, streamed.
    async fn stored_sha256(&self, snapshot: &Snapshot) -> Result<[u8; 32], Error> {
        let mut down = self.store.download(&self.key(snapshot), None).await?;
        let mut hash = Sha256::new();
        loop {
            let piece = down.read(PIECE as u32).await?;
            if piece.is_empty() {
                return Ok(hash.finalize().into());
            }
            hash.update(&piece);
        }
    }

    /// Streams `snapshot`'s stored object from `source` to `self` as
    /// `target` (a failed copy is aborted: nothing stays behind under its
    /// name); the bytes copied, checked against `size`.
    async fn copy_object(
        &self,
        source: &Snapstore,
        snapshot: &Snapshot,
        target: &Snapshot,
        size: Option<u64>,
    ) -> Result<u64, Error> {
        let mut down = source.store.download(&source.key(snapshot), None).await?;
        let mut up = self.store.upload(&self.key(target), size).await?;
        let mut copied = 0u64;
        loop {
            let piece = match down.read(PIECE as u32).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = up.abort().await;
                    return Err(e.into());
                }
            };
            if piece.is_empty() {
                break;
            }
            copied += piece.len() as u64;
            if let Err(e) = up.write(&piece).await {
                let _ = up.abort().await;
                return Err(e.into());
            }
        }
        if size.is_some_and(|s| s != copied) {
            let _ = up.abort().await;
            return Err(Error::Config(format!(
                "{} changed while it was copied ({} bytes listed, {copied} read): run the copy again",
                source.key(snapshot),
                size.unwrap_or(0)
            )));
        }
        up.finish().await?;
        Ok(copied)
    }

    /// Copies what [`select`] chooses from `source` into this store,
    /// skipping what is already here (see the module's comment).
    pub async fn copy_from(
        &self,
        source: &Snapstore,
        options: &CopyOptions,
    ) -> Result<CopyReport, Error> {
        if let Some(timeout) = options.wait_for_final {
            source.wait_for_final(timeout, options.poll).await?;
        }
        let started = Instant::now();
        let listing = source.list().await?;
        let now = chrono::Utc::now().timestamp();
        let selected = select(&listing, options, now);
        if selected.is_empty() && !listing.snapshots.is_empty() {
            tracing::warn!(source = ?source, snapshots = listing.snapshots.len(), "nothing to copy: no full snapshot in the source matches --max-backups-to-copy and --max-backup-age (deltas are only copied with their full snapshot)");
        }
        let present: HashMap<String, u64> = self.list().await?.sizes;
        tracing::info!(source = ?source, target = ?self, snapshots = selected.len(), "copying snapshots");
        let (fulls, deltas): (Vec<Snapshot>, Vec<Snapshot>) = selected
            .into_iter()
            .partition(|s| s.kind == SnapshotKind::Full);
        let mut report = CopyReport::default();
        for group in [fulls, deltas] {
            let results: Vec<Option<u64>> = futures::stream::iter(group)
                .map(|snapshot| {
                    let size = listing.sizes.get(&snapshot.name()).copied();
                    let present = &present;
                    async move { self.copy_one(source, &snapshot, size, present).await }
                })
                .buffer_unordered(options.parallel.max(1))
                .try_collect()
                .await?;
            for r in results {
                match r {
                    Some(bytes) => {
                        report.copied += 1;
                        report.bytes += bytes;
                    }
                    None => report.skipped += 1,
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            copied = report.copied,
            skipped = report.skipped,
            bytes = report.bytes,
            seconds,
            mib_per_second = report.bytes as f64 / (1 << 20) as f64 / seconds.max(1e-3),
            "copy done"
        );
        Ok(report)
    }

    /// Copies one snapshot unless it is here already: the bytes copied,
    /// `None` when skipped.
    async fn copy_one(
        &self,
        source: &Snapstore,
        snapshot: &Snapshot,
        size: Option<u64>,
        present: &HashMap<String, u64>,
    ) -> Result<Option<u64>, Error> {
        let target = copied_name(snapshot);
        if size.is_some() && present.get(&target.name()).copied() == size {
            let (ours, theirs) =
                tokio::try_join!(self.stored_sha256(&target), source.stored_sha256(snapshot))?;
            if ours == theirs {
                tracing::debug!(snapshot = %target.name(), "already copied (same size and SHA-256)");
                return Ok(None);
            }
            tracing::warn!(snapshot = %target.name(), "the copy differs from the source (same size, other content): copying it again");
        }
        let bytes = self.copy_object(source, snapshot, &target, size).await?;
        tracing::debug!(snapshot = %target.name(), bytes, "copied");
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::compression::Compression;

    fn listing() -> Listing {
        let gz = Compression::Gzip;
        let mut last = Snapshot::full(30, 3_000, gz);
        last.is_final = true;
        Listing {
            snapshots: vec![
                Snapshot::delta(1, 5, 500, gz),
                Snapshot::full(10, 1_000, gz),
                Snapshot::delta(11, 20, 1_500, gz),
                Snapshot::full(20, 2_000, gz),
                Snapshot::delta(21, 30, 2_500, gz),
                last,
                Snapshot::delta(31, 40, 3_500, gz),
            ],
            ..Listing::default()
        }
    }

    fn names(selected: &[Snapshot]) -> Vec<String> {
        selected
            .iter()
            .map(|s| format!("{}-{}", s.kind, s.last_revision))
            .collect()
    }

    #[test]
    fn every_full_snapshot_and_the_deltas_after_the_oldest_fulls_first() {
        let all = select(&listing(), &CopyOptions::default(), 4_000);
        assert_eq!(
            names(&all),
            [
                "Full-10", "Full-20", "Full-30", "Incr-20", "Incr-30", "Incr-40"
            ]
        );
    }

    #[test]
    fn the_newest_fulls_by_count_or_age_with_their_deltas() {
        let newest = CopyOptions {
            max_backups: Some(1),
            ..CopyOptions::default()
        };
        assert_eq!(
            names(&select(&listing(), &newest, 4_000)),
            ["Full-30", "Incr-40"]
        );
        let young = CopyOptions {
            max_age: Some(Duration::from_secs(2_500)),
            ..CopyOptions::default()
        };
        assert_eq!(
            names(&select(&listing(), &young, 4_000)),
            ["Full-20", "Full-30", "Incr-30", "Incr-40"]
        );
        let none = CopyOptions {
            max_backups: Some(0),
            ..CopyOptions::default()
        };
        assert!(select(&listing(), &none, 4_000).is_empty());
        let too_old = CopyOptions {
            max_age: Some(Duration::from_secs(10)),
            ..CopyOptions::default()
        };
        assert!(select(&listing(), &too_old, 4_000).is_empty());
    }

    #[test]
    fn deltas_without_a_full_snapshot_are_not_copied() {
        let only_deltas = Listing {
            snapshots: vec![Snapshot::delta(1, 5, 500, Compression::Gzip)],
            ..Listing::default()
        };
        assert!(select(&only_deltas, &CopyOptions::default(), 4_000).is_empty());
    }

    #[test]
    fn the_copy_drops_the_final_marker() {
        let mut final_full = Snapshot::full(30, 3_000, Compression::Gzip);
        final_full.is_final = true;
        assert!(final_full.name().ends_with(".final"));
        assert_eq!(
            copied_name(&final_full).name(),
            "Full-00000000-00000030-3000.gz"
        );
        final_full.stored_name = Some("Full-00000000-030-3000.gz.final".into());
        assert_eq!(
            copied_name(&final_full).stored_name.as_deref(),
            Some("Full-00000000-030-3000.gz")
        );
    }
}
