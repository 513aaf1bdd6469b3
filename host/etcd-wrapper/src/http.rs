//! The wrapper's HTTP(S) server on `--etcd-wrapper-port`:
//!
//! - `/readyz` (any method): 200 when the last readiness check succeeded,
//!   else 503;
//! - `POST /stop`: stops etcd; the wrapper then exits and kubelet restarts
//!   the container (the sidecar calls it after changing the member's peer
//!   URL). Other methods get 405.
//!
//! HTTPS exactly when upstream serves it: when etcd's configuration
//! enables client TLS, with etcd's own client-facing certificate and key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::Error;
use crate::etcd_config::EtcdConfig;

#[derive(Clone)]
struct AppState {
    ready: Arc<AtomicBool>,
    stop: Arc<Notify>,
}

/// The routes.
pub fn router(ready: Arc<AtomicBool>, stop: Arc<Notify>) -> Router {
    Router::new()
        .route("/readyz", any(readyz))
        .route("/stop", any(stop_etcd))
        .with_state(AppState { ready, stop })
}

async fn readyz(State(s): State<AppState>) -> StatusCode {
    if s.ready.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn stop_etcd(State(s): State<AppState>, method: Method) -> StatusCode {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    tracing::info!("stop requested over HTTP: stopping etcd");
    s.stop.notify_one();
    StatusCode::OK
}

/// A bound server, ready to serve.
pub struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
}

/// Binds `0.0.0.0:<port>` (like upstream, every interface) and prepares
/// TLS from etcd's configuration.
pub async fn bind(
    port: u16,
    config: &EtcdConfig,
    ready: Arc<AtomicBool>,
    stop: Arc<Notify>,
) -> Result<Server, Error> {
    let tls = match &config.client_tls {
        Some(t) => Some(crate::tls::acceptor(&t.cert_file, &t.key_file)?),
        None => None,
    };
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .map_err(|source| Error::Listen { port, source })?;
    tracing::info!(port, https = tls.is_some(), "serving /readyz and /stop");
    Ok(Server {
        listener,
        tls,
        router: router(ready, stop),
    })
}

impl Server {
    /// Serves until the process ends.
    pub async fn serve(self) {
        let result = match self.tls {
            Some(acceptor) => {
                let listener = crate::tls::TlsListener {
                    inner: self.listener,
                    acceptor,
                };
                axum::serve(listener, self.router).await
            }
            None => axum::serve(self.listener, self.router).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the wrapper's HTTP server stopped");
        }
    }
}
