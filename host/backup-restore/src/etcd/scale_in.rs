//! Scale-in: a member of this Etcd leaves the cluster, in steps that the
//! operator drives around shrinking the StatefulSet by one.
//!
//! 1. `prepare` (`POST /members/scale-in/prepare?member=test-2`), while
//!    the member still runs: every other member must be a started voting
//!    member that answers (so that the cluster keeps its quorum without
//!    it), and leadership moves off the member if it leads.
//! 2. The operator shrinks the StatefulSet; the member's pod stops
//!    gracefully (its clients' requests finish or fail as Unavailable).
//! 3. `remove` (`POST /members/scale-in/remove?member=test-2`) once the
//!    pod is gone: the member leaves the membership, again only while
//!    every other member answers.
//!
//! From 2 members to 1, `remove` comes before the shrink, while the member
//! still runs: stopped first, the other member alone would have no quorum
//! to remove it (a request in flight on the removed member then fails with
//! `raft: stopped`). `remove` after the shrink then takes out a learner
//! that re-added itself if its etcd exited before its pod stopped.
//!
//! Every step is idempotent: a member that is not in the cluster is
//! reported `absent`.
//!
//! A member that was added but never started has no name yet (a learner
//! that re-added itself as its pod stopped, or one whose pod never came
//! up). The caller names the leaving member's peer URLs as well, and such
//! an unnamed member whose peer URLs are all among them is the leaving
//! member: matched by name alone, it would be reported `absent` and stay
//! in the membership, an unstarted member that the cluster counts.

use etcd_client::Member;
use serde::Serialize;

use super::cut_over::{
    CutOverError, client_of, is_own, member_list, move_leader_off, own_prefix, remove_one,
    wait_settled,
};
use crate::config::EtcdArgs;

/// What a scale-in step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScaleInReport {
    /// The member the step is for.
    pub member: String,
    /// `prepared`, `removed`, or `absent` (not a member of the cluster).
    pub outcome: &'static str,
    /// The member that leads afterwards (empty when `absent`).
    pub leader: String,
    /// The members that remain (by name).
    pub remaining: Vec<String>,
}

/// The member that leaves: by name, or, when it never started (no name
/// yet), by its peer URLs.
#[derive(Debug, Clone, Copy)]
pub struct Leaving<'a> {
    /// Its member name (`<prefix>-<etcd>-<ordinal>`).
    pub name: &'a str,
    /// Its peer URLs, as its configuration advertises them (may be empty:
    /// then only a started member is found).
    pub peer_urls: &'a [String],
}

impl Leaving<'_> {
    /// Whether `m` is the leaving member.
    fn is(&self, m: &Member) -> bool {
        if !m.name().is_empty() {
            return m.name() == self.name;
        }
        !m.peer_urls().is_empty()
            && m.peer_urls()
                .iter()
                .all(|u| self.peer_urls.iter().any(|p| p == u))
    }
}

/// The cluster's members split into the leaving one (if present) and the
/// others, after checking that it belongs to this Etcd.
async fn split(
    args: &EtcdArgs,
    endpoints: &[String],
    self_name: &str,
    leaving: Leaving<'_>,
) -> Result<(Option<Member>, Vec<Member>), CutOverError> {
    let member = leaving.name;
    let own = own_prefix(self_name).ok_or_else(|| {
        CutOverError::Refused(format!(
            "this member's name {self_name:?} does not end in an ordinal"
        ))
    })?;
    if !is_own(member, own) {
        return Err(CutOverError::Refused(format!(
            "{member:?} is not a member of this Etcd (its members are named {own}<ordinal>): \
             a scale-in removes only this Etcd's own members"
        )));
    }
    let members = member_list(args, endpoints).await?;
    let (leaving, remaining): (Vec<Member>, Vec<Member>) =
        members.into_iter().partition(|m| leaving.is(m));
    // etcd refuses a peer URL that another member has, so two matches
    // mean a cluster this code does not understand: nothing is removed.
    if let [one, two, ..] = leaving.as_slice() {
        return Err(CutOverError::Refused(format!(
            "two members match {member} (ids {:x} and {:x}): check the membership with \
             `etcdctl member list` and remove the stale one by hand",
            one.id(),
            two.id()
        )));
    }
    if !leaving.is_empty() && remaining.is_empty() {
        return Err(CutOverError::Refused(format!(
            "{member} is the only member: a cluster cannot scale in to nothing \
             (set spec.replicas to 0 to hibernate instead)"
        )));
    }
    Ok((leaving.into_iter().next(), remaining))
}

fn names(members: &[Member]) -> Vec<String> {
    let mut names: Vec<String> = members.iter().map(|m| m.name().to_string()).collect();
    names.sort();
    names
}

fn leader_name(remaining: &[Member], leader: u64) -> String {
    remaining
        .iter()
        .find(|m| m.id() == leader)
        .map(|m| m.name().to_string())
        .unwrap_or_else(|| format!("{leader:x}"))
}

fn absent(member: &str, remaining: &[Member]) -> ScaleInReport {
    ScaleInReport {
        member: member.to_string(),
        outcome: "absent",
        leader: String::new(),
        remaining: names(remaining),
    }
}

/// Waits until every member of `remaining` is a started voter that
/// answers, and moves leadership off `leaving` if it leads: the leader.
async fn lead_elsewhere(
    args: &EtcdArgs,
    leaving: &Member,
    remaining: &[Member],
) -> Result<u64, CutOverError> {
    let leader = wait_settled(args, remaining).await?;
    if leader != leaving.id() {
        return Ok(leader);
    }
    move_leader_off(args, std::slice::from_ref(leaving), remaining, leader).await
}

/// Step 1: checks that every member but `member` answers as a started
/// voting member and moves leadership off `member` if it leads.
pub async fn prepare(
    args: &EtcdArgs,
    endpoints: &[String],
    self_name: &str,
    member: Leaving<'_>,
) -> Result<ScaleInReport, CutOverError> {
    let (leaving, remaining) = split(args, endpoints, self_name, member).await?;
    let member = member.name;
    let Some(leaving) = leaving else {
        return Ok(absent(member, &remaining));
    };
    let leader = lead_elsewhere(args, &leaving, &remaining).await?;
    Ok(ScaleInReport {
        member: member.to_string(),
        outcome: "prepared",
        leader: leader_name(&remaining, leader),
        remaining: names(&remaining),
    })
}

/// Step 3 (and, from 2 members to 1, the removal before the shrink):
/// removes `member` from the cluster while every other member answers as a
/// started voting member (moving leadership off it first if it leads).
/// The request may reach the leaving member's own sidecar: it removes its
/// own member then.
pub async fn remove(
    args: &EtcdArgs,
    endpoints: &[String],
    self_name: &str,
    member: Leaving<'_>,
) -> Result<ScaleInReport, CutOverError> {
    let (leaving, remaining) = split(args, endpoints, self_name, member).await?;
    let member = member.name;
    let Some(leaving) = leaving else {
        return Ok(absent(member, &remaining));
    };
    lead_elsewhere(args, &leaving, &remaining).await?;
    let Some(first) = remaining.first() else {
        return Err(CutOverError::Refused(format!(
            "{member} is the only member"
        )));
    };
    let mut via = client_of(args, first)
        .await
        .map_err(CutOverError::NotReady)?;
    tracing::info!(member, id = %format!("{:x}", leaving.id()), started = !leaving.name().is_empty(), learner = leaving.is_learner(), "removing a member of this Etcd from the cluster (scale-in)");
    remove_one(&mut via, &leaving).await?;
    let leader = wait_settled(args, &remaining).await?;
    Ok(ScaleInReport {
        member: member.to_string(),
        outcome: "removed",
        leader: leader_name(&remaining, leader),
        remaining: names(&remaining),
    })
}
