//! Forwarding a request to the backup leader's sidecar.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::config::ServerConfig;

/// Sends a snapshot request to the leader's sidecar and relays its answer.
pub(super) async fn forward_to_leader(state: &Arc<AppState>, path_and_query: &str) -> Response {
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
    let result = forward(&state.config, &base, path_and_query).await;
    match result {
        Ok((code, body)) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

/// Checks the leader's sidecar is healthy, then relays the request; one
/// path for HTTP and HTTPS. With TLS (`--server-cert`) it trusts
/// `--cacert` (the CA of the sidecars' serving certificates, as upstream)
/// and the serving certificate chain itself, and presents
/// `--api-client-cert` when the sidecars require client certificates.
/// ureq on a blocking thread (see `druid-sidecar-tls` for why not reqwest).
pub(super) async fn forward(
    config: &ServerConfig,
    base: &str,
    path_and_query: &str,
) -> Result<(u16, Vec<u8>), String> {
    let tls = if config.server.server_cert.is_some() {
        let roots: Vec<&std::path::Path> = config
            .etcd
            .cacert
            .iter()
            .chain(config.server.server_cert.iter())
            .chain(config.server.client_ca_file.iter())
            .map(|p| p.as_path())
            .collect();
        let mut tls =
            druid_sidecar_tls::SidecarTls::from_files(&roots).map_err(|e| e.to_string())?;
        if let (Some(cert), Some(key)) = (
            &config.server.api_client_cert,
            &config.server.api_client_key,
        ) {
            tls = tls
                .with_client_files(cert, key)
                .map_err(|e| e.to_string())?;
        }
        Some(tls)
    } else {
        None
    };
    let base = base.to_string();
    let path_and_query = path_and_query.to_string();
    tokio::task::spawn_blocking(move || {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3600)));
        if let Some(tls) = &tls {
            builder = builder.tls_config(tls.config());
        }
        let agent: ureq::Agent = builder.build().into();
        let health = agent
            .get(&format!("{base}/healthz"))
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
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
pub(super) async fn leader_sidecar_url(state: &Arc<AppState>) -> Result<String, String> {
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
