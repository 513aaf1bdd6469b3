//! `etcdbr`: the backup-restore sidecar and its jobs.
//!
//! - `server`: the sidecar (HTTP API, initialization, snapshots, GC,
//!   leases);
//! - `snapshot`: take one full snapshot now and exit;
//! - `restore`: restore the data directory from the store and exit;
//! - `initialize`: validate the data directory, restoring it if needed;
//! - `compact`: compact the latest full snapshot and its deltas into a new
//!   full snapshot (the compaction job);
//! - `copy`: copy the snapshots of one store (`--source-*`) to another
//!   (the EtcdCopyBackupsTask's job).

use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Parser as _;
use druid_backup_restore::cli::{Cli, Command};
use druid_backup_restore::config::StoreArgs;
use druid_backup_restore::metrics::Metrics;
use druid_backup_restore::restore::initializer::{Initializer, Mode};
use druid_backup_restore::server;
use druid_backup_restore::snapshot::{Settings, Snapshotter};
use druid_backup_restore::store::Snapstore;
use tokio_util::sync::CancellationToken;

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr; stdout carries a command's result (`compact`).
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

async fn open_store(store: &StoreArgs) -> Result<Snapstore> {
    Snapstore::connect(store).await.context("opening the store")
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match cli.command {
        Command::Server(config) => {
            let shutdown = CancellationToken::new();
            let s = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down");
                s.cancel();
            });
            Box::pin(server::run(*config, shutdown)).await
        }
        Command::Snapshot {
            etcd,
            store,
            is_final,
        } => {
            let snapstore = open_store(&store).await?;
            let client = druid_backup_restore::etcd::connect(
                &etcd,
                &etcd.endpoints,
                etcd.etcd_connection_timeout,
            )
            .await?;
            let settings = Settings {
                schedule: druid_api::model::parse_cron("0 0 * * *").context("cron")?,
                delta_period: std::time::Duration::ZERO,
                delta_memory_limit: 0,
                compression: store.compression().map_err(anyhow::Error::msg)?,
                temp_dir: store.snapstore_temp_directory.clone(),
                snapshot_timeout: etcd.etcd_snapshot_timeout,
                // No watch: one full snapshot.
                full_rate_estimate: 0.0,
            };
            let reader: druid_backup_restore::snapshot::RevisionReader =
                Arc::new(druid_backup_restore::restore::initializer::snapshot_revision);
            let mut s = Snapshotter::new(
                client,
                snapstore,
                settings,
                None,
                Arc::new(Metrics::new()),
                Some(reader),
            );
            let snapshot = s.full_snapshot(is_final).await?;
            if let Some(snapshot) = snapshot {
                tracing::info!(snapshot = %snapshot.name(), "done");
            }
            Ok(())
        }
        Command::Restore {
            store,
            restore,
            to_revision,
            to_time,
        } => {
            use druid_backup_restore::store::Cutoff;
            let snapstore = open_store(&store).await?;
            let listing = snapstore.list().await?;
            let cut = to_revision
                .map(Cutoff::Revision)
                .or(to_time.map(Cutoff::Time));
            let set = match cut {
                Some(cut) => listing
                    .set_at(cut)
                    .map_err(|e| anyhow::anyhow!("cannot restore to {cut}: {e}"))?,
                None => listing.latest_set(),
            };
            let report = druid_backup_restore::restore::restore_to(
                &restore,
                &snapstore,
                &set,
                cut,
                &Metrics::new(),
            )
            .await?;
            tracing::info!(
                revision = report.revision,
                deltas = report.deltas,
                "restored"
            );
            Ok(())
        }
        Command::Copy {
            store,
            source,
            max_backups_to_copy,
            max_backup_age,
            max_parallel_copy_operations,
            wait_for_final_snapshot,
            wait_for_final_snapshot_timeout,
            wait_for_final_snapshot_poll,
        } => {
            use druid_backup_restore::store::copy::CopyOptions;
            let registry = druid_backup_restore::store::registry(&store)
                .await
                .context("loading the provider plugins")?;
            let target = Snapstore::open(&store, &registry)
                .await
                .context("opening the target store")?;
            let source = Snapstore::open_with_env(
                &source.store_args(&store),
                &registry,
                druid_backup_restore::store::SOURCE_ENV_PREFIX,
            )
            .await
            .context("opening the source store (--source-* flags, SOURCE_* variables)")?;
            let options = CopyOptions {
                max_backups: usize::try_from(max_backups_to_copy).ok(),
                max_age: u64::try_from(max_backup_age)
                    .ok()
                    .map(|days| std::time::Duration::from_secs(days * 86_400)),
                parallel: max_parallel_copy_operations,
                wait_for_final: wait_for_final_snapshot
                    .then_some(Some(wait_for_final_snapshot_timeout).filter(|t| !t.is_zero())),
                poll: wait_for_final_snapshot_poll,
            };
            let report = target.copy_from(&source, &options).await?;
            // The report, for the job's log and for tools.
            #[allow(clippy::print_stdout, reason = "the command's output")]
            {
                println!(
                    "{}",
                    serde_json::json!({
                        "copied": report.copied,
                        "skipped": report.skipped,
                        "bytes": report.bytes,
                    })
                );
            }
            Ok(())
        }
        Command::Compact(cli) => {
            let cli = *cli;
            let snapstore = open_store(&cli.store).await?;
            let leases = if cli.health.enable_snapshot_lease_renewal {
                Some(
                    druid_backup_restore::k8s::leases::Leases::from_env(&cli.health)
                        .await
                        .context("the snapshot leases")?,
                )
            } else {
                None
            };
            let result = druid_backup_restore::compaction::run_job(
                &cli.restore,
                &snapstore,
                leases.as_ref(),
                &cli.restore.data_dir,
            )
            .await;
            if !cli.metrics_scrape_wait_duration.is_zero() {
                tokio::time::sleep(cli.metrics_scrape_wait_duration).await;
            }
            match result? {
                Some(report) => {
                    tracing::info!(snapshot = %report.snapshot, revision = report.revision, keys = report.keys, deltas = report.deltas, "compaction uploaded");
                    // The report, for the job's log and for tools.
                    #[allow(clippy::print_stdout, reason = "the command's output")]
                    {
                        println!("{}", serde_json::to_string(&report)?);
                    }
                }
                None => tracing::info!("nothing to compact"),
            }
            Ok(())
        }
        Command::Initialize {
            etcd,
            store,
            restore,
            validation_mode,
        } => {
            let snapstore = if store.has_store() {
                Some(open_store(&store).await?)
            } else {
                None
            };
            let metrics = Metrics::new();
            let init = Initializer {
                restore: &restore,
                etcd: &etcd,
                store: snapstore.as_ref(),
                // The offline command runs outside the pods' leases.
                member_leases: false,
                metrics: &metrics,
            };
            let outcome = init.run(Mode::parse(Some(&validation_mode))).await?;
            tracing::info!(?outcome, "initialized");
            Ok(())
        }
        Command::PrepareLocalStore { dir, owner } => {
            let done = druid_backup_restore::store::local_dir::prepare(&dir, owner.0, owner.1)?;
            tracing::info!(
                dir = %dir.display(),
                uid = owner.0,
                gid = owner.1,
                changed = done.changed,
                unchanged = done.unchanged,
                "the Local store's directory belongs to the sidecar's user"
            );
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
