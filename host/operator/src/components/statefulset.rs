//! The StatefulSet (`<etcd>`) whose pods run etcd (through the etcd
//! wrapper) and the backup-restore sidecar.
//!
//! The two containers find each other through the host alias `<etcd>-local`
//! (127.0.0.1), so TLS server certificates need that name as a SAN. The
//! wrapper asks the sidecar to validate or restore the data directory, then
//! fetches etcd's configuration from it (the sidecar reads the ConfigMap
//! mounted at [`paths::CONFIG_DIR`]) and runs etcd.

use std::collections::BTreeMap;

use druid_api::model::{BackupSettings, Store, Tls, go_duration};
use druid_api::{Etcd, EtcdModel};
use druid_plugin_host::wiring;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, HostAlias, HostPathVolumeSource, KeyToPath, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::configmap::CONFIG_KEY;
use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Where things are mounted in the containers (the upstream operator's
/// paths, which the upstream images expect).
pub mod paths {
    /// The data volume.
    pub const DATA: &str = "/var/etcd/data";
    /// etcd's data directory, inside the data volume.
    pub const DATA_DIR: &str = "/var/etcd/data/new.etcd";
    /// The sidecar's scratch directory for restorations.
    pub const RESTORATION_TEMP_DIR: &str = "/var/etcd/data/restoration.temp";
    /// The directory of etcd's configuration file (the ConfigMap), in the
    /// sidecar.
    pub const CONFIG_DIR: &str = "/var/etcd/config/";
    /// The CA bundle of etcd's client TLS.
    pub const ETCD_CA: &str = "/var/etcd/ssl/ca";
    /// etcd's client-facing server certificate.
    pub const ETCD_SERVER_TLS: &str = "/var/etcd/ssl/server";
    /// The client certificate the wrapper and the sidecar present to etcd.
    pub const ETCD_CLIENT_TLS: &str = "/var/etcd/ssl/client";
    /// The CA bundle of the peer TLS.
    pub const ETCD_PEER_CA: &str = "/var/etcd/ssl/peer/ca";
    /// etcd's peer server certificate.
    pub const ETCD_PEER_SERVER_TLS: &str = "/var/etcd/ssl/peer/server";
    /// The CA bundle the wrapper verifies the sidecar's HTTPS server with.
    pub const BACKUP_CA: &str = "/var/etcdbr/ssl/ca";
    /// The sidecar's HTTPS server certificate.
    pub const BACKUP_SERVER_TLS: &str = "/var/etcdbr/ssl/server";
    /// The client certificate presented to the sidecars when they require
    /// one (`backup.tls.clientTLSSecretRef`, mTLS).
    pub const BACKUP_CLIENT_TLS: &str = "/var/etcdbr/ssl/client";
}

/// The etcd (wrapper) container's name.
pub const ETCD_CONTAINER: &str = "etcd";
/// The backup-restore sidecar's name.
pub const BACKUP_CONTAINER: &str = "backup-restore";

/// The uid and gid the containers run as unless `runAsRoot`.
const NON_ROOT: i64 = 65532;
/// Mode of mounted Secrets and the ConfigMap: owner read-write, group read
/// (the pod's fsGroup).
const SECRET_MODE: i32 = 0o640;
/// The sidecar's timeout of connections to etcd.
const ETCD_CONNECTION_TIMEOUT_SECS: u64 = 300;
/// The wrapper's default client port and readiness port: the flags that
/// change them are only passed when they differ, so that older wrapper
/// images, which lack those flags, keep working with the defaults.
const WRAPPER_DEFAULT_CLIENT_PORT: i32 = 2379;
const WRAPPER_DEFAULT_PORT: i32 = 9095;

/// Names of the pod's volumes.
mod volume {
    pub const CONFIG: &str = "etcd-config-file";
    pub const ETCD_CA: &str = "etcd-ca";
    pub const ETCD_SERVER_TLS: &str = "etcd-server-tls";
    pub const ETCD_CLIENT_TLS: &str = "etcd-client-tls";
    pub const ETCD_PEER_CA: &str = "etcd-peer-ca";
    pub const ETCD_PEER_SERVER_TLS: &str = "etcd-peer-server-tls";
    pub const BACKUP_CA: &str = "backup-restore-ca";
    pub const BACKUP_SERVER_TLS: &str = "backup-restore-server-tls";
    pub const BACKUP_CLIENT_TLS: &str = "backup-restore-client-tls";
}

/// The labels the Services select the pods by: the default labels plus the
/// StatefulSet's component label (other pods of the Etcd, such as compaction
/// jobs, carry the default labels too).
pub fn pod_selector(etcd: &str) -> BTreeMap<String, String> {
    let mut labels = names::default_labels(etcd);
    labels.insert(
        "app.kubernetes.io/component".into(),
        names::component::STATEFULSET.into(),
    );
    labels
}

/// `<etcd>-local`: how the containers of a pod reach each other.
fn local_host(model: &EtcdModel) -> String {
    format!("{}-local", model.name)
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(SECRET_MODE),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub(super) fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    }
}

/// Resources when the spec gives none: a small request, no limit.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("50m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        ..ResourceRequirements::default()
    }
}

/// The client certificate of etcd's client TLS: the client secret, or the
/// server certificate when the spec names none (it must then allow client
/// authentication), since etcd requires client certificates.
fn client_cert_secret(tls: &Tls) -> &str {
    tls.client_secret.as_deref().unwrap_or(&tls.server_secret)
}

/// The pod's volumes and each container's mounts.
#[derive(Default)]
struct Wiring {
    volumes: Vec<Volume>,
    etcd_mounts: Vec<VolumeMount>,
    backup_mounts: Vec<VolumeMount>,
    backup_env: Vec<(String, String)>,
    init_containers: Vec<Container>,
}

impl Wiring {
    fn new(model: &EtcdModel, ctx: &BuildContext) -> Result<Self, BuildError> {
        let mut w = Self::default();
        let data = mount(&model.storage.claim_template, paths::DATA);
        w.etcd_mounts.push(data.clone());
        w.backup_mounts.push(data);

        // etcd's configuration, which the sidecar serves to the wrapper.
        w.volumes.push(Volume {
            name: volume::CONFIG.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(&model.name),
                items: Some(vec![KeyToPath {
                    key: CONFIG_KEY.into(),
                    path: CONFIG_KEY.into(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(SECRET_MODE),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        w.backup_mounts
            .push(mount(volume::CONFIG, paths::CONFIG_DIR));

        if let Some(tls) = &model.etcd.client_tls {
            w.volumes.extend([
                secret_volume(volume::ETCD_CA, &tls.ca_secret),
                secret_volume(volume::ETCD_SERVER_TLS, &tls.server_secret),
                secret_volume(volume::ETCD_CLIENT_TLS, client_cert_secret(tls)),
            ]);
            w.etcd_mounts.extend([
                mount(volume::ETCD_CA, paths::ETCD_CA),
                mount(volume::ETCD_SERVER_TLS, paths::ETCD_SERVER_TLS),
                mount(volume::ETCD_CLIENT_TLS, paths::ETCD_CLIENT_TLS),
            ]);
            w.backup_mounts.extend([
                mount(volume::ETCD_CA, paths::ETCD_CA),
                mount(volume::ETCD_CLIENT_TLS, paths::ETCD_CLIENT_TLS),
            ]);
        }
        if let Some(tls) = &model.etcd.peer_tls {
            w.volumes.extend([
                secret_volume(volume::ETCD_PEER_CA, &tls.ca_secret),
                secret_volume(volume::ETCD_PEER_SERVER_TLS, &tls.server_secret),
            ]);
            w.etcd_mounts.extend([
                mount(volume::ETCD_PEER_CA, paths::ETCD_PEER_CA),
                mount(volume::ETCD_PEER_SERVER_TLS, paths::ETCD_PEER_SERVER_TLS),
            ]);
        }
        if let Some(tls) = &model.backup.tls {
            w.volumes.extend([
                secret_volume(volume::BACKUP_CA, &tls.ca_secret),
                secret_volume(volume::BACKUP_SERVER_TLS, &tls.server_secret),
            ]);
            w.etcd_mounts
                .push(mount(volume::BACKUP_CA, paths::BACKUP_CA));
            w.backup_mounts
                .push(mount(volume::BACKUP_SERVER_TLS, paths::BACKUP_SERVER_TLS));
            // A client certificate named: the sidecar requires one (mTLS)
            // of the wrapper, the operator and the other sidecars.
            if let Some(client) = &tls.client_secret {
                w.volumes
                    .push(secret_volume(volume::BACKUP_CLIENT_TLS, client));
                w.etcd_mounts
                    .push(mount(volume::BACKUP_CLIENT_TLS, paths::BACKUP_CLIENT_TLS));
                w.backup_mounts.extend([
                    mount(volume::BACKUP_CA, paths::BACKUP_CA),
                    mount(volume::BACKUP_CLIENT_TLS, paths::BACKUP_CLIENT_TLS),
                ]);
            }
        }

        // The provider's wiring, only with a store.
        let store = StoreWiring::new(model, ctx)?;
        w.init_containers = store.init_containers(model, ctx);
        w.backup_env.extend(store.env);
        w.volumes.extend(store.volumes);
        w.backup_mounts.extend(store.mounts);
        Ok(w)
    }
}

/// The store provider's wiring of a container that talks to the store (the
/// sidecar, the compaction job): env vars, volumes and their mounts, from
/// the provider plugin's `pod-config`. Empty without a store.
#[derive(Debug, Default)]
pub(super) struct StoreWiring {
    /// Env vars (name, value).
    pub env: Vec<(String, String)>,
    /// Volumes of the pod.
    pub volumes: Vec<Volume>,
    /// Their mounts in the container.
    pub mounts: Vec<VolumeMount>,
}

impl StoreWiring {
    pub(super) fn new(model: &EtcdModel, ctx: &BuildContext) -> Result<Self, BuildError> {
        let mut w = Self::default();
        let (Some(store), Some(wiring)) = (&model.store, &ctx.store_wiring) else {
            return Ok(w);
        };
        w.env.extend(wiring.env.iter().cloned());
        if wiring.store_secret {
            let secret = store.secret.as_deref().ok_or_else(|| BuildError::Render {
                what: "the store's secret volume",
                reason: format!(
                    "provider '{}' mounts the store's Secret, but {} names none",
                    store.provider, store.secret_field
                ),
            })?;
            w.volumes.push(secret_volume(wiring::SECRET_VOLUME, secret));
            w.mounts
                .push(mount(wiring::SECRET_VOLUME, wiring::SECRET_MOUNT));
        }
        if let Some(dir) = &wiring.local_dir {
            // The node directory holds every namespace's Local stores; the
            // container sees only its own Etcd's namespace and container.
            let container = store.container.as_deref().unwrap_or_default();
            w.volumes.push(Volume {
                name: wiring::LOCAL_VOLUME.into(),
                host_path: Some(HostPathVolumeSource {
                    path: dir.clone(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..Volume::default()
            });
            w.mounts.push(VolumeMount {
                sub_path: Some(format!("{}/{container}", model.namespace)),
                ..mount(
                    wiring::LOCAL_VOLUME,
                    &format!("{}/{container}", wiring::LOCAL_MOUNT),
                )
            });
        }
        Ok(w)
    }

    /// The init containers the store needs: for a Local store, one that
    /// makes its node directory (created by the kubelet as root) the
    /// sidecar user's, as root with only the capabilities that takes
    /// (CHOWN, and DAC_READ_SEARCH to walk directories the user made
    /// private). None when the pod runs as root anyway.
    pub(super) fn init_containers(&self, model: &EtcdModel, ctx: &BuildContext) -> Vec<Container> {
        let Some(local) = self.mounts.iter().find(|m| m.name == wiring::LOCAL_VOLUME) else {
            return Vec::new();
        };
        if model.run_as_root {
            return Vec::new();
        }
        let dir = &local.mount_path;
        vec![Container {
            name: PREPARE_LOCAL_STORE_CONTAINER.into(),
            image: Some(backup_image(model, ctx)),
            image_pull_policy: Some(pull_policy(model)),
            args: Some(vec![
                "prepare-local-store".into(),
                format!("--dir={dir}"),
                format!("--owner={NON_ROOT}:{NON_ROOT}"),
            ]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("10m".into())),
                    ("memory".to_string(), Quantity("16Mi".into())),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("64Mi".into()),
                )])),
                ..ResourceRequirements::default()
            }),
            volume_mounts: Some(vec![local.clone()]),
            security_context: Some(SecurityContext {
                run_as_user: Some(0),
                run_as_group: Some(0),
                run_as_non_root: Some(false),
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: Some(vec!["CHOWN".into(), "DAC_READ_SEARCH".into()]),
                }),
                ..SecurityContext::default()
            }),
            ..Container::default()
        }]
    }
}

/// The init container that gives a Local store's directory to the
/// sidecar's user.
pub(super) const PREPARE_LOCAL_STORE_CONTAINER: &str = "prepare-local-store";

/// The etcd wrapper's arguments.
fn etcd_args(model: &EtcdModel) -> Vec<String> {
    let local = local_host(model);
    let mut args = vec![
        "start-etcd".to_string(),
        format!("--backup-restore-host-port={local}:{}", model.backup.port),
        format!("--etcd-server-name={local}"),
    ];
    match &model.backup.tls {
        Some(tls) => args.extend([
            "--backup-restore-tls-enabled=true".to_string(),
            format!(
                "--backup-restore-ca-cert-bundle-path={}/{}",
                paths::BACKUP_CA,
                tls.ca_key
            ),
        ]),
        None => args.push("--backup-restore-tls-enabled=false".into()),
    }
    if model
        .backup
        .tls
        .as_ref()
        .is_some_and(|t| t.client_secret.is_some())
    {
        args.extend([
            format!(
                "--backup-restore-client-cert-path={}/tls.crt",
                paths::BACKUP_CLIENT_TLS
            ),
            format!(
                "--backup-restore-client-key-path={}/tls.key",
                paths::BACKUP_CLIENT_TLS
            ),
        ]);
    }
    if model.etcd.client_tls.is_some() {
        args.extend([
            format!("--etcd-client-cert-path={}/tls.crt", paths::ETCD_CLIENT_TLS),
            format!("--etcd-client-key-path={}/tls.key", paths::ETCD_CLIENT_TLS),
        ]);
    }
    if model.etcd.client_port != WRAPPER_DEFAULT_CLIENT_PORT {
        args.push(format!("--etcd-client-port={}", model.etcd.client_port));
    }
    if model.etcd.wrapper_port != WRAPPER_DEFAULT_PORT {
        args.push(format!("--etcd-wrapper-port={}", model.etcd.wrapper_port));
    }
    args
}

/// The store's flags and the snapshot leases the backup-restore binary
/// renews: `--enable-snapshot-lease-renewal`, `--storage-provider`,
/// `--store-container`, `--store-prefix`, `--store-endpoint-override` and
/// the full and delta lease names. Shared by the sidecar and the compaction
/// job, which both write snapshots and record them in the leases.
pub(super) fn store_flags(model: &EtcdModel, store: &Store) -> Vec<String> {
    let mut args = vec![
        "--enable-snapshot-lease-renewal=true".to_string(),
        format!("--storage-provider={}", store.provider),
    ];
    if let Some(container) = &store.container {
        args.push(format!("--store-container={container}"));
    }
    args.push(format!("--store-prefix={}", store.prefix));
    if let Some(endpoint) = &store.endpoint {
        args.push(format!("--store-endpoint-override={endpoint}"));
    }
    args.extend([
        format!(
            "--full-snapshot-lease-name={}",
            names::full_snapshot_lease(&model.name)
        ),
        format!(
            "--delta-snapshot-lease-name={}",
            names::delta_snapshot_lease(&model.name)
        ),
    ]);
    args
}

/// How new snapshots are compressed. The backup-restore binary compresses
/// by default: disabling must be explicit.
pub(super) fn compression_flags(b: &BackupSettings) -> Vec<String> {
    match b.compression {
        Some(policy) => vec![
            "--compress-snapshots=true".to_string(),
            format!("--compression-policy={}", policy.as_str()),
        ],
        None => vec!["--compress-snapshots=false".into()],
    }
}

/// `--etcd-snapshot-timeout`: how long one snapshot may take.
pub(super) fn snapshot_timeout_flag(b: &BackupSettings) -> String {
    format!(
        "--etcd-snapshot-timeout={}",
        go_duration(b.snapshot_timeout)
    )
}

/// The sidecar's arguments: `server` with the flags of the upstream
/// `etcdbrctl server`, which the druid sidecar accepts too.
fn backup_args(model: &EtcdModel) -> Vec<String> {
    let b = &model.backup;
    let e = &model.etcd;
    let mut args = vec![
        "server".to_string(),
        format!("--server-port={}", b.port),
        // Loopback (the wrapper calls `<etcd>-local`, 127.0.0.1) and the
        // pod's IP (the other members, the operator), not every interface
        // (a second network attached to the pod never reaches the API).
        "--server-address=127.0.0.1,$(POD_IP)".to_string(),
    ];

    // Snapshots, garbage collection and the snapshot leases: with a store.
    if let Some(store) = &model.store {
        args.extend(store_flags(model, store));
        args.extend([
            format!("--schedule={}", b.full_snapshot_schedule),
            format!(
                "--delta-snapshot-period={}",
                go_duration(b.delta_snapshot_period)
            ),
        ]);
        if let Some(retention) = b.delta_snapshot_retention {
            args.push(format!(
                "--delta-snapshot-retention-period={}",
                go_duration(retention)
            ));
        }
        args.extend([
            format!(
                "--delta-snapshot-memory-limit={}",
                b.delta_snapshot_memory_limit
            ),
            format!(
                "--garbage-collection-policy={}",
                b.garbage_collection_policy.as_str()
            ),
        ]);
        if b.garbage_collection_policy == druid_api::etcd::GarbageCollectionPolicy::LimitBased {
            args.push(format!("--max-backups={}", b.max_backups));
        }
        args.push(format!(
            "--garbage-collection-period={}",
            go_duration(b.garbage_collection_period)
        ));
        args.extend(compression_flags(b));
        args.push(snapshot_timeout_flag(b));
    }

    // Maintenance of the local etcd.
    if let Some(schedule) = &e.defrag_schedule {
        args.push(format!("--defragmentation-schedule={schedule}"));
    }
    args.extend([
        format!("--etcd-defrag-timeout={}", go_duration(e.defrag_timeout)),
        format!(
            "--auto-compaction-mode={}",
            model.auto_compaction_mode.as_str()
        ),
        format!(
            "--auto-compaction-retention={}",
            model.auto_compaction_retention
        ),
    ]);

    // How it reaches etcd.
    let client_scheme = scheme(e.client_tls.is_some());
    match &e.client_tls {
        Some(tls) => args.extend([
            format!("--cacert={}/{}", paths::ETCD_CA, tls.ca_key),
            format!("--cert={}/tls.crt", paths::ETCD_CLIENT_TLS),
            format!("--key={}/tls.key", paths::ETCD_CLIENT_TLS),
            "--insecure-transport=false".to_string(),
            "--insecure-skip-tls-verify=false".to_string(),
        ]),
        None => args.extend([
            "--insecure-transport=true".to_string(),
            "--insecure-skip-tls-verify=true".to_string(),
        ]),
    }
    args.extend([
        format!(
            "--endpoints={client_scheme}://{}:{}",
            local_host(model),
            e.client_port
        ),
        format!(
            "--service-endpoints={client_scheme}://{}:{}",
            names::client_service(&model.name),
            e.client_port
        ),
    ]);
    if let Some(tls) = &b.tls {
        args.extend([
            format!("--server-cert={}/tls.crt", paths::BACKUP_SERVER_TLS),
            format!("--server-key={}/tls.key", paths::BACKUP_SERVER_TLS),
        ]);
        if tls.client_secret.is_some() {
            args.extend([
                format!("--client-ca-file={}/{}", paths::BACKUP_CA, tls.ca_key),
                format!("--api-client-cert={}/tls.crt", paths::BACKUP_CLIENT_TLS),
                format!("--api-client-key={}/tls.key", paths::BACKUP_CLIENT_TLS),
            ]);
        }
    }

    // Its own files, leases and the embedded etcd of restorations.
    args.extend([
        format!("--data-dir={}", paths::DATA_DIR),
        format!(
            "--restoration-temp-snapshots-dir={}",
            paths::RESTORATION_TEMP_DIR
        ),
        format!("--snapstore-temp-directory={}", b.temp_dir),
        format!(
            "--etcd-connection-timeout={}",
            go_duration(std::time::Duration::from_secs(ETCD_CONNECTION_TIMEOUT_SECS))
        ),
        "--use-etcd-wrapper=true".to_string(),
        "--enable-member-lease-renewal=true".to_string(),
        format!("--k8s-heartbeat-duration={}", go_duration(e.heartbeat)),
        format!("--embedded-etcd-quota-bytes={}", e.quota_bytes),
    ]);
    if b.profiling {
        args.push("--enable-profiling=true".into());
    }
    if let Some(period) = b.reelection_period {
        args.push(format!("--reelection-period={}", go_duration(period)));
    }
    if let Some(timeout) = b.etcd_connection_timeout {
        args.push(format!(
            "--etcd-connection-timeout-leader-election={}",
            go_duration(timeout)
        ));
    }
    args
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

pub(super) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(super) fn no_privilege_escalation() -> Option<SecurityContext> {
    Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        ..SecurityContext::default()
    })
}

pub(super) fn pod_security_context(model: &EtcdModel) -> PodSecurityContext {
    let id = if model.run_as_root { 0 } else { NON_ROOT };
    PodSecurityContext {
        run_as_user: Some(id),
        run_as_group: Some(id),
        run_as_non_root: Some(!model.run_as_root),
        fs_group: Some(id),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        ..PodSecurityContext::default()
    }
}

/// The pull policy of every container of the Etcd's pods (and jobs).
pub(super) fn pull_policy(model: &EtcdModel) -> String {
    model
        .etcd
        .pull_policy
        .map_or("IfNotPresent", |p| p.as_str())
        .to_string()
}

/// The backup-restore image: the spec's, else the operator's default.
pub(super) fn backup_image(model: &EtcdModel, ctx: &BuildContext) -> String {
    model
        .backup
        .image
        .clone()
        .unwrap_or_else(|| ctx.backup_image.clone())
}

/// Builds the StatefulSet. `config_checksum` is the ConfigMap's
/// [`super::configmap::checksum`]: it is put on the pod template so that a
/// configuration change rolls the pods.
pub fn build(
    etcd: &Etcd,
    model: &EtcdModel,
    ctx: &BuildContext,
    config_checksum: &str,
) -> Result<StatefulSet, BuildError> {
    let name = names::statefulset(&model.name);
    let wiring = Wiring::new(model, ctx)?;
    let pull_policy = Some(pull_policy(model));

    let etcd_container = Container {
        name: ETCD_CONTAINER.into(),
        image: Some(
            model
                .etcd
                .image
                .clone()
                .unwrap_or_else(|| ctx.etcd_image.clone()),
        ),
        image_pull_policy: pull_policy.clone(),
        args: Some(etcd_args(model)),
        ports: Some(vec![
            port("server", model.etcd.server_port),
            port("client", model.etcd.client_port),
        ]),
        // The wrapper's /readyz does a linearizable read through the local
        // member: it fails while the member is not part of a quorate
        // cluster, which is what "ready" must mean for the Services and the
        // PodDisruptionBudget. No liveness probe: restarting etcd does not
        // cure a lost quorum and would disturb restores and defragmentations.
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::Int(model.etcd.wrapper_port),
                // The wrapper serves /readyz over HTTPS exactly when etcd's
                // client URLs use TLS (with etcd's own certificate), as
                // upstream's wrapper does; backup TLS does not change it.
                scheme: Some(
                    if model.etcd.client_tls.is_some() {
                        "HTTPS"
                    } else {
                        "HTTP"
                    }
                    .into(),
                ),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(15),
            period_seconds: Some(5),
            failure_threshold: Some(5),
            ..Probe::default()
        }),
        resources: Some(
            model
                .etcd
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        volume_mounts: Some(wiring.etcd_mounts),
        security_context: no_privilege_escalation(),
        ..Container::default()
    };

    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        // `$(POD_IP)` in --server-address.
        field_env("POD_IP", "status.podIP"),
    ];
    env.extend(wiring.backup_env.into_iter().map(|(name, value)| EnvVar {
        name,
        value: Some(value),
        ..EnvVar::default()
    }));
    let backup_container = Container {
        name: BACKUP_CONTAINER.into(),
        image: Some(backup_image(model, ctx)),
        image_pull_policy: pull_policy,
        args: Some(backup_args(model)),
        env: Some(env),
        ports: Some(vec![port("server", model.backup.port)]),
        // No probes on the sidecar. Its /healthz reports backup health, which
        // is 503 on every follower and during initialization (a restore may
        // take long): as a readiness probe it would mark healthy followers
        // unready, as a liveness probe it would kill a restore midway. Pod
        // readiness is the etcd container's /readyz; a sidecar that cannot
        // serve makes that fail too, since the wrapper depends on it.
        resources: Some(
            model
                .backup
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        volume_mounts: Some(wiring.backup_mounts),
        security_context: no_privilege_escalation(),
        ..Container::default()
    };

    let mut pod_labels = model.labels.clone();
    pod_labels.extend(names::component_labels(
        &model.name,
        names::component::STATEFULSET,
        &name,
    ));
    let mut pod_annotations = model.annotations.clone();
    pod_annotations.insert(
        names::CONFIG_CHECKSUM_ANNOTATION.into(),
        config_checksum.into(),
    );

    let scheduling = &model.scheduling;
    let pod = PodSpec {
        host_aliases: Some(vec![HostAlias {
            ip: "127.0.0.1".into(),
            hostnames: Some(vec![local_host(model)]),
        }]),
        service_account_name: Some(names::service_account(&model.name)),
        // The ServiceAccount does not mount its token by default; the
        // sidecar needs it to renew the leases.
        automount_service_account_token: Some(true),
        share_process_namespace: Some(true),
        priority_class_name: model.priority_class_name.clone(),
        affinity: scheduling.affinity.clone(),
        topology_spread_constraints: scheduling.topology_spread_constraints.clone(),
        security_context: Some(pod_security_context(model)),
        init_containers: (!wiring.init_containers.is_empty()).then_some(wiring.init_containers),
        containers: vec![etcd_container, backup_container],
        volumes: Some(wiring.volumes),
        ..PodSpec::default()
    };

    let claim = PersistentVolumeClaim {
        // Only the name: claim templates are immutable, and an existing
        // StatefulSet of the upstream operator has nothing else here.
        metadata: ObjectMeta {
            name: Some(model.storage.claim_template.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: model.storage.class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(model.storage.capacity.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };

    Ok(StatefulSet {
        metadata: metadata(etcd, name, names::component::STATEFULSET)?,
        spec: Some(StatefulSetSpec {
            replicas: Some(model.replicas),
            selector: LabelSelector {
                match_labels: Some(names::default_labels(&model.name)),
                ..LabelSelector::default()
            },
            service_name: Some(names::peer_service(&model.name)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // The operator deletes the claims itself (after a final full
            // snapshot) when the Etcd's pvcRetentionPolicy says so.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            volume_claim_templates: Some(vec![claim]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use druid_api::Etcd;
    use druid_api::etcd::{CaSecretReference, SecretReference, TlsConfig};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::super::fixtures::{context, local_store, model, seed};
    use super::super::{BuildContext, configmap};
    use super::{BACKUP_CONTAINER, ETCD_CONTAINER, build};

    fn sts(etcd: &Etcd, ctx: &BuildContext) -> StatefulSet {
        let m = model(etcd);
        let cm = configmap::build(etcd, &m, ctx).unwrap();
        build(etcd, &m, ctx, &configmap::checksum(&cm)).unwrap()
    }

    fn pod(sts: &StatefulSet) -> &PodSpec {
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn container<'a>(sts: &'a StatefulSet, name: &str) -> &'a Container {
        pod(sts).containers.iter().find(|c| c.name == name).unwrap()
    }

    fn args(sts: &StatefulSet, name: &str) -> Vec<String> {
        container(sts, name).args.clone().unwrap()
    }

    fn mounts(sts: &StatefulSet, name: &str) -> Vec<String> {
        container(sts, name)
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect()
    }

    fn volume_secrets(sts: &StatefulSet) -> Vec<String> {
        pod(sts)
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
            .collect()
    }

    #[test]
    fn seed_snapshot() {
        insta::assert_yaml_snapshot!(sts(&seed(), &context()));
    }

    #[test]
    fn default_images_without_spec_images() {
        let mut etcd = seed();
        etcd.spec.etcd.image_repository = None;
        etcd.spec.etcd.image_version = None;
        etcd.spec.backup.image_repository = None;
        etcd.spec.backup.image_version = None;
        let ctx = context();
        let s = sts(&etcd, &ctx);
        assert_eq!(container(&s, ETCD_CONTAINER).image, Some(ctx.etcd_image));
        assert_eq!(
            container(&s, BACKUP_CONTAINER).image,
            Some(ctx.backup_image)
        );
    }

    #[test]
    fn enable_tls_switches_to_https_and_mounts_the_secrets() {
        let mut etcd = seed();
        etcd.spec.etcd.enable_tls = Some(true);
        let s = sts(&etcd, &context());
        insta::assert_yaml_snapshot!(s);

        let backup = args(&s, BACKUP_CONTAINER);
        for expected in [
            "--endpoints=https://test-local:2379",
            "--service-endpoints=https://test-client:2379",
            "--cacert=/var/etcd/ssl/ca/ca.crt",
            "--cert=/var/etcd/ssl/client/tls.crt",
            "--key=/var/etcd/ssl/client/tls.key",
            "--insecure-transport=false",
        ] {
            assert!(
                backup.iter().any(|a| a == expected),
                "{expected} in {backup:?}"
            );
        }
        let wrapper = args(&s, ETCD_CONTAINER);
        assert!(wrapper.contains(&"--etcd-client-cert-path=/var/etcd/ssl/client/tls.crt".into()));
        // The wrapper serves /readyz with etcd's client certificate.
        let probe = container(&s, ETCD_CONTAINER)
            .readiness_probe
            .clone()
            .unwrap();
        assert_eq!(probe.http_get.unwrap().scheme.as_deref(), Some("HTTPS"));
        let secrets = volume_secrets(&s);
        assert!(secrets.contains(&"etcd-server-tls".into()), "{secrets:?}");
        assert!(secrets.contains(&"etcd-client-tls".into()), "{secrets:?}");
        let etcd_mounts = mounts(&s, ETCD_CONTAINER);
        for path in [
            "/var/etcd/ssl/ca",
            "/var/etcd/ssl/server",
            "/var/etcd/ssl/client",
        ] {
            assert!(
                etcd_mounts.contains(&path.into()),
                "{path} in {etcd_mounts:?}"
            );
        }

        let plain = sts(&seed(), &context());
        assert!(
            args(&plain, BACKUP_CONTAINER).contains(&"--endpoints=http://test-local:2379".into())
        );
        assert!(!volume_secrets(&plain).contains(&"etcd-server-tls".into()));
        assert!(
            !mounts(&plain, ETCD_CONTAINER)
                .iter()
                .any(|p| p.contains("ssl"))
        );
    }

    #[test]
    fn backup_tls_switches_the_wrapper_to_https_and_leaves_the_probe_alone() {
        let mut etcd = seed();
        etcd.spec.backup.tls = Some(TlsConfig {
            tls_ca_secret_ref: CaSecretReference {
                name: "br-ca".into(),
                namespace: None,
                data_key: None,
            },
            server_tls_secret_ref: SecretReference {
                name: "br-server".into(),
                namespace: None,
            },
            client_tls_secret_ref: None,
        });
        let s = sts(&etcd, &context());
        let wrapper = args(&s, ETCD_CONTAINER);
        assert!(wrapper.contains(&"--backup-restore-tls-enabled=true".into()));
        assert!(
            wrapper
                .contains(&"--backup-restore-ca-cert-bundle-path=/var/etcdbr/ssl/ca/ca.crt".into())
        );
        assert!(
            args(&s, BACKUP_CONTAINER)
                .contains(&"--server-cert=/var/etcdbr/ssl/server/tls.crt".into())
        );
        // The wrapper serves /readyz over plain HTTP while etcd's client
        // URLs do (a probe over HTTPS would never see it ready).
        let probe = container(&s, ETCD_CONTAINER)
            .readiness_probe
            .clone()
            .unwrap();
        assert_eq!(probe.http_get.unwrap().scheme.as_deref(), Some("HTTP"));
        assert!(volume_secrets(&s).contains(&"br-server".into()));
        // No client certificate named: no mTLS.
        assert!(
            !args(&s, BACKUP_CONTAINER)
                .iter()
                .any(|a| a.contains("client-ca"))
        );
        assert!(!wrapper.iter().any(|a| a.contains("client-cert")));

        // A client certificate named: the sidecar requires one, and the
        // wrapper and the sidecars present it.
        if let Some(tls) = etcd.spec.backup.tls.as_mut() {
            tls.client_tls_secret_ref = Some(SecretReference {
                name: "br-client".into(),
                namespace: None,
            });
        }
        let s = sts(&etcd, &context());
        let backup = args(&s, BACKUP_CONTAINER);
        for expected in [
            "--client-ca-file=/var/etcdbr/ssl/ca/ca.crt",
            "--api-client-cert=/var/etcdbr/ssl/client/tls.crt",
            "--api-client-key=/var/etcdbr/ssl/client/tls.key",
        ] {
            assert!(
                backup.contains(&expected.into()),
                "{expected} in {backup:?}"
            );
        }
        let wrapper = args(&s, ETCD_CONTAINER);
        for expected in [
            "--backup-restore-client-cert-path=/var/etcdbr/ssl/client/tls.crt",
            "--backup-restore-client-key-path=/var/etcdbr/ssl/client/tls.key",
        ] {
            assert!(
                wrapper.contains(&expected.into()),
                "{expected} in {wrapper:?}"
            );
        }
        assert!(volume_secrets(&s).contains(&"br-client".into()));
        for c in [ETCD_CONTAINER, BACKUP_CONTAINER] {
            assert!(
                mounts(&s, c).contains(&"/var/etcdbr/ssl/client".into()),
                "{c}"
            );
        }
        assert!(mounts(&s, BACKUP_CONTAINER).contains(&"/var/etcdbr/ssl/ca".into()));
    }

    #[test]
    fn no_store_means_no_store_flags_volumes_or_env() {
        let mut etcd = seed();
        etcd.spec.store = None;
        let mut ctx = context();
        ctx.store_wiring = None;
        let s = sts(&etcd, &ctx);
        let backup = args(&s, BACKUP_CONTAINER);
        for flag in [
            "--storage-provider",
            "--store-",
            "--schedule",
            "--delta-snapshot",
            "--garbage-collection",
            "--full-snapshot-lease-name",
            "--enable-snapshot-lease-renewal",
        ] {
            assert!(
                !backup.iter().any(|a| a.starts_with(flag)),
                "{flag} in {backup:?}"
            );
        }
        assert!(volume_secrets(&s).is_empty());
        assert!(!mounts(&s, BACKUP_CONTAINER).contains(&"/var/etcd-backup".into()));
        let env = container(&s, BACKUP_CONTAINER).env.clone().unwrap();
        let env: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_IP"]);
        // The sidecar still maintains etcd.
        assert!(
            backup
                .iter()
                .any(|a| a.starts_with("--defragmentation-schedule="))
        );
    }

    #[test]
    fn local_provider_mounts_a_host_path() {
        let mut etcd = seed();
        let ctx = local_store(&mut etcd);
        etcd.spec.backup.garbage_collection_policy = None;

        let s = sts(&etcd, &ctx);
        let volume = pod(&s)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "local-backup")
            .unwrap();
        let host = volume.host_path.as_ref().unwrap();
        assert_eq!(host.path, "/var/lib/druid/local-backupbuckets");
        assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
        let mount = pod(&s)
            .containers
            .iter()
            .find(|c| c.name == BACKUP_CONTAINER)
            .and_then(|c| c.volume_mounts.as_ref())
            .and_then(|m| m.iter().find(|m| m.name == "local-backup"))
            .unwrap();
        assert_eq!(mount.mount_path, "/var/etcd-backup-local/bucket");
        assert_eq!(mount.sub_path.as_deref(), Some("demo/bucket"));
        let backup = args(&s, BACKUP_CONTAINER);
        assert!(backup.contains(&"--storage-provider=Local".into()));
        assert!(backup.contains(&"--garbage-collection-policy=LimitBased".into()));
        assert!(backup.contains(&"--max-backups=7".into()));

        // The kubelet creates the directory as root: an init container
        // gives it to the sidecar's user, as root with CHOWN only.
        let init = pod(&s).init_containers.clone().unwrap();
        assert_eq!(init.len(), 1);
        let prepare = &init[0];
        assert_eq!(
            prepare.args.clone().unwrap(),
            [
                "prepare-local-store",
                "--dir=/var/etcd-backup-local/bucket",
                "--owner=65532:65532"
            ]
        );
        assert_eq!(
            prepare.image,
            Some(super::backup_image(&model(&etcd), &ctx))
        );
        assert_eq!(prepare.volume_mounts.clone().unwrap(), vec![mount.clone()]);
        let sc = prepare.security_context.clone().unwrap();
        assert_eq!(
            (
                sc.run_as_user,
                sc.run_as_non_root,
                sc.allow_privilege_escalation
            ),
            (Some(0), Some(false), Some(false))
        );
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.drop.unwrap(), ["ALL"]);
        assert_eq!(caps.add.unwrap(), ["CHOWN", "DAC_READ_SEARCH"]);

        // Run as root, nothing to give away.
        etcd.spec.run_as_root = Some(true);
        assert_eq!(pod(&sts(&etcd, &ctx)).init_containers, None);
        // Other providers need none.
        assert_eq!(pod(&sts(&seed(), &context())).init_containers, None);
    }

    #[test]
    fn store_secret_without_a_secret_is_an_error() {
        let mut etcd = seed();
        if let Some(store) = etcd.spec.store.as_mut() {
            store.store_secret = None;
        }
        let m = model(&etcd);
        assert!(build(&etcd, &m, &context(), "x").is_err());
    }

    #[test]
    fn run_as_root_and_non_root() {
        let s = sts(&seed(), &context());
        let sc = pod(&s).security_context.clone().unwrap();
        assert_eq!(
            (sc.run_as_user, sc.fs_group, sc.run_as_non_root),
            (Some(65532), Some(65532), Some(true))
        );
        let mut etcd = seed();
        etcd.spec.run_as_root = Some(true);
        let s = sts(&etcd, &context());
        let sc = pod(&s).security_context.clone().unwrap();
        assert_eq!((sc.run_as_user, sc.run_as_non_root), (Some(0), Some(false)));
    }

    #[test]
    fn custom_ports_reach_the_wrapper_flags() {
        let mut etcd = seed();
        etcd.spec.etcd.client_port = Some(3379);
        etcd.spec.etcd.wrapper_port = Some(9096);
        etcd.spec.backup.port = Some(8081);
        let s = sts(&etcd, &context());
        let wrapper = args(&s, ETCD_CONTAINER);
        for expected in [
            "--backup-restore-host-port=test-local:8081",
            "--etcd-client-port=3379",
            "--etcd-wrapper-port=9096",
        ] {
            assert!(
                wrapper.contains(&expected.into()),
                "{expected} in {wrapper:?}"
            );
        }
        // The seed's default ports pass no port flags (older wrappers lack them).
        assert!(
            !args(&sts(&seed(), &context()), ETCD_CONTAINER)
                .iter()
                .any(|a| a.starts_with("--etcd-client-port"))
        );
    }

    #[test]
    fn config_checksum_is_on_the_pod_template() {
        let etcd = seed();
        let m = model(&etcd);
        let s = build(&etcd, &m, &context(), "abc").unwrap();
        let annotations = s
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap();
        assert_eq!(annotations[crate::names::CONFIG_CHECKSUM_ANNOTATION], "abc");
    }
}
