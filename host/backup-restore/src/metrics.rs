//! Prometheus metrics of the sidecar, under upstream's names (`etcdbr_*`)
//! where upstream has them, so existing dashboards and alerts keep
//! working, plus sizes and last-success times per kind, which is what an
//! alert on "no backup for N minutes" needs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels `kind` and `succeeded`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResult {
    /// `Full`, `Incr` or `Chunk`.
    pub kind: String,
    /// `true` or `false`.
    pub succeeded: String,
}

impl KindResult {
    /// Labels for a kind and an outcome.
    pub fn new(kind: &str, succeeded: bool) -> Self {
        KindResult {
            kind: kind.to_string(),
            succeeded: succeeded.to_string(),
        }
    }
}

/// Label `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `Full` or `Incr`.
    pub kind: String,
}

impl KindLabel {
    /// Labels for a kind.
    pub fn new(kind: &str) -> Self {
        KindLabel {
            kind: kind.to_string(),
        }
    }
}

/// Label `succeeded`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Succeeded {
    /// `true` or `false`.
    pub succeeded: String,
}

impl Succeeded {
    /// Labels for an outcome.
    pub fn new(succeeded: bool) -> Self {
        Succeeded {
            succeeded: succeeded.to_string(),
        }
    }
}

/// Label `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// A short error class (`store`, `etcd`, `integrity`, `compacted`, ...).
    pub error: String,
}

/// Labels `member` and `succeeded`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DefragLabels {
    /// The member's name.
    pub member: String,
    /// `true` or `false`.
    pub succeeded: String,
}

impl DefragLabels {
    /// Labels for a member and an outcome.
    pub fn new(member: &str, succeeded: bool) -> Self {
        DefragLabels {
            member: member.to_string(),
            succeeded: succeeded.to_string(),
        }
    }
}

/// Labels `member` and `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DefragOutcome {
    /// The member's name.
    pub member: String,
    /// `Defragmented`, `Skipped` or `Failed`.
    pub outcome: String,
}

impl DefragOutcome {
    /// Labels for a member and an outcome.
    pub fn new(member: &str, outcome: &str) -> Self {
        DefragOutcome {
            member: member.to_string(),
            outcome: outcome.to_string(),
        }
    }
}

/// Label `member`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabel {
    /// The member's name.
    pub member: String,
}

impl MemberLabel {
    /// Labels for a member.
    pub fn new(member: &str) -> Self {
        MemberLabel {
            member: member.to_string(),
        }
    }
}

fn duration_histogram() -> Histogram {
    // 0.1 s .. ~1.8 h.
    Histogram::new(exponential_buckets(0.1, 3.0, 11))
}

/// The sidecar's metrics.
pub struct Metrics {
    registry: Registry,
    /// Snapshot durations by kind and outcome.
    pub snapshot_duration: Family<KindResult, Histogram>,
    /// Garbage-collected snapshots by kind and outcome.
    pub gc_total: Family<KindResult, Counter>,
    /// Last revision of the latest snapshot by kind.
    pub latest_revision: Family<KindLabel, Gauge>,
    /// Creation time (Unix seconds) of the latest snapshot by kind.
    pub latest_timestamp: Family<KindLabel, Gauge>,
    /// Unix time of the last successful snapshot (or heartbeat-only delta
    /// period) by kind: alert when `time() - this` exceeds the period.
    pub last_success: Family<KindLabel, Gauge>,
    /// Stored size in bytes of the latest snapshot by kind.
    pub latest_size: Family<KindLabel, Gauge>,
    /// 1 while a snapshot of the kind is due but not yet taken.
    pub snapshot_required: Family<KindLabel, Gauge>,
    /// Validation durations by outcome.
    pub validation_duration: Family<Succeeded, Histogram>,
    /// Restore durations by outcome.
    pub restoration_duration: Family<Succeeded, Histogram>,
    /// Snapshotter failures by class.
    pub snapshotter_failure: Family<ErrorLabel, Counter>,
    /// Deltas after the latest full snapshot.
    pub latest_deltas: Gauge,
    /// Revisions covered by the deltas after the latest full snapshot
    /// (a proxy for restore time).
    pub latest_deltas_revisions: Gauge,
    /// Events buffered for the next delta.
    pub delta_buffered_events: Gauge,
    /// 1 while this member's sidecar takes snapshots (its etcd leads).
    pub is_leader: Gauge,
    /// Members of the etcd cluster.
    pub cluster_size: Gauge,
    /// Defragmentation durations by member and outcome.
    pub defrag_duration: Family<DefragLabels, Histogram>,
    /// Unix time of the last defragmentation run that handled a member.
    pub defrag_last_run: Family<MemberLabel, Gauge>,
    /// Bytes the last defragmentation of a member reclaimed.
    pub defrag_reclaimed: Family<MemberLabel, Gauge>,
    /// Defragmentation results by member and outcome.
    pub defrag_total: Family<DefragOutcome, Counter>,
    /// Defragmentation runs by outcome (`Succeeded`, `Refused`, `Failed`,
    /// `TimedOut`).
    pub defrag_runs: Family<RunOutcome, Counter>,
}

/// Label `outcome` of a run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunOutcome {
    /// The outcome.
    pub outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("etcdbr");
        let snapshot_duration =
            Family::<KindResult, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "snapshot_duration_seconds",
            "Time taken by snapshots, by kind and outcome",
            snapshot_duration.clone(),
        );
        let gc_total = Family::<KindResult, Counter>::default();
        registry.register(
            "snapshot_gc",
            "Snapshots deleted by garbage collection, by kind and outcome",
            gc_total.clone(),
        );
        let latest_revision = Family::<KindLabel, Gauge>::default();
        registry.register(
            "snapshot_latest_revision",
            "Last revision of the latest snapshot, by kind",
            latest_revision.clone(),
        );
        let latest_timestamp = Family::<KindLabel, Gauge>::default();
        registry.register(
            "snapshot_latest_timestamp",
            "Creation time (Unix seconds) of the latest snapshot, by kind",
            latest_timestamp.clone(),
        );
        let last_success = Family::<KindLabel, Gauge>::default();
        registry.register(
            "snapshot_last_success_timestamp",
            "Unix time of the last successful snapshot (for deltas also of a period without events), by kind",
            last_success.clone(),
        );
        let latest_size = Family::<KindLabel, Gauge>::default();
        registry.register(
            "snapshot_latest_size_bytes",
            "Stored (compressed) size of the latest snapshot, by kind",
            latest_size.clone(),
        );
        let snapshot_required = Family::<KindLabel, Gauge>::default();
        registry.register(
            "snapshot_required",
            "1 while a snapshot of the kind is due and not yet taken",
            snapshot_required.clone(),
        );
        let validation_duration =
            Family::<Succeeded, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "validation_duration_seconds",
            "Time taken to validate the data directory, by outcome",
            validation_duration.clone(),
        );
        let restoration_duration =
            Family::<Succeeded, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "restoration_duration_seconds",
            "Time taken to restore the data directory from the store, by outcome",
            restoration_duration.clone(),
        );
        let snapshotter_failure = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "snapshotter_failure",
            "Snapshotter failures, by class",
            snapshotter_failure.clone(),
        );
        let latest_deltas = Gauge::default();
        registry.register(
            "snapstore_latest_deltas",
            "Deltas after the latest full snapshot",
            latest_deltas.clone(),
        );
        let latest_deltas_revisions = Gauge::default();
        registry.register(
            "snapstore_latest_deltas_revisions",
            "Revisions covered by the deltas after the latest full snapshot",
            latest_deltas_revisions.clone(),
        );
        let delta_buffered_events = Gauge::default();
        registry.register(
            "delta_buffered_events",
            "Watch events buffered for the next delta snapshot",
            delta_buffered_events.clone(),
        );
        let is_leader = Gauge::default();
        registry.register(
            "is_leader",
            "1 while this sidecar takes snapshots (its etcd member leads)",
            is_leader.clone(),
        );
        let cluster_size = Gauge::default();
        registry.register(
            "cluster_size",
            "Members of the etcd cluster",
            cluster_size.clone(),
        );
        let defrag_duration =
            Family::<DefragLabels, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "defragmentation_duration_seconds",
            "Time taken to defragment a member, by member and outcome",
            defrag_duration.clone(),
        );
        let defrag_last_run = Family::<MemberLabel, Gauge>::default();
        registry.register(
            "defragmentation_last_run_timestamp",
            "Unix time of the last defragmentation run that handled the member",
            defrag_last_run.clone(),
        );
        let defrag_reclaimed = Family::<MemberLabel, Gauge>::default();
        registry.register(
            "defragmentation_reclaimed_bytes",
            "Bytes the member's last defragmentation reclaimed",
            defrag_reclaimed.clone(),
        );
        let defrag_total = Family::<DefragOutcome, Counter>::default();
        registry.register(
            "defragmentation_members",
            "Members handled by defragmentation runs, by outcome (Defragmented, Skipped, Failed)",
            defrag_total.clone(),
        );
        let defrag_runs = Family::<RunOutcome, Counter>::default();
        registry.register(
            "defragmentation_runs",
            "Defragmentation runs, by outcome (Succeeded, Refused, Failed, TimedOut)",
            defrag_runs.clone(),
        );
        Metrics {
            registry,
            defrag_duration,
            defrag_last_run,
            defrag_reclaimed,
            defrag_total,
            defrag_runs,
            snapshot_duration,
            gc_total,
            latest_revision,
            latest_timestamp,
            last_success,
            latest_size,
            snapshot_required,
            validation_duration,
            restoration_duration,
            snapshotter_failure,
            latest_deltas,
            latest_deltas_revisions,
            delta_buffered_events,
            is_leader,
            cluster_size,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// Records a snapshot that reached the store: its revision, creation
    /// time, stored size and the time of this success.
    pub fn record_snapshot(&self, snapshot: &crate::formats::names::Snapshot, stored_bytes: u64) {
        let kind = KindLabel::new(snapshot.kind.as_str());
        self.latest_revision
            .get_or_create(&kind)
            .set(snapshot.last_revision);
        self.latest_timestamp
            .get_or_create(&kind)
            .set(snapshot.created_at);
        self.last_success
            .get_or_create(&kind)
            .set(chrono::Utc::now().timestamp());
        self.latest_size
            .get_or_create(&kind)
            .set(i64::try_from(stored_bytes).unwrap_or(i64::MAX));
    }

    /// Counts a snapshotter failure of a class.
    pub fn failure(&self, class: &str) {
        self.snapshotter_failure
            .get_or_create(&ErrorLabel {
                error: class.to_string(),
            })
            .inc();
    }
}
