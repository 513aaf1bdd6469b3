//! The RoleBinding of the sidecar's Role to the pods' ServiceAccount.

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Builds the RoleBinding (named like the Role) that grants the Role to the
/// ServiceAccount `<etcd>` of the Etcd's namespace.
pub fn build(
    etcd: &Etcd,
    model: &EtcdModel,
    _ctx: &BuildContext,
) -> Result<RoleBinding, BuildError> {
    Ok(RoleBinding {
        metadata: metadata(
            etcd,
            names::role(&model.name),
            names::component::ROLE_BINDING,
        )?,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: names::role(&model.name),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names::service_account(&model.name),
            namespace: Some(model.namespace.clone()),
            ..Subject::default()
        }]),
    })
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
}
