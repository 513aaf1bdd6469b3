//! `etcdbr server`: the sidecar. The HTTP API the etcd container calls
//! (wire-compatible with upstream), the leadership loop that runs the
//! snapshotter and garbage collection only on the leading member, and the
//! member lease heartbeat.

pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::gc::collector::Policy;
use crate::metrics::Metrics;
use crate::snapshot::Settings;
use crate::store::Snapstore;

mod api;
mod forward;
mod leadership;
mod maintenance;
mod members;
mod state;

pub use crate::config::ServerConfig;
use api::adopt_member_settings;
pub use api::{router, snapshot_json};
use leadership::{leadership, member_heartbeat};
pub use state::{AppState, InitState, ON_DEMAND_MIN_INTERVAL};

/// Runs the server until SIGTERM/SIGINT.
pub async fn run(mut config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    adopt_member_settings(&mut config).await;
    let metrics = Arc::new(Metrics::new());
    let store = if config.store.has_store() {
        Some(
            Snapstore::connect(&config.store)
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
        delta_memory_limit: crate::snapshot::delta_cut(
            config.snapshotter.delta_snapshot_memory_limit,
            config.restore.compaction.compaction_max_delta_size,
        ),
        compression: config.store.compression().map_err(anyhow::Error::msg)?,
        temp_dir: config.store.snapstore_temp_directory.clone(),
        snapshot_timeout: config.etcd.etcd_snapshot_timeout,
        full_rate_estimate: config.snapshotter.full_snapshot_rate_estimate as f64,
    };
    if settings.delta_memory_limit < config.snapshotter.delta_snapshot_memory_limit {
        tracing::info!(
            delta_snapshot_memory_limit = config.snapshotter.delta_snapshot_memory_limit,
            cut_bytes = settings.delta_memory_limit,
            compaction_max_delta_size = config.restore.compaction.compaction_max_delta_size,
            "deltas are cut at half of --compaction-max-delta-size, below --delta-snapshot-memory-limit, so that every delta restores"
        );
    }
    let policy = Policy::from_args(&config.snapshotter).map_err(anyhow::Error::msg)?;
    let defrag_schedule = druid_api::model::parse_cron(&config.server.defragmentation_schedule)
        .with_context(|| {
            format!(
                "--defragmentation-schedule={:?}",
                config.server.defragmentation_schedule
            )
        })?;
    let state = AppState::new(config.clone(), store, metrics);

    if config.server.client_ca_file.is_some() && config.server.server_cert.is_none() {
        anyhow::bail!("--client-ca-file needs TLS: set --server-cert and --server-key too");
    }
    let tls = match (&config.server.server_cert, &config.server.server_key) {
        (Some(cert), Some(key)) => Some(
            crate::server::tls::acceptor(cert, key, config.server.client_ca_file.as_deref())
                .map_err(anyhow::Error::msg)
                .context("loading --server-cert/--server-key/--client-ca-file")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("--server-cert and --server-key go together"),
    };
    let addrs = listen_addresses(&config.server.server_address, config.server.server_port)?;
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in &addrs {
        listeners.push(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        );
    }
    tracing::info!(
        addresses = ?addrs,
        tls = config.server.server_cert.is_some(),
        client_certificates = config.server.client_ca_file.is_some(),
        "HTTP API listening"
    );
    let app = router(state.clone());
    let mut servers = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let (app, stop) = (app.clone(), shutdown.clone());
        let graceful = async move { stop.cancelled().await };
        servers.push(match &tls {
            Some(tls) => {
                let listener = crate::server::tls::TlsListener::new(listener, tls.clone());
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(graceful)
                        .await
                })
            }
            None => tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
            }),
        });
    }

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
    for server in servers {
        let _ = server.await;
    }
    Ok(())
}

/// The addresses `--server-address` names (comma-separated; an empty
/// entry, e.g. an unset `$(POD_IP)`, is skipped), each with `port`.
fn listen_addresses(spec: &str, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for host in spec.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let ip: std::net::IpAddr = host.parse().with_context(|| {
            format!("--server-address: {host:?} is not an IP address (e.g. 127.0.0.1,10.1.2.3)")
        })?;
        let addr = SocketAddr::new(ip, port);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        anyhow::bail!("--server-address names no address: give at least one, e.g. 0.0.0.0");
    }
    Ok(addrs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::listen_addresses;

    #[test]
    fn server_addresses_are_a_list_of_ips_and_an_unset_one_is_skipped() {
        let addrs = listen_addresses("127.0.0.1,10.1.2.3, ,127.0.0.1", 8080).unwrap();
        assert_eq!(
            addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["127.0.0.1:8080", "10.1.2.3:8080"]
        );
        assert_eq!(
            listen_addresses("::1", 1).unwrap()[0].to_string(),
            "[::1]:1"
        );
        let err = listen_addresses("localhost", 1).unwrap_err().to_string();
        assert!(err.contains("not an IP address"), "{err}");
        assert!(listen_addresses(" , ", 1).is_err());
    }
}
