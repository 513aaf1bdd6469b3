//! The headless peer Service (`<etcd>-peer`): stable DNS names
//! `<pod>.<etcd>-peer.<ns>.svc` for the members, and the StatefulSet's
//! governing service.

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Builds the peer Service: headless, and publishing pods before they are
/// ready, since members must find each other to become ready at all.
pub fn build(etcd: &Etcd, model: &EtcdModel, _ctx: &BuildContext) -> Result<Service, BuildError> {
    Ok(Service {
        metadata: metadata(
            etcd,
            names::peer_service(&model.name),
            names::component::PEER_SERVICE,
        )?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(
                names::selector(Some(&model.name), Some(names::component::STATEFULSET))
                    .into_labels(),
            ),
            ports: Some(vec![ServicePort {
                name: Some("peer".into()),
                protocol: Some("TCP".into()),
                port: model.etcd.server_port,
                target_port: Some(IntOrString::Int(model.etcd.server_port)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
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
