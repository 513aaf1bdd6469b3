//! Prometheus metrics and the health endpoints (`/metrics`, `/healthz`,
//! `/readyz`), served on one port.
//!
//! What an operator of druid alerts on: reconcile errors per Etcd, reconcile
//! durations, each Etcd's conditions (quorum, members, backups, spec
//! validity) and whether this replica leads.

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
    /// Its namespace.
    pub namespace: String,
    /// Its name.
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
    /// The condition type.
    pub condition: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles per Etcd.
    pub reconciles: Family<EtcdLabels, Counter>,
    /// Reconcile errors per Etcd and code.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations.
    pub reconcile_duration: Histogram,
    /// Per Etcd and condition: 1 True, 0 False, -1 Unknown.
    pub conditions: Family<ConditionLabels, Gauge>,
    /// Per Etcd: 1 when its StatefulSet is ready.
    pub ready: Family<EtcdLabels, Gauge>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("druid");
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
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            conditions,
            ready,
            leader,
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

    /// The text exposition.
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
