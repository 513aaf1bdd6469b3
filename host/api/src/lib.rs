//! The `druid.gardener.cloud/v1alpha1` API: the `Etcd`, `EtcdCopyBackupsTask`
//! and `EtcdOpsTask` resources, one normalized model of an Etcd spec with its
//! defaults and validation, and the generated CRD YAML (`deploy/crds/`).
//!
//! - [`etcd`]: the Etcd resource as written, accepting both the founding
//!   manifest's field names (`Quota`, `imageRepository` + `imageVersion`,
//!   `store.storageProvider`, `tlsServerSecret`, ...) and the upstream
//!   operator's current ones (`quota`, `image`, `backup.store.provider`,
//!   `clientUrlTls`, ...).
//! - [`model`]: [`EtcdModel`], the spec with aliases resolved and defaults
//!   applied; conflicting names are an error naming both fields.
//! - [`tasks`]: the task resources.
//! - [`crds`]/[`crds_yaml`]: the CustomResourceDefinitions.

pub mod etcd;
pub mod model;
pub mod quantity;
pub mod tasks;

pub use etcd::{Etcd, EtcdSpec, EtcdStatus};
pub use model::{EtcdModel, FieldError, InvalidSpec};
pub use tasks::{EtcdCopyBackupsTask, EtcdOpsTask};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt as _;

/// The API group of every druid resource.
pub const GROUP: &str = "druid.gardener.cloud";

/// The API version served.
pub const VERSION: &str = "v1alpha1";

/// The most members an Etcd may have. etcd advises at most 7 (every write
/// waits for a majority, and each member adds peer traffic); 9 leaves room
/// for a spare pair during a migration. The CRD and the operator both
/// refuse more, so a typo such as `replicas: 2000000000` is an error, not
/// two billion rendered ordinals.
pub const MAX_REPLICAS: i32 = 9;

/// The finalizer the operator puts on Etcds and on the Secrets they use.
pub const FINALIZER: &str = "druid.gardener.cloud/etcd";

/// Annotation on an Etcd asking its leader's sidecar to defragment the
/// cluster now (any value); the sidecar removes it when the run is done.
pub const DEFRAGMENT_ANNOTATION: &str = "druid.gardener.cloud/defragment";

/// Annotation on a member lease holding the member's last
/// defragmentation result ([`etcd::DefragmentationResult`] as JSON),
/// written by the coordinating sidecar and shown in `status.members`.
pub const LAST_DEFRAGMENTATION_ANNOTATION: &str = "druid.gardener.cloud/last-defragmentation";

/// Annotation on the delta snapshot lease (`<etcd>-delta-snap`) holding the
/// bytes (decimal) of the delta snapshots uploaded after the latest full
/// snapshot, written by the backup leader's sidecar. The operator's
/// compaction controller starts a compaction once it reaches a threshold,
/// whatever the number of events.
pub const DELTA_BYTES_SINCE_FULL_ANNOTATION: &str = "druid.gardener.cloud/delta-bytes-since-full";

/// The `apiVersion` string of druid resources.
pub fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// The CustomResourceDefinitions of every druid resource, with the file
/// name each is checked in under (`deploy/crds/`).
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("druid.gardener.cloud_etcds.yaml", Etcd::crd()),
        (
            "druid.gardener.cloud_etcdcopybackupstasks.yaml",
            EtcdCopyBackupsTask::crd(),
        ),
        ("druid.gardener.cloud_etcdopstasks.yaml", EtcdOpsTask::crd()),
    ]
}

/// One CRD as the YAML checked in under `deploy/crds/`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml_ng::Error> {
    Ok(format!(
        "# Generated from the druid-api crate's types: do not edit.\n# Regenerate with: DRUID_UPDATE_CRDS=1 cargo test -p druid-api --test crds\n{}",
        serde_yaml_ng::to_string(crd)?
    ))
}

/// Every CRD as one multi-document YAML stream (for `kubectl apply -f -`).
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for (_, crd) in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_version_is_group_slash_version() {
        assert_eq!(super::api_version(), "druid.gardener.cloud/v1alpha1");
    }
}
