//! `MembersScaledIn`: how the last scale-in (`spec.replicas` lowered)
//! went. Absent until the first one; False while members are leaving or a
//! step waits (the message says why: a member that is not healthy would
//! put the quorum at risk); True once the membership matches the spec.
//! Between scale-ins the last word stays.

use druid_api::etcd::Condition;

use super::Check;

/// Where a scale-in stands after this reconcile's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleIn {
    /// A step was taken (or is under way): what, for the condition.
    InProgress(String),
    /// A step cannot be taken yet, and why (asked again shortly).
    Waiting(String),
    /// The membership matches `spec.replicas` again: what happened.
    Done(String),
}

impl ScaleIn {
    /// Whether a step is still to come (in progress or waiting).
    pub fn is_under_way(&self) -> bool {
        !matches!(self, ScaleIn::Done(_))
    }
}

/// Reason while members are leaving.
pub const IN_PROGRESS: &str = "ScaleInInProgress";
/// Reason while a step cannot be taken (it is retried).
pub const WAITING: &str = "ScaleInWaiting";
/// Reason once the members left.
pub const SUCCEEDED: &str = "ScaleInSucceeded";

/// The condition from this reconcile's scale-in step, else the previous
/// one as it was.
pub fn check(scale_in: Option<&ScaleIn>, previous: Option<&Condition>) -> Option<Check> {
    match scale_in {
        Some(ScaleIn::InProgress(m)) => Some(Check::new("False", IN_PROGRESS, m.clone())),
        Some(ScaleIn::Waiting(m)) => Some(Check::new("False", WAITING, m.clone())),
        Some(ScaleIn::Done(m)) => Some(Check::new("True", SUCCEEDED, m.clone())),
        None => previous.map(|p| Check::new(&p.status, &p.reason, p.message.clone())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn each_state_has_its_status_and_reason_and_the_last_word_stays() {
        let waiting = check(Some(&ScaleIn::Waiting("test-1 is a learner".into())), None).unwrap();
        assert_eq!(
            (waiting.status.as_str(), waiting.reason.as_str()),
            ("False", WAITING)
        );
        assert!(waiting.message.contains("test-1 is a learner"));
        let going = check(Some(&ScaleIn::InProgress("test-2 is leaving".into())), None).unwrap();
        assert_eq!(
            (going.status.as_str(), going.reason.as_str()),
            ("False", IN_PROGRESS)
        );
        let done = check(Some(&ScaleIn::Done("test-2 left".into())), None).unwrap();
        assert_eq!(
            (done.status.as_str(), done.reason.as_str()),
            ("True", SUCCEEDED)
        );
        assert!(check(None, None).is_none(), "no scale-in, no condition");
        let previous = Condition {
            type_: super::super::types::MEMBERS_SCALED_IN.into(),
            status: "True".into(),
            reason: SUCCEEDED.into(),
            message: "test-2 left".into(),
            ..Condition::default()
        };
        let kept = check(None, Some(&previous)).unwrap();
        assert_eq!(
            (
                kept.status.as_str(),
                kept.reason.as_str(),
                kept.message.as_str()
            ),
            ("True", SUCCEEDED, "test-2 left")
        );
    }
}
