//! The PodDisruptionBudget (`<etcd>`) that keeps voluntary evictions from
//! breaking quorum.

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// The members that must stay up: a quorum (`replicas/2 + 1`) for a
/// multi-member cluster; 0 for a single member (or a hibernated cluster),
/// whose node drains must not block forever.
pub fn min_available(replicas: i32) -> i32 {
    if replicas > 1 { replicas / 2 + 1 } else { 0 }
}

/// Builds the PodDisruptionBudget over the cluster's pods.
pub fn build(
    etcd: &Etcd,
    model: &EtcdModel,
    _ctx: &BuildContext,
) -> Result<PodDisruptionBudget, BuildError> {
    Ok(PodDisruptionBudget {
        metadata: metadata(etcd, names::pdb(&model.name), names::component::PDB)?,
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available(model.replicas))),
            selector: Some(LabelSelector {
                match_labels: Some(names::selector(Some(&model.name), None).into_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::super::fixtures::{context, model, seed};

    #[test]
    fn seed_snapshot() {
        let etcd = seed();
        insta::assert_yaml_snapshot!(super::build(&etcd, &model(&etcd), &context()).unwrap());
    }

    #[test]
    fn min_available_is_a_quorum() {
        for (replicas, expected) in [(0, 0), (1, 0), (2, 2), (3, 2), (5, 3)] {
            let mut etcd = seed();
            etcd.spec.replicas = replicas;
            let pdb = super::build(&etcd, &model(&etcd), &context()).unwrap();
            assert_eq!(
                pdb.spec.unwrap().min_available,
                Some(IntOrString::Int(expected)),
                "replicas {replicas}"
            );
        }
    }
}
