//! `start-etcd` from start to exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::Error;
use crate::cli::StartEtcdArgs;
use crate::etcd_config::EtcdConfig;
use crate::process::{self, Etcd, Shutdown, Signals};
use crate::sidecar::{self, SidecarClient};
use crate::{http, mode, readiness};

/// Runs `start-etcd` and returns the process exit code:
///
/// - etcd's exit code (128 + signal if a signal ended it) when etcd exits;
/// - 0 after `POST /stop` stopped etcd (a requested restart);
/// - 128 + signal when SIGTERM/SIGINT arrives before etcd was started
///   (`exit_code` is then left as it was: the data directory was not
///   touched by this run).
///
/// A SIGTERM/SIGINT while etcd runs is forwarded to etcd; once etcd has
/// exited cleanly, the signal's name goes to `exit_code` so that the next
/// start asks for a sanity validation only. Upstream writes it as soon as
/// the signal arrives; waiting for etcd's clean exit means a shutdown that
/// kubelet had to cut short with SIGKILL leads to a full validation.
pub async fn run(args: StartEtcdArgs) -> Result<i32, Error> {
    args.validate()?;
    let mut signals = Signals::install()?;
    let client = SidecarClient::new(&args)?;
    let config_path = args.config_file()?;
    let etcd_version = crate::process::etcd_version(&args.etcd_binary).await;
    tracing::info!(
        sidecar = client.base(),
        etcd_version = etcd_version.as_deref(),
        config_file = %config_path.display(),
        data_volume = %args.data_volume_dir.display(),
        "waiting for the backup-restore sidecar to initialize the data directory"
    );

    let bootstrap = async {
        sidecar::wait_for_initialization(&client, &args.data_volume_dir, etcd_version).await;
        sidecar::fetch_config(&client, &config_path).await
    };
    let config_text = tokio::select! {
        text = bootstrap => text?,
        sig = signals.recv() => {
            tracing::info!(signal = sig.name(), "signal before etcd was started: exiting without starting etcd");
            return Ok(128 + sig.number());
        }
    };
    let config = EtcdConfig::parse(&config_text)?;

    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(Notify::new());
    let server = http::bind(args.etcd_wrapper_port, &config, ready.clone(), stop.clone()).await?;
    let probe = readiness::Probe::new(&args, &config)?;

    tracing::info!(
        name = config.name.as_deref(),
        data_dir = config.data_dir.as_deref(),
        "starting etcd"
    );
    let mut etcd = Etcd::spawn(&args.etcd_binary, &config_path)?;
    // As upstream: once etcd runs again, the last shutdown is forgotten.
    if let Err(e) = mode::clear_exit_code(&args.data_volume_dir) {
        tracing::warn!(error = %e, "cannot remove the exit code record");
    }
    let tasks = [
        tokio::spawn(server.serve()),
        tokio::spawn(readiness::run(probe, ready.clone())),
        tokio::spawn(warn_if_not_ready(args.etcd_ready_timeout, ready.clone())),
    ];

    let mut received: Option<Shutdown> = None;
    let mut stop_requested = false;
    let status = loop {
        tokio::select! {
            status = etcd.wait() => break status?,
            sig = signals.recv() => {
                tracing::info!(signal = sig.name(), "forwarding the signal to etcd");
                etcd.signal(sig.number());
                if received.is_none() {
                    received = Some(sig);
                }
            }
            () = stop.notified(), if !stop_requested => {
                stop_requested = true;
                etcd.signal(libc::SIGTERM);
            }
        }
    };
    ready.store(false, Ordering::SeqCst);
    for task in tasks {
        task.abort();
    }

    let code = process::exit_code(status);
    if let Some(sig) = received {
        if process::clean_after(status, sig.number()) {
            match mode::write_exit_code(&args.data_volume_dir, sig.name()) {
                Ok(()) => tracing::info!(
                    signal = sig.name(),
                    code,
                    "etcd shut down cleanly; recorded for a sanity validation next time"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "etcd shut down cleanly but the record of it could not be written; the next start validates fully")
                }
            }
        } else {
            tracing::warn!(
                ?status,
                signal = sig.name(),
                "etcd did not shut down cleanly; the next start validates fully"
            );
        }
        return Ok(code);
    }
    if stop_requested {
        tracing::info!(
            ?status,
            "etcd stopped on request; exiting so that the container restarts"
        );
        return Ok(0);
    }
    tracing::error!(?status, code, "etcd exited on its own");
    Ok(code)
}

/// Logs an error if etcd is not ready `timeout` after it started
/// (`--etcd-ready-timeout`; zero: never). Like upstream, nothing else
/// happens.
async fn warn_if_not_ready(timeout: std::time::Duration, ready: Arc<AtomicBool>) {
    if timeout.is_zero() {
        return;
    }
    tokio::time::sleep(timeout).await;
    if !ready.load(Ordering::SeqCst) {
        tracing::error!(
            timeout_secs = timeout.as_secs(),
            "etcd is not ready within --etcd-ready-timeout"
        );
    }
}
