//! One normalized model of an Etcd spec: every alias resolved, every
//! default applied, every value parsed. [`EtcdModel::from_etcd`] reports all
//! that is wrong with a spec at once, each error naming the field (or both
//! fields, when two names of one setting disagree) and the fix.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::ResourceExt as _;

use crate::etcd::{
    AdditionalPeerUrls, AutoCompactionMode, ClientService, CompressionPolicy, Etcd, EtcdSpec,
    FreelistType, GarbageCollectionPolicy, InitialClusterState, MetricsLevel, PullPolicy,
    PvcRetentionPolicy, SchedulingConstraints, SecretReference, SnapshotCompactionSpec, TlsConfig,
};
use crate::quantity::parse_quantity;

/// Defaults applied where a spec is silent.
pub mod defaults {
    /// etcd's backend quota.
    pub const QUOTA: &str = "8Gi";
    /// The size of a data volume.
    pub const STORAGE_CAPACITY: &str = "16Gi";
    /// etcd's client port.
    pub const CLIENT_PORT: i32 = 2379;
    /// etcd's peer port.
    pub const SERVER_PORT: i32 = 2380;
    /// The etcd wrapper's readiness port.
    pub const WRAPPER_PORT: i32 = 9095;
    /// The sidecar's HTTP port.
    pub const BACKUP_PORT: i32 = 8080;
    /// etcd's snapshot count.
    pub const SNAPSHOT_COUNT: i64 = 10_000;
    /// etcd's initial cluster token.
    pub const INITIAL_CLUSTER_TOKEN: &str = "etcd-cluster";
    /// The full snapshot schedule.
    pub const FULL_SNAPSHOT_SCHEDULE: &str = "0 */24 * * *";
    /// The delta snapshot period.
    pub const DELTA_SNAPSHOT_PERIOD: &str = "20s";
    /// The garbage collection period.
    pub const GARBAGE_COLLECTION_PERIOD: &str = "1m";
    /// Full snapshots kept by the LimitBased policy.
    pub const MAX_BACKUPS: i32 = 7;
    /// The delta snapshot memory limit.
    pub const DELTA_SNAPSHOT_MEMORY_LIMIT: &str = "100Mi";
    /// The timeout of one snapshot.
    pub const SNAPSHOT_TIMEOUT: &str = "15m";
    /// The timeout of one defragmentation.
    pub const DEFRAG_TIMEOUT: &str = "15m";
    /// The member lease renewal period.
    pub const HEARTBEAT: &str = "10s";
    /// The auto-compaction retention.
    pub const AUTO_COMPACTION_RETENTION: &str = "30m";
    /// The sidecar's scratch directory.
    pub const SNAPSTORE_TEMP_DIR: &str = "/var/etcd/data/temp";
    /// The CA key of a TLS secret.
    pub const CA_KEY: &str = "ca.crt";
}

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (or fields, `a` and `b`), as `spec.x.y`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Etcd spec: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidSpec(pub Vec<FieldError>);

/// TLS material of one endpoint, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The Secret with the CA bundle.
    pub ca_secret: String,
    /// The CA bundle's key in it.
    pub ca_key: String,
    /// The Secret with the server certificate (`tls.crt`, `tls.key`).
    pub server_secret: String,
    /// The Secret with a client certificate (`tls.crt`, `tls.key`).
    pub client_secret: Option<String>,
    /// Peer only: skip the SAN check of peer certificates.
    pub skip_client_san_verification: bool,
}

/// The backup store, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The provider as written (the plugin registry resolves aliases).
    pub provider: String,
    /// The field it came from, for messages.
    pub provider_field: &'static str,
    /// The bucket or container.
    pub container: Option<String>,
    /// The key prefix.
    pub prefix: String,
    /// The Secret with the credentials.
    pub secret: Option<String>,
    /// The field naming the secret, for messages.
    pub secret_field: &'static str,
    /// A custom endpoint.
    pub endpoint: Option<String>,
}

/// How etcd runs.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdSettings {
    /// The image, when the spec names one (else the operator's default).
    pub image: Option<String>,
    /// The pull policy of both containers.
    pub pull_policy: Option<PullPolicy>,
    /// The backend quota in bytes.
    pub quota_bytes: i64,
    /// The client port.
    pub client_port: i32,
    /// The peer port.
    pub server_port: i32,
    /// The wrapper's readiness port.
    pub wrapper_port: i32,
    /// The metrics level.
    pub metrics: MetricsLevel,
    /// The container's resources.
    pub resources: Option<ResourceRequirements>,
    /// The defragmentation schedule (validated cron), if any.
    pub defrag_schedule: Option<String>,
    /// The defragmentation timeout.
    pub defrag_timeout: Duration,
    /// The member lease renewal period.
    pub heartbeat: Duration,
    /// etcd's snapshot count.
    pub snapshot_count: i64,
    /// The gRPC gateway.
    pub grpc_gateway: bool,
    /// The initial cluster state.
    pub initial_cluster_state: InitialClusterState,
    /// The initial cluster token.
    pub initial_cluster_token: String,
    /// Client TLS.
    pub client_tls: Option<Tls>,
    /// Peer TLS.
    pub peer_tls: Option<Tls>,
    /// The client Service's extras.
    pub client_service: ClientService,
    /// The bbolt freelist type.
    pub freelist_type: FreelistType,
    /// Extra advertised peer URLs per member.
    pub additional_peer_urls: Vec<AdditionalPeerUrls>,
}

/// How the sidecar runs.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSettings {
    /// The image, when the spec names one (else the operator's default).
    pub image: Option<String>,
    /// The HTTP port.
    pub port: i32,
    /// The container's resources.
    pub resources: Option<ResourceRequirements>,
    /// TLS of the HTTP server.
    pub tls: Option<Tls>,
    /// Compression, if enabled.
    pub compression: Option<CompressionPolicy>,
    /// The full snapshot schedule (validated cron).
    pub full_snapshot_schedule: String,
    /// The garbage collection policy.
    pub garbage_collection_policy: GarbageCollectionPolicy,
    /// Full snapshots kept by LimitBased.
    pub max_backups: i32,
    /// The garbage collection period.
    pub garbage_collection_period: Duration,
    /// The delta snapshot period.
    pub delta_snapshot_period: Duration,
    /// The delta snapshot memory limit in bytes.
    pub delta_snapshot_memory_limit: i64,
    /// How long deltas are kept.
    pub delta_snapshot_retention: Option<Duration>,
    /// Profiling endpoints.
    pub profiling: bool,
    /// The timeout of one snapshot.
    pub snapshot_timeout: Duration,
    /// Backup-leader re-election period.
    pub reelection_period: Option<Duration>,
    /// Timeout of connections to etcd.
    pub etcd_connection_timeout: Option<Duration>,
    /// Compaction settings.
    pub compaction: SnapshotCompactionSpec,
    /// The scratch directory.
    pub temp_dir: String,
}

/// The data volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// The storage class (the cluster default when unset).
    pub class: Option<String>,
    /// The size, as written (a Kubernetes quantity).
    pub capacity: String,
    /// The claim template's name.
    pub claim_template: String,
}

/// An Etcd spec, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdModel {
    /// The Etcd's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The number of members.
    pub replicas: i32,
    /// Pod labels from the spec.
    pub labels: BTreeMap<String, String>,
    /// Pod annotations from the spec.
    pub annotations: BTreeMap<String, String>,
    /// etcd.
    pub etcd: EtcdSettings,
    /// The sidecar.
    pub backup: BackupSettings,
    /// The backup store; `None`: no backups.
    pub store: Option<Store>,
    /// The data volumes.
    pub storage: Storage,
    /// What happens to the claims on deletion.
    pub pvc_retention: PvcRetentionPolicy,
    /// The pods' priority class.
    pub priority_class_name: Option<String>,
    /// Run as root.
    pub run_as_root: bool,
    /// The member name prefix.
    pub member_name_prefix: Option<String>,
    /// Affinity and topology spread.
    pub scheduling: SchedulingConstraints,
    /// Auto-compaction mode.
    pub auto_compaction_mode: AutoCompactionMode,
    /// Auto-compaction retention, as etcd takes it.
    pub auto_compaction_retention: String,
    /// Things that are valid but probably not what the author meant.
    pub warnings: Vec<FieldError>,
}

/// Collects errors while the model is built.
#[derive(Default)]
struct Check {
    errors: Vec<FieldError>,
    warnings: Vec<FieldError>,
}

impl Check {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// One setting with two names: the value of whichever is set; an error
    /// naming both when they disagree (as decided by `same`).
    fn alias<T: Clone>(
        &mut self,
        (a_field, a): (&str, Option<&T>),
        (b_field, b): (&str, Option<&T>),
        same: impl Fn(&T, &T) -> bool,
        show: impl Fn(&T) -> String,
    ) -> Option<T> {
        match (a, b) {
            (Some(x), Some(y)) if !same(x, y) => {
                self.error(
                    format!("{a_field}, {b_field}"),
                    format!(
                        "both name one setting but disagree ({} vs {}): set only {a_field}",
                        show(x),
                        show(y)
                    ),
                );
                Some(x.clone())
            }
            (Some(x), _) => Some(x.clone()),
            (None, y) => y.cloned(),
        }
    }

    fn duration(&mut self, field: &str, value: Option<&str>, default: &str) -> Duration {
        let text = value.unwrap_or(default);
        match parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    field,
                    format!("{e} (write a duration such as 300s, 5m or 1h30m)"),
                );
                parse_duration(default).unwrap_or_default()
            }
        }
    }

    fn optional_duration(&mut self, field: &str, value: Option<&str>) -> Option<Duration> {
        let text = value?;
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    field,
                    format!("{e} (write a duration such as 300s, 5m or 1h30m)"),
                );
                None
            }
        }
    }

    fn bytes(&mut self, field: &str, value: Option<&str>, default: &str) -> i64 {
        let text = value.unwrap_or(default);
        match parse_quantity(text) {
            Ok(b) if b > 0 => b,
            Ok(_) => {
                self.error(field, format!("'{text}' must be positive"));
                0
            }
            Err(e) => {
                self.error(
                    field,
                    format!("{e} (write a quantity such as 8Gi or 512Mi)"),
                );
                0
            }
        }
    }

    fn cron(&mut self, field: &str, value: &str) {
        if let Err(e) = parse_cron(value) {
            self.error(
                field,
                format!("'{value}' is not a valid cron schedule: {e} (five fields: minute hour day-of-month month day-of-week, e.g. '0 */24 * * *')"),
            );
        }
    }

    fn same_namespace(&mut self, field: &str, r: &SecretReference, namespace: &str) -> String {
        if let Some(ns) = &r.namespace
            && ns != namespace
        {
            self.error(
                format!("{field}.namespace"),
                format!("the Secret must be in the Etcd's namespace '{namespace}' (pods cannot mount Secrets of namespace '{ns}'): copy it there"),
            );
        }
        r.name.clone()
    }
}

/// Parses a five-field cron schedule (or an @-shorthand) as the sidecar
/// does; also used by the sidecar's scheduler.
pub fn parse_cron(schedule: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(schedule)
}

/// The longest duration Go (and so etcd and the Go sidecar) can represent:
/// 2^63 − 1 nanoseconds, about 292 years.
pub const MAX_GO_DURATION: Duration = Duration::from_nanos(0x7fff_ffff_ffff_ffff);

/// Parses a Go duration (`300s`, `1h30m`, `1.5h`, `0`) as Go's
/// `time.ParseDuration` does; negative ones, and ones longer than Go can
/// represent ([`MAX_GO_DURATION`]), are refused.
///
/// Written here rather than taken from kube-core: its parser multiplies
/// with `Duration::mul_f64`, which panics on overflow
/// (`99999999999999999999h`), and a spec field must never panic the
/// operator or the sidecar.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = |why: &str| format!("'{text}' is not a duration: {why}");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("it is empty"));
    }
    let too_large = || {
        format!(
            "'{text}' is too long: the longest duration is {}h (Go's limit)",
            MAX_GO_DURATION.as_secs() / 3600
        )
    };
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid("a number must come before each unit"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(invalid(
                    "a unit (ns, us, ms, s, m, h) must follow each number",
                ));
            }
            _ => {
                return Err(invalid(&format!(
                    "unknown unit '{unit}' (use ns, us, ms, s, m or h)"
                )));
            }
        };
        // The integer part: any number of digits, checked.
        let mut whole: u128 = 0;
        for d in int_digits.bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u128::from(d - b'0')))
                .ok_or_else(too_large)?;
        }
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_large)?;
        // The fraction: digits past the 19th are below a nanosecond of any
        // unit and are ignored, as Go does.
        let mut scale: u128 = 1;
        let mut fraction: u128 = 0;
        for d in frac_digits.bytes().take(19) {
            fraction = fraction * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        nanos = nanos
            .checked_add(fraction * unit_nanos / scale)
            .ok_or_else(too_large)?;
        total = total.checked_add(nanos).ok_or_else(too_large)?;
        if total > MAX_GO_DURATION.as_nanos() {
            return Err(too_large());
        }
        rest = next;
    }
    if negative && total > 0 {
        return Err(format!("'{text}' is negative"));
    }
    let nanos = u64::try_from(total).map_err(|_| too_large())?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration as Go does for whole seconds (`300s`, `1.5s`), which
/// both etcd and the sidecar parse.
pub fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl EtcdModel {
    /// Normalizes the spec of `etcd`.
    pub fn from_etcd(etcd: &Etcd) -> Result<Self, InvalidSpec> {
        let namespace = etcd.namespace().unwrap_or_default();
        Self::from_spec(&etcd.name_any(), &namespace, &etcd.spec)
    }

    /// Normalizes `spec` of the Etcd `name` in `namespace`.
    pub fn from_spec(name: &str, namespace: &str, spec: &EtcdSpec) -> Result<Self, InvalidSpec> {
        let mut c = Check::default();
        let e = &spec.etcd;
        let b = &spec.backup;

        if spec.replicas < 0 {
            c.error(
                "spec.replicas",
                format!("{} must not be negative", spec.replicas),
            );
        } else if spec.replicas > crate::MAX_REPLICAS {
            c.error(
                "spec.replicas",
                format!(
                    "{} is more members than supported: at most {} (etcd advises 3 or 5, at most 7)",
                    spec.replicas,
                    crate::MAX_REPLICAS
                ),
            );
        }

        // Images: `image`, or `imageRepository` + `imageVersion`.
        let etcd_image = image(
            &mut c,
            "spec.etcd",
            e.image.as_ref(),
            e.image_repository.as_ref(),
            e.image_version.as_ref(),
        );
        let backup_image = image(
            &mut c,
            "spec.backup",
            b.image.as_ref(),
            b.image_repository.as_ref(),
            b.image_version.as_ref(),
        );

        // Quota: `quota` or the founding manifest's `Quota`.
        let quota = c.alias(
            ("spec.etcd.quota", e.quota.as_ref()),
            ("spec.etcd.Quota", e.quota_legacy.as_ref()),
            |x, y| same_quantity(&x.0, &y.0),
            |x| x.0.clone(),
        );
        let quota_bytes = c.bytes(
            if e.quota.is_some() {
                "spec.etcd.quota"
            } else {
                "spec.etcd.Quota"
            },
            quota.as_ref().map(|q| q.0.as_str()),
            defaults::QUOTA,
        );

        // Storage: spec-level or the founding manifest's spec.etcd place.
        let class = c.alias(
            ("spec.storageClass", spec.storage_class.as_ref()),
            ("spec.etcd.storageClass", e.storage_class.as_ref()),
            |x, y| x == y,
            Clone::clone,
        );
        let capacity = c
            .alias(
                ("spec.storageCapacity", spec.storage_capacity.as_ref()),
                ("spec.etcd.storageCapacity", e.storage_capacity.as_ref()),
                |x, y| same_quantity(&x.0, &y.0),
                |x| x.0.clone(),
            )
            .map_or_else(|| defaults::STORAGE_CAPACITY.to_string(), |q| q.0);
        c.bytes(
            if spec.storage_capacity.is_some() {
                "spec.storageCapacity"
            } else {
                "spec.etcd.storageCapacity"
            },
            Some(&capacity),
            defaults::STORAGE_CAPACITY,
        );

        // Client TLS: `clientUrlTls`, or `enableTLS` with the two secrets.
        let mut client_tls = e
            .client_url_tls
            .as_ref()
            .map(|t| tls(&mut c, "spec.etcd.clientUrlTls", t, namespace));
        match (e.enable_tls, &e.client_url_tls) {
            (Some(true), Some(_)) => c.error(
                "spec.etcd.enableTLS, spec.etcd.clientUrlTls",
                "both configure client TLS: use clientUrlTls, or enableTLS with spec.tlsServerSecret and spec.tlsClientSecret, not both",
            ),
            (Some(false), Some(_)) => c.error(
                "spec.etcd.enableTLS, spec.etcd.clientUrlTls",
                "enableTLS is false but clientUrlTls configures client TLS: remove one of them",
            ),
            (Some(true), None) => {
                let server = spec.tls_server_secret.clone();
                if server.is_none() {
                    c.error(
                        "spec.tlsServerSecret",
                        "spec.etcd.enableTLS is true: name the Secret with etcd's server certificate (keys tls.crt, tls.key, ca.crt)",
                    );
                }
                if spec.tls_client_secret.is_none() {
                    c.error(
                        "spec.tlsClientSecret",
                        "spec.etcd.enableTLS is true: name the Secret with the client certificate the sidecar uses (keys tls.crt, tls.key, ca.crt)",
                    );
                }
                if let Some(server) = server {
                    client_tls = Some(Tls {
                        ca_secret: server.clone(),
                        ca_key: defaults::CA_KEY.into(),
                        server_secret: server,
                        client_secret: spec.tls_client_secret.clone(),
                        skip_client_san_verification: false,
                    });
                }
            }
            _ => {
                for (field, set) in [
                    ("spec.tlsServerSecret", spec.tls_server_secret.is_some()),
                    ("spec.tlsClientSecret", spec.tls_client_secret.is_some()),
                ] {
                    if set {
                        c.warn(
                            field,
                            "is set but spec.etcd.enableTLS is not true, so etcd serves clients without TLS: set spec.etcd.enableTLS: true to use it",
                        );
                    }
                }
            }
        }
        let peer_tls = e.peer_url_tls.as_ref().map(|t| {
            let mut r = tls(
                &mut c,
                "spec.etcd.peerUrlTls",
                &TlsConfig {
                    tls_ca_secret_ref: t.tls_ca_secret_ref.clone(),
                    server_tls_secret_ref: t.server_tls_secret_ref.clone(),
                    client_tls_secret_ref: None,
                },
                namespace,
            );
            r.skip_client_san_verification = t.skip_client_san_verification.unwrap_or(false);
            r
        });
        let backup_tls = b
            .tls
            .as_ref()
            .map(|t| tls(&mut c, "spec.backup.tls", t, namespace));

        // The store: `spec.store` (founding form) or `spec.backup.store`.
        let store = match (&spec.store, &b.store) {
            (Some(_), Some(_)) => {
                c.error(
                    "spec.store, spec.backup.store",
                    "both configure the backup store: keep only spec.backup.store (or only spec.store)",
                );
                None
            }
            (Some(s), None) => {
                let provider = s.storage_provider.clone().unwrap_or_default();
                if provider.is_empty() {
                    c.error(
                        "spec.store.storageProvider",
                        "is required: name the provider, e.g. S3, ABS, GCS or Local",
                    );
                }
                let prefix = s.store_prefix.clone().unwrap_or_default();
                if prefix.is_empty() {
                    c.error("spec.store.storePrefix", "is required: the key prefix of this cluster's snapshots in the bucket, e.g. the Etcd's name");
                }
                Some(Store {
                    provider,
                    provider_field: "spec.store.storageProvider",
                    container: s.storage_container.clone(),
                    prefix,
                    secret: s.store_secret.clone(),
                    secret_field: "spec.store.storeSecret",
                    endpoint: None,
                })
            }
            (None, Some(s)) => {
                let provider = s.provider.clone().unwrap_or_default();
                if provider.is_empty() {
                    c.error(
                        "spec.backup.store.provider",
                        "is required: name the provider, e.g. S3, ABS, GCS or Local",
                    );
                }
                if s.prefix.is_empty() {
                    c.error(
                        "spec.backup.store.prefix",
                        "is required: the key prefix of this cluster's snapshots in the bucket",
                    );
                }
                let secret = s
                    .secret_ref
                    .as_ref()
                    .map(|r| c.same_namespace("spec.backup.store.secretRef", r, namespace));
                Some(Store {
                    provider,
                    provider_field: "spec.backup.store.provider",
                    container: s.container.clone(),
                    prefix: s.prefix.clone(),
                    secret,
                    secret_field: "spec.backup.store.secretRef.name",
                    endpoint: s.endpoint_override.clone(),
                })
            }
            (None, None) => None,
        };

        // Schedules and periods.
        let full_snapshot_schedule = b
            .full_snapshot_schedule
            .clone()
            .unwrap_or_else(|| defaults::FULL_SNAPSHOT_SCHEDULE.into());
        c.cron("spec.backup.fullSnapshotSchedule", &full_snapshot_schedule);
        if let Some(s) = &e.defragmentation_schedule {
            c.cron("spec.etcd.defragmentationSchedule", s);
        }
        let delta_snapshot_period = c.duration(
            "spec.backup.deltaSnapshotPeriod",
            b.delta_snapshot_period.as_deref(),
            defaults::DELTA_SNAPSHOT_PERIOD,
        );
        let garbage_collection_period = c.duration(
            "spec.backup.garbageCollectionPeriod",
            b.garbage_collection_period.as_deref(),
            defaults::GARBAGE_COLLECTION_PERIOD,
        );
        if store.is_some() && garbage_collection_period <= delta_snapshot_period {
            c.error(
                "spec.backup.garbageCollectionPeriod, spec.backup.deltaSnapshotPeriod",
                format!(
                    "the garbage collection period ({}) must be longer than the delta snapshot period ({})",
                    go_duration(garbage_collection_period),
                    go_duration(delta_snapshot_period)
                ),
            );
        }
        let delta_snapshot_retention = c.optional_duration(
            "spec.backup.deltaSnapshotRetentionPeriod",
            b.delta_snapshot_retention_period.as_deref(),
        );
        let snapshot_timeout = c.duration(
            "spec.backup.etcdSnapshotTimeout",
            b.etcd_snapshot_timeout.as_deref(),
            defaults::SNAPSHOT_TIMEOUT,
        );
        let defrag_timeout = c.duration(
            "spec.etcd.etcdDefragTimeout",
            e.etcd_defrag_timeout.as_deref(),
            defaults::DEFRAG_TIMEOUT,
        );
        let heartbeat = c.duration(
            "spec.etcd.heartbeatDuration",
            e.heartbeat_duration.as_deref(),
            defaults::HEARTBEAT,
        );
        let le = b.leader_election.clone().unwrap_or_default();
        let reelection_period = c.optional_duration(
            "spec.backup.leaderElection.reelectionPeriod",
            le.reelection_period.as_deref(),
        );
        let etcd_connection_timeout = c.optional_duration(
            "spec.backup.leaderElection.etcdConnectionTimeout",
            le.etcd_connection_timeout.as_deref(),
        );
        let delta_snapshot_memory_limit = c.bytes(
            "spec.backup.deltaSnapshotMemoryLimit",
            b.delta_snapshot_memory_limit.as_ref().map(|q| q.0.as_str()),
            defaults::DELTA_SNAPSHOT_MEMORY_LIMIT,
        );
        let max_backups = b
            .max_backups_limit_based_gc
            .unwrap_or(defaults::MAX_BACKUPS);
        if max_backups < 1 {
            c.error("spec.backup.maxBackupsLimitBasedGC", "must be at least 1");
        }
        let compression = match &b.compression {
            Some(cs) if cs.enabled == Some(false) => None,
            Some(cs) => Some(cs.policy.unwrap_or_default()),
            None => Some(CompressionPolicy::default()),
        };

        // Shared settings.
        let shared = spec.shared_config.clone().unwrap_or_default();
        let auto_compaction_mode = shared.auto_compaction_mode.unwrap_or_default();
        let auto_compaction_retention = shared
            .auto_compaction_retention
            .clone()
            .unwrap_or_else(|| defaults::AUTO_COMPACTION_RETENTION.into());
        let retention_ok = match auto_compaction_mode {
            AutoCompactionMode::Periodic => {
                auto_compaction_retention.parse::<u64>().is_ok()
                    || parse_duration(&auto_compaction_retention).is_ok()
            }
            AutoCompactionMode::Revision => auto_compaction_retention.parse::<u64>().is_ok(),
        };
        if !retention_ok {
            c.error(
                "spec.sharedConfig.autoCompactionRetention",
                format!(
                    "'{auto_compaction_retention}' does not fit autoCompactionMode {}: periodic takes a duration such as 30m (or hours as a number), revision takes a revision count",
                    auto_compaction_mode.as_str()
                ),
            );
        }

        for (field, port) in [
            ("spec.etcd.clientPort", e.client_port),
            ("spec.etcd.serverPort", e.server_port),
            ("spec.etcd.wrapperPort", e.wrapper_port),
            ("spec.backup.port", b.port),
        ] {
            if let Some(p) = port
                && !(1..=65535).contains(&p)
            {
                c.error(field, format!("{p} is not a port number (1-65535)"));
            }
        }
        if let Some(prefix) = &spec.member_name_prefix
            && !is_dns_label(prefix)
        {
            c.error(
                "spec.memberNamePrefix",
                format!("'{prefix}' must be a DNS label (lower-case letters, digits and '-', at most 63)"),
            );
        }

        if !c.errors.is_empty() {
            return Err(InvalidSpec(c.errors));
        }
        Ok(Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            replicas: spec.replicas,
            labels: spec.labels.clone(),
            annotations: spec.annotations.clone().unwrap_or_default(),
            etcd: EtcdSettings {
                image: etcd_image,
                pull_policy: e.pull_policy,
                quota_bytes,
                client_port: e.client_port.unwrap_or(defaults::CLIENT_PORT),
                server_port: e.server_port.unwrap_or(defaults::SERVER_PORT),
                wrapper_port: e.wrapper_port.unwrap_or(defaults::WRAPPER_PORT),
                metrics: e.metrics.unwrap_or_default(),
                resources: e.resources.clone(),
                defrag_schedule: e.defragmentation_schedule.clone(),
                defrag_timeout,
                heartbeat,
                snapshot_count: e.snapshot_count.unwrap_or(defaults::SNAPSHOT_COUNT),
                grpc_gateway: e.enable_grpc_gateway.unwrap_or(false),
                initial_cluster_state: e.initial_cluster_state.unwrap_or_default(),
                initial_cluster_token: e
                    .initial_cluster_token
                    .clone()
                    .unwrap_or_else(|| defaults::INITIAL_CLUSTER_TOKEN.into()),
                client_tls,
                peer_tls,
                client_service: e.client_service.clone().unwrap_or_default(),
                freelist_type: e.backend_bbolt_freelist_type.unwrap_or_default(),
                additional_peer_urls: e.additional_advertise_peer_urls.clone().unwrap_or_default(),
            },
            backup: BackupSettings {
                image: backup_image,
                port: b.port.unwrap_or(defaults::BACKUP_PORT),
                resources: b.resources.clone(),
                tls: backup_tls,
                compression,
                full_snapshot_schedule,
                garbage_collection_policy: b.garbage_collection_policy.unwrap_or_default(),
                max_backups,
                garbage_collection_period,
                delta_snapshot_period,
                delta_snapshot_memory_limit,
                delta_snapshot_retention,
                profiling: b.enable_profiling.unwrap_or(false),
                snapshot_timeout,
                reelection_period,
                etcd_connection_timeout,
                compaction: b.snapshot_compaction.clone().unwrap_or_default(),
                temp_dir: b
                    .snapstore_temp_dir
                    .clone()
                    .unwrap_or_else(|| defaults::SNAPSTORE_TEMP_DIR.into()),
            },
            store,
            storage: Storage {
                class,
                capacity,
                claim_template: spec
                    .volume_claim_template
                    .clone()
                    .unwrap_or_else(|| name.to_string()),
            },
            pvc_retention: spec.pvc_retention_policy.unwrap_or_default(),
            priority_class_name: spec.priority_class_name.clone(),
            run_as_root: spec.run_as_root.unwrap_or(false),
            member_name_prefix: spec.member_name_prefix.clone(),
            scheduling: spec.scheduling_constraints.clone().unwrap_or_default(),
            auto_compaction_mode,
            auto_compaction_retention,
            warnings: c.warnings,
        })
    }

    /// The Secrets this Etcd references (store, TLS), sorted, each once.
    pub fn referenced_secrets(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let tls = [&self.etcd.client_tls, &self.etcd.peer_tls, &self.backup.tls];
        for t in tls.into_iter().flatten() {
            names.push(t.ca_secret.clone());
            names.push(t.server_secret.clone());
            names.extend(t.client_secret.clone());
        }
        if let Some(s) = self.store.as_ref().and_then(|s| s.secret.clone()) {
            names.push(s);
        }
        names.sort();
        names.dedup();
        names
    }
}

fn image(
    c: &mut Check,
    at: &str,
    image: Option<&String>,
    repository: Option<&String>,
    version: Option<&String>,
) -> Option<String> {
    let joined = match (repository, version) {
        (Some(r), Some(v)) => Some(format!("{r}:{v}")),
        (Some(_), None) => {
            c.error(
                format!("{at}.imageVersion"),
                format!("is required with {at}.imageRepository (the image tag, e.g. v0.1.0)"),
            );
            None
        }
        (None, Some(_)) => {
            c.error(
                format!("{at}.imageRepository"),
                format!("is required with {at}.imageVersion"),
            );
            None
        }
        (None, None) => None,
    };
    match (image, joined) {
        (Some(i), Some(j)) if *i != j => {
            c.error(
                format!("{at}.image, {at}.imageRepository + {at}.imageVersion"),
                format!("name different images ('{i}' vs '{j}'): set only {at}.image"),
            );
            Some(i.clone())
        }
        (Some(i), _) => Some(i.clone()),
        (None, j) => j,
    }
}

fn tls(c: &mut Check, at: &str, t: &TlsConfig, namespace: &str) -> Tls {
    let ca = &t.tls_ca_secret_ref;
    let ca_secret = c.same_namespace(
        &format!("{at}.tlsCASecretRef"),
        &SecretReference {
            name: ca.name.clone(),
            namespace: ca.namespace.clone(),
        },
        namespace,
    );
    let server_secret = c.same_namespace(
        &format!("{at}.serverTLSSecretRef"),
        &t.server_tls_secret_ref,
        namespace,
    );
    let client_secret = t
        .client_tls_secret_ref
        .as_ref()
        .map(|r| c.same_namespace(&format!("{at}.clientTLSSecretRef"), r, namespace));
    for (field, name) in [
        ("tlsCASecretRef.name", &ca_secret),
        ("serverTLSSecretRef.name", &server_secret),
    ] {
        if name.is_empty() {
            c.error(format!("{at}.{field}"), "is required: name the Secret");
        }
    }
    Tls {
        ca_secret,
        ca_key: ca
            .data_key
            .clone()
            .unwrap_or_else(|| defaults::CA_KEY.into()),
        server_secret,
        client_secret,
        skip_client_san_verification: false,
    }
}

fn same_quantity(a: &str, b: &str) -> bool {
    match (parse_quantity(a), parse_quantity(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
