//! The component table: every kind of object the etcd controller keeps for
//! an Etcd, one row each, read by both the apply path and the cleanup path
//! (`controller::etcd`). Adding a component is a builder module plus a row
//! in [`ALL`].
//!
//! A row says how to build the component's objects (a pure builder), when
//! it is applied ([`Stage`]), the name its failures carry
//! (`ERR_SYNC_<NAME>` in `lastErrors` and the error metrics), how to find
//! its objects to delete them ([`Existing`]), and whether objects the
//! build no longer makes are deleted on apply.

use druid_api::{Etcd, EtcdModel};

use super::object::{Kind, Object};
use super::{
    BuildContext, BuildError, client_service, configmap, member_leases, network_policy, pdb,
    peer_service, role, role_binding, service_account, snapshot_leases, statefulset,
};
use crate::names;

/// When a component is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// With every other `First` component at once: they do not depend on
    /// each other.
    First,
    /// After every `First` component is applied: the StatefulSet, whose
    /// pods mount the ConfigMap and run under the ServiceAccount.
    Last,
}

/// How the objects of a component are found, to delete them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Existing {
    /// By name, from the Etcd's name.
    Named(fn(&str) -> Vec<String>),
    /// By label: the Etcd's objects with this `app.kubernetes.io/component`
    /// value ([`names::selector`]), one per member.
    Labelled(&'static str),
}

/// One row of the component table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Component {
    /// Upper-case name: a failed apply is `ERR_SYNC_<NAME>`, "cannot apply
    /// the <name> component".
    pub(crate) name: &'static str,
    /// The Kubernetes type of its objects.
    pub(crate) kind: Kind,
    /// When it is applied.
    pub(crate) stage: Stage,
    /// Its pure builder: the objects to apply (none, one or several).
    pub(crate) build: fn(&Etcd, &EtcdModel, &BuildContext) -> Result<Vec<Object>, BuildError>,
    /// Where its objects are, for deletion.
    pub(crate) existing: Existing,
    /// Whether an apply also deletes its existing objects that the build
    /// did not make (member leases above the replica count, snapshot
    /// leases of an Etcd without a store).
    pub(crate) prune: bool,
}

/// The StatefulSet: applied last, deleted first (its pods must be gone
/// before the volumes and what they use).
pub(crate) const STATEFULSET: Component = Component {
    name: "STATEFULSET",
    kind: Kind::StatefulSet,
    stage: Stage::Last,
    // The pod template carries the ConfigMap's checksum, so that a
    // configuration change rolls the pods; building the ConfigMap again
    // here keeps every builder independent of the others.
    build: |etcd, model, ctx| {
        let checksum = configmap::pod_checksum(etcd, model, ctx)?;
        Ok(vec![
            statefulset::build(etcd, model, ctx, &checksum)?.into(),
        ])
    },
    existing: Existing::Named(|etcd| vec![names::statefulset(etcd)]),
    prune: false,
};

/// The most objects one reconcile applies for one Etcd. The model bounds
/// the replicas ([`druid_api::MAX_REPLICAS`], whatever the CRD in the
/// cluster allows), so the table builds far fewer (see the test); this
/// bound holds even if a builder someday fans out by mistake.
pub const MAX_OBJECTS: usize = 64;

/// Every component, in apply order (deletion goes the other way).
pub(crate) const ALL: &[Component] = &[
    Component {
        name: "SERVICE_ACCOUNT",
        kind: Kind::ServiceAccount,
        stage: Stage::First,
        build: |etcd, model, ctx| Ok(vec![service_account::build(etcd, model, ctx)?.into()]),
        existing: Existing::Named(|etcd| vec![names::service_account(etcd)]),
        prune: false,
    },
    Component {
        name: "ROLE",
        kind: Kind::Role,
        stage: Stage::First,
        build: |etcd, model, ctx| Ok(vec![role::build(etcd, model, ctx)?.into()]),
        existing: Existing::Named(|etcd| vec![names::role(etcd)]),
        prune: false,
    },
    Component {
        name: "ROLE_BINDING",
        kind: Kind::RoleBinding,
        stage: Stage::First,
        build: |etcd, model, ctx| Ok(vec![role_binding::build(etcd, model, ctx)?.into()]),
        existing: Existing::Named(|etcd| vec![names::role(etcd)]),
        prune: false,
    },
    Component {
        name: "MEMBER_LEASE",
        kind: Kind::Lease,
        stage: Stage::First,
        build: |etcd, model, ctx| {
            let leases = member_leases::build(etcd, model, ctx)?;
            Ok(leases.into_iter().map(Object::from).collect())
        },
        existing: Existing::Labelled(names::component::MEMBER_LEASE),
        prune: true,
    },
    Component {
        name: "PDB",
        kind: Kind::PodDisruptionBudget,
        stage: Stage::First,
        build: |etcd, model, ctx| Ok(vec![pdb::build(etcd, model, ctx)?.into()]),
        existing: Existing::Named(|etcd| vec![names::pdb(etcd)]),
        prune: false,
    },
    Component {
        name: "CLIENT_SERVICE",
        kind: Kind::Service,
        stage: Stage::First,
        build: |etcd, model, ctx| Ok(vec![client_service::build(etcd, model, ctx)?.into()]),
        existing: Existing::Named(|etcd| vec![names::client_service(etcd)]),
        prune: false,
    },
    Component {
        name: "PEER_SERVICE",
        kind: Kind::Service,
        stage: Stage::First,
        build: |etcd, model, ctx| Ok(vec![peer_service::build(etcd, model, ctx)?.into()]),
        existing: Existing::Named(|etcd| vec![names::peer_service(etcd)]),
        prune: false,
    },
    Component {
        name: "CONFIGMAP",
        kind: Kind::ConfigMap,
        stage: Stage::First,
        build: |etcd, model, ctx| Ok(vec![configmap::build(etcd, model, ctx)?.into()]),
        existing: Existing::Named(|etcd| vec![names::config_map(etcd)]),
        prune: false,
    },
    Component {
        name: "NETWORK_POLICY",
        kind: Kind::NetworkPolicy,
        stage: Stage::First,
        // None when the operator's pods are not known. A policy built
        // before is then left as it is (deleted with the Etcd).
        build: |etcd, model, ctx| {
            let policy = network_policy::build(etcd, model, ctx)?;
            Ok(policy.into_iter().map(Object::from).collect())
        },
        existing: Existing::Named(|etcd| vec![names::network_policy(etcd)]),
        prune: false,
    },
    Component {
        name: "SNAPSHOT_LEASE",
        kind: Kind::Lease,
        stage: Stage::First,
        build: |etcd, model, ctx| {
            let leases = snapshot_leases::build(etcd, model, ctx)?;
            Ok(leases.into_iter().map(Object::from).collect())
        },
        existing: Existing::Named(|etcd| {
            vec![
                names::full_snapshot_lease(etcd),
                names::delta_snapshot_lease(etcd),
            ]
        }),
        prune: true,
    },
    STATEFULSET,
];

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::super::fixtures::{context, model, seed};
    use super::{ALL, Existing, STATEFULSET, Stage};

    #[test]
    fn every_built_object_is_found_for_deletion() {
        let etcd = seed();
        let m = model(&etcd);
        for c in ALL {
            for o in (c.build)(&etcd, &m, &context()).unwrap() {
                match c.existing {
                    Existing::Named(names) => {
                        assert!(names("test").contains(&o.name()), "{}", c.name);
                    }
                    Existing::Labelled(component) => {
                        let labels = o_labels(&o).unwrap();
                        assert_eq!(labels["app.kubernetes.io/component"], component);
                    }
                }
            }
        }
        assert_eq!(
            ALL.iter()
                .filter(|c| c.stage == Stage::Last)
                .map(|c| c.name)
                .collect::<Vec<_>>(),
            [STATEFULSET.name]
        );
    }

    /// The largest Etcd the model accepts, with every optional component,
    /// stays well under the per-reconcile bound.
    #[test]
    fn the_largest_spec_builds_a_bounded_number_of_objects() {
        let mut etcd = seed();
        etcd.spec.replicas = druid_api::MAX_REPLICAS;
        let m = model(&etcd);
        let mut ctx = context();
        ctx.operator_pods = Some(super::super::network_policy::OperatorPods {
            namespace: "druid-system".into(),
            labels: [("app".to_string(), "druid".to_string())].into(),
        });
        let count: usize = ALL
            .iter()
            .map(|c| (c.build)(&etcd, &m, &ctx).unwrap().len())
            .sum();
        assert!(
            (druid_api::MAX_REPLICAS as usize..super::MAX_OBJECTS / 2).contains(&count),
            "{count} objects for {} replicas",
            druid_api::MAX_REPLICAS
        );
        // One more replica is refused by the model itself.
        etcd.spec.replicas = druid_api::MAX_REPLICAS + 1;
        assert!(druid_api::EtcdModel::from_etcd(&etcd).is_err());
    }

    fn o_labels(o: &super::Object) -> Option<std::collections::BTreeMap<String, String>> {
        match o {
            super::Object::Lease(l) => l.metadata.labels.clone(),
            _ => None,
        }
    }
}
