//! The command line of `etcdbr`: subcommands and their flags (see
//! [`crate::config`] for the flag groups). In the library so that tests can
//! check that the flags the operator renders parse.

use clap::{Parser, Subcommand};

use crate::config::{
    EtcdArgs, HealthArgs, RestoreArgs, ServerConfig, SourceStoreArgs, StoreArgs, duration,
};

/// Command-line options of `etcdbr`.
#[derive(Debug, Parser)]
#[command(name = "etcdbr", version, about = "etcd backup-restore sidecar")]
// As with Go flags, a repeated flag takes its last value.
#[command(args_override_self = true)]
pub struct Cli {
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Accepted for compatibility with upstream's numeric levels; use
    /// RUST_LOG for filtering.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of `etcdbr compact`.
#[derive(Debug, clap::Args)]
pub struct CompactCli {
    /// etcd flags (accepted as upstream's job passes them; etcd is not
    /// contacted).
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The work directory (`--data-dir`) and the compactor's settings.
    #[command(flatten)]
    pub restore: RestoreArgs,
    /// The snapshot leases to update.
    #[command(flatten)]
    pub health: HealthArgs,
    /// Accepted for upstream compatibility: the compactor writes a compact
    /// database, there is nothing to defragment.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub defragment: bool,
    /// Time to wait before exiting so that metrics can be scraped.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub metrics_scrape_wait_duration: std::time::Duration,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(
    missing_docs,
    reason = "the fields are flag groups, documented on their types"
)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
pub enum Command {
    /// Run the sidecar.
    Server(Box<ServerConfig>),
    /// Take one full snapshot now and upload it.
    Snapshot {
        #[command(flatten)]
        etcd: EtcdArgs,
        #[command(flatten)]
        store: StoreArgs,
        /// Mark the snapshot final.
        #[arg(long = "final")]
        is_final: bool,
    },
    /// Restore the data directory from the latest full snapshot and its
    /// deltas, or from the store's state at a point in time.
    Restore {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        restore: RestoreArgs,
        /// Restore the state at this revision (its events included): the
        /// newest full snapshot at or before it and the deltas up to it.
        #[arg(long, conflicts_with = "to_time")]
        to_revision: Option<i64>,
        /// Restore the state at this time (RFC 3339, e.g.
        /// `2026-12-07T10:30:00Z`): the events the sidecar received at or
        /// before it.
        #[arg(long)]
        to_time: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Compact the latest full snapshot and its deltas into a new full
    /// snapshot named with its real revision (the compaction job). Works
    /// in `--data-dir`; etcd does not run.
    Compact(Box<CompactCli>),
    /// Copy the newest full snapshots and their deltas from the store of
    /// the `--source-*` flags to the store of the usual flags (streamed;
    /// what is already there with the same size and SHA-256 is skipped).
    Copy {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        source: SourceStoreArgs,
        /// The newest full snapshots to copy (with their deltas); -1: all.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        max_backups_to_copy: i64,
        /// Skip full snapshots older than this many days; -1: any age.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        max_backup_age: i64,
        /// Objects copied at once.
        #[arg(long, default_value_t = 10)]
        max_parallel_copy_operations: usize,
        /// Wait for the source's final full snapshot before copying.
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        wait_for_final_snapshot: bool,
        /// How long to wait for it (0: without a limit).
        #[arg(long, value_parser = duration, default_value = "0s")]
        wait_for_final_snapshot_timeout: std::time::Duration,
        /// How often the source is listed while waiting.
        #[arg(long, value_parser = duration, default_value = "15s", hide = true)]
        wait_for_final_snapshot_poll: std::time::Duration,
    },
    /// Validate the data directory and restore it if needed.
    Initialize {
        #[command(flatten)]
        etcd: EtcdArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        restore: RestoreArgs,
        /// `full` or `sanity`.
        #[arg(long, default_value = "full")]
        validation_mode: String,
    },
    /// Make a Local store's directory (a node directory the kubelet
    /// created as root) the sidecar user's: the pod's init container runs
    /// this as root with only the CHOWN capability. Links are not
    /// followed.
    PrepareLocalStore {
        /// The store's directory as mounted in the init container.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// The sidecar's user and group, `UID:GID`.
        #[arg(long, default_value = "65532:65532", value_parser = parse_owner)]
        owner: (u32, u32),
    },
}

/// `UID:GID` as numbers.
fn parse_owner(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not UID:GID (e.g. 65532:65532)"))?;
    let n = |x: &str| {
        x.parse::<u32>()
            .map_err(|_| format!("{x:?} in {s:?} is not a numeric id"))
    };
    Ok((n(u)?, n(g)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_unique_flags_and_copy_takes_upstreams() {
        use clap::{CommandFactory as _, Parser as _};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "etcdbr",
            "copy",
            "--storage-provider=S3",
            "--store-container=to",
            "--store-prefix=etcd-main",
            "--source-storage-provider=Local",
            "--source-store-container=from",
            "--source-store-prefix=etcd-old",
            "--max-backups-to-copy=2",
            "--max-backup-age=-1",
            "--wait-for-final-snapshot",
            "--wait-for-final-snapshot-timeout=30m",
        ])
        .unwrap();
        let Command::Copy {
            store,
            source,
            max_backups_to_copy,
            max_backup_age,
            wait_for_final_snapshot,
            wait_for_final_snapshot_timeout,
            ..
        } = cli.command
        else {
            panic!("not copy")
        };
        let source = source.store_args(&store);
        assert_eq!(
            (
                source.storage_provider.as_str(),
                source.store_container.as_str(),
                source.store_prefix.as_str()
            ),
            ("Local", "from", "etcd-old")
        );
        assert_eq!(
            (store.storage_provider.as_str(), store.store_prefix.as_str()),
            ("S3", "etcd-main")
        );
        assert_eq!((max_backups_to_copy, max_backup_age), (2, -1));
        assert!(wait_for_final_snapshot);
        assert_eq!(
            wait_for_final_snapshot_timeout,
            std::time::Duration::from_secs(1800)
        );
    }

    /// The operator's insta snapshot file named `file`, wherever the
    /// operator keeps it below its `src` (builders move between modules;
    /// the file name is what names the test).
    fn operator_snapshot(file: &str) -> std::path::PathBuf {
        fn find(dir: &std::path::Path, file: &str, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    find(&path, file, found);
                } else if path.file_name().is_some_and(|n| n == file) {
                    found.push(path);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/src");
        let mut found = Vec::new();
        find(&src, file, &mut found);
        assert_eq!(found.len(), 1, "{file} below {}: {found:?}", src.display());
        found.remove(0)
    }

    /// The backup-restore container's args in an operator snapshot file.
    fn operator_args(file: &str) -> Vec<String> {
        let path = operator_snapshot(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml = text.splitn(3, "---").nth(2).unwrap();
        let sts: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let containers = sts["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        let br = containers
            .iter()
            .find(|c| c["name"] == "backup-restore")
            .unwrap();
        br["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_args_the_operator_renders_parse() {
        for file in [
            "druid_operator__components__statefulset__tests__seed_snapshot.snap",
            "druid_operator__components__statefulset__tests__enable_tls_switches_to_https_and_mounts_the_secrets.snap",
        ] {
            let args = operator_args(file);
            assert_eq!(args[0], "server", "{file}");
            let cli = Cli::try_parse_from(std::iter::once("etcdbr".to_string()).chain(args))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let Command::Server(server) = cli.command else {
                panic!("not a server command")
            };
            assert!(server.health.enable_member_lease_renewal, "{file}");
            assert!(server.health.enable_snapshot_lease_renewal, "{file}");
            assert_eq!(server.health.full_snapshot_lease_name, "test-full-snap");
            assert!(server.store.has_store());
        }
    }

    #[test]
    fn seed_values_take_effect() {
        let args =
            operator_args("druid_operator__components__statefulset__tests__seed_snapshot.snap");
        let cli = Cli::try_parse_from(std::iter::once("etcdbr".to_string()).chain(args)).unwrap();
        let Command::Server(s) = cli.command else {
            panic!("not a server command")
        };
        assert_eq!(s.snapshotter.delta_snapshot_period.as_secs(), 300);
        assert_eq!(s.snapshotter.delta_snapshot_memory_limit, 1 << 30);
        assert_eq!(s.snapshotter.garbage_collection_period.as_secs(), 43200);
        assert_eq!(s.snapshotter.schedule, "0 */24 * * *");
        assert_eq!(s.health.k8s_heartbeat_duration.as_secs(), 10);
        assert_eq!(
            s.restore.data_dir,
            std::path::PathBuf::from("/var/etcd/data/new.etcd")
        );
        assert_eq!(s.etcd.etcd_snapshot_timeout.as_secs(), 900);
    }

    #[test]
    fn the_compaction_job_args_the_operator_renders_parse() {
        let path = operator_snapshot(
            "druid_operator__components__compaction_job__tests__seed_snapshot.snap",
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml = text.splitn(3, "---").nth(2).unwrap();
        let job: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let args: Vec<String> = job["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let cli = Cli::try_parse_from(std::iter::once("etcdbr".to_string()).chain(args)).unwrap();
        let Command::Compact(c) = cli.command else {
            panic!("not a compact command")
        };
        assert_eq!(
            c.restore.data_dir,
            std::path::PathBuf::from("/var/etcd/data/compaction.etcd")
        );
        assert!(c.health.enable_snapshot_lease_renewal);
        assert_eq!(c.health.full_snapshot_lease_name, "test-full-snap");
        assert_eq!(c.health.delta_snapshot_lease_name, "test-delta-snap");
        assert_eq!(c.store.storage_provider, "S3");
        assert_eq!(
            c.restore.compaction.restore_method,
            crate::config::RestoreMethod::Compaction
        );
    }

    #[test]
    fn a_bad_duration_names_the_flag() {
        let err =
            Cli::try_parse_from(["etcdbr", "server", "--delta-snapshot-period=soon"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--delta-snapshot-period") && text.contains("soon"),
            "{text}"
        );
    }
}
