//! The member pod's volumes and each container's mounts: the data volume,
//! the ConfigMap, the TLS Secrets and the store provider's wiring.

use druid_api::EtcdModel;
use druid_api::model::Tls;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, KeyToPath, Volume, VolumeMount,
};

use super::super::configmap::CONFIG_KEY;
use super::super::pod::{SECRET_MODE, mount, paths, secret_volume};
use super::super::store::StoreWiring;
use super::super::{BuildContext, BuildError};
use crate::names;

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

/// The client certificate of etcd's client TLS: the client secret, or the
/// server certificate when the spec names none (it must then allow client
/// authentication), since etcd requires client certificates.
fn client_cert_secret(tls: &Tls) -> &str {
    tls.client_secret.as_deref().unwrap_or(&tls.server_secret)
}

/// The pod's volumes and each container's mounts.
#[derive(Default)]
pub(super) struct Wiring {
    pub(super) volumes: Vec<Volume>,
    pub(super) etcd_mounts: Vec<VolumeMount>,
    pub(super) backup_mounts: Vec<VolumeMount>,
    pub(super) backup_env: Vec<(String, String)>,
    pub(super) init_containers: Vec<Container>,
}

impl Wiring {
    pub(super) fn new(model: &EtcdModel, ctx: &BuildContext) -> Result<Self, BuildError> {
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
