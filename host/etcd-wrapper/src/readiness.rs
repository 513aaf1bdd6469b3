//! The readiness check: a linearizable `Get` through the local member,
//! every 2 s, each bounded by 2 s; `/readyz` serves the last result.
//!
//! Checking on a timer (as upstream does) instead of per request keeps the
//! probe's answer instant and etcd's load independent of how often it is
//! probed; with a 2 s period and a 2 s bound the answer is at most ~4 s
//! old, well inside kubelet's 5 s probe period. A linearizable read needs
//! the member to reach a quorum, so every member reports unready when the
//! cluster lost its quorum.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, TlsOptions};

use crate::Error;
use crate::cli::StartEtcdArgs;
use crate::etcd_config::EtcdConfig;

/// Pause between checks (upstream's).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Bound of one check (connecting included).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The key read (upstream's).
const KEY: &str = "foo";

/// How to reach the local member.
#[derive(Clone)]
pub struct Probe {
    endpoint: String,
    options: ConnectOptions,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Probe {
    /// `http(s)://<--etcd-server-name>:<--etcd-client-port>`; TLS (and the
    /// CA from etcd's `trusted-ca-file`) when etcd's configuration enables
    /// client TLS, presenting the `--etcd-client-cert-path` certificate if
    /// given and checking that etcd's certificate names the server name.
    pub fn new(args: &StartEtcdArgs, config: &EtcdConfig) -> Result<Self, Error> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CHECK_TIMEOUT)
            .with_timeout(CHECK_TIMEOUT);
        let scheme = match &config.client_tls {
            Some(tls) => {
                let mut t = TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(read(
                        &tls.trusted_ca_file,
                    )?))
                    .domain_name(args.etcd_host());
                if let Some((cert, key)) = args.client_identity() {
                    t = t.identity(etcd_client::Identity::from_pem(read(&cert)?, read(&key)?));
                }
                options = options.with_tls(t);
                "https"
            }
            None => "http",
        };
        Ok(Probe {
            endpoint: format!("{scheme}://{}:{}", args.etcd_host(), args.etcd_client_port),
            options,
        })
    }

    /// The endpoint checked.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn connect(&self) -> Result<Client, String> {
        Client::connect([self.endpoint.as_str()], Some(self.options.clone()))
            .await
            .map_err(|e| format!("connect: {e}"))
    }

    /// One check; keeps the connection in `client` for the next one.
    pub async fn check(&self, client: &mut Option<Client>) -> Result<(), String> {
        let work = async {
            if client.is_none() {
                *client = Some(self.connect().await?);
            }
            match client.as_mut() {
                Some(c) => c
                    .get(KEY, None)
                    .await
                    .map(drop)
                    .map_err(|e| format!("get: {e}")),
                None => Err("no client".to_string()),
            }
        };
        let result = match tokio::time::timeout(CHECK_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        if result.is_err() {
            // A fresh connection next time.
            *client = None;
        }
        result
    }
}

/// Checks every [`CHECK_INTERVAL`] and stores the result in `ready`;
/// logs each change. Runs until the task is dropped.
pub async fn run(probe: Probe, ready: Arc<AtomicBool>) {
    let mut client = None;
    let mut last: Option<bool> = None;
    loop {
        let result = probe.check(&mut client).await;
        let now = result.is_ok();
        ready.store(now, Ordering::SeqCst);
        if last != Some(now) {
            match &result {
                Ok(()) => tracing::info!(
                    endpoint = probe.endpoint(),
                    "etcd is ready (linearizable read succeeded)"
                ),
                Err(e) => {
                    tracing::warn!(endpoint = probe.endpoint(), error = %e, "etcd is not ready")
                }
            }
        } else if let Err(e) = &result {
            tracing::debug!(endpoint = probe.endpoint(), error = %e, "etcd is still not ready");
        }
        last = Some(now);
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
}
