//! The cut-over after an Etcd joined an existing cluster: once every member
//! joined (`status.bootstrapWithExistingCluster` is written) and the user
//! removed `spec.etcd.bootstrapWithExistingCluster`, the operator asks a
//! sidecar of the Etcd (`POST /members/cut-over`) to move leadership to a
//! member of the Etcd and remove the source members one at a time. The
//! sidecar refuses while any remaining member is not a healthy voting
//! member, so the request is repeated at each reconcile until it is done;
//! the `BootstrappedWithExistingCluster` condition then says
//! `SourceMembersRemoved`, and no request is sent again.

use std::time::Duration;

use druid_api::{Etcd, EtcdModel};
use kube::ResourceExt as _;
use kube::runtime::events::EventType;

use super::Context;
use super::conditions::bootstrapped_with_existing_cluster::CUT_OVER;
pub use super::conditions::bootstrapped_with_existing_cluster::CutOver;
use super::conditions::types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER;
use super::sidecar::{base_url, request};

/// How long a cut-over request may take (a leadership move and a removal
/// per source member, each waiting for the cluster to settle).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The event action.
const EVENT_ACTION: &str = "CutOver";

/// The source members to remove, when a cut-over is due: the join is
/// recorded, the spec no longer names a source cluster, and no cut-over
/// finished yet.
pub fn due(etcd: &Etcd, model: &EtcdModel) -> Option<Vec<String>> {
    if model.etcd.existing_cluster.is_some() {
        return None;
    }
    let status = etcd.status.as_ref()?;
    let record = status.bootstrap_with_existing_cluster.as_ref()?;
    let finished = status
        .conditions
        .iter()
        .any(|c| c.type_ == BOOTSTRAPPED_WITH_EXISTING_CLUSTER && c.reason == CUT_OVER);
    (!finished && model.replicas > 0)
        .then(|| record.members.iter().map(|m| m.name.clone()).collect())
}

/// Asks for the cut-over if one is due.
pub async fn sync(ctx: &Context, etcd: &Etcd, model: &EtcdModel) -> Option<CutOver> {
    let remove = due(etcd, model)?;
    let (ns, name) = (&model.namespace, &model.name);
    let url = format!(
        "{}/members/cut-over?remove={}",
        base_url(ctx, model),
        remove.join(",")
    );
    tracing::debug!(etcd = %name, namespace = %ns, members = ?remove, "cut-over due: asking a sidecar to remove the source members");
    let uid = etcd.uid().unwrap_or_default();
    let Some(answer) = request(ctx, model, (&uid, "cut-over"), true, url, REQUEST_TIMEOUT).await
    else {
        // The sidecar works on it; the next reconcile picks its answer up.
        return Some(CutOver::Waiting(format!(
            "a sidecar is moving leadership to a member of this Etcd and removing the source members {}",
            remove.join(", ")
        )));
    };
    let result = match answer {
        Ok((200, body)) => {
            let report: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let list = |key: &str| {
                report[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let message = format!(
                "cut over: the source members left the cluster (removed now: [{}], gone before: [{}]); {} leads",
                list("removed"),
                list("absent"),
                report["leader"].as_str().unwrap_or("a member of this Etcd")
            );
            super::publish(
                ctx,
                etcd,
                EventType::Normal,
                EVENT_ACTION,
                "CutOverSucceeded",
                &message,
            )
            .await;
            tracing::info!(etcd = %name, namespace = %ns, %message, "cut-over done");
            CutOver::Done(message)
        }
        Ok((code, body)) => {
            let why = format!("the sidecar answered {code}: {}", body.trim());
            tracing::info!(etcd = %name, namespace = %ns, %why, "cut-over not done yet; asked again at the next reconcile");
            CutOver::Waiting(why)
        }
        Err(e) => {
            tracing::info!(etcd = %name, namespace = %ns, error = %e, "cut-over not done yet; asked again at the next reconcile");
            CutOver::Waiting(e)
        }
    };
    Some(result)
}
