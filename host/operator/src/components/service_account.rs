//! The ServiceAccount the pods run as (`<etcd>`).

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::core::v1::ServiceAccount;

use super::{BuildContext, BuildError, metadata};
use crate::names;

/// Builds the ServiceAccount of the etcd pods.
///
/// Its token is not mounted by default: only the sidecar talks to the API
/// server (to renew its leases), and the StatefulSet's pod template asks for
/// the token explicitly, so any other pod that happened to use this account
/// would get no credentials.
pub fn build(
    etcd: &Etcd,
    model: &EtcdModel,
    _ctx: &BuildContext,
) -> Result<ServiceAccount, BuildError> {
    Ok(ServiceAccount {
        metadata: metadata(
            etcd,
            names::service_account(&model.name),
            names::component::SERVICE_ACCOUNT,
        )?,
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
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
    fn no_uid_is_an_error() {
        let mut etcd = seed();
        let m = model(&etcd);
        etcd.metadata.uid = None;
        assert!(matches!(
            super::build(&etcd, &m, &context()),
            Err(super::BuildError::NoUid(_))
        ));
    }
}
