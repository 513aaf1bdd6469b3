//! `Ready`: whether a quorum of the members is up, from their leases.

use druid_api::etcd::EtcdMemberStatus;

use super::{Check, without_members};

/// The condition for a cluster of `replicas` with `members` (from their
/// leases): a member counts as up unless it is `NotReady`.
pub fn check(replicas: i32, members: &[EtcdMemberStatus]) -> Check {
    if let Some(check) = without_members(replicas, members) {
        return check;
    }
    let ready = members.iter().filter(|m| m.status != "NotReady").count();
    let quorum = members.len() / 2 + 1;
    if ready >= quorum {
        Check::new(
            "True",
            "Quorate",
            format!(
                "{ready} of {} members are up: the cluster has quorum",
                members.len()
            ),
        )
    } else {
        Check::new(
            "False",
            "QuorumLost",
            format!(
                "only {ready} of {} members are up, {quorum} are needed for quorum",
                members.len()
            ),
        )
    }
}
