//! The StatefulSet (`<etcd>`) whose pods run etcd (through the etcd
//! wrapper) and the backup-restore sidecar.
//!
//! The two containers find each other through the host alias `<etcd>-local`
//! (127.0.0.1), so TLS server certificates need that name as a SAN. The
//! wrapper asks the sidecar to validate or restore the data directory, then
//! fetches etcd's configuration from it (the sidecar reads the ConfigMap
//! mounted at [`CONFIG_DIR`](super::pod::paths::CONFIG_DIR)) and runs etcd.
//!
//! `mod.rs` assembles the pod and the StatefulSet; `containers` builds the
//! two containers and their arguments, `volumes` the pod's volumes and each
//! container's mounts.

mod containers;
#[cfg(test)]
mod tests;
mod volumes;

use std::collections::BTreeMap;

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    HostAlias, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::pod::pod_security_context;
use super::{BuildContext, BuildError, metadata};
use crate::names;

/// `<etcd>-local`: how the containers of a pod reach each other.
fn local_host(model: &EtcdModel) -> String {
    format!("{}-local", model.name)
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
    let wiring = volumes::Wiring::new(model, ctx)?;

    let etcd_container = containers::etcd(model, ctx, wiring.etcd_mounts);
    let backup_container = containers::backup(model, ctx, wiring.backup_mounts, wiring.backup_env);

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
                match_labels: Some(names::selector(Some(&model.name), None).into_labels()),
                ..LabelSelector::default()
            },
            service_name: Some(names::peer_service(&model.name)),
            pod_management_policy: Some("Parallel".into()),
            // The operator rolls the members itself, one at a time, the
            // leader last, while the others are healthy
            // (`controller/roll.rs`); the StatefulSet's RollingUpdate
            // would not look at etcd's health.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
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
