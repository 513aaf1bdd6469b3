//! Names and labels of everything the operator creates for an Etcd.
//!
//! They follow the upstream operator (so that switching operators keeps the
//! same StatefulSet and therefore the same PersistentVolumeClaims:
//! `<claim template>-<etcd>-<ordinal>`), with one label set of our own.

use std::collections::BTreeMap;

use druid_api::EtcdModel;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "druid";
/// The value of [`label::MANAGED_BY`] on everything the operator creates.
pub const MANAGED_BY: &str = "etcd-druid";
/// The annotation that asks for a reconcile (removed after a successful one).
pub const OPERATION_ANNOTATION: &str = "druid.gardener.cloud/operation";
/// The legacy spelling of [`OPERATION_ANNOTATION`].
pub const LEGACY_OPERATION_ANNOTATION: &str = "gardener.cloud/operation";
/// The value of the operation annotation that asks for a reconcile.
pub const OPERATION_RECONCILE: &str = "reconcile";
/// The annotation that suspends spec reconciles (status is still updated).
pub const SUSPEND_ANNOTATION: &str = "druid.gardener.cloud/suspend-etcd-spec-reconcile";
/// The StatefulSet annotation that records the ordinal of the member a
/// scale-in removes (`controller::scale_in`), from the shrink until the
/// member left the cluster.
pub const SCALE_IN_ANNOTATION: &str = "druid.gardener.cloud/scale-in-leaving-ordinal";
/// The field manager of [`SCALE_IN_ANNOTATION`] (not [`FIELD_MANAGER`]:
/// the spec's server-side apply must not remove it).
pub const SCALE_IN_FIELD_MANAGER: &str = "druid-scale-in";
/// The StatefulSet annotation that records the step of a quorum-loss
/// recovery under way (`stopping`, then `restoring`): the durable record
/// that an operator restarted mid-recovery resumes from.
pub const RECOVERY_ANNOTATION: &str = "druid.gardener.cloud/quorum-loss-recovery";
/// The StatefulSet annotation that keeps, during a recovery, how many
/// revisions it loses (for the report at its end).
pub const RECOVERY_LOSS_ANNOTATION: &str = "druid.gardener.cloud/quorum-loss-revisions";
/// The field manager of [`RECOVERY_ANNOTATION`].
pub const RECOVERY_FIELD_MANAGER: &str = "druid-recovery";
/// The Etcd annotation that leaves the recovery from a quorum loss to
/// people (any value).
pub const DISABLE_AUTO_RECOVERY_ANNOTATION: &str = "druid.gardener.cloud/disable-auto-recovery";
/// The Etcd annotation that records when the final full snapshot before
/// its data volumes are deleted was taken (`controller::final_snapshot`).
pub const FINAL_SNAPSHOT_ANNOTATION: &str = "druid.gardener.cloud/final-snapshot-taken";
/// The Etcd annotation (`"true"`) that deletes its data volumes without a
/// final full snapshot when the snapshot cannot be taken.
pub const SKIP_FINAL_SNAPSHOT_ANNOTATION: &str = "druid.gardener.cloud/skip-final-snapshot";
/// The pod template annotation with the ConfigMap's checksum.
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

/// The label keys the operator sets and selects by (upstream's).
pub mod label {
    /// Who manages the object: [`super::MANAGED_BY`].
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The Etcd the object belongs to (its name).
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    /// What the object is to its Etcd: one of [`super::component`].
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// The object's own name (`:` replaced by `-`).
    pub const NAME: &str = "app.kubernetes.io/name";
}

/// The labels on every object of an Etcd (also what
/// [`selector`]`(Some(etcd), None)` selects by).
pub fn default_labels(etcd: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (label::PART_OF.to_string(), etcd.to_string()),
    ])
}

/// The default labels plus [`label::COMPONENT`] and [`label::NAME`].
pub fn component_labels(etcd: &str, component: &str, name: &str) -> BTreeMap<String, String> {
    let mut labels = default_labels(etcd);
    labels.insert(label::COMPONENT.into(), component.into());
    labels.insert(label::NAME.into(), name.into());
    labels
}

/// A label selector over the objects the operator manages; see
/// [`selector`], the one place that builds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(BTreeMap<String, String>);

impl Selector {
    /// The labels to match, for a `LabelSelector`'s `matchLabels` or a
    /// Service's `selector`.
    pub fn into_labels(self) -> BTreeMap<String, String> {
        self.0
    }

    /// Whether an object with `labels` is selected (for watch caches,
    /// which are filtered in memory).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// `key=value,...` in key order: the form of `status.selector` (the scale
/// subresource) and of a list's or watch's label selector.
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// The selector of what the operator manages (`managed-by`), narrowed to
/// one Etcd's objects (`part-of`) and to one of its components
/// (`component`) when given. `selector(Some(etcd), None)` selects every pod
/// of the Etcd (its StatefulSet's and PodDisruptionBudget's selector,
/// `status.selector`); with [`component::STATEFULSET`] only its members'
/// pods (what the Services route to: compaction pods carry the component
/// label too, but not `part-of`).
pub fn selector(etcd: Option<&str>, component: Option<&str>) -> Selector {
    let mut labels = BTreeMap::from([(label::MANAGED_BY.to_string(), MANAGED_BY.to_string())]);
    if let Some(etcd) = etcd {
        labels.insert(label::PART_OF.into(), etcd.into());
    }
    if let Some(component) = component {
        labels.insert(label::COMPONENT.into(), component.into());
    }
    Selector(labels)
}

/// Values of [`label::COMPONENT`].
pub mod component {
    /// The ServiceAccount the member and compaction pods run under.
    pub const SERVICE_ACCOUNT: &str = "etcd-service-account";
    /// The Role that lets the sidecar renew its leases and read its pods.
    pub const ROLE: &str = "etcd-role";
    /// The RoleBinding of that Role to the ServiceAccount.
    pub const ROLE_BINDING: &str = "etcd-role-binding";
    /// The per-member leases (listed by this label to prune and delete
    /// them).
    pub const MEMBER_LEASE: &str = "etcd-member-lease";
    /// The full and delta snapshot leases (the compaction controller
    /// watches leases with this label).
    pub const SNAPSHOT_LEASE: &str = "etcd-snapshot-lease";
    /// The PodDisruptionBudget that keeps a quorum up.
    pub const PDB: &str = "etcd-pdb";
    /// The NetworkPolicy around the sidecar's API.
    pub const NETWORK_POLICY: &str = "etcd-network-policy";
    /// The client Service (etcd clients and the sidecar API).
    pub const CLIENT_SERVICE: &str = "etcd-client-service";
    /// The headless peer Service (the members' DNS names).
    pub const PEER_SERVICE: &str = "etcd-peer-service";
    /// The ConfigMap with etcd's configuration file.
    pub const CONFIG_MAP: &str = "etcd-configmap";
    /// StatefulSet (and its pods).
    pub const STATEFULSET: &str = "etcd-statefulset";
    /// The snapshot compaction Job (and its pod).
    pub const COMPACTION_JOB: &str = "compactor";
}

#[cfg(test)]
mod tests {
    use super::{component, default_labels, selector};

    #[test]
    fn selectors_render_in_key_order_and_match_their_labels() {
        // `status.selector` of the scale subresource, as before.
        assert_eq!(
            selector(Some("test"), None).to_string(),
            "app.kubernetes.io/managed-by=etcd-druid,app.kubernetes.io/part-of=test"
        );
        assert_eq!(
            selector(Some("test"), None).into_labels(),
            default_labels("test")
        );
        assert_eq!(
            selector(None, None).to_string(),
            "app.kubernetes.io/managed-by=etcd-druid"
        );
        let members = selector(Some("test"), Some(component::STATEFULSET));
        let mut labels = default_labels("test");
        assert!(!members.matches(&labels));
        labels.insert(
            "app.kubernetes.io/component".into(),
            "etcd-statefulset".into(),
        );
        assert!(members.matches(&labels));
        assert!(!selector(Some("other"), None).matches(&labels));
    }
}
