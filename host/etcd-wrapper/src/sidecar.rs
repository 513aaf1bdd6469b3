//! The backup-restore sidecar's client: exactly upstream's calls, all plain
//! GETs (`/initialization/status`, `/initialization/start?mode=…`,
//! `/config`), over HTTPS when `--backup-restore-tls-enabled=true`.
//!
//! With `--backup-restore-client-cert-path`, the wrapper presents a client
//! certificate (the sidecar's `--client-ca-file`, mTLS).
//!
//! ureq (rustls with ring, see `druid-sidecar-tls`) is blocking: the async
//! callers run these calls on blocking threads.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::cli::StartEtcdArgs;
use crate::mode::{self, ValidationMode};

/// Timeout of each request (upstream's).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between status polls (upstream's).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause between retries after a failed initialization.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// Tries and pause for `/config` (upstream's).
const CONFIG_TRIES: u32 = 5;

/// `/initialization/status` as the sidecar reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStatus {
    /// Nothing running; the last result (if any) was read.
    New,
    /// Validation (and a restore, if one is needed) is running.
    Progress,
    /// The data directory is valid (or was restored).
    Successful,
    /// Validation or restore failed.
    Failed,
    /// Anything else (treated as still running, as upstream).
    Other(String),
}

impl InitStatus {
    fn parse(body: &str) -> Self {
        match body.trim() {
            "New" => InitStatus::New,
            "Progress" => InitStatus::Progress,
            "Successful" => InitStatus::Successful,
            "Failed" => InitStatus::Failed,
            other => InitStatus::Other(other.to_string()),
        }
    }
}

/// A client of the sidecar's HTTP API.
#[derive(Clone)]
pub struct SidecarClient {
    agent: ureq::Agent,
    base: Arc<str>,
}

impl SidecarClient {
    /// A client for the sidecar the flags name.
    pub fn new(args: &StartEtcdArgs) -> Result<Self, Error> {
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false);
        if args.backup_restore_tls_enabled {
            let tls_error = |e: druid_sidecar_tls::TlsError| Error::Tls {
                what: "the backup-restore sidecar",
                reason: e.to_string(),
            };
            let mut tls = druid_sidecar_tls::SidecarTls::from_files(&[Path::new(
                &args.backup_restore_ca_cert_bundle_path,
            )])
            .map_err(tls_error)?;
            let (cert, key) = (
                args.backup_restore_client_cert_path.trim(),
                args.backup_restore_client_key_path.trim(),
            );
            if !cert.is_empty() {
                tls = tls
                    .with_client_files(Path::new(cert), Path::new(key))
                    .map_err(tls_error)?;
            }
            config = config.tls_config(tls.config());
        }
        Ok(SidecarClient {
            agent: config.build().into(),
            base: args.sidecar_url().into(),
        })
    }

    /// The sidecar's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn get(&self, path_and_query: &str) -> Result<String, Error> {
        let url = format!("{}{path_and_query}", self.base);
        let fail = |reason: String| Error::Sidecar {
            url: url.clone(),
            reason,
        };
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            return Err(fail(format!("answered {status}: {}", body.trim())));
        }
        Ok(body)
    }

    /// `GET /initialization/status`. Reading `Successful` or `Failed`
    /// resets the sidecar's state to `New`.
    pub fn status(&self) -> Result<InitStatus, Error> {
        self.get("/initialization/status")
            .map(|body| InitStatus::parse(&body))
    }

    /// `GET /initialization/start?mode=<mode>`, with
    /// `&etcdversion=<version>` when the etcd binary told its version (see
    /// [`crate::process::etcd_version`]; upstream's sidecar ignores it).
    pub fn start(&self, mode: ValidationMode, etcd_version: Option<&str>) -> Result<(), Error> {
        let version = etcd_version.map_or(String::new(), |v| format!("&etcdversion={v}"));
        self.get(&format!(
            "/initialization/start?mode={}{version}",
            mode.as_str()
        ))
        .map(drop)
    }

    /// `GET /config`: this member's etcd configuration (YAML).
    pub fn config(&self) -> Result<String, Error> {
        self.get("/config")
    }
}

async fn blocking<T: Send + 'static>(
    client: &SidecarClient,
    call: impl FnOnce(&SidecarClient) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let c = client.clone();
    tokio::task::spawn_blocking(move || call(&c))
        .await
        .map_err(|e| Error::Sidecar {
            url: client.base().to_string(),
            reason: format!("request task: {e}"),
        })?
}

/// Polls the sidecar every second until initialization succeeded,
/// starting it whenever the state is `New` (with the mode [`mode::determine`]
/// picks from `volume`), as upstream does.
///
/// A `Failed` initialization is logged as an error and started again, with
/// a pause that doubles from 1 s up to 30 s between failures: the sidecar
/// may be waiting for the store or for its peers, and retrying in place
/// keeps the pod's state readable (no crash loop, the reason stays in the
/// log) while never running etcd on a data directory that was not
/// validated.
pub async fn wait_for_initialization(
    client: &SidecarClient,
    volume: &Path,
    etcd_version: Option<String>,
) {
    let mut failures: u32 = 0;
    let mut mode = None;
    let mut unreachable_logged = false;
    loop {
        let mut pause = POLL_INTERVAL;
        match blocking(client, SidecarClient::status).await {
            Ok(InitStatus::Successful) => {
                tracing::info!(
                    sidecar = client.base(),
                    "data directory initialization succeeded"
                );
                return;
            }
            Ok(InitStatus::New) => {
                let m = mode::determine(volume);
                mode = Some(m);
                tracing::info!(
                    sidecar = client.base(),
                    mode = m.as_str(),
                    "starting data directory initialization"
                );
                let v = etcd_version.clone();
                if let Err(e) = blocking(client, move |c| c.start(m, v.as_deref())).await {
                    tracing::error!(error = %e, "cannot start initialization");
                }
            }
            Ok(InitStatus::Progress) => {
                tracing::debug!("initialization in progress");
            }
            Ok(InitStatus::Failed) => {
                failures = failures.saturating_add(1);
                pause = POLL_INTERVAL
                    .saturating_mul(1 << failures.saturating_sub(1).min(5))
                    .min(MAX_FAILURE_BACKOFF);
                tracing::error!(
                    sidecar = client.base(),
                    mode = mode.map(ValidationMode::as_str),
                    failures,
                    retry_in_secs = pause.as_secs(),
                    "initialization of the data directory by the backup-restore sidecar failed; \
                     etcd was not started; the reason is in the backup-restore container's log; \
                     retrying"
                );
            }
            Ok(InitStatus::Other(s)) => {
                tracing::warn!(status = %s, "unknown initialization status, treated as in progress");
            }
            Err(e) => {
                // The sidecar starts beside etcd and may not listen yet.
                if unreachable_logged {
                    tracing::debug!(error = %e, "cannot read the initialization status");
                } else {
                    tracing::warn!(error = %e, "cannot read the initialization status yet; retrying every second");
                    unreachable_logged = true;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// Fetches `/config` (5 tries, 1 s apart, as upstream) and writes it to
/// `path`; returns its text.
pub async fn fetch_config(client: &SidecarClient, path: &Path) -> Result<String, Error> {
    let mut attempt = 1;
    let text = loop {
        match blocking(client, SidecarClient::config).await {
            Ok(text) => break text,
            Err(e) if attempt < CONFIG_TRIES => {
                tracing::warn!(error = %e, attempt, "cannot fetch the etcd configuration; retrying");
                attempt += 1;
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(e) => return Err(e),
        }
    };
    tokio::fs::write(path, &text)
        .await
        .map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
    tracing::info!(path = %path.display(), "etcd configuration fetched and written");
    Ok(text)
}
