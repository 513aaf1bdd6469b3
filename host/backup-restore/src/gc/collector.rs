//! Garbage collection: runs a [`crate::gc`] plan against the store.
//!
//! Within a set, deltas are deleted newest first and the full snapshot
//! only after all of them, so a failure never leaves deltas without their
//! base. The newest full snapshot and its deltas are never part of a plan.

use chrono::Utc;

use crate::config::SnapshotterArgs;
use crate::gc;
use crate::metrics::{KindResult, Metrics};
use crate::store::{self, Snapstore};

/// Delta deletion errors after which a set is given up for this run.
const MAX_SET_ERRORS: usize = 5;

/// The garbage collection policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Keep the latest per hour today, per day for a week, per week for
    /// four weeks.
    Exponential,
    /// Keep the newest `n` full snapshots.
    LimitBased(usize),
}

impl Policy {
    /// From the flags.
    pub fn from_args(args: &SnapshotterArgs) -> Result<Self, String> {
        match args.garbage_collection_policy.as_str() {
            "Exponential" => Ok(Policy::Exponential),
            "LimitBased" => Ok(Policy::LimitBased(args.max_backups)),
            other => Err(format!(
                "--garbage-collection-policy={other:?} is not Exponential or LimitBased"
            )),
        }
    }
}

/// What one run deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Snapshots deleted.
    pub deleted: usize,
    /// Deletions that failed.
    pub failed: usize,
    /// Chunk objects deleted.
    pub chunks: usize,
}

/// Lists the store and deletes what the policy says.
pub async fn collect(
    store: &Snapstore,
    policy: Policy,
    delta_retention: std::time::Duration,
    metrics: &Metrics,
) -> Result<GcReport, store::Error> {
    let listing = store.list().await?;
    let now = Utc::now();
    let plan = match policy {
        Policy::Exponential => gc::exponential(&listing.snapshots, now, delta_retention),
        Policy::LimitBased(n) => gc::limit_based(&listing.snapshots, n, now, delta_retention),
    };
    let mut report = GcReport::default();
    for set in &plan.sets {
        let mut errors = 0;
        for d in &set.deltas {
            if errors >= MAX_SET_ERRORS {
                break;
            }
            match store.delete(d).await {
                Ok(()) => {
                    report.deleted += 1;
                    metrics
                        .gc_total
                        .get_or_create(&KindResult::new("Incr", true))
                        .inc();
                    tracing::info!(snapshot = %d.name(), "garbage collected");
                }
                Err(e) => {
                    errors += 1;
                    report.failed += 1;
                    metrics
                        .gc_total
                        .get_or_create(&KindResult::new("Incr", false))
                        .inc();
                    tracing::warn!(snapshot = %d.name(), error = %e, "cannot delete a delta snapshot");
                }
            }
        }
        let Some(full) = &set.full else { continue };
        if errors > 0 {
            tracing::warn!(snapshot = %full.name(), "keeping the full snapshot: some of its deltas could not be deleted");
            continue;
        }
        match store.delete(full).await {
            Ok(()) => {
                report.deleted += 1;
                metrics
                    .gc_total
                    .get_or_create(&KindResult::new("Full", true))
                    .inc();
                tracing::info!(snapshot = %full.name(), "garbage collected");
            }
            Err(e) => {
                report.failed += 1;
                metrics
                    .gc_total
                    .get_or_create(&KindResult::new("Full", false))
                    .inc();
                tracing::warn!(snapshot = %full.name(), error = %e, "cannot delete a full snapshot");
            }
        }
    }
    let newest = listing.latest_set().last_revision();
    for chunk in gc::stale_chunks(&listing.chunks, newest) {
        match store.delete_chunk(&chunk).await {
            Ok(()) => {
                report.chunks += 1;
                metrics
                    .gc_total
                    .get_or_create(&KindResult::new("Chunk", true))
                    .inc();
            }
            Err(e) => {
                metrics
                    .gc_total
                    .get_or_create(&KindResult::new("Chunk", false))
                    .inc();
                tracing::warn!(chunk = %chunk.relative_key(), error = %e, "cannot delete a chunk");
            }
        }
    }
    Ok(report)
}
