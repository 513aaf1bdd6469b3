//! The HTTP API (upstream's paths and answers).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::forward::forward_to_leader;
use super::maintenance::run_defrag;
use super::members::{redacted, refusal};
use super::state::{AppState, InitState, OnDemandPermit};
use crate::config::{EtcdArgs, ServerConfig};
use crate::formats::names::Snapshot;
use crate::formats::version::EtcdVersion;
use crate::restore::initializer::{Initializer, Mode};
use crate::snapshot::Request;

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
        .route("/members/cut-over", axum::routing::post(cut_over))
        .route(
            "/members/scale-in/{step}",
            axum::routing::post(super::members::scale_in),
        )
        .with_state(state)
}

#[derive(Debug, Deserialize)]
pub(super) struct InitQuery {
    mode: Option<String>,
    /// The version of the etcd the wrapper will start (ours sends it;
    /// upstream's does not): a restore must not move the data to an older
    /// minor version.
    #[serde(rename = "etcdversion")]
    etcd_version: Option<String>,
}

pub(super) async fn init_start(
    State(state): State<Arc<AppState>>,
    Query(q): Query<InitQuery>,
) -> Response {
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
        tracing::info!(
            etcd_version = q.etcd_version.as_deref(),
            "initialization started"
        );
        let mut restore = state.config.restore.clone();
        restore.wrapper_etcd_version = q.etcd_version.as_deref().and_then(|text| {
            let parsed = EtcdVersion::parse(text);
            if parsed.is_none() {
                tracing::warn!(etcdversion = ?text, "the etcd-wrapper reported an etcd version that is not one; ignored");
            }
            parsed
        });
        let s = state.clone();
        tokio::spawn(async move {
            let initializer = Initializer {
                restore: &restore,
                etcd: &s.config.etcd,
                store: s.store.as_ref(),
                member_leases: s.config.health.enable_member_lease_renewal,
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

pub(super) async fn init_status(State(state): State<Arc<AppState>>) -> String {
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
pub(super) async fn etcd_answers(state: &AppState) -> Option<String> {
    let url = reqwest::Url::parse(state.config.etcd.endpoints.first()?).ok()?;
    let addr = format!("{}:{}", url.host_str()?, url.port().unwrap_or(2379));
    let connect = tokio::net::TcpStream::connect(addr.as_str());
    match tokio::time::timeout(Duration::from_secs(1), connect).await {
        Ok(Ok(_)) => Some(addr),
        _ => None,
    }
}

pub(super) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let healthy = state.healthy.load(Ordering::SeqCst);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(serde_json::json!({ "health": healthy }))).into_response()
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

pub(super) async fn config(State(state): State<Arc<AppState>>) -> Response {
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
    let member = c.member_name();
    let live = live_cluster(&c.etcd).await;
    match crate::etcd::config::render(&text, &member, live.as_ref()) {
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
pub(super) async fn adopt_member_settings(config: &mut ServerConfig) {
    let Ok(defaults) = ServerConfig::defaults() else {
        return;
    };
    let path = &config.server.etcd_config;
    let Ok(text) = tokio::fs::read_to_string(path).await else {
        tracing::debug!(path = %path.display(), "no etcd configuration: member settings from flags");
        return;
    };
    // The operator passes no `--member-name-prefix`: it writes the prefix
    // into the configuration. Without it this member would look for its
    // entries, and renew its lease, under the pod's name.
    if config.server.member_name_prefix.is_empty() {
        match crate::etcd::config::member_name_prefix(&text) {
            Ok(Some(prefix)) => config.server.member_name_prefix = prefix,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the member name prefix from the etcd configuration: members are named after their pods");
            }
        }
    }
    let member = config.member_name();
    let settings = match crate::etcd::config::member_settings(&text, &member) {
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
pub(super) async fn live_cluster(etcd: &EtcdArgs) -> Option<crate::etcd::config::LiveCluster> {
    let endpoints = etcd.cluster_endpoints();
    let work = async {
        let mut client = crate::etcd::connect_any(etcd, endpoints, Duration::from_secs(2))
            .await
            .ok()?;
        let list = client.member_list().await.ok()?;
        Some(crate::etcd::config::LiveCluster {
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
pub(super) struct FullQuery {
    #[serde(rename = "final")]
    is_final: Option<String>,
}

pub(super) async fn snapshot_full(
    State(state): State<Arc<AppState>>,
    Query(q): Query<FullQuery>,
) -> Response {
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

pub(super) async fn snapshot_delta(State(state): State<Arc<AppState>>) -> Response {
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
pub(super) fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub(super) async fn trigger(
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
        Ok(Ok(Ok(snapshot))) => {
            let prefix = state.store.as_ref().map_or("", |s| s.prefix());
            axum::Json(snapshot.as_ref().map(|s| snapshot_json(s, prefix))).into_response()
        }
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

/// A snapshot as upstream's JSON (`brtypes.Snapshot`): every field
/// upstream writes, `prefix` the store path of its layout
/// (`<store-prefix>/v2`, or `/v1` for the legacy layout, whose `snapDir` is
/// the `Backup-<time>` directory) and `versionID` `null` (no provider here
/// reads object versions).
pub fn snapshot_json(s: &Snapshot, store_prefix: &str) -> serde_json::Value {
    let created = chrono::DateTime::from_timestamp(s.created_at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let store_prefix = store_prefix.trim_matches('/');
    let under = |version: &str| {
        if store_prefix.is_empty() {
            version.to_string()
        } else {
            format!("{store_prefix}/{version}")
        }
    };
    let (snap_dir, prefix) = match &s.layout {
        crate::formats::names::Layout::V2 => (String::new(), under("v2")),
        crate::formats::names::Layout::V1 { backup_dir } => (backup_dir.clone(), under("v1")),
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
        "versionID": null,
    })
}

pub(super) async fn snapshot_latest(State(state): State<Arc<AppState>>) -> Response {
    let Some(store) = &state.store else {
        return (StatusCode::METHOD_NOT_ALLOWED, "no store is configured").into_response();
    };
    match store.list().await {
        Ok(listing) => {
            let set = listing.latest_set();
            axum::Json(serde_json::json!({
                "fullSnapshot": set.full.as_ref().map(|s| snapshot_json(s, store.prefix())),
                "deltaSnapshots": set.deltas.iter().map(|s| snapshot_json(s, store.prefix())).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `/defragment`: run now on the leader (a follower forwards), answer with
/// the report: 200 when it succeeded, 409 when something blocked it or a
/// run is in progress, 500 when it failed or ran out of time.
pub(super) async fn defragment(State(state): State<Arc<AppState>>) -> Response {
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

#[derive(Debug, Deserialize)]
pub(super) struct CutOverQuery {
    /// The source members to remove, comma-separated.
    remove: String,
}

/// `POST /members/cut-over?remove=a,b`: removes the named source members
/// from the cluster (`crate::etcd::cut_over`). 200 with the report; 409
/// when refused; 503 while the cluster is not ready for it; 500 when etcd
/// refuses a call.
pub(super) async fn cut_over(
    State(state): State<Arc<AppState>>,
    Query(q): Query<CutOverQuery>,
) -> Response {
    let remove: Vec<String> = q
        .remove
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let c = &state.config;
    let member = c.member_name();
    let result = Box::pin(crate::etcd::cut_over::cut_over(
        &c.etcd,
        c.etcd.cluster_endpoints(),
        &member,
        &remove,
    ))
    .await;
    match result {
        Ok(report) => {
            tracing::info!(removed = ?report.removed, absent = ?report.absent, leader = %report.leader, "cut-over done: the source members left the cluster");
            (StatusCode::OK, axum::Json(report)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %redacted(&e), ?remove, "cut-over not done");
            refusal(&e)
        }
    }
}
