//! One Lease per member (`<member>`), renewed by that member's sidecar.

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::coordination::v1::Lease;

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Builds the member leases, one per ordinal `0..replicas`, named after the
/// member ([`names::member`]: the pod name, or `<prefix>-<pod>`).
///
/// They carry no spec: the sidecar of each member writes the holder
/// identity (`<memberID>:<clusterID>:<role>`) and renews them, so the
/// operator's server-side apply never claims (or resets) a field of it.
pub fn build(
    etcd: &Etcd,
    model: &EtcdModel,
    _ctx: &BuildContext,
) -> Result<Vec<Lease>, BuildError> {
    (0..model.replicas.max(0))
        .map(|i| {
            Ok(Lease {
                metadata: metadata(
                    etcd,
                    names::member(model, i),
                    names::component::MEMBER_LEASE,
                )?,
                spec: None,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use kube::ResourceExt as _;

    use super::super::fixtures::{context, model, seed};

    #[test]
    fn seed_snapshot() {
        let etcd = seed();
        insta::assert_yaml_snapshot!(super::build(&etcd, &model(&etcd), &context()).unwrap());
    }

    #[test]
    fn one_per_replica_with_the_member_name_prefix() {
        let mut etcd = seed();
        etcd.spec.replicas = 3;
        etcd.spec.member_name_prefix = Some("main".into());
        let leases = super::build(&etcd, &model(&etcd), &context()).unwrap();
        let names: Vec<String> = leases.iter().map(|l| l.name_any()).collect();
        assert_eq!(names, ["main-test-0", "main-test-1", "main-test-2"]);
        // No spec at all, so no holder: that belongs to the sidecars.
        assert!(leases.iter().all(|l| l.spec.is_none()));
    }

    #[test]
    fn none_when_hibernated() {
        let mut etcd = seed();
        etcd.spec.replicas = 0;
        assert!(
            super::build(&etcd, &model(&etcd), &context())
                .unwrap()
                .is_empty()
        );
    }
}
