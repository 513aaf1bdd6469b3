//! The final full snapshot before an Etcd's data volumes are deleted
//! (`pvcRetentionPolicy: DeleteAll`): taken by the backup leader's sidecar
//! (`GET /snapshot/full?final=true`, upstream's `.final` marker) while the
//! pods still run, before anything is deleted. The sidecar answers once the
//! snapshot is uploaded, so a 2xx answer means it is in the store; the Etcd
//! is then annotated [`names::FINAL_SNAPSHOT_ANNOTATION`] so that a later
//! reconcile of the deletion does not ask again.
//!
//! While it fails nothing is deleted: the deletion waits, with a warning
//! event that says why and how to go on without it (the annotation
//! [`names::SKIP_FINAL_SNAPSHOT_ANNOTATION`]). Not needed, and skipped: an
//! Etcd without a store, or whose claims were never created (no data).

use druid_api::etcd::PvcRetentionPolicy;
use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt as _};

use super::Context;
use super::sidecar::{base_url, request};
use crate::names;

/// The event action.
const EVENT_ACTION: &str = "FinalSnapshot";

/// Whether the deletion may delete the claims now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Taken now or before, skipped on request, or not needed.
    Open,
    /// Not taken: why, for the deletion's error (retried with backoff).
    Closed(String),
    /// The backup leader's sidecar is taking it (looked at again soon).
    Pending,
}

/// Takes the final full snapshot if the deletion needs one and none was
/// taken yet.
pub async fn before_claims_go(
    ctx: &Context,
    etcd: &Etcd,
    model: Option<&EtcdModel>,
) -> Result<Gate, kube::Error> {
    let Some(model) = model else {
        // An invalid spec: its claims are not deleted either (cleanup).
        return Ok(Gate::Open);
    };
    if model.pvc_retention != PvcRetentionPolicy::DeleteAll || model.store.is_none() {
        return Ok(Gate::Open);
    }
    let annotations = etcd.annotations();
    if annotations.contains_key(names::FINAL_SNAPSHOT_ANNOTATION) {
        return Ok(Gate::Open);
    }
    if skipped(etcd) {
        tracing::warn!(etcd = %model.name, namespace = %model.namespace, "deleting the data volumes without a final snapshot, as the annotation asks");
        return Ok(Gate::Open);
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let selector = names::selector(Some(&model.name), None).to_string();
    if claims
        .list_metadata(&ListParams::default().labels(&selector).limit(1))
        .await?
        .items
        .is_empty()
    {
        return Ok(Gate::Open);
    }

    let uid = etcd.uid().unwrap_or_default();
    let Some(taken) = take(ctx, &uid, model).await else {
        return Ok(Gate::Pending);
    };
    match taken {
        Ok(snapshot) => {
            let taken = Timestamp::now().to_string();
            Api::<Etcd>::namespaced(ctx.client.clone(), &model.namespace)
                .patch(
                    &model.name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({
                        "metadata": { "annotations": { names::FINAL_SNAPSHOT_ANNOTATION: taken } }
                    })),
                )
                .await?;
            let message = format!(
                "the final full snapshot is in the store ({snapshot}); the data volumes go next (pvcRetentionPolicy: DeleteAll)"
            );
            super::publish(
                ctx,
                etcd,
                EventType::Normal,
                EVENT_ACTION,
                "FinalSnapshotTaken",
                &message,
            )
            .await;
            Ok(Gate::Open)
        }
        Err(why) => {
            let message = format!(
                "the final full snapshot before the data volumes are deleted failed: {why}; nothing is deleted \
                 until it succeeds (retried). To delete the volumes without it, knowing that writes since the \
                 last snapshot are lost, annotate the Etcd {}=true",
                names::SKIP_FINAL_SNAPSHOT_ANNOTATION
            );
            super::publish(
                ctx,
                etcd,
                EventType::Warning,
                EVENT_ACTION,
                "FinalSnapshotFailed",
                &message,
            )
            .await;
            Ok(Gate::Closed(message))
        }
    }
}

/// Asks the backup leader's sidecar for a final full snapshot
/// (`GET /snapshot/full?final=true`) for the Etcd of UID `uid`: the
/// snapshot's name once it is in the store, or why not; `None` while the
/// sidecar takes it (a later call picks the answer up, see
/// [`super::sidecar::request`]).
pub async fn take(ctx: &Context, uid: &str, model: &EtcdModel) -> Option<Result<String, String>> {
    let url = format!("{}/snapshot/full?final=true", base_url(ctx, model));
    tracing::debug!(etcd = %model.name, namespace = %model.namespace, "asking for the final full snapshot");
    let timeout = model.backup.snapshot_timeout + super::compaction::FULL_SNAPSHOT_GRACE;
    let answer = request(ctx, model, (uid, "final snapshot"), false, url, timeout).await?;
    Some(match answer {
        Ok((status, body)) if (200..300).contains(&status) => {
            let name = snapshot_name(&body).unwrap_or_else(|| "taken".into());
            tracing::info!(etcd = %model.name, namespace = %model.namespace, snapshot = %name, "the final full snapshot is in the store");
            Ok(name)
        }
        Ok((status, body)) => Err(format!(
            "the sidecar answered {status}: {}",
            body.trim().chars().take(300).collect::<String>()
        )),
        Err(e) => Err(e),
    })
}

/// Whether the Etcd carries [`names::SKIP_FINAL_SNAPSHOT_ANNOTATION`]`=true`.
pub fn skipped(etcd: &Etcd) -> bool {
    etcd.annotations()
        .get(names::SKIP_FINAL_SNAPSHOT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// The snapshot's object name from the sidecar's JSON answer (upstream's
/// `snapName`), if it is made of plain characters only.
fn snapshot_name(body: &str) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_str(body).ok()?;
    let name = answer["snapName"].as_str()?;
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b)))
    .then(|| name.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::snapshot_name;

    #[test]
    fn the_snapshot_name_is_read_from_the_answer_and_only_if_plain() {
        assert_eq!(
            snapshot_name(
                r#"{"kind":"Full","snapName":"Full-00000000-00000012-1733400000.gz.final"}"#
            ),
            Some("Full-00000000-00000012-1733400000.gz.final".into())
        );
        assert_eq!(
            snapshot_name(r#"{"snapName": "v2/Full-1"}"#),
            Some("v2/Full-1".into())
        );
        assert_eq!(snapshot_name(r#"{"snapName":"<script>"}"#), None);
        assert_eq!(snapshot_name("not json"), None);
    }
}
