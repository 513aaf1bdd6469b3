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

/// The finalizer the operator puts on Etcds and on the Secrets they use:
/// upstream's name, so that an Etcd created under one operator is deleted
/// by the other.
pub const FINALIZER: &str = "druid.gardener.cloud/etcd-druid";

/// Finalizers earlier releases of this operator put on Etcds and Secrets;
/// the operator replaces them with [`FINALIZER`] (on a deleted object it
/// cleans up and removes them).
pub const LEGACY_FINALIZERS: &[&str] = &["druid.gardener.cloud/etcd"];

/// Whether `finalizer` is this operator's, current or legacy.
pub fn is_druid_finalizer(finalizer: &str) -> bool {
    finalizer == FINALIZER || LEGACY_FINALIZERS.contains(&finalizer)
}

/// Annotation on an Etcd asking for a defragmentation run now (any
/// value): the operator asks the backup leader's sidecar (`/defragment`)
/// and removes the annotation once the sidecar answered with a report.
pub const DEFRAGMENT_ANNOTATION: &str = "druid.gardener.cloud/defragment";

/// Annotation on the member lease of the sidecar that coordinated the last
/// defragmentation run: the run's summary ([`etcd::DefragmentationRun`] as
/// JSON). The operator publishes it as an event on the Etcd (the sidecar's
/// Role grants no events, as upstream's).
pub const LAST_DEFRAGMENTATION_RUN_ANNOTATION: &str =
    "druid.gardener.cloud/last-defragmentation-run";

/// Annotation on a member lease: `true` when the member's peer URLs use
/// TLS (written by its sidecar, as upstream's; `status.peerUrlTLSEnabled`
/// sums it up).
pub const MEMBER_TLS_ENABLED_ANNOTATION: &str = "member.etcd.gardener.cloud/tls-enabled";

/// Annotation on a member lease: the member's etcd revision when its
/// sidecar last renewed the lease (decimal). After a quorum loss the
/// operator compares it with the revision restored from the store, to
/// say how many revisions the recovery lost.
pub const MEMBER_REVISION_ANNOTATION: &str = "druid.gardener.cloud/revision";

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

/// Annotation on the delta snapshot lease: why the backup leader's
/// snapshotter last failed (a redacted, bounded message), set when a
/// snapshot or a listing of the store fails and removed by the next
/// success. The operator turns `BackupReady` False from it at once instead
/// of waiting for the lease to go stale.
pub const SNAPSHOT_FAILURE_ANNOTATION: &str = "druid.gardener.cloud/snapshot-failure";

/// Annotation on the delta snapshot lease: when (RFC 3339) the failure in
/// [`SNAPSHOT_FAILURE_ANNOTATION`] happened.
pub const SNAPSHOT_FAILED_AT_ANNOTATION: &str = "druid.gardener.cloud/snapshot-failed-at";

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
