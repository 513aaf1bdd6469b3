//! The cut-over after joining an existing cluster: the members of the
//! source cluster leave it, so that only this Etcd's members remain.
//!
//! Leadership first moves to one of the remaining members (if a source
//! member leads), then the source members are removed one at a time, each
//! only while every remaining member is a started voting member that
//! answers: removing a member then never costs the quorum. The operator
//! asks for it (`POST /members/cut-over?remove=a,b`) once the join is done
//! and the user removed `spec.etcd.bootstrapWithExistingCluster`.

use std::time::{Duration, Instant};

use etcd_client::Member;
use serde::Serialize;

use crate::config::EtcdArgs;

/// How long one etcd call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the cluster may take to settle after a step (a new leader, a
/// removal) before the cut-over stops and is asked again later.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a cut-over did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CutOverReport {
    /// The source members removed by this call, in the order removed (by
    /// name).
    pub removed: Vec<String>,
    /// The names asked for that were not members (removed before).
    pub absent: Vec<String>,
    /// The member that leads afterwards.
    pub leader: String,
}

/// Why a cut-over stopped.
#[derive(Debug, thiserror::Error)]
pub enum CutOverError {
    /// The request names a member of this Etcd, or nothing.
    #[error("{0}")]
    Refused(String),
    /// The cluster is not ready for a step: it is retried later.
    #[error("{0}")]
    NotReady(String),
    /// etcd refused a call.
    #[error("{0}")]
    Etcd(String),
}

/// The prefix of this Etcd's member names (`<prefix>-<etcd>-`), from this
/// member's own name (`<prefix>-<etcd>-<ordinal>`).
pub fn own_prefix(member_name: &str) -> Option<&str> {
    let (prefix, ordinal) = member_name.rsplit_once('-')?;
    is_ordinal(ordinal).then_some(&member_name[..=prefix.len()])
}

/// Whether `name` is the name of a member of this Etcd (`own` as
/// [`own_prefix`] gives it).
pub(super) fn is_own(name: &str, own: &str) -> bool {
    name.strip_prefix(own).is_some_and(is_ordinal)
}

/// A StatefulSet ordinal: one or more digits.
fn is_ordinal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) async fn client_of(
    args: &EtcdArgs,
    member: &Member,
) -> Result<etcd_client::Client, String> {
    crate::etcd::connect(args, member.client_urls(), CALL_TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}

/// The leader's member ID and whether every member of `remaining` answers
/// as a started voting member; the first problem otherwise.
pub(super) async fn settled(args: &EtcdArgs, remaining: &[Member]) -> Result<u64, String> {
    let mut leader = 0;
    for m in remaining {
        if m.name().is_empty() {
            return Err(format!("member {:x} has not started yet", m.id()));
        }
        if m.is_learner() {
            return Err(format!(
                "member {} is a learner (not promoted yet)",
                m.name()
            ));
        }
        let mut c = client_of(args, m)
            .await
            .map_err(|e| format!("member {} does not answer: {e}", m.name()))?;
        let status = tokio::time::timeout(CALL_TIMEOUT, c.status())
            .await
            .map_err(|_| format!("member {} does not answer its status", m.name()))?
            .map_err(|e| format!("member {} does not answer its status: {e}", m.name()))?;
        if status.leader() == 0 {
            return Err(format!("member {} sees no leader", m.name()));
        }
        leader = status.leader();
    }
    Ok(leader)
}

/// Waits until [`settled`] holds (at most [`SETTLE_TIMEOUT`]).
pub(super) async fn wait_settled(
    args: &EtcdArgs,
    remaining: &[Member],
) -> Result<u64, CutOverError> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match settled(args, remaining).await {
            Ok(leader) => return Ok(leader),
            Err(e) if Instant::now() >= deadline => {
                return Err(CutOverError::NotReady(format!(
                    "the remaining members did not settle within {SETTLE_TIMEOUT:?}: {e}"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Removes the members named `remove` from the cluster that `endpoints`
/// reach, moving leadership to a remaining member first if one of them
/// leads. `member_name` is this sidecar's member: members of its own Etcd
/// are never removed here.
pub async fn cut_over(
    args: &EtcdArgs,
    endpoints: &[String],
    member_name: &str,
    remove: &[String],
) -> Result<CutOverReport, CutOverError> {
    let own = own_prefix(member_name).ok_or_else(|| {
        CutOverError::Refused(format!(
            "this member's name {member_name:?} does not end in an ordinal"
        ))
    })?;
    if remove.is_empty() {
        return Err(CutOverError::Refused(
            "no member to remove was named".into(),
        ));
    }
    if let Some(name) = remove.iter().find(|n| is_own(n, own)) {
        return Err(CutOverError::Refused(format!(
            "{name} is a member of this Etcd, not of the source cluster: refusing to remove it"
        )));
    }
    let members = member_list(args, endpoints).await?;
    let (mut leaving, remaining): (Vec<Member>, Vec<Member>) = members
        .into_iter()
        .partition(|m| remove.iter().any(|n| n == m.name()));
    // In name order (the member list is in ID order, which means nothing
    // to a user reading the report).
    leaving.sort_by(|a, b| a.name().cmp(b.name()));
    let mut report = CutOverReport {
        absent: remove
            .iter()
            .filter(|n| !leaving.iter().any(|m| m.name() == n.as_str()))
            .cloned()
            .collect(),
        ..CutOverReport::default()
    };
    if let Some(stranger) = remaining
        .iter()
        .find(|m| !m.name().is_empty() && !is_own(m.name(), own))
    {
        return Err(CutOverError::Refused(format!(
            "member {:?} would remain but is neither a member of this Etcd nor named for removal: \
             list every source member in the request",
            stranger.name()
        )));
    }
    if remaining.is_empty() {
        return Err(CutOverError::Refused(
            "no member of this Etcd is in the cluster: nothing would remain".into(),
        ));
    }
    let mut leader = wait_settled(args, &remaining).await?;
    if leaving.iter().any(|m| m.id() == leader) {
        leader = move_leader_off(args, &leaving, &remaining, leader).await?;
    }
    let mut via = client_of(args, &remaining[0])
        .await
        .map_err(CutOverError::NotReady)?;
    for m in &leaving {
        tracing::info!(member = m.name(), id = %format!("{:x}", m.id()), "removing a source member from the cluster");
        remove_one(&mut via, m).await?;
        report.removed.push(m.name().to_string());
        leader = wait_settled(args, &remaining).await?;
    }
    report.leader = remaining
        .iter()
        .find(|m| m.id() == leader)
        .map(|m| m.name().to_string())
        .unwrap_or_else(|| format!("{leader:x}"));
    Ok(report)
}

/// The cluster's members, asked through any of `endpoints`.
pub(super) async fn member_list(
    args: &EtcdArgs,
    endpoints: &[String],
) -> Result<Vec<Member>, CutOverError> {
    let mut client = crate::etcd::connect_any(args, endpoints, CALL_TIMEOUT)
        .await
        .map_err(|e| CutOverError::NotReady(e.to_string()))?;
    Ok(client
        .member_list()
        .await
        .map_err(|e| CutOverError::Etcd(format!("cannot list the members: {e}")))?
        .members()
        .to_vec())
}

/// Moves leadership from `leader` (one of `leaving`) to the first member of
/// `remaining`, then waits until the remaining members settle; returns
/// the new leader's ID.
pub(super) async fn move_leader_off(
    args: &EtcdArgs,
    leaving: &[Member],
    remaining: &[Member],
    leader: u64,
) -> Result<u64, CutOverError> {
    let (Some(old), Some(target)) = (leaving.iter().find(|m| m.id() == leader), remaining.first())
    else {
        return Ok(leader);
    };
    let mut c = client_of(args, old).await.map_err(|e| {
        CutOverError::NotReady(format!("the leader {} does not answer: {e}", old.name()))
    })?;
    tracing::info!(
        from = old.name(),
        to = target.name(),
        "moving leadership to a remaining member"
    );
    c.move_leader(target.id()).await.map_err(|e| {
        CutOverError::Etcd(format!(
            "cannot move leadership from {} to {}: {e}",
            old.name(),
            target.name()
        ))
    })?;
    wait_settled(args, remaining).await
}

/// Removes `m` from the cluster through `via`. etcd refuses a removal
/// ("unhealthy cluster") until the leader has been connected to a quorum
/// for a few seconds, e.g. right after leadership moved: retried within
/// the settle time.
pub(super) async fn remove_one(
    via: &mut etcd_client::Client,
    m: &Member,
) -> Result<(), CutOverError> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match via.member_remove(m.id()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("unhealthy cluster") && Instant::now() < deadline => {
                tracing::debug!(member = m.name(), error = %e, "removal refused for now; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(CutOverError::Etcd(format!(
                    "cannot remove member {}: {e}",
                    m.name()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_own, own_prefix};

    #[test]
    fn own_members_are_recognised_by_name() {
        assert_eq!(own_prefix("test-0"), Some("test-"));
        assert_eq!(own_prefix("main-etcd-main-12"), Some("main-etcd-main-"));
        assert_eq!(own_prefix("test"), None);
        assert_eq!(own_prefix("test-a"), None);
        assert!(is_own("test-2", "test-"));
        assert!(!is_own("test-a", "test-"));
        assert!(!is_own("test-", "test-"));
        assert!(!is_own("source-0", "test-"));
    }
}
