//! `ClusterIDMismatch`: whether the members report different etcd cluster
//! IDs (each sidecar writes its member's cluster ID into its lease's
//! holderIdentity, `<memberID>:<clusterID>:<role>`). Different IDs mean
//! members that formed separate clusters, a split brain: `True` is the
//! alarm.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::coordination::v1::Lease;

use super::Check;

/// The cluster ID in a member lease's holderIdentity, if it names one.
pub fn cluster_id(holder: &str) -> Option<&str> {
    match holder.split(':').collect::<Vec<_>>().as_slice() {
        [_, cluster, role] if matches!(*role, "Leader" | "Member") && !cluster.is_empty() => {
            Some(cluster)
        }
        _ => None,
    }
}

/// The condition from the member leases (by member name).
pub fn check(member_leases: &BTreeMap<String, Lease>) -> Check {
    let reported: BTreeMap<&str, &str> = member_leases
        .iter()
        .filter_map(|(member, lease)| {
            let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
            Some((member.as_str(), cluster_id(holder)?))
        })
        .collect();
    let ids: BTreeSet<&str> = reported.values().copied().collect();
    match ids.len() {
        0 => Check::new(
            "Unknown",
            "NoClusterIDReported",
            "no member has reported its cluster ID yet",
        ),
        1 => Check::new(
            "False",
            "NoClusterIDMismatch",
            format!(
                "{} member(s) report cluster ID {}",
                reported.len(),
                ids.iter().next().copied().unwrap_or_default()
            ),
        ),
        _ => Check::new(
            "True",
            "ClusterIDMismatch",
            format!(
                "members report different etcd cluster IDs ({}): they formed separate clusters (a split brain); writes to one are not in the other. Stop the members of the smaller group, keep their data volumes, and let them rejoin as learners",
                reported
                    .iter()
                    .map(|(m, id)| format!("{m}: {id}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    use super::*;

    fn leases(holders: &[(&str, &str)]) -> BTreeMap<String, Lease> {
        holders
            .iter()
            .map(|(m, h)| {
                let lease = Lease {
                    spec: Some(LeaseSpec {
                        holder_identity: Some((*h).to_string()),
                        ..LeaseSpec::default()
                    }),
                    ..Lease::default()
                };
                ((*m).to_string(), lease)
            })
            .collect()
    }

    #[test]
    fn members_of_different_clusters_are_a_mismatch() {
        assert_eq!(cluster_id("1a:c1:Leader"), Some("c1"));
        assert_eq!(cluster_id("1a:Member"), None);
        assert_eq!(cluster_id(""), None);
        let same = check(&leases(&[("m0", "1a:c1:Leader"), ("m1", "1b:c1:Member")]));
        assert_eq!(
            (same.status.as_str(), same.reason.as_str()),
            ("False", "NoClusterIDMismatch")
        );
        let split = check(&leases(&[
            ("m0", "1a:c1:Leader"),
            ("m1", "1b:c1:Member"),
            ("m2", "2c:c9:Leader"),
        ]));
        assert_eq!(
            (split.status.as_str(), split.reason.as_str()),
            ("True", "ClusterIDMismatch")
        );
        assert!(split.message.contains("m2: c9"), "{}", split.message);
        // Old sidecars write no cluster ID: nothing to compare.
        let none = check(&leases(&[("m0", "1a:Leader")]));
        assert_eq!(none.status, "Unknown");
    }
}
