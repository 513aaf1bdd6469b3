//! The sidecar's view of Kubernetes beyond the leases: its Etcd (found
//! through the owner of its member lease), the on-demand defragmentation
//! annotation on it, and publishing defragmentation results as events on
//! the Etcd and annotations on the member leases (which the operator shows
//! in `status.members`).

pub mod leases;

use druid_api::etcd::DefragmentationResult;
use druid_api::{DEFRAGMENT_ANNOTATION, LAST_DEFRAGMENTATION_ANNOTATION};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};

use crate::defrag::Report;

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

    /// Publishes a run's results: an event on the Etcd, and each member's
    /// result on its lease.
    pub async fn publish(&self, report: &Report) {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "etcdbr".into(),
                instance: Some(self.pod.clone()),
            },
        );
        let (type_, reason) = match report.outcome.as_str() {
            "Succeeded" => (EventType::Normal, "DefragmentationSucceeded"),
            "Refused" => (EventType::Warning, "DefragmentationRefused"),
            "TimedOut" => (EventType::Warning, "DefragmentationTimedOut"),
            _ => (EventType::Warning, "DefragmentationFailed"),
        };
        let mut note = report
            .members
            .iter()
            .map(|m| match m.outcome.as_str() {
                "Defragmented" => format!(
                    "{}: reclaimed {} bytes in {:.1}s",
                    m.name, m.reclaimed_bytes, m.duration_seconds
                ),
                _ => format!("{}: {} ({})", m.name, m.outcome, m.reason),
            })
            .collect::<Vec<_>>()
            .join("; ");
        if !report.reason.is_empty() {
            note = if note.is_empty() {
                report.reason.clone()
            } else {
                format!("{}; {note}", report.reason)
            };
        }
        if report.nospace_disarmed {
            note.push_str("; NOSPACE alarm disarmed");
        }
        note.truncate(1000);
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Defragment".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &self.reference).await {
            tracing::warn!(error = %e, "cannot publish the defragmentation event");
        }
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for m in &report.members {
            let result = DefragmentationResult {
                time: time.clone(),
                outcome: m.outcome.clone(),
                reason: m.reason.clone(),
                reclaimed_bytes: m.reclaimed_bytes,
                db_size_before: m.db_size_before,
                db_size_after: m.db_size_after,
                duration_seconds: m.duration_seconds,
            };
            let Ok(value) = serde_json::to_string(&result) else {
                continue;
            };
            let patch = serde_json::json!({"metadata": {"annotations": {LAST_DEFRAGMENTATION_ANNOTATION: value}}});
            if let Err(e) = leases
                .patch(&m.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(member = %m.name, error = %e, "cannot record the defragmentation result on the member lease");
            }
        }
    }
}
