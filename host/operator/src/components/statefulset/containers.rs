//! The member pod's two containers: the etcd wrapper and the
//! backup-restore sidecar, with their arguments.

use std::collections::BTreeMap;

use druid_api::EtcdModel;
use druid_api::model::go_duration;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, Probe, ResourceRequirements, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::BuildContext;
use super::super::pod::{
    BACKUP_CONTAINER, ETCD_CONTAINER, backup_image, field_env, no_privilege_escalation, paths,
    pull_policy,
};
use super::super::store::{compression_flags, snapshot_timeout_flag, store_flags};
use super::local_host;
use crate::names;

/// The sidecar's timeout of connections to etcd.
const ETCD_CONNECTION_TIMEOUT_SECS: u64 = 300;
/// The wrapper's default client port and readiness port: the flags that
/// change them are only passed when they differ, so that older wrapper
/// images, which lack those flags, keep working with the defaults.
const WRAPPER_DEFAULT_CLIENT_PORT: i32 = 2379;
const WRAPPER_DEFAULT_PORT: i32 = 9095;

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
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
            "--service-endpoints={}",
            std::iter::once(format!(
                "{client_scheme}://{}:{}",
                names::client_service(&model.name),
                e.client_port
            ))
            .chain(
                e.existing_cluster
                    .iter()
                    .flat_map(|source| source.client_endpoints.iter().cloned())
            )
            .collect::<Vec<_>>()
            .join(",")
        ),
    ]);
    if e.existing_cluster.is_some() {
        args.push("--join-existing-cluster=true".into());
    }
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

/// The etcd wrapper's container, with the given volume mounts.
pub(super) fn etcd(model: &EtcdModel, ctx: &BuildContext, mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: ETCD_CONTAINER.into(),
        image: Some(
            model
                .etcd
                .image
                .clone()
                .unwrap_or_else(|| ctx.etcd_image.clone()),
        ),
        image_pull_policy: Some(pull_policy(model)),
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
        volume_mounts: Some(mounts),
        security_context: no_privilege_escalation(),
        ..Container::default()
    }
}

/// The backup-restore sidecar's container, with the given volume mounts
/// and the store provider's env vars (name, value).
pub(super) fn backup(
    model: &EtcdModel,
    ctx: &BuildContext,
    mounts: Vec<VolumeMount>,
    store_env: Vec<(String, String)>,
) -> Container {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        // `$(POD_IP)` in --server-address.
        field_env("POD_IP", "status.podIP"),
    ];
    env.extend(store_env.into_iter().map(|(name, value)| EnvVar {
        name,
        value: Some(value),
        ..EnvVar::default()
    }));
    Container {
        name: BACKUP_CONTAINER.into(),
        image: Some(backup_image(model, ctx)),
        image_pull_policy: Some(pull_policy(model)),
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
        volume_mounts: Some(mounts),
        security_context: no_privilege_escalation(),
        ..Container::default()
    }
}
