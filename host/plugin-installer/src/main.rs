//! `druid-install-plugins`: copies the provider plugins of a plugins image
//! (`/plugins/*.wasm`) into the pod's plugins volume. See the crate README.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

mod install;

/// Copies a plugins image's provider plugins into the pod's plugins
/// volume.
#[derive(Debug, Parser)]
#[command(name = "druid-install-plugins", version)]
struct Args {
    /// Where the image keeps its plugins.
    #[arg(long, default_value = "/plugins")]
    from: PathBuf,
    /// The plugins volume (the sidecar's `DRUID_PLUGINS_DIR`).
    #[arg(long)]
    to: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match install::install(&args.from, &args.to) {
        Ok(report) => {
            for line in report.lines() {
                eprintln!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("druid-install-plugins: {e}");
            ExitCode::FAILURE
        }
    }
}
