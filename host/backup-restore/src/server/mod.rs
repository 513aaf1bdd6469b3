//! `etcdbr server`: the sidecar. The HTTP API the etcd container calls
//! (wire-compatible with upstream), the leadership loop that runs the
//! snapshotter and garbage collection only on the leading member, and the
//! member lease heartbeat.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::collector::Policy;
use crate::metrics::Metrics;
use crate::snapshotter::Settings;
use crate::store::Snapstore;

mod api;
mod forward;
mod leadership;
mod maintenance;
mod state;

use api::adopt_member_settings;
pub use api::{router, snapshot_json};
use leadership::{leadership, member_heartbeat};
pub use state::{AppState, InitState, ON_DEMAND_MIN_INTERVAL, ServerConfig};

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
    tracing::info!(
        %addr,
        tls = config.server.server_cert.is_some(),
        client_certificates = config.server.client_ca_file.is_some(),
        "HTTP API listening"
    );
    if config.server.client_ca_file.is_some() && config.server.server_cert.is_none() {
        anyhow::bail!("--client-ca-file needs TLS: set --server-cert and --server-key too");
    }
    let app = router(state.clone());
    let http_shutdown = shutdown.clone();
    let server = match (&config.server.server_cert, &config.server.server_key) {
        (Some(cert), Some(key)) => {
            let tls = crate::tls::acceptor(cert, key, config.server.client_ca_file.as_deref())
                .map_err(anyhow::Error::msg)
                .context("loading --server-cert/--server-key/--client-ca-file")?;
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
