//! `AllMembersUpdated`: whether every member runs the StatefulSet's
//! current pod template (no rollout in progress).

use k8s_openapi::api::apps::v1::StatefulSet;

use super::Check;

/// The condition from the StatefulSet `name` (`None`: not there yet).
pub fn check(name: &str, statefulset: Option<&StatefulSet>) -> Check {
    match statefulset {
        None => Check::new(
            "Unknown",
            "StatefulSetNotFound",
            format!("StatefulSet {name} does not exist yet"),
        ),
        Some(sts) if statefulset_updated(sts) => Check::new(
            "True",
            "AllMembersUpdated",
            "every member runs the current pod template",
        ),
        Some(_) => Check::new(
            "False",
            "NotAllMembersUpdated",
            "the StatefulSet is rolling out a new pod template",
        ),
    }
}

fn statefulset_updated(sts: &StatefulSet) -> bool {
    let Some(status) = &sts.status else {
        return false;
    };
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    status.observed_generation == sts.metadata.generation
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.update_revision == status.current_revision
}
