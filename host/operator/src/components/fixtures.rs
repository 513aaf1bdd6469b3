//! Etcds for the builder tests.
#![allow(clippy::unwrap_used, reason = "test fixtures")]

use druid_api::{Etcd, EtcdModel};
use druid_plugin_host::CheckedWiring;

use super::BuildContext;

/// The founding manifest, as stored by the API server.
pub fn seed() -> Etcd {
    let mut etcd: Etcd =
        serde_yaml_ng::from_str(include_str!("../../../../deploy/samples/seed-etcd.yaml")).unwrap();
    etcd.metadata.uid = Some("4b1d6f0e-0000-4000-8000-000000000001".into());
    etcd.metadata.generation = Some(1);
    etcd
}

/// The model of an Etcd.
pub fn model(etcd: &Etcd) -> EtcdModel {
    EtcdModel::from_etcd(etcd).unwrap()
}

/// Points `etcd` at a Local store and returns the context with the
/// wiring the Local plugin gives for it (a host path).
pub fn local_store(etcd: &mut Etcd) -> BuildContext {
    etcd.spec.store = None;
    etcd.spec.backup.store = Some(druid_api::etcd::StoreSpec {
        provider: Some("Local".into()),
        container: Some("bucket".into()),
        prefix: "etcd-test".into(),
        secret_ref: None,
        endpoint_override: None,
    });
    BuildContext {
        store_wiring: Some(CheckedWiring {
            env: vec![
                ("STORAGE_CONTAINER".into(), "bucket".into()),
                ("LOCAL_STORE_ROOT".into(), "/var/etcd-backup-local".into()),
            ],
            store_secret: false,
            local_dir: Some("/var/lib/druid/local-backupbuckets".into()),
        }),
        ..context()
    }
}

/// A context with the S3 wiring the S3 plugin gives for the seed.
pub fn context() -> BuildContext {
    BuildContext {
        etcd_image: "europe-docker.pkg.dev/gardener-project/releases/gardener/etcd-wrapper:v0.6.2"
            .into(),
        backup_image: "ghcr.io/druid-rs/etcdbr:v0.1.0".into(),
        plugins_image: None,
        store_wiring: Some(CheckedWiring {
            env: vec![
                ("STORAGE_CONTAINER".into(), "test".into()),
                (
                    "AWS_APPLICATION_CREDENTIALS".into(),
                    "/var/etcd-backup".into(),
                ),
            ],
            store_secret: true,
            local_dir: None,
        }),
        operator_pods: Some(super::network_policy::OperatorPods {
            namespace: "druid-system".into(),
            labels: [("app.kubernetes.io/name".to_string(), "druid".to_string())].into(),
        }),
    }
}
