//! `QuorumLost`: whether a majority of the members is lost, and how the
//! automatic recovery (`controller::recovery`) stands. Absent until the
//! first loss; True while the quorum is lost (the reason says whether the
//! recovery waits, runs or is disabled); False once the quorum is back,
//! by a recovery or by itself. Between losses the last word stays.

use druid_api::etcd::Condition;

use super::Check;

/// Where a quorum loss stands after this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The quorum is lost; the recovery has not started (it waits for the
    /// loss to last, for a backup, or for a node; the message says).
    Lost(String),
    /// The quorum is lost and the Etcd's annotation (or the lack of a
    /// backup store) leaves the recovery to people: how to recover.
    Disabled(String),
    /// The recovery runs: which step.
    Recovering(String),
    /// The recovery restored the cluster: from which backup.
    Recovered(String),
    /// The quorum came back without a recovery.
    Restored(String),
    /// Not a loss: a hibernated cluster wakes up member 0 first (its claim
    /// is gone); the condition keeps its last word.
    Waking(String),
    /// ... and member 0 is back; the others wake up.
    Woken(String),
}

impl Recovery {
    /// Whether a step is still to come soon (the reconcile comes back
    /// quickly): the loss is being watched or the recovery runs.
    pub fn is_under_way(&self) -> bool {
        matches!(
            self,
            Recovery::Lost(_) | Recovery::Recovering(_) | Recovery::Waking(_)
        )
    }
}

/// Reason while the quorum is lost and the recovery waits.
pub const LOST: &str = "QuorumLost";
/// Reason while the quorum is lost and the recovery is left to people.
pub const DISABLED: &str = "AutoRecoveryDisabled";
/// Reason while the recovery runs.
pub const RECOVERING: &str = "RecoveryInProgress";
/// Reason once the recovery restored the cluster.
pub const RECOVERED: &str = "RecoverySucceeded";
/// Reason once the quorum came back by itself.
pub const RESTORED: &str = "QuorumRestored";

/// The condition from this reconcile's view of the loss, else the
/// previous one as it was.
pub fn check(recovery: Option<&Recovery>, previous: Option<&Condition>) -> Option<Check> {
    match recovery {
        Some(Recovery::Lost(m)) => Some(Check::new("True", LOST, m.clone())),
        Some(Recovery::Disabled(m)) => Some(Check::new("True", DISABLED, m.clone())),
        Some(Recovery::Recovering(m)) => Some(Check::new("True", RECOVERING, m.clone())),
        Some(Recovery::Recovered(m)) => Some(Check::new("False", RECOVERED, m.clone())),
        Some(Recovery::Restored(m)) => Some(Check::new("False", RESTORED, m.clone())),
        Some(Recovery::Waking(_) | Recovery::Woken(_)) | None => {
            previous.map(|p| Check::new(&p.status, &p.reason, p.message.clone()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn each_state_has_its_status_and_reason_and_the_last_word_stays() {
        for (state, status, reason, under_way) in [
            (Recovery::Lost("2 of 3 down".into()), "True", LOST, true),
            (
                Recovery::Disabled("annotated".into()),
                "True",
                DISABLED,
                false,
            ),
            (
                Recovery::Recovering("stopping".into()),
                "True",
                RECOVERING,
                true,
            ),
            (
                Recovery::Recovered("from rev 9".into()),
                "False",
                RECOVERED,
                false,
            ),
            (Recovery::Restored("back".into()), "False", RESTORED, false),
        ] {
            let c = check(Some(&state), None).unwrap();
            assert_eq!((c.status.as_str(), c.reason.as_str()), (status, reason));
            assert_eq!(state.is_under_way(), under_way, "{state:?}");
        }
        assert!(check(None, None).is_none(), "no loss yet, no condition");
        let waking = Recovery::Waking("member 0 first".into());
        assert!(check(Some(&waking), None).is_none(), "a wake-up is no loss");
        assert!(waking.is_under_way());
        assert!(!Recovery::Woken("back".into()).is_under_way());
        let previous = Condition {
            type_: super::super::types::QUORUM_LOST.into(),
            status: "False".into(),
            reason: RECOVERED.into(),
            message: "from rev 9".into(),
            ..Condition::default()
        };
        let kept = check(None, Some(&previous)).unwrap();
        assert_eq!(
            (
                kept.status.as_str(),
                kept.reason.as_str(),
                kept.message.as_str()
            ),
            ("False", RECOVERED, "from rev 9")
        );
    }
}
