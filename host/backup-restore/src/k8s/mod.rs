//! The sidecar's view of Kubernetes: annotations on its Etcd's member
//! leases (defragmentation results), and ([`leases`]) the snapshot and
//! member lease heartbeats. As upstream's, the sidecar's Role grants
//! leases, its StatefulSet and its pods only: it never reads or writes its
//! Etcd and publishes no events (the operator turns the lease annotations
//! into events).

pub mod leases;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// The member leases of this sidecar's Etcd and a client to reach them.
#[derive(Clone)]
pub struct EtcdHandle {
    client: Client,
    namespace: String,
    /// This member's lease.
    own_lease: String,
}

impl std::fmt::Debug for EtcdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHandle")
            .field("namespace", &self.namespace)
            .field("lease", &self.own_lease)
            .finish()
    }
}

impl EtcdHandle {
    /// The handle for this member (`$POD_NAMESPACE`), once its lease
    /// `member_lease` exists (the operator creates it); `None` outside a
    /// pod or without a Kubernetes client.
    pub async fn discover(member_lease: &str) -> Option<Self> {
        let namespace = std::env::var("POD_NAMESPACE").ok()?;
        let client = Client::try_default().await.ok()?;
        let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
        match leases.get_opt(member_lease).await {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(lease = member_lease, error = %e, "cannot read the member lease");
                return None;
            }
        }
        Some(EtcdHandle {
            client,
            namespace,
            own_lease: member_lease.to_string(),
        })
    }

    /// This member's lease name.
    pub fn own_lease(&self) -> &str {
        &self.own_lease
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
