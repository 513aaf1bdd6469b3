//! The Role of the sidecar (`druid.gardener.cloud:etcd:<etcd>`).

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Builds the Role: what the sidecar may do in the Etcd's namespace, on
/// its own Etcd's objects only (`resourceNames`), and never more than
/// upstream's Role grants. It reads and renews its members' and the
/// snapshot leases (and writes defragmentation results on the member
/// leases), and reads its pods and its StatefulSet (before a
/// defragmentation). It gets nothing on its Etcd and no events: a pod must
/// not be able to edit its own Etcd; the operator handles the on-demand
/// defragmentation annotation and publishes the runs' events.
pub fn build(etcd: &Etcd, model: &EtcdModel, _ctx: &BuildContext) -> Result<Role, BuildError> {
    let rule =
        |group: &str, resource: &str, verbs: &[&str], names: Option<Vec<String>>| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            verbs: verbs.iter().map(ToString::to_string).collect(),
            resource_names: names,
            ..PolicyRule::default()
        };
    let ordinals = 0..model.replicas.max(1);
    let mut leases: Vec<String> = ordinals.clone().map(|i| names::member(model, i)).collect();
    leases.push(names::full_snapshot_lease(&model.name));
    leases.push(names::delta_snapshot_lease(&model.name));
    let pods: Vec<String> = ordinals.map(|i| names::pod(&model.name, i)).collect();
    Ok(Role {
        metadata: metadata(etcd, names::role(&model.name), names::component::ROLE)?,
        rules: Some(vec![
            rule(
                "coordination.k8s.io",
                "leases",
                &["get", "patch", "update"],
                Some(leases),
            ),
            rule(
                "apps",
                "statefulsets",
                &["get"],
                Some(vec![names::statefulset(&model.name)]),
            ),
            rule("", "pods", &["get"], Some(pods)),
        ]),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::super::fixtures::{context, model, seed};

    #[test]
    fn the_sidecar_gets_nothing_on_its_etcd_and_no_events() {
        // Upstream's Role: leases and statefulsets (get, list, patch,
        // update, watch), pods (get, list, watch). Ours is a subset.
        let upstream: &[(&str, &[&str])] = &[
            ("leases", &["get", "list", "patch", "update", "watch"]),
            ("statefulsets", &["get", "list", "patch", "update", "watch"]),
            ("pods", &["get", "list", "watch"]),
        ];
        let etcd = seed();
        let role = super::build(&etcd, &model(&etcd), &context()).unwrap();
        for rule in role.rules.unwrap() {
            for resource in rule.resources.unwrap() {
                let allowed = upstream
                    .iter()
                    .find(|(r, _)| *r == resource)
                    .unwrap_or_else(|| panic!("{resource} is not in upstream's Role"))
                    .1;
                for verb in &rule.verbs {
                    assert!(allowed.contains(&verb.as_str()), "{verb} {resource}");
                }
            }
        }
    }

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
