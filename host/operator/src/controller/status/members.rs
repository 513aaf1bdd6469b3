//! The members of an Etcd, from their leases (which the sidecars renew).

use std::collections::BTreeMap;

use druid_api::etcd::EtcdMemberStatus;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::controller::Settings;
use crate::controller::conditions::age;

/// Members from their leases: a lease never renewed is skipped (the member
/// is still bootstrapping); one not renewed for `member_unknown_after` is
/// Unknown, and NotReady after `member_not_ready_after` more.
pub(super) fn from_leases(
    leases: &BTreeMap<String, Lease>,
    settings: &Settings,
    now: Timestamp,
) -> Vec<EtcdMemberStatus> {
    let mut out = Vec::new();
    for (name, lease) in leases {
        let Some(spec) = &lease.spec else { continue };
        let Some(renew) = &spec.renew_time else {
            continue;
        };
        let (id, role) = parse_holder(spec.holder_identity.as_deref().unwrap_or_default());
        let since = age(now, renew.0);
        let (status, reason) =
            if since > settings.member_unknown_after + settings.member_not_ready_after {
                ("NotReady", "UnknownGracePeriodExceeded")
            } else if since > settings.member_unknown_after {
                ("Unknown", "LeaseExpired")
            } else {
                ("Ready", "LeaseSucceeded")
            };
        out.push(EtcdMemberStatus {
            name: name.clone(),
            id,
            role,
            status: status.into(),
            reason: reason.into(),
            last_transition_time: Some(Time(renew.0)),
            last_defragmentation: last_defragmentation(lease),
        });
    }
    out
}

/// The member's last defragmentation, from its lease's annotation (a
/// value that does not parse is ignored with a log line).
fn last_defragmentation(lease: &Lease) -> Option<druid_api::etcd::DefragmentationResult> {
    let text = lease
        .metadata
        .annotations
        .as_ref()?
        .get(druid_api::LAST_DEFRAGMENTATION_ANNOTATION)?;
    match serde_json::from_str(text) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(lease = ?lease.metadata.name, error = %e, "ignoring an unreadable defragmentation result on a member lease");
            None
        }
    }
}

/// `<memberID>[:<clusterID>]:<role>` → (id, role).
fn parse_holder(holder: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = holder.split(':').collect();
    match parts.as_slice() {
        [id, .., role] if *role == "Leader" || *role == "Member" => (
            Some((*id).to_string()).filter(|s| !s.is_empty()),
            Some((*role).to_string()),
        ),
        [id] if !id.is_empty() => (Some((*id).to_string()), None),
        _ => (None, None),
    }
}
