//! `etcdbr server`: the sidecar. The HTTP API the etcd container calls
//! (wire-compatible with upstream), the leadership loop that runs the
//! snapshotter and garbage collection only on the leading member, and the
//! member lease heartbeat.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::collector::{self, Policy};
use crate::config::{EtcdArgs, HealthArgs, RestoreArgs, ServerArgs, SnapshotterArgs, StoreArgs};
use crate::defrag::{Coordinator, MaintenanceLock};
use crate::initializer::{Initializer, Mode};
use crate::leases::{Leases, MemberLease};
use crate::metrics::Metrics;
use crate::snapshot_name::Snapshot;
use crate::snapshotter::{Request, Settings, Snapshotter};
use crate::store::Snapstore;

/// Upstream's initialization states, as `/initialization/status` returns
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    /// Nothing started (or the last result was read).
    New,
    /// Running.
    Progress,
    /// Done, data valid.
    Successful,
    /// Done, failed.
    Failed,
}

impl InitState {
    fn as_str(self) -> &'static str {
        match self {
            InitState::New => "New",
            InitState::Progress => "Progress",
            InitState::Successful => "Successful",
            InitState::Failed => "Failed",
        }
    }
}

/// All options of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// etcd.
    pub etcd: EtcdArgs,
    /// The store.
    pub store: StoreArgs,
    /// Snapshots and GC.
    pub snapshotter: SnapshotterArgs,
    /// Restore.
    pub restore: RestoreArgs,
    /// Leases.
    pub health: HealthArgs,
    /// HTTP and leadership.
    pub server: ServerArgs,
}

/// Shared state of the handlers and loops.
pub struct AppState {
    config: ServerConfig,
    store: Option<Snapstore>,
    metrics: Arc<Metrics>,
    init: Mutex<InitState>,
    healthy: AtomicBool,
    /// The running snapshotter's request queue (leader only).
    snapshotter: Mutex<Option<mpsc::Sender<Request>>>,
    http: reqwest::Client,
    /// Excludes full snapshots and defragmentation from each other.
    maintenance: MaintenanceLock,
    /// Set while a defragmentation run is in progress.
    defragmenting: AtomicBool,
    /// Whether this member's etcd leads.
    leading: AtomicBool,
    /// This sidecar's Etcd, when running in a pod.
    etcd_handle: tokio::sync::OnceCell<Option<crate::k8s::EtcdHandle>>,
    /// On-demand snapshot requests by path: whether one is in flight, and
    /// when the last one ended.
    on_demand: std::sync::Mutex<std::collections::HashMap<String, OnDemand>>,
}

/// How soon after an on-demand snapshot of a kind ended the next one is
/// taken: a client in a loop (or many clients) cannot keep the member
/// snapshotting.
pub const ON_DEMAND_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// The on-demand state of one snapshot kind.
#[derive(Debug, Default, Clone, Copy)]
struct OnDemand {
    in_flight: bool,
    last_end: Option<tokio::time::Instant>,
}

/// Holds the right to take one on-demand snapshot of a kind; releases it
/// (and records the end) when dropped, whatever the outcome.
struct OnDemandPermit<'a> {
    state: &'a AppState,
    path: String,
}

impl<'a> OnDemandPermit<'a> {
    /// The permit, or the answer for a caller that must wait: 429 with
    /// `Retry-After` (one in flight, or the last one ended too recently).
    fn acquire(state: &'a AppState, path: &str) -> Result<Self, Box<Response>> {
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
            maintenance: MaintenanceLock::default(),
            defragmenting: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            etcd_handle: tokio::sync::OnceCell::new(),
            on_demand: std::sync::Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3600))
                .build()
                .unwrap_or_default(),
        })
    }
}

/// The router of the HTTP API. Like upstream, handlers accept any method.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/initialization/start", any(init_start))
        .route("/initialization/status", any(init_status))
        .route("/config", any(config))
        .route("/healthz", any(healthz))
        .route("/snapshot/full", any(snapshot_full))
        .route("/snapshot/delta", any(snapshot_delta))
        .route("/snapshot/latest", any(snapshot_latest))
        .route("/metrics", any(metrics))
        .route("/defragment", any(defragment))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct InitQuery {
    mode: Option<String>,
}

async fn init_start(State(state): State<Arc<AppState>>, Query(q): Query<InitQuery>) -> Response {
    let mut init = state.init.lock().await;
    if *init == InitState::New {
        // Validating (or restoring) the data directory under a running
        // member would corrupt it: whoever asks, etcd must be down.
        if let Some(addr) = etcd_answers(&state).await {
            tracing::warn!(%addr, "initialization refused: etcd answers on its client port; it runs only before etcd starts");
            return (
                StatusCode::CONFLICT,
                format!("initialization refused: etcd answers on {addr}; it runs only before etcd starts"),
            )
                .into_response();
        }
        *init = InitState::Progress;
        state.healthy.store(false, Ordering::SeqCst);
        let mode = Mode::parse(q.mode.as_deref());
        let s = state.clone();
        tokio::spawn(async move {
            let initializer = Initializer {
                restore: &s.config.restore,
                etcd: &s.config.etcd,
                store: s.store.as_ref(),
                metrics: &s.metrics,
            };
            // A restore and a defragmentation run of this sidecar never
            // overlap (another member's restore shows as that member being
            // unhealthy, which refuses the run).
            let guard = s.maintenance.lock().await;
            let result = Box::pin(initializer.run(mode)).await;
            drop(guard);
            let next = match &result {
                Ok(outcome) => {
                    tracing::info!(?outcome, "initialization succeeded");
                    InitState::Successful
                }
                Err(e) => {
                    tracing::error!(error = %e, "initialization failed");
                    InitState::Failed
                }
            };
            *s.init.lock().await = next;
        });
    }
    StatusCode::OK.into_response()
}

async fn init_status(State(state): State<Arc<AppState>>) -> String {
    let mut init = state.init.lock().await;
    let current = *init;
    // Reading a result consumes it, as upstream, so that a restarted
    // wrapper initializes again; but not while etcd runs: then the read is
    // a probe or a stray client, and must not re-arm a start.
    if matches!(current, InitState::Successful | InitState::Failed)
        && etcd_answers(&state).await.is_none()
    {
        *init = InitState::New;
    }
    current.as_str().to_string()
}

/// This member's client address if etcd accepts connections on it (a TCP
/// connect within a second; TLS or not).
async fn etcd_answers(state: &AppState) -> Option<String> {
    let url = reqwest::Url::parse(state.config.etcd.endpoints.first()?).ok()?;
    let addr = format!("{}:{}", url.host_str()?, url.port().unwrap_or(2379));
    let connect = tokio::net::TcpStream::connect(addr.as_str());
    match tokio::time::timeout(Duration::from_secs(1), connect).await {
        Ok(Ok(_)) => Some(addr),
        _ => None,
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let healthy = state.healthy.load(Ordering::SeqCst);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(serde_json::json!({ "health": healthy }))).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

fn member_name(server: &ServerArgs, fallback: &str) -> String {
    let pod = std::env::var("POD_NAME").unwrap_or_else(|_| fallback.to_string());
    if server.member_name_prefix.is_empty() {
        pod
    } else {
        format!("{}-{pod}", server.member_name_prefix)
    }
}

async fn config(State(state): State<Arc<AppState>>) -> Response {
    let c = &state.config;
    let path = &c.server.etcd_config;
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the etcd configuration {}: {e}", path.display()),
            )
                .into_response();
        }
    };
    let member = member_name(&c.server, &c.restore.name);
    let live = live_cluster(&c.etcd).await;
    match crate::etcd_config::render(&text, &member, live.as_ref()) {
        Ok(rendered) => {
            if let Some(home) = std::env::var_os("HOME") {
                let out = std::path::Path::new(&home).join("etcd.conf.yaml");
                if let Err(e) = tokio::fs::write(&out, &rendered).await {
                    tracing::debug!(path = %out.display(), error = %e, "cannot keep a copy of the rendered configuration");
                }
            }
            ([(header::CONTENT_TYPE, "application/yaml")], rendered).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// In a pod the operator passes no `--name`, `--initial-cluster`,
/// `--initial-cluster-token` or `--initial-advertise-peer-urls`: as
/// upstream, the sidecar takes them from the etcd configuration it serves
/// (`--etcd-config`), for this member (`POD_NAME`). Flags that were set
/// (not at their defaults) win. Without them a member that lost its volume
/// in a multi-member cluster was restored from the store as a cluster of
/// its own (a split brain), and a restore named the member `default`.
async fn adopt_member_settings(config: &mut ServerConfig) {
    let defaults = <crate::cli::Cli as clap::Parser>::try_parse_from(["etcdbr", "server"]);
    let Ok(crate::cli::Cli {
        command: crate::cli::Command::Server(defaults),
        ..
    }) = defaults
    else {
        return;
    };
    let path = &config.server.etcd_config;
    let Ok(text) = tokio::fs::read_to_string(path).await else {
        tracing::debug!(path = %path.display(), "no etcd configuration: member settings from flags");
        return;
    };
    let member = member_name(&config.server, &config.restore.name);
    let settings = match crate::etcd_config::member_settings(&text, &member) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path.display(), %member, error = %e, "cannot read this member's settings from the etcd configuration: using the flags");
            return;
        }
    };
    let r = &mut config.restore;
    let d = &defaults.restore;
    if r.name == d.name {
        r.name = settings.name;
    }
    if let Some(cluster) = settings
        .initial_cluster
        .filter(|_| r.initial_cluster == d.initial_cluster)
    {
        r.initial_cluster = cluster;
    }
    if let Some(token) = settings
        .initial_cluster_token
        .filter(|_| r.initial_cluster_token == d.initial_cluster_token)
    {
        r.initial_cluster_token = token;
    }
    if r.initial_advertise_peer_urls == d.initial_advertise_peer_urls
        && !settings.initial_advertise_peer_urls.is_empty()
    {
        r.initial_advertise_peer_urls = settings.initial_advertise_peer_urls;
    }
    tracing::info!(
        name = %r.name,
        initial_cluster = %r.initial_cluster,
        peer_urls = ?r.initial_advertise_peer_urls,
        "member settings from the etcd configuration"
    );
}

/// The member list, if the cluster answers within a few seconds.
async fn live_cluster(etcd: &EtcdArgs) -> Option<crate::etcd_config::LiveCluster> {
    let endpoints = etcd.cluster_endpoints();
    let work = async {
        let mut client = crate::etcd::connect_any(etcd, endpoints, Duration::from_secs(2))
            .await
            .ok()?;
        let list = client.member_list().await.ok()?;
        Some(crate::etcd_config::LiveCluster {
            members: list
                .members()
                .iter()
                .map(|m| m.name().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
            has_learner: list.members().iter().any(|m| m.is_learner()),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .ok()
        .flatten()
}

#[derive(Debug, Deserialize)]
struct FullQuery {
    #[serde(rename = "final")]
    is_final: Option<String>,
}

async fn snapshot_full(State(state): State<Arc<AppState>>, Query(q): Query<FullQuery>) -> Response {
    let is_final = match q.is_final.as_deref() {
        None | Some("") => false,
        Some(v) => match parse_go_bool(v) {
            Some(b) => b,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("final={v:?} is not a boolean"),
                )
                    .into_response();
            }
        },
    };
    let query = if is_final { "?final=true" } else { "" };
    trigger(&state, "/snapshot/full", query, |reply| Request::Full {
        is_final,
        reply,
    })
    .await
}

async fn snapshot_delta(State(state): State<Arc<AppState>>) -> Response {
    if state.config.snapshotter.delta_snapshot_period < Duration::from_secs(1) {
        // Unlike upstream (#965), an on-demand delta works with scheduled
        // deltas disabled: the snapshotter has no watch then, so say so.
        return (
            StatusCode::BAD_REQUEST,
            "delta snapshots are disabled (--delta-snapshot-period < 1s); request a full snapshot",
        )
            .into_response();
    }
    trigger(&state, "/snapshot/delta", "", |reply| Request::Delta {
        reply,
    })
    .await
}

/// Go's strconv.ParseBool.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

async fn trigger(
    state: &Arc<AppState>,
    path: &str,
    query: &str,
    make: impl FnOnce(oneshot::Sender<Result<Option<Snapshot>, String>>) -> Request,
) -> Response {
    if state.store.is_none() {
        return (StatusCode::METHOD_NOT_ALLOWED, "no store is configured").into_response();
    }
    let sender = state.snapshotter.lock().await.clone();
    let Some(sender) = sender else {
        return forward_to_leader(state, &format!("{path}{query}")).await;
    };
    // On the leader, which takes them: one at a time per kind, and not
    // again right after the last.
    let _permit = match OnDemandPermit::acquire(state, path) {
        Ok(p) => p,
        Err(refused) => {
            tracing::info!(%path, "on-demand snapshot refused: rate limit");
            return *refused;
        }
    };
    let (tx, rx) = oneshot::channel();
    if sender.send(make(tx)).await.is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the snapshotter stopped").into_response();
    }
    let timeout = state.config.etcd.etcd_snapshot_timeout + Duration::from_secs(600);
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(snapshot))) => axum::Json(snapshot.as_ref().map(snapshot_json)).into_response(),
        Ok(Ok(Err(e))) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Ok(Err(_)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the snapshotter stopped before answering",
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the snapshot did not finish in time",
        )
            .into_response(),
    }
}

/// A snapshot as upstream's JSON (`brtypes.Snapshot`).
pub fn snapshot_json(s: &Snapshot) -> serde_json::Value {
    let created = chrono::DateTime::from_timestamp(s.created_at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let (snap_dir, prefix) = match &s.layout {
        crate::snapshot_name::Layout::V2 => (String::new(), "v2".to_string()),
        crate::snapshot_name::Layout::V1 { backup_dir } => (backup_dir.clone(), "v1".to_string()),
    };
    serde_json::json!({
        "kind": s.kind.as_str(),
        "startRevision": s.start_revision,
        "lastRevision": s.last_revision,
        "createdOn": created,
        "snapDir": snap_dir,
        "snapName": s.name(),
        "prefix": prefix,
        "isChunk": false,
        "compressionSuffix": s.compression.suffix(),
        "isFinal": s.is_final,
        "immutabilityExpriyTime": "0001-01-01T00:00:00Z",
    })
}

async fn snapshot_latest(State(state): State<Arc<AppState>>) -> Response {
    let Some(store) = &state.store else {
        return (StatusCode::METHOD_NOT_ALLOWED, "no store is configured").into_response();
    };
    match store.list().await {
        Ok(listing) => {
            let set = listing.latest_set();
            axum::Json(serde_json::json!({
                "fullSnapshot": set.full.as_ref().map(snapshot_json),
                "deltaSnapshots": set.deltas.iter().map(snapshot_json).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Sends a snapshot request to the leader's sidecar and relays its answer.
async fn forward_to_leader(state: &Arc<AppState>, path_and_query: &str) -> Response {
    let base = match leader_sidecar_url(state).await {
        Ok(url) => url,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("this member does not take snapshots and the leader cannot be found: {e}"),
            )
                .into_response();
        }
    };
    let result = if state.config.server.server_cert.is_some() {
        forward_tls(&state.config, &base, path_and_query).await
    } else {
        forward_plain(&state.http, &base, path_and_query).await
    };
    match result {
        Ok((code, body)) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

/// Checks the leader's sidecar is healthy, then relays the request (HTTP).
async fn forward_plain(
    http: &reqwest::Client,
    base: &str,
    path_and_query: &str,
) -> Result<(u16, Vec<u8>), String> {
    let health = http
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("the leader's sidecar at {base} does not answer: {e}"))?;
    if !health.status().is_success() {
        return Err(format!(
            "the leader's sidecar at {base} is not healthy ({})",
            health.status()
        ));
    }
    let resp = http
        .get(format!("{base}{path_and_query}"))
        .send()
        .await
        .map_err(|e| format!("forwarding to the leader at {base}: {e}"))?;
    let code = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((code, body.to_vec()))
}

/// The same over HTTPS, trusting `--cacert` (the CA of the sidecars'
/// serving certificates, as upstream) and the serving certificate chain
/// itself. Uses ureq (rustls with ring) on a blocking thread: enabling TLS
/// in reqwest would change every reqwest client of the workspace through
/// feature unification.
async fn forward_tls(
    config: &ServerConfig,
    base: &str,
    path_and_query: &str,
) -> Result<(u16, Vec<u8>), String> {
    let mut pem = Vec::new();
    for path in config
        .etcd
        .cacert
        .iter()
        .chain(config.server.server_cert.iter())
    {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        pem.extend_from_slice(&bytes);
        pem.push(b'\n');
    }
    let base = base.to_string();
    let path_and_query = path_and_query.to_string();
    tokio::task::spawn_blocking(move || {
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3600)))
            .build()
            .into();
        let health = agent
            .get(&format!("{base}/healthz"))
            .call()
            .map_err(|e| format!("the leader's sidecar at {base} does not answer: {e}"))?;
        if !health.status().is_success() {
            return Err(format!(
                "the leader's sidecar at {base} is not healthy ({})",
                health.status()
            ));
        }
        let mut resp = agent
            .get(&format!("{base}{path_and_query}"))
            .call()
            .map_err(|e| format!("forwarding to the leader at {base}: {e}"))?;
        let code = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok((code, body))
    })
    .await
    .map_err(|e| format!("forwarding task: {e}"))?
}

/// `<scheme>://<leader's client host>:<server port>`.
async fn leader_sidecar_url(state: &Arc<AppState>) -> Result<String, String> {
    let c = &state.config;
    let mut client = crate::etcd::connect(&c.etcd, c.etcd.own_endpoint(), Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let status = client.status().await.map_err(|e| e.to_string())?;
    let leader = status.leader();
    let members = client.member_list().await.map_err(|e| e.to_string())?;
    let member = members
        .members()
        .iter()
        .find(|m| m.id() == leader)
        .ok_or_else(|| format!("leader {leader:x} is not in the member list"))?;
    let url = member
        .client_urls()
        .first()
        .ok_or_else(|| format!("leader {leader:x} has no client URL"))?;
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| {
            rest.rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .or_else(|| Some(rest.to_string()))
        })
        .ok_or_else(|| format!("cannot parse the leader's client URL {url}"))?;
    let scheme = if c.server.server_cert.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{host}:{}", c.server.server_port))
}

/// Runs the server until SIGTERM/SIGINT.
pub async fn run(mut config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    use anyhow::Context as _;
    adopt_member_settings(&mut config).await;
    let metrics = Arc::new(Metrics::new());
    let store = if config.store.has_store() {
        let registry = crate::store::registry(&config.store)
            .await
            .context("loading the provider plugins")?;
        Some(
            Snapstore::open(&config.store, &registry)
                .await
                .context("opening the store")?,
        )
    } else {
        tracing::warn!(
            "no --storage-provider: no snapshots will be taken and nothing can be restored"
        );
        None
    };
    let settings = Settings {
        schedule: druid_api::model::parse_cron(&config.snapshotter.schedule)
            .with_context(|| format!("--schedule={:?}", config.snapshotter.schedule))?,
        delta_period: config.snapshotter.delta_snapshot_period,
        delta_memory_limit: config.snapshotter.delta_snapshot_memory_limit,
        compression: config.store.compression().map_err(anyhow::Error::msg)?,
        temp_dir: config.store.snapstore_temp_directory.clone(),
        snapshot_timeout: config.etcd.etcd_snapshot_timeout,
    };
    let policy = Policy::from_args(&config.snapshotter).map_err(anyhow::Error::msg)?;
    let defrag_schedule = druid_api::model::parse_cron(&config.server.defragmentation_schedule)
        .with_context(|| {
            format!(
                "--defragmentation-schedule={:?}",
                config.server.defragmentation_schedule
            )
        })?;
    let state = AppState::new(config.clone(), store, metrics);

    let addr: SocketAddr = format!(
        "{}:{}",
        config.server.server_address, config.server.server_port
    )
    .parse()
    .context("--server-address/--server-port")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, tls = config.server.server_cert.is_some(), "HTTP API listening");
    let app = router(state.clone());
    let http_shutdown = shutdown.clone();
    let server = match (&config.server.server_cert, &config.server.server_key) {
        (Some(cert), Some(key)) => {
            let tls = crate::tls::acceptor(cert, key)
                .map_err(anyhow::Error::msg)
                .context("loading --server-cert/--server-key")?;
            let listener = crate::tls::TlsListener::new(listener, tls);
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
                    .await
            })
        }
        (None, None) => tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
                .await
        }),
        _ => anyhow::bail!("--server-cert and --server-key go together"),
    };

    if config.health.enable_member_lease_renewal {
        tokio::spawn(member_heartbeat(state.clone(), shutdown.clone()));
    }
    leadership(
        state.clone(),
        settings,
        policy,
        defrag_schedule,
        shutdown.clone(),
    )
    .await;
    let _ = server.await;
    Ok(())
}

/// Checks every reelection period whether this member leads; the leader
/// runs the snapshotter and garbage collection.
async fn leadership(
    state: Arc<AppState>,
    settings: Settings,
    policy: Policy,
    defrag_schedule: croner::Cron,
    shutdown: CancellationToken,
) {
    let c = &state.config;
    let mut running: Option<CancellationToken> = None;
    let own = c.etcd.own_endpoint();
    let mut client = None;
    let mut ticker = tokio::time::interval(c.server.reelection_period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if client.is_none() {
            client = crate::etcd::connect(
                &c.etcd,
                own,
                c.server.etcd_connection_timeout_leader_election,
            )
            .await
            .ok();
        }
        let Some(cl) = client.as_mut() else {
            state.healthy.store(false, Ordering::SeqCst);
            continue;
        };
        let status = tokio::time::timeout(
            c.server.etcd_connection_timeout_leader_election,
            cl.status(),
        )
        .await;
        if let Ok(Ok(s)) = &status
            && s.is_learner()
        {
            promote(&state, member_id(s)).await;
        }
        let leader = match status {
            Ok(Ok(s)) if s.leader() != 0 => Some(s.leader() == member_id(&s)),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "etcd status failed");
                None
            }
            Err(_) => None,
        };
        if let Ok(Ok(list)) = tokio::time::timeout(Duration::from_secs(5), cl.member_list()).await {
            state.metrics.cluster_size.set(list.members().len() as i64);
        }
        match leader {
            Some(true) => {
                if running.is_none() {
                    tracing::info!(
                        "this member leads: starting the snapshotter, garbage collection and the defragmentation schedule"
                    );
                    let token =
                        start_leader_work(&state, cl.clone(), settings.clone(), policy).await;
                    tokio::spawn(defrag_schedule_loop(
                        state.clone(),
                        defrag_schedule.clone(),
                        token.clone(),
                    ));
                    tokio::spawn(defrag_request_loop(state.clone(), token.clone()));
                    running = Some(token);
                }
                state.leading.store(true, Ordering::SeqCst);
                state.metrics.is_leader.set(1);
                state.healthy.store(
                    *state.init.lock().await != InitState::Progress,
                    Ordering::SeqCst,
                );
            }
            other => {
                if let Some(token) = running.take() {
                    tracing::info!(state = ?other, "this member no longer leads: stopping the snapshotter");
                    token.cancel();
                    *state.snapshotter.lock().await = None;
                }
                state.leading.store(false, Ordering::SeqCst);
                state.metrics.is_leader.set(0);
                state.healthy.store(false, Ordering::SeqCst);
            }
        }
    }
    if let Some(token) = running {
        token.cancel();
    }
}

async fn start_leader_work(
    state: &Arc<AppState>,
    client: etcd_client::Client,
    settings: Settings,
    policy: Policy,
) -> CancellationToken {
    let token = CancellationToken::new();
    let Some(store) = state.store.clone() else {
        return token;
    };
    let c = &state.config;
    let leases = if c.health.enable_snapshot_lease_renewal {
        match Leases::from_env(&c.health).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(error = %e, "snapshot leases cannot be updated; the operator will report backups as not ready");
                None
            }
        }
    } else {
        None
    };
    let (tx, mut rx) = mpsc::channel(4);
    *state.snapshotter.lock().await = Some(tx);
    let metrics = state.metrics.clone();
    let server = c.server.clone();
    let t = token.clone();
    let st = store.clone();
    let lock = state.maintenance.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let reader: crate::snapshotter::RevisionReader =
                Arc::new(crate::initializer::snapshot_revision);
            let mut snapshotter = Snapshotter::new(
                client.clone(),
                st.clone(),
                settings.clone(),
                leases.clone(),
                metrics.clone(),
                Some(reader),
            )
            .with_maintenance_lock(lock.clone());
            let started = tokio::time::Instant::now();
            match snapshotter.run(t.clone(), &mut rx).await {
                Ok(()) => return,
                Err(e) => {
                    if started.elapsed() > server.backoff_threshold_time {
                        backoff = Duration::from_secs(1);
                    }
                    tracing::error!(error = %e, retry_in_s = backoff.as_secs(), "snapshotter stopped; restarting from the last uploaded revision");
                    tokio::select! {
                        _ = t.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * server.backoff_multiplier.max(1))
                        .min(server.backoff_threshold_time);
                }
            }
        }
    });
    let period = c.snapshotter.garbage_collection_period;
    if period >= Duration::from_secs(1) {
        let t = token.clone();
        let metrics = state.metrics.clone();
        let retention = c.snapshotter.delta_snapshot_retention_period;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = t.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match collector::collect(&store, policy, retention, &metrics).await {
                    Ok(r) => tracing::info!(
                        deleted = r.deleted,
                        failed = r.failed,
                        chunks = r.chunks,
                        "garbage collection done"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "garbage collection failed; retrying next period")
                    }
                }
            }
        });
    }
    token
}

/// Renews this member's lease every heartbeat period.
async fn member_heartbeat(state: Arc<AppState>, shutdown: CancellationToken) {
    let c = &state.config;
    let lease = match MemberLease::from_env(&c.server.member_name_prefix).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the member lease cannot be renewed; the operator will not see this member");
            return;
        }
    };
    let own = c.etcd.own_endpoint();
    let mut ticker = tokio::time::interval(c.health.k8s_heartbeat_duration);
    let mut client = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if client.is_none() {
            client = crate::etcd::connect(&c.etcd, own, Duration::from_secs(5))
                .await
                .ok();
        }
        let Some(cl) = client.as_mut() else { continue };
        let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(5), cl.status()).await else {
            continue;
        };
        let cluster_id = status.header().map_or(0, |h| h.cluster_id());
        let tls = match cl.member_list().await {
            Ok(list) => list
                .members()
                .iter()
                .find(|m| m.id() == member_id(&status))
                .is_some_and(|m| {
                    !m.peer_urls().is_empty()
                        && m.peer_urls().iter().all(|u| u.starts_with("https"))
                }),
            Err(_) => false,
        };
        let leader = status.leader() == member_id(&status);
        if let Err(e) = lease
            .renew(member_id(&status), cluster_id, leader, tls)
            .await
        {
            tracing::warn!(error = %e, "cannot renew the member lease");
        }
    }
}

fn member_id(status: &etcd_client::StatusResponse) -> u64 {
    status.header().map_or(0, |h| h.member_id())
}

/// Starts a defragmentation run at every occurrence of the schedule while
/// this member leads. The run itself is not tied to leadership: it moves
/// leadership away on purpose before defragmenting the former leader.
async fn defrag_schedule_loop(
    state: Arc<AppState>,
    schedule: croner::Cron,
    leading: CancellationToken,
) {
    loop {
        let Some(next) = crate::snapshotter::next_full_snapshot(&schedule, chrono::Utc::now())
        else {
            return;
        };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = leading.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        tracing::info!("defragmentation window opens");
        let s = state.clone();
        tokio::spawn(async move {
            if run_defrag(&s).await.is_none() {
                tracing::info!(
                    "a defragmentation run is still in progress; this window is skipped"
                );
            }
        });
        // Do not fire twice within the same minute.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The coordinator for this sidecar's cluster.
fn coordinator(state: &Arc<AppState>) -> Coordinator {
    let c = &state.config;
    let endpoints = c.etcd.cluster_endpoints().to_vec();
    let expected = c
        .restore
        .initial_cluster
        .split(',')
        .filter(|s| !s.is_empty())
        .count();
    Coordinator::new(
        c.etcd.clone(),
        endpoints,
        crate::defrag::Settings {
            window: c.etcd.etcd_defrag_timeout,
            member_timeout: c.etcd.etcd_defrag_timeout,
            threshold_bytes: c.server.defragmentation_threshold_bytes,
            expected_members: expected.max(1),
        },
        state.metrics.clone(),
        state.maintenance.clone(),
        kube_blockers(),
    )
}

/// Runs defragmentation unless a run is in progress (`None` then).
async fn run_defrag(state: &Arc<AppState>) -> Option<crate::defrag::Report> {
    if state.defragmenting.swap(true, Ordering::SeqCst) {
        return None;
    }
    let report = coordinator(state).run().await;
    state.defragmenting.store(false, Ordering::SeqCst);
    if let Some(handle) = etcd_handle(state).await {
        handle.publish(&report).await;
    }
    Some(report)
}

/// This sidecar's Etcd (looked up once).
async fn etcd_handle(state: &Arc<AppState>) -> Option<&crate::k8s::EtcdHandle> {
    state
        .etcd_handle
        .get_or_init(|| async {
            let c = &state.config;
            crate::k8s::EtcdHandle::discover(&member_name(&c.server, &c.restore.name)).await
        })
        .await
        .as_ref()
}

/// While this member leads, checks its Etcd for the on-demand
/// defragmentation annotation every heartbeat period; runs and then
/// removes it.
async fn defrag_request_loop(state: Arc<AppState>, leading: CancellationToken) {
    let period = state
        .config
        .health
        .k8s_heartbeat_duration
        .max(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = leading.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Some(handle) = etcd_handle(&state).await else {
            return;
        };
        if !handle.defragment_requested().await {
            continue;
        }
        tracing::info!(
            annotation = druid_api::DEFRAGMENT_ANNOTATION,
            "defragmentation requested on the Etcd"
        );
        if run_defrag(&state).await.is_some() {
            handle.clear_defragment_request().await;
        }
    }
}

/// `/defragment`: run now on the leader (a follower forwards), answer with
/// the report: 200 when it succeeded, 409 when something blocked it or a
/// run is in progress, 500 when it failed or ran out of time.
async fn defragment(State(state): State<Arc<AppState>>) -> Response {
    if !state.leading.load(Ordering::SeqCst) {
        return forward_to_leader(&state, "/defragment").await;
    }
    match run_defrag(&state).await {
        None => (StatusCode::CONFLICT, "a defragmentation run is in progress").into_response(),
        Some(report) => {
            let code = match report.outcome.as_str() {
                "Succeeded" => StatusCode::OK,
                "Refused" => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (code, axum::Json(report)).into_response()
        }
    }
}

/// Blocks defragmentation while this pod's StatefulSet is not settled (a
/// rolling update or a scale-up): read through the Kubernetes API when the
/// sidecar runs in a pod ($POD_NAME, $POD_NAMESPACE).
fn kube_blockers() -> crate::defrag::Blockers {
    let (Ok(pod), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE"))
    else {
        return crate::defrag::no_blockers();
    };
    Arc::new(move || {
        let pod = pod.clone();
        let namespace = namespace.clone();
        Box::pin(async move { statefulset_blocker(&namespace, &pod).await })
    })
}

async fn statefulset_blocker(namespace: &str, pod: &str) -> Option<String> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Pod;
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the StatefulSet before defragmenting: no Kubernetes client");
            return None;
        }
    };
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let owner = match pods.get_opt(pod).await {
        Ok(Some(p)) => p
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.kind == "StatefulSet")
            .map(|o| o.name),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this pod to find its StatefulSet");
            None
        }
    }?;
    let sets: kube::Api<StatefulSet> = kube::Api::namespaced(client, namespace);
    let sts = match sets.get_opt(&owner).await {
        Ok(s) => s?,
        Err(e) => {
            tracing::warn!(error = %e, statefulset = %owner, "cannot read the StatefulSet");
            return None;
        }
    };
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = sts.status.unwrap_or_default();
    if let (Some(current), Some(update)) = (&status.current_revision, &status.update_revision)
        && current != update
    {
        return Some(format!(
            "a rolling update of StatefulSet {owner} is in progress (revision {current} → {update})"
        ));
    }
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < replicas || status.replicas < replicas {
        return Some(format!(
            "StatefulSet {owner} has {ready} of {replicas} pods ready (a scale-up, rolling update or restart is in progress)"
        ));
    }
    None
}

/// Promotes this member from learner to voting member (it was added as a
/// learner when it joined or rejoined). etcd refuses until the learner has
/// caught up with the leader; the leadership loop tries again every period.
async fn promote(state: &Arc<AppState>, id: u64) {
    let c = &state.config;
    let endpoints = c.etcd.cluster_endpoints();
    let Ok(mut client) = crate::etcd::connect_any(&c.etcd, endpoints, Duration::from_secs(5)).await
    else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(5), client.member_promote(id)).await {
        Ok(Ok(_)) => {
            tracing::info!(member = %format!("{id:x}"), "this learner was promoted to a voting member")
        }
        Ok(Err(e)) if e.to_string().contains("not a learner") => {}
        Ok(Err(e)) => {
            tracing::info!(member = %format!("{id:x}"), error = %e, "learner not promoted yet")
        }
        Err(_) => tracing::debug!("member promote timed out"),
    }
}
