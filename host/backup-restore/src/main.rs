//! `etcdbr`: the sidecar and job binary. Subcommands come with the sidecar,
//! compaction and copy issues.

use clap::Parser;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(name = "etcdbr", version, about = "etcd backup-restore sidecar")]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    tracing_subscriber::fmt().init();
    tracing::info!(
        default_port = druid_backup_restore::DEFAULT_SERVER_PORT,
        "etcdbr has no subcommands yet"
    );
    // The plugin host is linked in from the start so the binary's size and
    // start-up cost are visible early.
    let _limits = druid_plugin_host::Limits::default();
    Ok(())
}
