//! The sidecar's shared state: configuration, initialization state, the
//! on-demand snapshot permits.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Mutex, mpsc};

use crate::config::ServerConfig;
use crate::etcd::MaintenanceLock;
use crate::metrics::Metrics;
use crate::snapshot::Request;
use crate::store::Snapstore;

/// Upstream's initialization states, as `/initialization/status` returns
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    /// Nothing started (or the last result was read).
    New,
    /// Validation (and a restore, if one is needed) is running.
    Progress,
    /// Done, data valid.
    Successful,
    /// Done, failed.
    Failed,
}

impl InitState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            InitState::New => "New",
            InitState::Progress => "Progress",
            InitState::Successful => "Successful",
            InitState::Failed => "Failed",
        }
    }
}

/// Shared state of the handlers and loops.
pub struct AppState {
    pub(super) config: ServerConfig,
    pub(super) store: Option<Snapstore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) init: Mutex<InitState>,
    pub(super) healthy: AtomicBool,
    /// The running snapshotter's request queue (leader only).
    pub(super) snapshotter: Mutex<Option<mpsc::Sender<Request>>>,
    /// Held by the snapshotter task for as long as it runs: a snapshotter
    /// started after a leadership change waits until the previous one has
    /// finished what it was uploading, so that it lists a store that holds
    /// it (else both upload the same revisions under two names).
    pub(super) snapshotter_running: Arc<Mutex<()>>,
    /// Excludes full snapshots and defragmentation from each other.
    pub(super) maintenance: MaintenanceLock,
    /// Set while a defragmentation run is in progress.
    pub(super) defragmenting: AtomicBool,
    /// Whether this member's etcd leads.
    pub(super) leading: AtomicBool,
    /// This sidecar's Etcd, when running in a pod.
    pub(super) etcd_handle: tokio::sync::OnceCell<Option<crate::k8s::EtcdHandle>>,
    /// On-demand snapshot requests by path: whether one is in flight, and
    /// when the last one ended.
    pub(super) on_demand: std::sync::Mutex<std::collections::HashMap<String, OnDemand>>,
}

/// How soon after an on-demand snapshot of a kind ended the next one is
/// taken: a client in a loop (or many clients) cannot keep the member
/// snapshotting.
pub const ON_DEMAND_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// The on-demand state of one snapshot kind.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct OnDemand {
    pub(super) in_flight: bool,
    pub(super) last_end: Option<tokio::time::Instant>,
}

/// Holds the right to take one on-demand snapshot of a kind; releases it
/// (and records the end) when dropped, whatever the outcome.
pub(super) struct OnDemandPermit<'a> {
    pub(super) state: &'a AppState,
    pub(super) path: String,
}

impl<'a> OnDemandPermit<'a> {
    /// The permit, or the answer for a caller that must wait: 429 with
    /// `Retry-After` (one in flight, or the last one ended too recently).
    pub(super) fn acquire(state: &'a AppState, path: &str) -> Result<Self, Box<Response>> {
        let Ok(mut all) = state.on_demand.lock() else {
            return Err(Box::new(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "on-demand state poisoned",
                )
                    .into_response(),
            ));
        };
        let entry = all.entry(path.to_string()).or_default();
        let wait = if entry.in_flight {
            Some(("one is in progress".to_string(), ON_DEMAND_MIN_INTERVAL))
        } else {
            entry.last_end.and_then(|end| {
                let since = end.elapsed();
                (since < ON_DEMAND_MIN_INTERVAL).then(|| {
                    (
                        format!(
                            "the last one ended {:.1}s ago (at most one every {}s)",
                            since.as_secs_f64(),
                            ON_DEMAND_MIN_INTERVAL.as_secs()
                        ),
                        ON_DEMAND_MIN_INTERVAL.saturating_sub(since),
                    )
                })
            })
        };
        if let Some((why, retry)) = wait {
            let secs = retry.as_secs().max(1);
            return Err(Box::new(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, secs.to_string())],
                    format!("{path} refused: {why}; retry in {secs}s"),
                )
                    .into_response(),
            ));
        }
        entry.in_flight = true;
        Ok(Self {
            state,
            path: path.to_string(),
        })
    }
}

impl Drop for OnDemandPermit<'_> {
    fn drop(&mut self) {
        if let Ok(mut all) = self.state.on_demand.lock() {
            let entry = all.entry(self.path.clone()).or_default();
            entry.in_flight = false;
            entry.last_end = Some(tokio::time::Instant::now());
        }
    }
}

impl AppState {
    /// The state for a server.
    pub fn new(config: ServerConfig, store: Option<Snapstore>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(AppState {
            config,
            store,
            metrics,
            init: Mutex::new(InitState::New),
            healthy: AtomicBool::new(false),
            snapshotter: Mutex::new(None),
            snapshotter_running: Arc::new(Mutex::new(())),
            maintenance: MaintenanceLock::default(),
            defragmenting: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            etcd_handle: tokio::sync::OnceCell::new(),
            on_demand: std::sync::Mutex::default(),
        })
    }
}
