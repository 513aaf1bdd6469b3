//! `etcd-wrapper`: the etcd container's entrypoint. See the library
//! (`druid_etcd_wrapper`) for what it does.

use anyhow::Context as _;
use clap::Parser as _;
use druid_etcd_wrapper::cli::{Cli, Command};

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .json()
            .init();
    } else {
        // Colours only for a terminal: container logs stay plain text.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::StartEtcd(args) => druid_etcd_wrapper::app::run(args)
            .await
            .context("start-etcd"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "etcd-wrapper failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "etcd-wrapper failed");
            1
        }
    };
    // Do not wait for a sidecar request still running on a blocking thread.
    runtime.shutdown_background();
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
