//! Prometheus metrics of the sidecar: every name and label upstream's
//! sidecar exports (`etcdbr_*`, the list in [`UPSTREAM_NAMES`]), so existing
//! dashboards and alerts keep working, plus sizes and last-success times per
//! kind, which is what an alert on "no backup for N minutes" needs, and the
//! process metrics (`process_*`) Go's client exports.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// The sample names upstream's sidecar exports (without the `_bucket`,
/// `_sum` and `_count` of histograms); a test scrapes `/metrics` for each.
pub const UPSTREAM_NAMES: &[&str] = &[
    "etcdbr_snapshot_duration_seconds",
    "etcdbr_snapshot_gc_total",
    "etcdbr_snapshot_latest_revision",
    "etcdbr_snapshot_latest_timestamp",
    "etcdbr_snapshot_required",
    "etcdbr_validation_duration_seconds",
    "etcdbr_restoration_duration_seconds",
    "etcdbr_defragmentation_duration_seconds",
    "etcdbr_snapstore_latest_deltas_total",
    "etcdbr_snapstore_latest_deltas_revisions_total",
    "etcdbr_snapshotter_failure",
    "etcdbr_cluster_size",
    "etcdbr_is_learner",
    "etcdbr_is_learner_count_total",
    "etcdbr_add_learner_duration_seconds",
    "etcdbr_member_remove_duration_seconds",
    "etcdbr_member_promote_duration_seconds",
    "etcdbr_network_transmitted_bytes",
    "etcdbr_network_received_bytes",
];

/// A counter exported untyped, so that its sample keeps upstream's name
/// without the `_total` the OpenMetrics encoder appends to counters
/// (`etcdbr_snapshotter_failure`, as Go's client writes it).
#[derive(Debug, Default, Clone)]
pub struct UntypedCounter(Counter);

impl UntypedCounter {
    /// Adds one.
    pub fn inc(&self) -> u64 {
        self.0.inc()
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for UntypedCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for UntypedCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

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

/// The classes of snapshotter failures (label `error` of
/// `etcdbr_snapshotter_failure`; upstream puts the whole error message in
/// the label, which makes a new series per message).
pub const FAILURE_CLASSES: &[&str] = &[
    "etcd",
    "timeout",
    "integrity",
    "store",
    "io",
    "delta",
    "compacted",
    "inactive",
];

/// Label `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// A short error class (`store`, `etcd`, `integrity`, `compacted`, ...).
    pub error: String,
}

/// Labels `succeeded` and `endpoint` (upstream's).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DefragLabels {
    /// `true` or `false`.
    pub succeeded: String,
    /// The member's client URL.
    pub endpoint: String,
}

impl DefragLabels {
    /// Labels for a member's endpoint and an outcome.
    pub fn new(endpoint: &str, succeeded: bool) -> Self {
        DefragLabels {
            succeeded: succeeded.to_string(),
            endpoint: endpoint.to_string(),
        }
    }
}

/// Labels `restore` and `succeeded` of a restoration (upstream's).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestoreLabels {
    /// `single_node` (from the store) or `single_member` (a member that
    /// rejoined its cluster).
    pub restore: String,
    /// `true` or `false`.
    pub succeeded: String,
}

impl RestoreLabels {
    /// A restoration from the store (`single_node`).
    pub fn from_store(succeeded: bool) -> Self {
        RestoreLabels {
            restore: "single_node".into(),
            succeeded: succeeded.to_string(),
        }
    }

    /// A member that rejoined its cluster as a learner (`single_member`).
    pub fn rejoined(succeeded: bool) -> Self {
        RestoreLabels {
            restore: "single_member".into(),
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
    /// On the leading member: etcd's current revision minus the newest
    /// revision in the store (0 elsewhere).
    pub revision_lag: Gauge,
    /// Full snapshots taken because the delta watch fell so far behind
    /// etcd that catching up would have taken longer.
    pub catch_up_full: Counter,
    /// Validation durations by outcome.
    pub validation_duration: Family<Succeeded, Histogram>,
    /// Restore durations by kind and outcome.
    pub restoration_duration: Family<RestoreLabels, Histogram>,
    /// Snapshotter failures by class (untyped: upstream's sample name).
    pub snapshotter_failure: Family<ErrorLabel, UntypedCounter>,
    /// 1 while this member is a learner.
    pub is_learner: Gauge,
    /// Checks of whether this member is a learner, by outcome.
    pub is_learner_checks: Family<Succeeded, Counter>,
    /// Time taken to add this member to its cluster as a learner.
    pub add_learner_duration: Histogram,
    /// Time taken to remove this member from its cluster.
    pub member_remove_duration: Histogram,
    /// Time taken to promote this learner to a voting member.
    pub member_promote_duration: Histogram,
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
    /// Defragmentation durations by outcome and endpoint.
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
        let mut root = Registry::default();
        druid_process_metrics::register_process_metrics(&mut root);
        let registry = root.sub_registry_with_prefix("etcdbr");
        registry.register_collector(Box::new(druid_process_metrics::NetworkCollector));
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
        let revision_lag = Gauge::default();
        registry.register(
            "snapshot_revision_lag",
            "On the leading member: etcd's current revision minus the newest revision in the store (what a restore now would lose); 0 on other members",
            revision_lag.clone(),
        );
        let catch_up_full = Counter::default();
        registry.register(
            "snapshot_catch_up_full",
            "Full snapshots taken because the delta watch fell so far behind etcd that catching up revision by revision would have taken longer",
            catch_up_full.clone(),
        );
        let validation_duration =
            Family::<Succeeded, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "validation_duration_seconds",
            "Time taken to validate the data directory, by outcome",
            validation_duration.clone(),
        );
        let restoration_duration =
            Family::<RestoreLabels, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "restoration_duration_seconds",
            "Time taken to restore the data directory (single_node: from the store, single_member: rejoining the cluster), by outcome",
            restoration_duration.clone(),
        );
        let snapshotter_failure = Family::<ErrorLabel, UntypedCounter>::default();
        registry.register(
            "snapshotter_failure",
            "Snapshotter failures (a counter), by class",
            snapshotter_failure.clone(),
        );
        let is_learner = Gauge::default();
        registry.register(
            "is_learner",
            "1 while this member is a learner",
            is_learner.clone(),
        );
        let is_learner_checks = Family::<Succeeded, Counter>::default();
        registry.register(
            "is_learner_count",
            "Checks of whether this member is a learner, by outcome",
            is_learner_checks.clone(),
        );
        let add_learner_duration = duration_histogram();
        registry.register(
            "add_learner_duration_seconds",
            "Time taken to add this member to its cluster as a learner",
            add_learner_duration.clone(),
        );
        let member_remove_duration = duration_histogram();
        registry.register(
            "member_remove_duration_seconds",
            "Time taken to remove this member from its cluster",
            member_remove_duration.clone(),
        );
        let member_promote_duration = duration_histogram();
        registry.register(
            "member_promote_duration_seconds",
            "Time taken to promote this learner to a voting member",
            member_promote_duration.clone(),
        );
        // Gauges named `_total` as upstream's.
        let latest_deltas = Gauge::default();
        registry.register(
            "snapstore_latest_deltas_total",
            "Deltas after the latest full snapshot",
            latest_deltas.clone(),
        );
        let latest_deltas_revisions = Gauge::default();
        registry.register(
            "snapstore_latest_deltas_revisions_total",
            "Revisions covered by the deltas after the latest full snapshot (a proxy for restore time)",
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
            "Time taken to defragment a member, by outcome and the member's endpoint",
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
        // Every label set known up front starts at zero, as upstream's
        // sidecar does, so that dashboards see the series and `rate()` and
        // `increase()` count the first event.
        for kind in ["Full", "Incr"] {
            for ok in [true, false] {
                let _ = snapshot_duration.get_or_create(&KindResult::new(kind, ok));
                let _ = gc_total.get_or_create(&KindResult::new(kind, ok));
            }
            let _ = latest_revision.get_or_create(&KindLabel::new(kind));
            let _ = latest_timestamp.get_or_create(&KindLabel::new(kind));
            let _ = snapshot_required.get_or_create(&KindLabel::new(kind));
        }
        for ok in [true, false] {
            let _ = validation_duration.get_or_create(&Succeeded::new(ok));
            let _ = restoration_duration.get_or_create(&RestoreLabels::from_store(ok));
            let _ = restoration_duration.get_or_create(&RestoreLabels::rejoined(ok));
            let _ = is_learner_checks.get_or_create(&Succeeded::new(ok));
        }
        for class in FAILURE_CLASSES {
            let _ = snapshotter_failure.get_or_create(&ErrorLabel {
                error: (*class).to_string(),
            });
        }
        Metrics {
            registry: root,
            is_learner,
            is_learner_checks,
            add_learner_duration,
            member_remove_duration,
            member_promote_duration,
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
            revision_lag,
            catch_up_full,
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

    /// Records how far the store is behind etcd's current revision `head`
    /// on the leading member: `head` minus the newest revision of a
    /// snapshot of either kind that reached the store (`head` itself while
    /// none did). Deltas that succeed on time but trail etcd (a watch
    /// catching up after a burst of large writes) keep
    /// `snapshot_last_success_timestamp` fresh; this is what shows them.
    pub fn record_lag(&self, head: i64) {
        let stored = ["Full", "Incr"]
            .iter()
            .map(|kind| {
                self.latest_revision
                    .get_or_create(&KindLabel::new(kind))
                    .get()
            })
            .max()
            .unwrap_or(0);
        self.revision_lag.set(head.saturating_sub(stored).max(0));
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
