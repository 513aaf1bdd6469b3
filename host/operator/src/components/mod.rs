//! What the operator creates for an Etcd, one module per component.
//!
//! Each module has a **pure builder**, `build(etcd, model, ctx)`, that turns
//! the Etcd (for its name, namespace and UID) and its normalized model into
//! the Kubernetes object(s), with the default labels and a controller owner
//! reference; builders never talk to the API server and are unit-tested with
//! snapshot files. [`apply`] is the one thin step that writes an object:
//! server-side apply with the field manager `druid`.
//!
//! [`table`] lists the components the etcd controller applies and deletes
//! (builder, order, error name, names to delete); [`pod`] and `store` hold
//! what the StatefulSet's pods and the compaction Job's pod share.

pub mod client_service;
pub mod compaction_job;
pub mod configmap;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod member_leases;
pub mod network_policy;
pub(crate) mod object;
pub mod pdb;
pub mod peer_service;
pub mod pod;
pub mod role;
pub mod role_binding;
pub mod service_account;
pub mod snapshot_leases;
pub mod statefulset;
mod store;
pub(crate) mod table;

use std::fmt::Debug;

use druid_api::Etcd;
use druid_plugin_host::CheckedWiring;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::names;

/// What the builders need besides the Etcd: the operator's defaults and the
/// provider wiring the plugin host computed for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// The etcd (wrapper) image when the spec names none.
    pub etcd_image: String,
    /// The backup-restore sidecar image when the spec names none.
    pub backup_image: String,
    /// The env vars and volumes the store's provider needs in the sidecar
    /// (the provider plugin's `pod-config`, as the host's wiring policy
    /// accepted it); `None` without a store.
    pub store_wiring: Option<CheckedWiring>,
    /// Where the operator runs, for the NetworkPolicy around the sidecar's
    /// API; `None` builds no policy.
    pub operator_pods: Option<network_policy::OperatorPods>,
    /// The plugins image (`--plugins-image`): its init container copies
    /// provider plugins into every pod that talks to the store; `None`
    /// for the built-in plugins alone.
    pub plugins_image: Option<String>,
}

/// Why a builder could not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Etcd has no UID yet (it was never stored by the API server).
    #[error("Etcd {0} has no metadata.uid: it must come from the API server")]
    NoUid(String),
    /// The configuration could not be serialized.
    #[error("cannot render {what}: {reason}")]
    Render {
        /// The part that could not be rendered (`etcd.conf.yaml`, the
        /// store's secret volume, ...), named in the message.
        what: &'static str,
        /// The cause: the serializer's error or the missing input.
        reason: String,
    },
    /// The components would be more objects than one reconcile applies
    /// (a bound on the work one Etcd can cause, whatever its spec).
    #[error(
        "the spec would need {count} objects, more than the {max} one reconcile applies (a bug in druid: please report it with the spec)"
    )]
    TooManyObjects {
        /// Objects built.
        count: usize,
        /// [`table::MAX_OBJECTS`].
        max: usize,
    },
}

/// The controller owner reference to the Etcd.
pub fn owner_reference(etcd: &Etcd) -> Result<OwnerReference, BuildError> {
    let mut owner = etcd
        .controller_owner_ref(&())
        .ok_or_else(|| BuildError::NoUid(etcd.name_any()))?;
    // As upstream: the Etcd is not gone before its dependents are.
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

/// Metadata of a component object: name, the Etcd's namespace, the
/// component's labels and the owner reference. The `app.kubernetes.io/name`
/// label is the object's name with `:` (which label values cannot hold, as
/// in the Role's name) replaced by `-`.
pub fn metadata(etcd: &Etcd, name: String, component: &str) -> Result<ObjectMeta, BuildError> {
    let etcd_name = etcd.name_any();
    let name_label = name.replace(':', "-");
    Ok(ObjectMeta {
        name: Some(name),
        namespace: etcd.namespace(),
        labels: Some(names::component_labels(&etcd_name, component, &name_label)),
        owner_references: Some(vec![owner_reference(etcd)?]),
        ..ObjectMeta::default()
    })
}

/// Writes `obj` with server-side apply (field manager `druid`, forcing
/// conflicts: the operator owns these objects).
pub async fn apply<K>(client: &kube::Client, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

/// Deletes an object if it exists; `Ok(true)` if it is gone (or was never
/// there).
pub async fn delete_if_exists<K>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}
