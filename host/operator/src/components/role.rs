//! The Role of the sidecar (`druid.gardener.cloud:etcd:<etcd>`).

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Builds the Role: what the sidecar may do in the Etcd's namespace. It
/// renews the member and snapshot leases, reads and patches the StatefulSet
/// (scale-up bookkeeping), reads the pods, reads its Etcd and removes the
/// on-demand defragmentation annotation from it, and reports
/// defragmentation results as events.
pub fn build(etcd: &Etcd, model: &EtcdModel, _ctx: &BuildContext) -> Result<Role, BuildError> {
    let rule = |group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        verbs: verbs.iter().map(ToString::to_string).collect(),
        ..PolicyRule::default()
    };
    let read_write = ["get", "list", "patch", "update", "watch"];
    Ok(Role {
        metadata: metadata(etcd, names::role(&model.name), names::component::ROLE)?,
        rules: Some(vec![
            rule("coordination.k8s.io", "leases", &read_write),
            rule("apps", "statefulsets", &read_write),
            rule("", "pods", &["get", "list", "watch"]),
            rule(druid_api::GROUP, "etcds", &["get", "patch"]),
            rule("events.k8s.io", "events", &["create", "patch"]),
        ]),
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

    #[test]
    fn labels_are_valid_label_values() {
        // The Role's name holds ':', which a label value cannot.
        let etcd = seed();
        let role = super::build(&etcd, &model(&etcd), &context()).unwrap();
        for value in role.metadata.labels.unwrap().values() {
            assert!(
                value.len() <= 63
                    && value.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && value.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{value}"
            );
        }
    }
}
