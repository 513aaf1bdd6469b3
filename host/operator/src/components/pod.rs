//! What every pod of an Etcd shares, the StatefulSet's members and the
//! compaction Job's pod alike: where things are mounted ([`paths`]), the
//! container names, the security contexts, the image and pull policy of the
//! backup-restore binary, and small helpers for volumes, mounts and env vars.
//!
//! The StatefulSet, the ConfigMap (which names the paths in etcd's
//! configuration) and the compaction Job depend on this module; it depends
//! on none of them.

use druid_api::EtcdModel;
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};

use super::BuildContext;

/// Where things are mounted in the containers (the upstream operator's
/// paths, which the upstream images expect).
pub mod paths {
    /// Where the data volume (the claim template) is mounted.
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
pub(super) const NON_ROOT: i64 = 65532;
/// Mode of mounted Secrets and the ConfigMap: owner read-write, group read
/// (the pod's fsGroup).
pub(super) const SECRET_MODE: i32 = 0o640;

pub(super) fn secret_volume(name: &str, secret: &str) -> Volume {
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
