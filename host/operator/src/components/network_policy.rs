//! The NetworkPolicy (`<etcd>-backup-restore`) that keeps the sidecar's
//! HTTP API to the callers that need it: the Etcd's own pods (the etcd
//! wrapper, the other members' sidecars) and the operator (full snapshots
//! the compaction controller asks for). Snapshots, defragmentation and `/initialization/start` are on
//! that API; anyone else in the cluster could otherwise trigger them.
//!
//! The policy selects the Etcd's member pods for ingress, so every port of
//! theirs must be listed: etcd's client port and the wrapper's readiness
//! port stay open to all (clients, probes, monitoring), the peer port to
//! the Etcd's pods (to all while it joins an existing cluster, until the
//! cut-over). Namespaces labelled [`SIDECAR_API_NAMESPACE_LABEL`]
//! `=allowed` may reach the API too (e.g. monitoring that scrapes the
//! sidecar's `/metrics`). Only a network plugin that enforces
//! NetworkPolicies (Calico, Cilium, ...) acts on it.

use std::collections::BTreeMap;

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// A namespace with this label set to `allowed` may call every Etcd's
/// sidecar API (monitoring, tooling).
pub const SIDECAR_API_NAMESPACE_LABEL: &str = "druid.gardener.cloud/sidecar-api";

/// Where the operator runs, so that the policy lets it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPods {
    /// The operator's namespace.
    pub namespace: String,
    /// Labels of the operator's pods.
    pub labels: BTreeMap<String, String>,
}

fn port(p: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

fn labels(l: BTreeMap<String, String>) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(l),
        ..LabelSelector::default()
    })
}

/// Builds the policy; `None` when the operator's pods are not known
/// (`--sidecar-network-policy=false`, or no `--operator-namespace`).
pub fn build(
    etcd: &Etcd,
    model: &EtcdModel,
    ctx: &BuildContext,
) -> Result<Option<NetworkPolicy>, BuildError> {
    let Some(operator) = &ctx.operator_pods else {
        return Ok(None);
    };
    let own_pods = NetworkPolicyPeer {
        pod_selector: labels(names::selector(Some(&model.name), None).into_labels()),
        ..NetworkPolicyPeer::default()
    };
    let operator_pods = NetworkPolicyPeer {
        namespace_selector: labels(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            operator.namespace.clone(),
        )])),
        pod_selector: labels(operator.labels.clone()),
        ..NetworkPolicyPeer::default()
    };
    let allowed_namespaces = NetworkPolicyPeer {
        namespace_selector: labels(BTreeMap::from([(
            SIDECAR_API_NAMESPACE_LABEL.to_string(),
            "allowed".to_string(),
        )])),
        ..NetworkPolicyPeer::default()
    };
    Ok(Some(NetworkPolicy {
        metadata: metadata(
            etcd,
            names::network_policy(&model.name),
            names::component::NETWORK_POLICY,
        )?,
        spec: Some(NetworkPolicySpec {
            pod_selector: labels(
                names::selector(Some(&model.name), Some(names::component::STATEFULSET))
                    .into_labels(),
            ),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(model.backup.port)]),
                    from: Some(vec![own_pods.clone(), operator_pods, allowed_namespaces]),
                },
                // Peers: the Etcd's own pods; from anywhere while it joins
                // an existing cluster, whose members run elsewhere (their
                // peer URLs are names, not pods a policy can select).
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(model.etcd.server_port)]),
                    from: model
                        .etcd
                        .existing_cluster
                        .is_none()
                        .then(|| vec![own_pods]),
                },
                // Clients, probes and monitoring: from anywhere.
                NetworkPolicyIngressRule {
                    ports: Some(vec![
                        port(model.etcd.client_port),
                        port(model.etcd.wrapper_port),
                    ]),
                    from: None,
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::super::fixtures::{context, model, seed};
    use super::*;

    #[test]
    fn seed_snapshot() {
        let etcd = seed();
        insta::assert_yaml_snapshot!(build(&etcd, &model(&etcd), &context()).unwrap().unwrap());
    }

    #[test]
    fn the_sidecar_api_admits_the_etcds_pods_the_operator_and_allowed_namespaces_only() {
        let etcd = seed();
        let policy = build(&etcd, &model(&etcd), &context()).unwrap().unwrap();
        let rules = policy.spec.unwrap().ingress.unwrap();
        let api = rules
            .iter()
            .find(|r| r.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(8080)))
            .unwrap();
        let from = api.from.clone().unwrap();
        assert_eq!(from.len(), 3, "{from:?}");
        assert_eq!(
            from[0].pod_selector.clone().unwrap().match_labels.unwrap(),
            names::default_labels("test")
        );
        assert_eq!(
            from[1]
                .namespace_selector
                .clone()
                .unwrap()
                .match_labels
                .unwrap()["kubernetes.io/metadata.name"],
            "druid-system"
        );
        // Every member port is listed (the policy selects the pods), and
        // only the client and wrapper ports are open to all.
        let open: Vec<_> = rules
            .iter()
            .filter(|r| r.from.is_none())
            .flat_map(|r| r.ports.clone().unwrap())
            .filter_map(|p| p.port)
            .collect();
        assert_eq!(open, [IntOrString::Int(2379), IntOrString::Int(9095)]);

        // Without the operator's whereabouts, no policy.
        let mut ctx = context();
        ctx.operator_pods = None;
        assert!(build(&etcd, &model(&etcd), &ctx).unwrap().is_none());
    }

    #[test]
    fn the_peer_port_is_open_to_all_only_while_joining_an_existing_cluster() {
        let mut etcd = seed();
        etcd.spec.etcd.bootstrap_with_existing_cluster =
            Some(druid_api::etcd::BootstrapWithExistingCluster {
                client_endpoints: vec!["http://10.0.0.1:2379".into()],
                members: vec![druid_api::etcd::BootstrapExistingMember {
                    name: "vm-a".into(),
                    peer_urls: vec!["http://10.0.0.1:2380".into()],
                }],
            });
        let policy = build(&etcd, &model(&etcd), &context()).unwrap().unwrap();
        let open: Vec<_> = policy
            .spec
            .unwrap()
            .ingress
            .unwrap()
            .iter()
            .filter(|r| r.from.is_none())
            .flat_map(|r| r.ports.clone().unwrap())
            .filter_map(|p| p.port)
            .collect();
        assert_eq!(
            open,
            [
                IntOrString::Int(2380),
                IntOrString::Int(2379),
                IntOrString::Int(9095)
            ]
        );
    }
}
