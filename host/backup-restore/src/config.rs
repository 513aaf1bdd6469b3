//! Command-line options of `etcdbr`, compatible with upstream `etcdbrctl`:
//! the same flag names and defaults, so the operator (and users switching
//! from upstream) pass the flags they already know. Flags upstream has but
//! that do nothing here are accepted and documented as such.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use crate::formats::compression::Compression;
use crate::formats::version::EtcdVersion;

/// Parses a Go duration (`300s`, `1h30m`) as upstream's flags take them.
pub fn duration(text: &str) -> Result<Duration, String> {
    druid_api::model::parse_duration(text)
}

/// Parses a byte size: a plain number, or a number with a Kubernetes
/// quantity suffix (`10Mi`, `8Gi`, `100M`).
pub fn byte_size(text: &str) -> Result<u64, String> {
    let n = druid_api::quantity::parse_quantity(text).map_err(|e| e.to_string())?;
    u64::try_from(n).map_err(|_| format!("'{text}' is negative"))
}

/// Parses an etcd version (`3.5`, `3.6.17`, `v3.7.4`).
pub fn etcd_version(text: &str) -> Result<EtcdVersion, String> {
    EtcdVersion::parse(text)
        .ok_or_else(|| format!("'{text}' is not an etcd version (e.g. 3.5 or 3.6.17)"))
}

/// How the sidecar reaches etcd.
#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// etcd client URLs; the first one is this member's.
    #[arg(
        short = 'e',
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Client URLs of the whole cluster (a Service), used for member
    /// operations and to find the leader.
    #[arg(long, value_delimiter = ',')]
    pub service_endpoints: Vec<String>,
    /// This member joins an existing cluster (whose client URLs are among
    /// `--service-endpoints`): with no data of its own and no member of
    /// that cluster answering, initialization fails (and is retried)
    /// instead of founding a new cluster.
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub join_existing_cluster: bool,
    /// etcd user name.
    #[arg(long, default_value = "")]
    pub etcd_username: String,
    /// etcd password (its `Debug` never shows it).
    #[arg(long, default_value = "")]
    pub etcd_password: SecretString,
    /// Client certificate for etcd.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// CA bundle to verify etcd's certificate.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Talk to etcd without TLS.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_transport: bool,
    /// Accepted for compatibility; certificates are always verified when a
    /// CA is given.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_skip_tls_verify: bool,
    /// Time to wait for etcd to answer.
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub etcd_connection_timeout: Duration,
    /// Time a full snapshot may take to stream out of etcd.
    #[arg(long, value_parser = duration, default_value = "15m")]
    pub etcd_snapshot_timeout: Duration,
    /// Time a defragmentation may take.
    #[arg(long, value_parser = duration, default_value = "8m")]
    pub etcd_defrag_timeout: Duration,
}

/// A secret from the command line: parsed as a string, shown by `Debug`
/// only as whether it is set, so no config dump carries it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

impl std::str::FromStr for SecretString {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl EtcdArgs {
    /// This member's endpoint (the first of `--endpoints`).
    pub fn own_endpoint(&self) -> &[String] {
        &self.endpoints[..1.min(self.endpoints.len())]
    }

    /// The whole cluster's endpoints: `--service-endpoints`, else
    /// `--endpoints`.
    pub fn cluster_endpoints(&self) -> &[String] {
        if self.service_endpoints.is_empty() {
            &self.endpoints
        } else {
            &self.service_endpoints
        }
    }
}

/// Where snapshots are stored.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The storage provider (`Local`, `S3`, `ABS`, `GCS`, `Swift`, `OSS`,
    /// `ECS`, `OCS` or an alias); empty means no store.
    #[arg(long, default_value = "")]
    pub storage_provider: String,
    /// The bucket or container.
    #[arg(long, env = "STORAGE_CONTAINER", default_value = "")]
    pub store_container: String,
    /// The prefix of every key (snapshots go below `<prefix>/v2/`).
    #[arg(long, default_value = "")]
    pub store_prefix: String,
    /// An endpoint to use instead of the provider's.
    #[arg(long)]
    pub store_endpoint_override: Option<String>,
    /// Accepted for compatibility; the provider plugin sizes and uploads
    /// parts itself.
    #[arg(long, default_value_t = 5)]
    pub max_parallel_chunk_uploads: u32,
    /// Accepted for compatibility (see `--max-parallel-chunk-uploads`).
    #[arg(long, value_parser = byte_size, default_value = "5242880")]
    pub min_chunk_size: u64,
    /// Directory for temporary snapshot files.
    #[arg(long, default_value = "/tmp")]
    pub snapstore_temp_directory: PathBuf,
    /// A directory of provider plugins (`*.wasm`) in addition to the
    /// built-in ones.
    #[arg(long, env = "DRUID_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Lets a plugin file replace the built-in plugin of the same name
    /// (such a file is refused otherwise).
    #[arg(long, env = "DRUID_PLUGINS_OVERRIDE_BUILTIN", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub plugins_override_builtin: bool,
    /// Where precompiled plugins are cached.
    #[arg(long, env = "DRUID_PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,
    /// Whether to compress snapshots.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub compress_snapshots: bool,
    /// `gzip`, `zlib` or `lzw`.
    #[arg(long, default_value = "gzip")]
    pub compression_policy: String,
}

/// The store a copy reads from (`etcdbr copy`): upstream's `--source-*`
/// flags; its credentials come from the `SOURCE_`-prefixed variables
/// (`SOURCE_AWS_APPLICATION_CREDENTIALS`, ...).
#[derive(Debug, Clone, Args)]
pub struct SourceStoreArgs {
    /// The source's storage provider.
    #[arg(
        id = "source_storage_provider",
        long = "source-storage-provider",
        default_value = ""
    )]
    pub storage_provider: String,
    /// The source's bucket or container.
    #[arg(
        id = "source_store_container",
        long = "source-store-container",
        env = "SOURCE_STORAGE_CONTAINER",
        default_value = ""
    )]
    pub store_container: String,
    /// The source's prefix.
    #[arg(
        id = "source_store_prefix",
        long = "source-store-prefix",
        default_value = ""
    )]
    pub store_prefix: String,
    /// An endpoint to use instead of the source provider's.
    #[arg(
        id = "source_store_endpoint_override",
        long = "source-store-endpoint-override"
    )]
    pub store_endpoint_override: Option<String>,
}

impl SourceStoreArgs {
    /// The source as store flags, the plugin settings taken from `target`.
    pub fn store_args(&self, target: &StoreArgs) -> StoreArgs {
        StoreArgs {
            storage_provider: self.storage_provider.clone(),
            store_container: self.store_container.clone(),
            store_prefix: self.store_prefix.clone(),
            store_endpoint_override: self.store_endpoint_override.clone(),
            ..target.clone()
        }
    }
}

impl StoreArgs {
    /// Whether a store is configured.
    pub fn has_store(&self) -> bool {
        !self.storage_provider.is_empty()
    }

    /// The compression new snapshots get.
    pub fn compression(&self) -> Result<Compression, String> {
        if !self.compress_snapshots {
            return Ok(Compression::None);
        }
        Compression::from_policy(&self.compression_policy).ok_or_else(|| {
            format!(
                "--compression-policy={:?} is not one of gzip, zlib, lzw",
                self.compression_policy
            )
        })
    }
}

/// Snapshot schedule and garbage collection.
#[derive(Debug, Clone, Args)]
pub struct SnapshotterArgs {
    /// Cron schedule (UTC) of full snapshots.
    #[arg(short = 's', long, default_value = "0 */1 * * *")]
    pub schedule: String,
    /// Period of delta snapshots; under 1s disables them.
    #[arg(long, value_parser = duration, default_value = "20s")]
    pub delta_snapshot_period: Duration,
    /// A delta is taken early when its events reach this many bytes.
    #[arg(long, value_parser = byte_size, default_value = "10485760")]
    pub delta_snapshot_memory_limit: u64,
    /// Database bytes per second a full snapshot is assumed to copy until
    /// one was measured. A delta watch that fell far behind etcd (a burst
    /// of writes, a sidecar that was down) gives way to a full snapshot
    /// when catching up revision by revision would take longer than that;
    /// 0 always catches up. The default is what a gzip snapshot reached
    /// under a 100m CPU limit
    /// (upstream's chart default for the sidecar).
    #[arg(long, value_parser = byte_size, default_value = "4Mi")]
    pub full_snapshot_rate_estimate: u64,
    /// `Exponential` or `LimitBased`.
    #[arg(long, default_value = "Exponential")]
    pub garbage_collection_policy: String,
    /// Full snapshots kept by `LimitBased`.
    #[arg(short = 'm', long, default_value_t = 7)]
    pub max_backups: usize,
    /// Period of garbage collection; under 1s disables it.
    #[arg(long, value_parser = duration, default_value = "1m")]
    pub garbage_collection_period: Duration,
    /// Deltas of older sets younger than this are kept.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub delta_snapshot_retention_period: Duration,
}

/// How a data directory is restored.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The etcd data directory.
    #[arg(short = 'd', long, default_value = "default.etcd")]
    pub data_dir: PathBuf,
    /// Where downloaded snapshots are kept during a restore.
    #[arg(long, default_value = "default.restoration.tmp")]
    pub restoration_temp_snapshots_dir: PathBuf,
    /// The member name.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// The initial cluster (`name=peerURL,…`).
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// The initial cluster token.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URLs.
    #[arg(long, value_delimiter = ',', default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Restore even if the full snapshot's SHA-256 does not match (never
    /// use this to restore a snapshot that failed the check).
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub skip_hash_check: bool,
    /// Deltas downloaded ahead of the one being applied.
    #[arg(long, default_value_t = 6)]
    pub max_fetchers: usize,
    /// Largest gRPC request the replay sends.
    #[arg(long, value_parser = byte_size, default_value = "10485760")]
    pub max_call_send_message_size: u64,
    /// `--max-request-bytes` of the temporary etcd.
    #[arg(long, value_parser = byte_size, default_value = "10485760")]
    pub max_request_bytes: u64,
    /// `--max-txn-ops` of the temporary etcd.
    #[arg(long, default_value_t = 10240)]
    pub max_txn_ops: u64,
    /// Backend quota of the temporary etcd.
    #[arg(long, value_parser = byte_size, default_value = "8589934592")]
    pub embedded_etcd_quota_bytes: u64,
    /// Auto-compaction mode of the temporary etcd.
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto-compaction retention of the temporary etcd.
    #[arg(long, default_value = "30m")]
    pub auto_compaction_retention: String,
    /// The etcd binary used to replay deltas.
    #[arg(long, env = "ETCDBR_ETCD_BINARY", default_value = "etcd")]
    pub etcd_binary: PathBuf,
    /// The etcdctl (3.4) or etcdutl (3.5+) binary used for `snapshot restore`.
    #[arg(long, env = "ETCDBR_ETCDCTL_BINARY", default_value = "etcdctl")]
    pub etcdctl_binary: PathBuf,
    /// The etcd version that will run on the restored data (`3.5`,
    /// `3.6.17`): a full snapshot written by a newer minor version is
    /// refused. Default: the version `--etcdctl-binary` prints. The
    /// version the etcd-wrapper reports when it starts an initialization
    /// wins over both: it runs the etcd in question.
    #[arg(long, env = "ETCDBR_ETCD_VERSION", value_parser = etcd_version)]
    pub etcd_version: Option<EtcdVersion>,
    /// The version the etcd-wrapper reported for this initialization (not a
    /// flag).
    #[arg(skip)]
    pub wrapper_etcd_version: Option<EtcdVersion>,
    /// How deltas are applied and how the compactor plugin runs.
    #[command(flatten)]
    pub compaction: CompactionArgs,
}

/// How a full snapshot and its deltas become one database.
#[derive(Debug, Clone, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreMethod {
    /// The compactor plugin merges the full snapshot and the deltas into
    /// one database (no etcd runs; leases are kept).
    Compaction,
    /// Every delta is replayed through a temporary etcd, one transaction
    /// per revision, as upstream does (slow; keys lose their leases).
    Replay,
}

/// The compactor plugin's settings (restores and `etcdbr compact`).
#[derive(Debug, Clone, Args)]
pub struct CompactionArgs {
    /// How a restore applies deltas.
    #[arg(long, value_enum, default_value = "compaction")]
    pub restore_method: RestoreMethod,
    /// Linear memory the compactor plugin may use.
    #[arg(long, value_parser = byte_size, default_value = "1073741824")]
    pub compaction_memory_limit: u64,
    /// Memory each of the compactor's two sorts uses before spilling to
    /// disk.
    #[arg(long, value_parser = byte_size, default_value = "67108864")]
    pub compaction_sort_memory: u64,
    /// Largest decompressed delta the compactor accepts (one is in memory
    /// at a time).
    #[arg(long, value_parser = byte_size, default_value = "268435456")]
    pub compaction_max_delta_size: u64,
    /// CPU time the compactor plugin may take.
    #[arg(long, value_parser = duration, default_value = "3h")]
    pub compaction_timeout: Duration,
    /// TTL of a lease a key names that the full snapshot lacks (granted
    /// after it); default: the longest TTL among the snapshot's leases, or
    /// one hour.
    #[arg(long, value_parser = duration)]
    pub unknown_lease_ttl: Option<Duration>,
}

/// Lease heartbeats.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Update the full and delta snapshot leases.
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_snapshot_lease_renewal: bool,
    /// Renew this member's lease.
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_member_lease_renewal: bool,
    /// Period of the member lease heartbeat.
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub k8s_heartbeat_duration: Duration,
    /// Name of the full snapshot lease.
    #[arg(long, default_value = "full-snapshot-revisions")]
    pub full_snapshot_lease_name: String,
    /// Name of the delta snapshot lease.
    #[arg(long, default_value = "delta-snapshot-revisions")]
    pub delta_snapshot_lease_name: String,
}

/// Options of `etcdbr server`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Port of the HTTP API.
    #[arg(short = 'p', long, default_value_t = crate::DEFAULT_SERVER_PORT)]
    pub server_port: u16,
    /// Addresses to bind, comma-separated. The operator binds loopback
    /// (where the etcd wrapper calls) and the pod's IP (other members, the
    /// operator): `127.0.0.1,$(POD_IP)`, not every interface of the pod.
    #[arg(long, default_value = "0.0.0.0")]
    pub server_address: String,
    /// TLS certificate of the HTTP API (with `--server-key`).
    #[arg(long)]
    pub server_cert: Option<PathBuf>,
    /// TLS key of the HTTP API.
    #[arg(long)]
    pub server_key: Option<PathBuf>,
    /// With TLS: require a client certificate signed by this CA (mTLS).
    /// The etcd wrapper, the operator and the other members' sidecars then
    /// present one (`spec.backup.tls.clientTLSSecretRef`).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// The client certificate this sidecar presents when it forwards a
    /// request to the leader's sidecar (with `--api-client-key`).
    #[arg(long, requires = "api_client_key")]
    pub api_client_cert: Option<PathBuf>,
    /// The key of `--api-client-cert`.
    #[arg(long, requires = "api_client_cert")]
    pub api_client_key: Option<PathBuf>,
    /// Accepted for compatibility; there is no profiling endpoint.
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_profiling: bool,
    /// The etcd configuration `/config` renders from.
    #[arg(
        long,
        env = "ETCD_CONF",
        default_value = "/var/etcd/config/etcd.conf.yaml"
    )]
    pub etcd_config: PathBuf,
    /// Accepted for compatibility (etcd-wrapper restarts are not needed:
    /// peer URL changes are applied by `/config` and a pod restart).
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_etcd_wrapper: bool,
    /// Cron schedule (UTC) of the window in which defragmentation starts;
    /// `--etcd-defrag-timeout` bounds the run.
    #[arg(long, default_value = "0 0 */3 * *")]
    pub defragmentation_schedule: String,
    /// Members whose fragmentation (dbSize − dbSizeInUse) is under this
    /// many bytes are not defragmented (a NOSPACE alarm overrides it).
    #[arg(long, value_parser = byte_size, default_value = "64Mi")]
    pub defragmentation_threshold_bytes: u64,
    /// How often leadership is checked.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub reelection_period: Duration,
    /// Timeout of the leadership check.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub etcd_connection_timeout_leader_election: Duration,
    /// Backoff multiplier after a snapshotter failure.
    #[arg(long, default_value_t = 2)]
    pub backoff_multiplier: u32,
    /// Accepted for compatibility: the snapshotter retries for as long as
    /// it leads, with the backoff capped at `--backoff-threshold-time`.
    #[arg(long, default_value_t = 6)]
    pub backoff_attempt_limit: u32,
    /// The longest backoff.
    #[arg(long, value_parser = duration, default_value = "128s")]
    pub backoff_threshold_time: Duration,
    /// Members are named `<prefix>-<pod>` (their etcd names, their entries
    /// in the etcd configuration, their leases). Unset, the prefix is the
    /// etcd configuration's `member-name-prefix`, where the operator puts it.
    #[arg(long, default_value = "")]
    pub member_name_prefix: String,
}

/// All options of `etcdbr server`, the flag groups as parsed: the one
/// configuration type of the sidecar's server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// How to reach etcd.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Full and delta snapshots, garbage collection.
    #[command(flatten)]
    pub snapshotter: SnapshotterArgs,
    /// Restores (the data directory, the member, the compactor).
    #[command(flatten)]
    pub restore: RestoreArgs,
    /// Lease heartbeats.
    #[command(flatten)]
    pub health: HealthArgs,
    /// The HTTP API and leadership.
    #[command(flatten)]
    pub server: ServerArgs,
}

impl ServerConfig {
    /// This member's name: the pod's (`$POD_NAME`, else `--name`), after
    /// `--member-name-prefix` if one is set.
    pub fn member_name(&self) -> String {
        let pod = std::env::var("POD_NAME").unwrap_or_else(|_| self.restore.name.clone());
        if self.server.member_name_prefix.is_empty() {
            pod
        } else {
            format!("{}-{pod}", self.server.member_name_prefix)
        }
    }

    /// The configuration `etcdbr server` runs with when no flag is given:
    /// what tells a flag the user set from one left at its default.
    pub fn defaults() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            server: ServerConfig,
        }
        <Defaults as clap::Parser>::try_parse_from(["etcdbr"]).map(|d| d.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        etcd: EtcdArgs,
    }

    #[test]
    fn the_server_defaults_parse_without_flags() {
        let defaults = ServerConfig::defaults().unwrap();
        assert_eq!(defaults.server.server_port, crate::DEFAULT_SERVER_PORT);
        assert_eq!(defaults.restore.name, "default");
    }

    #[test]
    fn a_config_dump_never_shows_the_etcd_password() {
        let cli = Cli::parse_from([
            "x",
            "--etcd-username=root",
            "--etcd-password=hunter2-secret",
        ]);
        assert_eq!(cli.etcd.etcd_password.expose(), "hunter2-secret");
        let dump = format!("{cli:?}");
        assert!(!dump.contains("hunter2-secret"), "{dump}");
        assert!(
            dump.contains("[redacted]") && dump.contains("root"),
            "{dump}"
        );
    }
}
