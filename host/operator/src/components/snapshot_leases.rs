//! The full and delta snapshot Leases (`<etcd>-full-snap`,
//! `<etcd>-delta-snap`), renewed by the backup leader after each snapshot.

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::coordination::v1::Lease;

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Builds the snapshot leases: full and delta, only when the Etcd has a
/// backup store (an empty list otherwise, and the caller deletes any left
/// over). They carry no spec: the sidecar writes the last snapshot's
/// revision as the holder identity, and the operator's server-side apply
/// never claims (or resets) a field of it.
pub fn build(
    etcd: &Etcd,
    model: &EtcdModel,
    _ctx: &BuildContext,
) -> Result<Vec<Lease>, BuildError> {
    if model.store.is_none() {
        return Ok(Vec::new());
    }
    [
        names::full_snapshot_lease(&model.name),
        names::delta_snapshot_lease(&model.name),
    ]
    .into_iter()
    .map(|name| {
        Ok(Lease {
            metadata: metadata(etcd, name, names::component::SNAPSHOT_LEASE)?,
            spec: None,
        })
    })
    .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::super::fixtures::{context, model, seed};

    #[test]
    fn seed_snapshot() {
        let etcd = seed();
        insta::assert_yaml_snapshot!(super::build(&etcd, &model(&etcd), &context()).unwrap());
    }

    #[test]
    fn none_without_a_store() {
        let mut etcd = seed();
        etcd.spec.store = None;
        assert!(
            super::build(&etcd, &model(&etcd), &context())
                .unwrap()
                .is_empty()
        );
    }
}
