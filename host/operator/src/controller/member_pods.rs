//! The pods of an Etcd's StatefulSet as the roll and the quorum-loss
//! recovery read them: listed by the Etcd's labels and owned by the
//! StatefulSet, with their ordinal and readiness.

use druid_api::EtcdModel;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

use super::Context;
use crate::names;

/// The StatefulSet's replicas (0 when unset).
pub fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// The pods the StatefulSet owns (from the API: the callers act on them).
pub async fn list(
    ctx: &Context,
    model: &EtcdModel,
    sts: &StatefulSet,
) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let selector = names::selector(Some(&model.name), None).to_string();
    let owner = sts.name_any();
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.kind == "StatefulSet" && o.name == owner)
        })
        .collect())
}

/// A StatefulSet pod's ordinal (the number after its name's last `-`).
pub fn ordinal(pod: &Pod) -> Option<i32> {
    pod.name_any().rsplit_once('-')?.1.parse().ok()
}

/// The status of the pod's `Ready` condition (`True`, `False`,
/// `Unknown`), if it has one.
pub fn ready_status(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn the_ordinal_and_readiness_come_from_the_name_and_the_ready_condition() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "etcd-main-12"},
            "status": {"conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "Unknown"},
            ]},
        }))
        .unwrap();
        assert_eq!(ordinal(&pod), Some(12));
        assert_eq!(ready_status(&pod), Some("Unknown"));
        let bare: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "standalone"}}))
                .unwrap();
        assert_eq!(ordinal(&bare), None);
        assert_eq!(ready_status(&bare), None);
    }
}
