//! What a container that talks to the backup store needs, the sidecar and
//! the compaction Job's container alike: the provider plugin's wiring (env
//! vars, volumes, mounts, and the init container a Local store needs) and
//! the backup-restore binary's store, lease and compression flags.

use std::collections::BTreeMap;

use druid_api::EtcdModel;
use druid_api::model::{BackupSettings, Store, go_duration};
use druid_plugin_host::wiring;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, HostPathVolumeSource, ResourceRequirements,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::pod::{NON_ROOT, backup_image, mount, pull_policy, secret_volume};
use super::{BuildContext, BuildError};
use crate::names;

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
    /// The plugins image whose init container fills the plugins volume.
    plugins_image: Option<String>,
}

/// The volume the plugins image's init container fills and the sidecar
/// (or the compaction Job) loads plugins from.
pub(super) const PLUGINS_VOLUME: &str = "druid-plugins";
/// Where that volume is mounted (the sidecar's `DRUID_PLUGINS_DIR`).
pub(super) const PLUGINS_MOUNT: &str = "/var/druid/plugins";
/// The init container that installs the plugins image's plugins.
pub(super) const INSTALL_PLUGINS_CONTAINER: &str = "install-plugins";

impl StoreWiring {
    pub(super) fn new(model: &EtcdModel, ctx: &BuildContext) -> Result<Self, BuildError> {
        let mut w = Self::default();
        let (Some(store), Some(wiring)) = (&model.store, &ctx.store_wiring) else {
            return Ok(w);
        };
        w.env.extend(wiring.env.iter().cloned());
        if let Some(image) = &ctx.plugins_image {
            w.volumes.push(Volume {
                name: PLUGINS_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("256Mi".into())),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            });
            w.mounts.push(VolumeMount {
                read_only: Some(true),
                ..mount(PLUGINS_VOLUME, PLUGINS_MOUNT)
            });
            w.env
                .push(("DRUID_PLUGINS_DIR".into(), PLUGINS_MOUNT.to_string()));
            w.plugins_image = Some(image.clone());
        }
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
        let mut init: Vec<Container> = self
            .plugins_image
            .iter()
            .map(|image| self.install_plugins(model, image))
            .collect();
        let Some(local) = self.mounts.iter().find(|m| m.name == wiring::LOCAL_VOLUME) else {
            return init;
        };
        if model.run_as_root {
            return init;
        }
        let dir = &local.mount_path;
        init.push(Container {
            name: PREPARE_LOCAL_STORE_CONTAINER.into(),
            image: Some(backup_image(model, ctx)),
            image_pull_policy: Some(pull_policy(model)),
            args: Some(vec![
                "prepare-local-store".into(),
                format!("--dir={dir}"),
                format!("--owner={NON_ROOT}:{NON_ROOT}"),
            ]),
            resources: Some(init_resources()),
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
        });
        init
    }

    /// The init container of the plugins image: `druid-install-plugins`
    /// copies its plugins into the plugins volume, unprivileged, with a
    /// read-only root and no capability.
    fn install_plugins(&self, model: &EtcdModel, image: &str) -> Container {
        Container {
            name: INSTALL_PLUGINS_CONTAINER.into(),
            image: Some(image.into()),
            image_pull_policy: Some(pull_policy(model)),
            args: Some(vec![format!("--to={PLUGINS_MOUNT}")]),
            resources: Some(init_resources()),
            volume_mounts: Some(vec![mount(PLUGINS_VOLUME, PLUGINS_MOUNT)]),
            security_context: Some(SecurityContext {
                run_as_non_root: (!model.run_as_root).then_some(true),
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                ..SecurityContext::default()
            }),
            ..Container::default()
        }
    }
}

/// What a short init container asks for: a little CPU, 16 MiB, at most
/// 64 MiB.
fn init_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("10m".into())),
            ("memory".to_string(), Quantity("16Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("64Mi".into()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// The init container that gives a Local store's directory to the
/// sidecar's user.
pub(super) const PREPARE_LOCAL_STORE_CONTAINER: &str = "prepare-local-store";

/// The store's flags and the snapshot leases the backup-restore binary
/// renews: `--enable-snapshot-lease-renewal`, `--storage-provider`,
/// `--store-container`, `--store-prefix`, `--store-endpoint-override` and
/// the full and delta lease names. Shared by the sidecar and the compaction
/// job, which both write snapshots and record them in the leases.
pub(super) fn store_flags(model: &EtcdModel, store: &Store) -> Vec<String> {
    let mut args = vec![
        "--enable-snapshot-lease-renewal=true".to_string(),
        // Upstream's canonical name (`S3` for `aws`), as its sidecar
        // image reads it.
        format!(
            "--storage-provider={}",
            druid_plugin_host::canonical_provider(&store.provider)
        ),
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
