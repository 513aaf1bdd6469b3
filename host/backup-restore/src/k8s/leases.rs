//! Lease heartbeats: the full and delta snapshot leases (holderIdentity =
//! the last snapshotted revision) and this member's lease
//! (`<memberID>:<clusterID>:Leader|Member`). The operator creates the
//! leases; the sidecar only patches them, so its status and compaction
//! trigger see what the sidecar did.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::config::HealthArgs;

/// Annotation telling whether the member's peer URLs use TLS.
pub const TLS_ENABLED_ANNOTATION: &str = druid_api::MEMBER_TLS_ENABLED_ANNOTATION;

/// A `MicroTime` as the API server takes it.
fn micro_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Why a lease update failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// No Kubernetes client could be built.
    #[error("no Kubernetes client (in-cluster config or $KUBECONFIG): {0}")]
    Client(String),
    /// $POD_NAMESPACE is not set.
    #[error("$POD_NAMESPACE is not set: the sidecar needs it to find its leases")]
    Namespace,
    /// The API server refused.
    #[error("cannot update lease {name}: {source}")]
    Api {
        /// The lease.
        name: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// A lease could not be read.
    #[error("cannot read lease {name}: {source}")]
    Read {
        /// The lease.
        name: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

/// The delta lease's annotation with the stored bytes of the deltas since
/// the newest full snapshot.
pub const DELTA_BYTES_ANNOTATION: &str = druid_api::DELTA_BYTES_SINCE_FULL_ANNOTATION;

/// Patches the leases of one Etcd.
#[derive(Clone)]
pub struct Leases {
    api: Api<Lease>,
    full_name: String,
    delta_name: String,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("full", &self.full_name)
            .field("delta", &self.delta_name)
            .finish()
    }
}

impl Leases {
    /// A client for the leases in `$POD_NAMESPACE`.
    pub async fn from_env(args: &HealthArgs) -> Result<Self, LeaseError> {
        let namespace = std::env::var("POD_NAMESPACE").map_err(|_| LeaseError::Namespace)?;
        let client = kube::Client::try_default()
            .await
            .map_err(|e| LeaseError::Client(e.to_string()))?;
        Ok(Leases {
            api: Api::namespaced(client, &namespace),
            full_name: args.full_snapshot_lease_name.clone(),
            delta_name: args.delta_snapshot_lease_name.clone(),
        })
    }

    async fn patch(&self, name: &str, patch: serde_json::Value) -> Result<(), LeaseError> {
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| LeaseError::Api {
                name: name.to_string(),
                source,
            })
    }

    /// Raises a snapshot lease's holderIdentity to `revision` (never
    /// lowers it) and sets its renewTime, and the given annotations.
    async fn raise(
        &self,
        name: &str,
        revision: i64,
        at: DateTime<Utc>,
        annotations: Option<serde_json::Value>,
    ) -> Result<(), LeaseError> {
        let current = self
            .api
            .get_opt(name)
            .await
            .map_err(|source| LeaseError::Api {
                name: name.to_string(),
                source,
            })?;
        let held = current
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.as_deref())
            .and_then(|h| h.parse::<i64>().ok())
            .unwrap_or(0);
        let resource_version = current.and_then(|l| l.metadata.resource_version);
        let holder = revision.max(held);
        let mut patch = serde_json::json!({
            "spec": {
                "holderIdentity": holder.to_string(),
                "renewTime": micro_time(at),
            }
        });
        // Optimistic lock: a concurrent writer makes this attempt fail and
        // the caller retries with fresh data.
        let mut metadata = serde_json::Map::new();
        if let Some(rv) = resource_version {
            metadata.insert("resourceVersion".into(), rv.into());
        }
        if let Some(a) = annotations {
            metadata.insert("annotations".into(), a);
        }
        if !metadata.is_empty() {
            patch["metadata"] = metadata.into();
        }
        self.patch(name, patch).await
    }

    /// Records a full snapshot: its revision, renewTime = its creation.
    pub async fn full_snapshot(
        &self,
        revision: i64,
        created: DateTime<Utc>,
    ) -> Result<(), LeaseError> {
        self.raise(&self.full_name, revision, created, None).await
    }

    /// Records the newest delta revision (or a period without events) and
    /// the stored bytes of the deltas since the newest full snapshot
    /// (annotation [`DELTA_BYTES_ANNOTATION`], read by the operator's
    /// compaction trigger).
    pub async fn delta_snapshot(
        &self,
        revision: i64,
        bytes_since_full: u64,
    ) -> Result<(), LeaseError> {
        // A success clears the failure a previous run recorded.
        let annotations = serde_json::json!({
            DELTA_BYTES_ANNOTATION: bytes_since_full.to_string(),
            druid_api::SNAPSHOT_FAILURE_ANNOTATION: null,
            druid_api::SNAPSHOT_FAILED_AT_ANNOTATION: null,
        });
        self.raise(&self.delta_name, revision, Utc::now(), Some(annotations))
            .await
    }

    /// Records on the delta lease that the snapshotter failed and why
    /// (annotations [`druid_api::SNAPSHOT_FAILURE_ANNOTATION`] and
    /// [`druid_api::SNAPSHOT_FAILED_AT_ANNOTATION`]); the lease's holder
    /// and renewTime stay as they are, so they keep saying what the store
    /// holds. The message is cut to [`MAX_FAILURE_MESSAGE`] bytes.
    pub async fn snapshot_failed(&self, message: &str) -> Result<(), LeaseError> {
        let patch = serde_json::json!({
            "metadata": { "annotations": {
                druid_api::SNAPSHOT_FAILURE_ANNOTATION: bounded(message),
                druid_api::SNAPSHOT_FAILED_AT_ANNOTATION:
                    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }}
        });
        self.patch(&self.delta_name, patch).await
    }
}

/// The longest failure message written to the delta lease.
pub const MAX_FAILURE_MESSAGE: usize = 1024;

/// `message` cut to at most [`MAX_FAILURE_MESSAGE`] bytes at a character
/// boundary.
fn bounded(message: &str) -> String {
    if message.len() <= MAX_FAILURE_MESSAGE {
        return message.to_string();
    }
    format!(
        "{}...",
        druid_plugin_host::truncate(message, MAX_FAILURE_MESSAGE - 3)
    )
}

/// Renews this member's lease.
#[derive(Clone)]
pub struct MemberLease {
    api: Api<Lease>,
    name: String,
}

impl std::fmt::Debug for MemberLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberLease")
            .field("name", &self.name)
            .finish()
    }
}

impl MemberLease {
    /// The lease named `$POD_NAME` (with an optional prefix) in
    /// `$POD_NAMESPACE`.
    pub async fn from_env(prefix: &str) -> Result<Self, LeaseError> {
        let namespace = std::env::var("POD_NAMESPACE").map_err(|_| LeaseError::Namespace)?;
        let pod = std::env::var("POD_NAME")
            .map_err(|_| LeaseError::Client("$POD_NAME is not set".into()))?;
        let client = kube::Client::try_default()
            .await
            .map_err(|e| LeaseError::Client(e.to_string()))?;
        let name = if prefix.is_empty() {
            pod
        } else {
            format!("{prefix}-{pod}")
        };
        Ok(MemberLease {
            api: Api::namespaced(client, &namespace),
            name,
        })
    }

    /// Writes `<memberID hex>:<clusterID hex>:<role>` and renewTime = now,
    /// with the member's TLS flag and its etcd `revision` as annotations.
    pub async fn renew(
        &self,
        member_id: u64,
        cluster_id: u64,
        leader: bool,
        tls: bool,
        revision: i64,
    ) -> Result<(), LeaseError> {
        let role = if leader { "Leader" } else { "Member" };
        let patch = serde_json::json!({
            "metadata": { "annotations": {
                TLS_ENABLED_ANNOTATION: tls.to_string(),
                druid_api::MEMBER_REVISION_ANNOTATION: revision.to_string(),
            } },
            "spec": {
                "holderIdentity": format!("{member_id:x}:{cluster_id:x}:{role}"),
                "renewTime": micro_time(Utc::now()),
            }
        });
        self.api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| LeaseError::Api {
                name: self.name.clone(),
                source,
            })
    }
}

/// The etcd revisions the members' sidecars last wrote on their member
/// leases (`druid.gardener.cloud/revision`), by lease name, for the members
/// named (as in `--initial-cluster`: the operator names each member's lease
/// after the member, `memberNamePrefix` included). A lease that does not
/// exist or carries no revision is left out: it is a member that never
/// ran.
pub async fn member_revisions(members: &[String]) -> Result<Vec<(String, i64)>, LeaseError> {
    let namespace = std::env::var("POD_NAMESPACE").map_err(|_| LeaseError::Namespace)?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| LeaseError::Client(e.to_string()))?;
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut found = Vec::new();
    for name in members {
        let lease = api.get_opt(name).await.map_err(|source| LeaseError::Read {
            name: name.clone(),
            source,
        })?;
        let revision = lease
            .and_then(|l| l.metadata.annotations)
            .and_then(|a| a.get(druid_api::MEMBER_REVISION_ANNOTATION).cloned())
            .and_then(|r| r.parse::<i64>().ok());
        if let Some(revision) = revision {
            found.push((name.clone(), revision));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn a_long_failure_message_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_FAILURE_MESSAGE);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_FAILURE_MESSAGE, "{}", cut.len());
        assert!(cut.ends_with("..."));
        assert!(cut.starts_with("éé"));
    }
}
