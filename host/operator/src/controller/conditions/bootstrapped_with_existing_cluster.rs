//! `BootstrappedWithExistingCluster`: whether the members of an Etcd that
//! joins an existing cluster (`spec.etcd.bootstrapWithExistingCluster`)
//! all joined it as voting members. True once, then for good: the first
//! time it is True, `status.bootstrapWithExistingCluster` records the join,
//! and a status with that record says True whatever the spec says later.
//! After the cut-over (the source members removed) the reason says so.

use druid_api::EtcdModel;
use druid_api::etcd::{BootstrapJoined, BootstrapJoinedMember, Condition, EtcdMemberStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::Check;
use crate::names;

/// Reason while members are still joining.
pub const IN_PROGRESS: &str = "BootstrapInProgress";
/// Reason once every member joined.
pub const SUCCEEDED: &str = "BootstrapSucceeded";
/// Reason once the source members were removed (the cut-over).
pub const CUT_OVER: &str = "SourceMembersRemoved";

/// How a cut-over request went (`controller::cut_over` asks for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutOver {
    /// The source members left the cluster: what happened, for the
    /// condition.
    Done(String),
    /// Not done yet, and why (retried at the next reconcile).
    Waiting(String),
}

/// The condition (absent for an Etcd that never joined another cluster)
/// and the record of the join to keep or write.
pub fn check(
    model: Option<&EtcdModel>,
    members: &[EtcdMemberStatus],
    previous: Option<&Condition>,
    record: Option<&BootstrapJoined>,
    cut_over: Option<&CutOver>,
    now: Timestamp,
) -> (Option<Check>, Option<BootstrapJoined>) {
    if let Some(record) = record {
        let check = match (previous, cut_over) {
            (Some(p), _) if p.reason == CUT_OVER => Check::new("True", CUT_OVER, p.message.clone()),
            (_, Some(CutOver::Done(message))) => Check::new("True", CUT_OVER, message.clone()),
            (_, Some(CutOver::Waiting(why))) => Check::new(
                "True",
                SUCCEEDED,
                format!("every member joined the source cluster; the cut-over waits: {why}"),
            ),
            _ => Check::new(
                "True",
                SUCCEEDED,
                "every member joined the source cluster as a voting member; remove \
                 spec.etcd.bootstrapWithExistingCluster to cut over (the source members leave the cluster)",
            ),
        };
        return (Some(check), Some(record.clone()));
    }
    let Some(model) = model else {
        // An invalid spec: say what was said before.
        return (
            previous.map(|p| Check::new(&p.status, &p.reason, p.message.clone())),
            None,
        );
    };
    let Some(source) = &model.etcd.existing_cluster else {
        return (None, None);
    };
    let joined = (0..model.replicas.max(0))
        .filter(|i| {
            let name = names::member(model, *i);
            members
                .iter()
                .any(|m| m.name == name && m.status == "Ready" && m.role.is_some())
        })
        .count();
    let wanted = usize::try_from(model.replicas).unwrap_or(0);
    if wanted > 0 && joined == wanted {
        let record = BootstrapJoined {
            joined_at: Time(now),
            members: source
                .members
                .iter()
                .map(|m| BootstrapJoinedMember {
                    name: m.name.clone(),
                    peer_urls: m.peer_urls.clone(),
                })
                .collect(),
        };
        return (
            Some(Check::new(
                "True",
                SUCCEEDED,
                format!("all {wanted} members joined the source cluster as voting members"),
            )),
            Some(record),
        );
    }
    (
        Some(Check::new(
            "False",
            IN_PROGRESS,
            format!(
                "{joined} of {wanted} members joined the source cluster as voting members \
                 (each joins as a learner, one at a time, and is promoted once caught up)"
            ),
        )),
        None,
    )
}
