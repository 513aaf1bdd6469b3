//! [`EtcdModel::from_spec`]: a written spec into the model, alias by
//! alias and default by default, every error collected in a `Check`.

use kube::ResourceExt as _;

use crate::etcd::{
    AutoCompactionMode, CompressionPolicy, Etcd, EtcdSpec, SecretReference, TlsConfig,
};
use crate::quantity::parse_quantity;

use super::check::Check;
use super::parse::{go_duration, parse_duration};
use super::{BackupSettings, EtcdModel, EtcdSettings, InvalidSpec, Storage, Store, Tls, defaults};

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
        if let Some(source) = &e.bootstrap_with_existing_cluster {
            existing_cluster(
                &mut c,
                source,
                &format!(
                    "{}{name}-",
                    spec.member_name_prefix
                        .as_ref()
                        .map(|p| format!("{p}-"))
                        .unwrap_or_default()
                ),
                client_tls.is_some(),
                peer_tls.is_some(),
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
                existing_cluster: e.bootstrap_with_existing_cluster.clone(),
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

/// Checks `spec.etcd.bootstrapWithExistingCluster` as the CRD's rules do
/// (an API server with older CRDs may not have checked it): URLs of the
/// right scheme, unique source names that do not collide with this Etcd's
/// member names (`own_prefix`).
fn existing_cluster(
    c: &mut Check,
    source: &crate::etcd::BootstrapWithExistingCluster,
    own_prefix: &str,
    client_tls: bool,
    peer_tls: bool,
) {
    const AT: &str = "spec.etcd.bootstrapWithExistingCluster";
    let url = |c: &mut Check, field: String, u: &str, tls: bool, tls_field: &str| {
        let scheme = if tls { "https://" } else { "http://" };
        let host = u.strip_prefix(scheme).unwrap_or_default();
        if host.is_empty() || host.starts_with('/') || host.contains(char::is_whitespace) {
            c.error(
                field,
                format!(
                    "'{u}' must be a {scheme} URL with a host ({scheme} because {tls_field} is {})",
                    if tls { "set" } else { "not set" }
                ),
            );
        }
    };
    if source.client_endpoints.is_empty() || source.client_endpoints.len() > 10 {
        c.error(
            format!("{AT}.clientEndpoints"),
            "must list 1 to 10 client URLs of the source cluster",
        );
    }
    for (i, u) in source.client_endpoints.iter().enumerate() {
        url(
            c,
            format!("{AT}.clientEndpoints[{i}]"),
            u,
            client_tls,
            "spec.etcd.clientUrlTls",
        );
    }
    if source.members.is_empty() || source.members.len() > 10 {
        c.error(
            format!("{AT}.members"),
            "must list 1 to 10 members of the source cluster",
        );
    }
    for (i, m) in source.members.iter().enumerate() {
        let at = format!("{AT}.members[{i}]");
        if !is_dns_label(&m.name) && !m.name.split('.').all(is_dns_label) {
            c.error(
                format!("{at}.name"),
                format!(
                    "'{}' must be an etcd member name of lower-case letters, digits and '-'",
                    m.name
                ),
            );
        }
        if m.name.starts_with(own_prefix) {
            c.error(
                format!("{at}.name"),
                format!("'{}' collides with this Etcd's own member names ({own_prefix}N): a source member needs another name", m.name),
            );
        }
        if source.members[..i].iter().any(|o| o.name == m.name) {
            c.error(
                format!("{at}.name"),
                format!("'{}' is listed twice", m.name),
            );
        }
        if m.peer_urls.is_empty() || m.peer_urls.len() > 5 {
            c.error(format!("{at}.peerUrls"), "must list 1 to 5 peer URLs");
        }
        for (j, u) in m.peer_urls.iter().enumerate() {
            url(
                c,
                format!("{at}.peerUrls[{j}]"),
                u,
                peer_tls,
                "spec.etcd.peerUrlTls",
            );
        }
    }
}
