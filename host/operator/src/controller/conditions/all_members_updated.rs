//! `AllMembersUpdated`: whether every member runs the StatefulSet's
//! current pod template. The operator rolls the members itself (the
//! StatefulSet's `OnDelete` strategy, `controller/roll.rs`): False while
//! it does, with the progress, what it waits for, or why it stopped.

use druid_api::etcd::Condition;
use k8s_openapi::api::apps::v1::StatefulSet;

use super::Check;

/// Where the operator's roll of the members stands after this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roll {
    /// Every member runs the current pod template.
    Done,
    /// A member was replaced, or its replacement is starting: what, and
    /// how far the roll is.
    InProgress(String),
    /// The next member cannot be replaced yet without risking the quorum
    /// (another member is not healthy, or the sidecar refused): why.
    Waiting(String),
    /// A replaced member does not become healthy: the roll stops there
    /// (no other member is replaced) until it does or the spec changes.
    Stalled(String),
}

impl Roll {
    /// Whether members are still to be replaced or to come back.
    pub fn is_under_way(&self) -> bool {
        !matches!(self, Roll::Done)
    }
}

/// Reason while members are replaced.
pub const IN_PROGRESS: &str = "UpdateInProgress";
/// Reason while the next replacement waits for the cluster's health.
pub const WAITING: &str = "UpdateWaiting";
/// Reason once a replaced member did not become healthy.
pub const STALLED: &str = "UpdateStalled";
/// Reason once every member runs the current template.
pub const UPDATED: &str = "AllMembersUpdated";

/// Whether the condition says a roll is under way (so that its end is
/// noticed even when the last member is still starting).
pub fn rolling(previous: Option<&Condition>) -> bool {
    previous.is_some_and(|c| {
        c.status == "False" && [IN_PROGRESS, WAITING, STALLED].contains(&c.reason.as_str())
    })
}

/// The condition from this reconcile's roll, or (when there was none: the
/// spec was not applied, or a scale-in is under way) from the StatefulSet
/// `name` (`None`: not there yet).
pub fn check(name: &str, roll: Option<&Roll>, statefulset: Option<&StatefulSet>) -> Check {
    match (roll, statefulset) {
        (Some(Roll::Done), _) => updated(),
        (Some(Roll::InProgress(m)), _) => Check::new("False", IN_PROGRESS, m.clone()),
        (Some(Roll::Waiting(m)), _) => Check::new("False", WAITING, m.clone()),
        (Some(Roll::Stalled(m)), _) => Check::new("False", STALLED, m.clone()),
        (None, None) => Check::new(
            "Unknown",
            "StatefulSetNotFound",
            format!("StatefulSet {name} does not exist yet"),
        ),
        (None, Some(sts)) if statefulset_updated(sts) => updated(),
        (None, Some(_)) => Check::new(
            "False",
            "NotAllMembersUpdated",
            "not every member runs the current pod template yet",
        ),
    }
}

fn updated() -> Check {
    Check::new(
        "True",
        UPDATED,
        "every member runs the current pod template",
    )
}

/// Whether every replica runs the update revision. Not `currentRevision`:
/// the StatefulSet controller never moves it under `OnDelete` (before
/// Kubernetes 1.37).
pub fn statefulset_updated(sts: &StatefulSet) -> bool {
    let Some(status) = &sts.status else {
        return false;
    };
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    status.observed_generation == sts.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= replicas
        && status.replicas == replicas
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn sts(replicas: i32, updated: i32, current_revision: &str) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "test", "generation": 2},
            "spec": {"replicas": replicas, "selector": {}, "serviceName": "test-peer", "template": {}},
            "status": {"observedGeneration": 2, "replicas": replicas, "updatedReplicas": updated,
                       "currentRevision": current_revision, "updateRevision": "test-new"},
        }))
        .unwrap()
    }

    #[test]
    fn the_roll_decides_and_says_how_far_it_is() {
        let c = check(
            "test",
            Some(&Roll::InProgress("1 of 3 updated".into())),
            None,
        );
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", IN_PROGRESS)
        );
        assert!(c.message.contains("1 of 3"));
        let c = check(
            "test",
            Some(&Roll::Stalled("test-2: ImagePullBackOff".into())),
            None,
        );
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", STALLED));
        let c = check(
            "test",
            Some(&Roll::Waiting("test-1 not ready".into())),
            None,
        );
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", WAITING));
        let c = check("test", Some(&Roll::Done), Some(&sts(3, 1, "test-old")));
        assert_eq!(
            c.status, "True",
            "the roll's word wins over the StatefulSet's"
        );
    }

    #[test]
    fn without_a_roll_the_updated_replicas_decide_not_the_stale_current_revision() {
        // Under OnDelete the controller leaves currentRevision at the first
        // revision: every replica updated is what counts.
        assert_eq!(
            check("test", None, Some(&sts(3, 3, "test-old"))).status,
            "True"
        );
        let c = check("test", None, Some(&sts(3, 2, "test-old")));
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NotAllMembersUpdated")
        );
        assert_eq!(check("test", None, None).status, "Unknown");
    }

    #[test]
    fn a_roll_is_noticed_from_the_previous_condition() {
        let condition = |status: &str, reason: &str| Condition {
            type_: "AllMembersUpdated".into(),
            status: status.into(),
            reason: reason.into(),
            ..Condition::default()
        };
        assert!(rolling(Some(&condition("False", IN_PROGRESS))));
        assert!(rolling(Some(&condition("False", STALLED))));
        assert!(!rolling(Some(&condition("True", UPDATED))));
        assert!(!rolling(Some(&condition("False", "NotAllMembersUpdated"))));
        assert!(!rolling(None));
    }
}
