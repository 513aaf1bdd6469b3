//! `AllMembersReady`: whether every one of the `replicas` members has a
//! freshly renewed lease.

use druid_api::etcd::EtcdMemberStatus;

use super::{Check, without_members};

/// The condition for a cluster of `replicas` with `members` (from their
/// leases).
pub fn check(replicas: i32, members: &[EtcdMemberStatus]) -> Check {
    if let Some(check) = without_members(replicas, members) {
        return check;
    }
    let all_ready = members.iter().filter(|m| m.status == "Ready").count();
    if all_ready == members.len() && members.len() >= usize::try_from(replicas).unwrap_or(0) {
        Check::new("True", "AllMembersReady", "every member is ready")
    } else {
        Check::new(
            "False",
            "NotAllMembersReady",
            format!("{all_ready} of {replicas} members are ready"),
        )
    }
}
