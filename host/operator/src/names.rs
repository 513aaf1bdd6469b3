//! Names and labels of everything the operator creates for an Etcd.
//!
//! They follow the upstream operator (so that switching operators keeps the
//! same StatefulSet and therefore the same PersistentVolumeClaims:
//! `<claim template>-<etcd>-<ordinal>`), with one label set of our own.

use std::collections::BTreeMap;

use druid_api::EtcdModel;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "druid";
/// `app.kubernetes.io/managed-by` value.
pub const MANAGED_BY: &str = "etcd-druid";
/// The annotation that asks for a reconcile (removed after a successful one).
pub const OPERATION_ANNOTATION: &str = "druid.gardener.cloud/operation";
/// The legacy spelling of [`OPERATION_ANNOTATION`].
pub const LEGACY_OPERATION_ANNOTATION: &str = "gardener.cloud/operation";
/// The value of the operation annotation that asks for a reconcile.
pub const OPERATION_RECONCILE: &str = "reconcile";
/// The annotation that suspends spec reconciles (status is still updated).
pub const SUSPEND_ANNOTATION: &str = "druid.gardener.cloud/suspend-etcd-spec-reconcile";
/// The pod annotation with the checksum of the etcd configuration.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "checksum/etcd-configmap";

/// The StatefulSet, ServiceAccount and PodDisruptionBudget: `<etcd>`.
pub fn statefulset(etcd: &str) -> String {
    etcd.to_string()
}

/// The ServiceAccount: `<etcd>`.
pub fn service_account(etcd: &str) -> String {
    etcd.to_string()
}

/// The Role and the RoleBinding: `druid.gardener.cloud:etcd:<etcd>`.
pub fn role(etcd: &str) -> String {
    format!("druid.gardener.cloud:etcd:{etcd}")
}

/// The PodDisruptionBudget: `<etcd>`.
pub fn pdb(etcd: &str) -> String {
    etcd.to_string()
}

/// The NetworkPolicy around the sidecar's API.
pub fn network_policy(etcd: &str) -> String {
    format!("{etcd}-backup-restore")
}

/// The client Service: `<etcd>-client`.
pub fn client_service(etcd: &str) -> String {
    format!("{etcd}-client")
}

/// The headless peer Service: `<etcd>-peer`.
pub fn peer_service(etcd: &str) -> String {
    format!("{etcd}-peer")
}

/// The ConfigMap with etcd's configuration: `<etcd>-config`.
pub fn config_map(etcd: &str) -> String {
    format!("{etcd}-config")
}

/// The full snapshot lease: `<etcd>-full-snap`.
pub fn full_snapshot_lease(etcd: &str) -> String {
    format!("{etcd}-full-snap")
}

/// The delta snapshot lease: `<etcd>-delta-snap`.
pub fn delta_snapshot_lease(etcd: &str) -> String {
    format!("{etcd}-delta-snap")
}

/// The snapshot compaction Job: `<etcd>-compactor`.
pub fn compaction_job(etcd: &str) -> String {
    format!("{etcd}-compactor")
}

/// The pod of ordinal `i`: `<etcd>-<i>`.
pub fn pod(etcd: &str, i: i32) -> String {
    format!("{etcd}-{i}")
}

/// The member (and member lease) name of ordinal `i`: the pod name, or
/// `<prefix>-<pod>` with a member name prefix.
pub fn member(model: &EtcdModel, i: i32) -> String {
    match &model.member_name_prefix {
        Some(prefix) => format!("{prefix}-{}", pod(&model.name, i)),
        None => pod(&model.name, i),
    }
}

/// The labels on every object of an Etcd (and the pod selector).
pub fn default_labels(etcd: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
        ("app.kubernetes.io/part-of".to_string(), etcd.to_string()),
    ])
}

/// The default labels plus `app.kubernetes.io/component` and
/// `app.kubernetes.io/name`.
pub fn component_labels(etcd: &str, component: &str, name: &str) -> BTreeMap<String, String> {
    let mut labels = default_labels(etcd);
    labels.insert("app.kubernetes.io/component".into(), component.into());
    labels.insert("app.kubernetes.io/name".into(), name.into());
    labels
}

/// The pod selector as a string (`status.selector`, for the scale
/// subresource).
pub fn selector_string(etcd: &str) -> String {
    default_labels(etcd)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Values of `app.kubernetes.io/component`.
pub mod component {
    /// ServiceAccount.
    pub const SERVICE_ACCOUNT: &str = "etcd-service-account";
    /// Role.
    pub const ROLE: &str = "etcd-druid-role";
    /// RoleBinding.
    pub const ROLE_BINDING: &str = "etcd-role-binding";
    /// Member leases.
    pub const MEMBER_LEASE: &str = "etcd-member-lease";
    /// Snapshot leases.
    pub const SNAPSHOT_LEASE: &str = "etcd-snapshot-lease";
    /// PodDisruptionBudget.
    pub const PDB: &str = "etcd-pdb";
    /// NetworkPolicy.
    pub const NETWORK_POLICY: &str = "etcd-network-policy";
    /// Client Service.
    pub const CLIENT_SERVICE: &str = "etcd-client-service";
    /// Peer Service.
    pub const PEER_SERVICE: &str = "etcd-peer-service";
    /// ConfigMap.
    pub const CONFIG_MAP: &str = "etcd-config";
    /// StatefulSet (and its pods).
    pub const STATEFULSET: &str = "etcd-statefulset";
    /// The snapshot compaction Job (and its pod).
    pub const COMPACTION_JOB: &str = "compactor";
}
