//! The client Service (`<etcd>-client`): etcd's clients, the peer port and
//! the sidecar's HTTP API behind one ClusterIP.

use druid_api::etcd::TrafficDistribution;
use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Builds the client Service. The spec's extra labels and annotations are
/// added (the operator's own labels win, since the operator finds its objects
/// by them); its traffic distribution is passed on.
pub fn build(etcd: &Etcd, model: &EtcdModel, _ctx: &BuildContext) -> Result<Service, BuildError> {
    let mut meta = metadata(
        etcd,
        names::client_service(&model.name),
        names::component::CLIENT_SERVICE,
    )?;
    let extras = &model.etcd.client_service;
    if let Some(extra) = &extras.labels {
        let mut labels = extra.clone();
        labels.extend(meta.labels.take().unwrap_or_default());
        meta.labels = Some(labels);
    }
    if let Some(annotations) = extras.annotations.as_ref().filter(|a| !a.is_empty()) {
        meta.annotations = Some(annotations.clone());
    }
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        protocol: Some("TCP".into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        ..ServicePort::default()
    };
    Ok(Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(
                names::selector(Some(&model.name), Some(names::component::STATEFULSET))
                    .into_labels(),
            ),
            ports: Some(vec![
                port("client", model.etcd.client_port),
                port("server", model.etcd.server_port),
                port("backuprestore", model.backup.port),
            ]),
            traffic_distribution: extras.traffic_distribution.map(|t| {
                match t {
                    TrafficDistribution::PreferSameZone => "PreferSameZone",
                    TrafficDistribution::PreferSameNode => "PreferSameNode",
                    TrafficDistribution::PreferClose => "PreferClose",
                }
                .to_string()
            }),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::collections::BTreeMap;

    use druid_api::etcd::{ClientService, TrafficDistribution};

    use super::super::fixtures::{context, model, seed};

    #[test]
    fn seed_snapshot() {
        let etcd = seed();
        insta::assert_yaml_snapshot!(super::build(&etcd, &model(&etcd), &context()).unwrap());
    }

    #[test]
    fn client_service_extras_are_applied() {
        let mut etcd = seed();
        etcd.spec.etcd.client_service = Some(ClientService {
            annotations: Some(BTreeMap::from([("a".into(), "b".into())])),
            labels: Some(BTreeMap::from([
                ("team".into(), "x".into()),
                ("app.kubernetes.io/part-of".into(), "other".into()),
            ])),
            traffic_distribution: Some(TrafficDistribution::PreferSameZone),
        });
        let svc = super::build(&etcd, &model(&etcd), &context()).unwrap();
        insta::assert_yaml_snapshot!(svc);
        let labels = svc.metadata.labels.unwrap();
        assert_eq!(labels["team"], "x");
        assert_eq!(labels["app.kubernetes.io/part-of"], "test");
    }
}
