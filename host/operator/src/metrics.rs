//! Prometheus metrics and the health endpoints (`/metrics`, `/healthz`,
//! `/readyz`), served on one port.
//!
//! What an operator of druid alerts on: reconcile errors per Etcd, reconcile
//! durations, each Etcd's conditions (quorum, members, backups, spec
//! validity), whether this replica leads, and its requests to the API
//! server and the time they waited for the rate limit (all `druid_*`); and
//! snapshot compaction under the upstream operator's names
//! (`etcddruid_compaction_*`), so that existing dashboards keep working.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming one Etcd.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EtcdLabels {
    /// The Etcd's namespace.
    pub namespace: String,
    /// The Etcd's name.
    pub etcd: String,
}

/// Labels of a reconcile error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The Etcd's namespace.
    pub namespace: String,
    /// The Etcd's name.
    pub etcd: String,
    /// The error code (`ERR_INVALID_SPEC`, `ERR_SYNC_STATEFULSET`, ...).
    pub code: String,
}

/// Labels of a condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    /// The Etcd's namespace.
    pub namespace: String,
    /// The Etcd's name.
    pub etcd: String,
    /// The condition type (`Ready`, `BackupReady`, ...).
    pub condition: String,
}

/// Labels of a finished compaction job, named as upstream's
/// (`succeeded`, `failureReason`, `etcd_namespace`), so that existing
/// dashboards and alerts keep working.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct CompactionJobLabels {
    /// `true` or `false`.
    pub succeeded: bool,
    /// `none` (success), `preempted`, `evicted`, `deadlineExceeded`,
    /// `processFailure` or `unknown`.
    pub failure_reason: &'static str,
    /// The Etcd's namespace.
    pub etcd_namespace: String,
}

impl EncodeLabelSet for CompactionJobLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        [
            ("succeeded", if self.succeeded { "true" } else { "false" }),
            ("failureReason", self.failure_reason),
            ("etcd_namespace", self.etcd_namespace.as_str()),
        ]
        .encode(encoder)
    }
}

/// Labels of a full snapshot the compaction controller asked for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FullSnapshotLabels {
    /// `true` or `false`.
    pub succeeded: String,
    /// The Etcd's namespace.
    pub etcd_namespace: String,
}

/// Labels of a finished EtcdOpsTask.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpsTaskLabels {
    /// The task's namespace.
    pub namespace: String,
    /// `fullSnapshot`, `deltaSnapshot` or `defragmentation`.
    pub operation: String,
    /// `Succeeded`, `Failed` or `Rejected`.
    pub state: String,
}

/// Labels naming a namespace of Etcds.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    /// The Etcds' namespace.
    pub etcd_namespace: String,
}

/// The snapshot compaction metrics, with upstream's names
/// (`etcddruid_compaction_*`).
pub struct CompactionMetrics {
    /// Finished compaction jobs.
    pub jobs_total: Family<CompactionJobLabels, Counter>,
    /// Compaction jobs running now, per namespace.
    pub jobs_current: Family<NamespaceLabels, Gauge>,
    /// How long finished compaction jobs ran.
    pub job_duration: Family<CompactionJobLabels, Histogram>,
    /// Delta events since the last full snapshot, per namespace (the last
    /// Etcd looked at).
    pub num_delta_events: Family<NamespaceLabels, Gauge>,
    /// Full snapshots asked of the sidecar instead of a compaction.
    pub full_snapshot_triggered: Family<FullSnapshotLabels, Counter>,
}

impl CompactionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let jobs_total = Family::<CompactionJobLabels, Counter>::default();
        registry.register(
            "etcddruid_compaction_jobs",
            "Finished snapshot compaction jobs",
            jobs_total.clone(),
        );
        let jobs_current = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "etcddruid_compaction_jobs_current",
            "Snapshot compaction jobs running now",
            jobs_current.clone(),
        );
        let job_duration = Family::<CompactionJobLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 10800.0,
                21600.0,
            ])
        });
        registry.register(
            "etcddruid_compaction_job_duration_seconds",
            "How long snapshot compaction jobs ran",
            job_duration.clone(),
        );
        let num_delta_events = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "etcddruid_compaction_num_delta_events",
            "Delta events since the last full snapshot",
            num_delta_events.clone(),
        );
        let full_snapshot_triggered = Family::<FullSnapshotLabels, Counter>::default();
        registry.register(
            "etcddruid_compaction_full_snapshot_triggered",
            "Full snapshots asked of the backup-restore sidecar instead of a compaction",
            full_snapshot_triggered.clone(),
        );
        Self {
            jobs_total,
            jobs_current,
            job_duration,
            num_delta_events,
            full_snapshot_triggered,
        }
    }
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// `druid_reconciles`: reconciles per Etcd.
    pub reconciles: Family<EtcdLabels, Counter>,
    /// `druid_reconcile_errors`: failed reconciles per Etcd and code.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// `druid_reconcile_duration_seconds`: how long reconciles take.
    pub reconcile_duration: Histogram,
    /// Per Etcd and condition: 1 True, 0 False, -1 Unknown.
    pub conditions: Family<ConditionLabels, Gauge>,
    /// Per Etcd: 1 when its StatefulSet is ready.
    pub ready: Family<EtcdLabels, Gauge>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// The snapshot compaction controller's metrics (upstream's names).
    pub compaction: CompactionMetrics,
    /// The API client's requests and rate-limit waits.
    pub client: crate::kube_client::ClientMetrics,
    /// `druid_ops_tasks_finished`: EtcdOpsTasks finished, per namespace,
    /// operation and final state.
    pub ops_tasks: Family<OpsTaskLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut root = Registry::default();
        // Compaction metrics keep upstream's names; everything else is
        // `druid_*`.
        let compaction = CompactionMetrics::register(&mut root);
        // process_* as Go's client exports them (memory, CPU, descriptors).
        druid_process_metrics::register_process_metrics(&mut root);
        let registry = root.sub_registry_with_prefix("druid");
        let reconciles = Family::<EtcdLabels, Counter>::default();
        registry.register("reconciles", "Reconciles per Etcd", reconciles.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles per Etcd and error code",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let conditions = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "etcd_condition",
            "Conditions of each Etcd: 1 True, 0 False, -1 Unknown",
            conditions.clone(),
        );
        let ready = Family::<EtcdLabels, Gauge>::default();
        registry.register(
            "etcd_ready",
            "1 when the Etcd's StatefulSet is rolled out and ready",
            ready.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let ops_tasks = Family::<OpsTaskLabels, Counter>::default();
        registry.register(
            "ops_tasks_finished",
            "EtcdOpsTasks finished, per namespace, operation and final state (Succeeded, Failed, Rejected)",
            ops_tasks.clone(),
        );
        let client = crate::kube_client::ClientMetrics::default();
        registry.register(
            "kube_api_requests",
            "Requests to the Kubernetes API server, per HTTP method",
            client.requests.clone(),
        );
        registry.register(
            "kube_api_throttled_seconds",
            "Seconds requests waited for the client-side rate limit (--kube-api-qps, --kube-api-burst)",
            client.throttled_seconds.clone(),
        );
        Self {
            client,
            registry: root,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            conditions,
            ready,
            leader,
            compaction,
            ops_tasks,
        }
    }

    /// Forgets the series of a deleted Etcd.
    pub fn forget(&self, namespace: &str, etcd: &str, condition_types: &[&str]) {
        let labels = EtcdLabels {
            namespace: namespace.into(),
            etcd: etcd.into(),
        };
        self.reconciles.remove(&labels);
        self.ready.remove(&labels);
        for t in condition_types {
            self.conditions.remove(&ConditionLabels {
                namespace: namespace.into(),
                etcd: etcd.into(),
                condition: (*t).into(),
            });
        }
    }

    /// Every metric in the Prometheus text format, for `/metrics`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What the health endpoints report.
#[derive(Default)]
pub struct Health {
    /// Set once the API server answered and the controllers (or the standby
    /// loop) run.
    pub ready: AtomicBool,
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process
/// ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).await
}

async fn metrics_handler(State(s): State<Shared>) -> impl IntoResponse {
    match s.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
    }
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    if s.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn compaction_metrics_keep_upstreams_names_and_the_rest_is_druid() {
        let m = Metrics::new();
        let labels = CompactionJobLabels {
            succeeded: false,
            failure_reason: "deadlineExceeded",
            etcd_namespace: "shoot".into(),
        };
        m.compaction.jobs_total.get_or_create(&labels).inc();
        m.compaction
            .job_duration
            .get_or_create(&labels)
            .observe(42.0);
        m.compaction
            .full_snapshot_triggered
            .get_or_create(&FullSnapshotLabels {
                succeeded: "true".into(),
                etcd_namespace: "shoot".into(),
            })
            .inc();
        for gauge in [&m.compaction.jobs_current, &m.compaction.num_delta_events] {
            gauge
                .get_or_create(&NamespaceLabels {
                    etcd_namespace: "shoot".into(),
                })
                .set(7);
        }
        m.leader.set(1);
        let text = m.encode().unwrap();
        for line in [
            r#"etcddruid_compaction_jobs_total{succeeded="false",failureReason="deadlineExceeded",etcd_namespace="shoot"} 1"#,
            r#"etcddruid_compaction_job_duration_seconds_count{succeeded="false",failureReason="deadlineExceeded",etcd_namespace="shoot"} 1"#,
            r#"etcddruid_compaction_full_snapshot_triggered_total{succeeded="true",etcd_namespace="shoot"} 1"#,
            r#"etcddruid_compaction_jobs_current{etcd_namespace="shoot"} 7"#,
            r#"etcddruid_compaction_num_delta_events{etcd_namespace="shoot"} 7"#,
            "druid_leader 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
