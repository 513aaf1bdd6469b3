//! The sidecar's view of Kubernetes: its Etcd (found through the owner of
//! its member lease), the on-demand defragmentation annotation on it,
//! events on the Etcd and annotations on the member leases; and
//! ([`leases`]) the snapshot and member lease heartbeats.

pub mod leases;

use druid_api::DEFRAGMENT_ANNOTATION;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::{Api, Client};

/// This sidecar's Etcd and a client to reach it.
#[derive(Clone)]
pub struct EtcdHandle {
    client: Client,
    namespace: String,
    reference: ObjectReference,
    pod: String,
}

impl std::fmt::Debug for EtcdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHandle")
            .field("namespace", &self.namespace)
            .field("etcd", &self.reference.name)
            .finish()
    }
}

fn etcd_resource() -> ApiResource {
    ApiResource {
        group: druid_api::GROUP.into(),
        version: druid_api::VERSION.into(),
        api_version: druid_api::api_version(),
        kind: "Etcd".into(),
        plural: "etcds".into(),
    }
}

impl EtcdHandle {
    /// Finds the Etcd owning this member's lease (`$POD_NAME` in
    /// `$POD_NAMESPACE`); `None` outside a pod or without a Kubernetes
    /// client.
    pub async fn discover(member_lease: &str) -> Option<Self> {
        let namespace = std::env::var("POD_NAMESPACE").ok()?;
        let pod = std::env::var("POD_NAME").ok()?;
        let client = Client::try_default().await.ok()?;
        let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
        let lease = match leases.get_opt(member_lease).await {
            Ok(l) => l?,
            Err(e) => {
                tracing::warn!(lease = member_lease, error = %e, "cannot read the member lease to find the Etcd");
                return None;
            }
        };
        let owner = lease
            .metadata
            .owner_references?
            .into_iter()
            .find(|o| o.kind == "Etcd")?;
        Some(EtcdHandle {
            client,
            reference: ObjectReference {
                api_version: Some(owner.api_version),
                kind: Some(owner.kind),
                name: Some(owner.name),
                namespace: Some(namespace.clone()),
                uid: Some(owner.uid),
                ..ObjectReference::default()
            },
            namespace,
            pod,
        })
    }

    fn name(&self) -> &str {
        self.reference.name.as_deref().unwrap_or_default()
    }

    fn etcds(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &etcd_resource())
    }

    /// Whether the Etcd carries the on-demand defragmentation annotation.
    pub async fn defragment_requested(&self) -> bool {
        match self.etcds().get_opt(self.name()).await {
            Ok(Some(e)) => e
                .metadata
                .annotations
                .is_some_and(|a| a.contains_key(DEFRAGMENT_ANNOTATION)),
            Ok(None) => false,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the Etcd");
                false
            }
        }
    }

    /// Removes the on-demand annotation (the request was handled).
    pub async fn clear_defragment_request(&self) {
        let patch = serde_json::json!({"metadata": {"annotations": {DEFRAGMENT_ANNOTATION: null}}});
        if let Err(e) = self
            .etcds()
            .patch(self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(error = %e, "cannot remove the defragmentation request from the Etcd");
        }
    }

    /// Publishes an event about a maintenance operation on the Etcd, as
    /// `etcdbr` from this pod; a failure is logged, never fatal.
    pub async fn publish_event(&self, event: &Event) {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "etcdbr".into(),
                instance: Some(self.pod.clone()),
            },
        );
        if let Err(e) = recorder.publish(event, &self.reference).await {
            tracing::warn!(reason = %event.reason, error = %e, "cannot publish an event on the Etcd");
        }
    }

    /// Sets the annotation `key` to `value` on the member lease `member`
    /// (the operator shows some of them in `status.members`); a failure is
    /// logged, never fatal.
    pub async fn annotate_member_lease(&self, member: &str, key: &str, value: &str) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        if let Err(e) = leases
            .patch(member, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(member, annotation = key, error = %e, "cannot annotate the member lease");
        }
    }
}
