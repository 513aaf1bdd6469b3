//! `druid`: the operator binary.
//!
//! For now it connects to the API server named by the kubeconfig (or the
//! in-cluster configuration), reports the server's version and runs until it
//! is told to stop. The controllers come with the operator issue.

use anyhow::Context as _;
use clap::Parser;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "druid",
    version,
    about = "Runs etcd clusters from Etcd resources"
)]
struct Args {
    /// Log in JSON instead of plain text.
    #[arg(long, env = "DRUID_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);

    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client: set KUBECONFIG or run in a cluster")?;
    let version = client
        .apiserver_version()
        .await
        .context("cannot reach the Kubernetes API server")?;
    tracing::info!(
        server_version = %version.git_version,
        api = %druid_api::api_version(),
        "druid started"
    );

    let signal = stop_signal().await?;
    tracing::info!(signal, "druid stopping");
    Ok(())
}

/// Waits for SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C) and names it.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
