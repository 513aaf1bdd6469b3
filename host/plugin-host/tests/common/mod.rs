//! Helpers shared by the plugin-host tests.
#![allow(dead_code, reason = "each test binary uses a part")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use druid_plugin_host::{Limits, PluginHost, Registry, StoreConfig};
use druid_test_support::{MinioServer, plugin_components};

/// A registry of the shipped plugins (the plugins directory) plus the
/// hostile test plugin as a built-in one.
pub async fn registry(limits: Limits) -> Registry {
    let components = plugin_components();
    let hostile = std::fs::read(components.get("druid-test-plugin-hostile")).unwrap();
    let host = Arc::new(PluginHost::new(limits).unwrap());
    Registry::load(host, Some(components.dir()), &[("hostile", &hostile)])
        .await
        .unwrap()
}

/// A store configuration from string pairs.
pub fn config(
    provider: &str,
    container: &str,
    endpoint: Option<&str>,
    creds: &[(&str, &str)],
) -> StoreConfig {
    StoreConfig {
        provider: provider.into(),
        container: container.into(),
        prefix: "etcd-test".into(),
        endpoint: endpoint.map(Into::into),
        credentials: creds
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect::<BTreeMap<_, _>>(),
        local_root: None,
    }
}

/// A Local store in `root/container` (created).
pub fn local_config(root: &Path, container: &str) -> StoreConfig {
    std::fs::create_dir_all(root.join(container)).unwrap();
    let mut c = config("Local", container, None, &[]);
    c.local_root = Some(root.to_path_buf());
    c
}

/// An S3 store on the shared MinIO server, in bucket `bucket` (created).
pub fn minio_config(bucket: &str) -> StoreConfig {
    let minio = MinioServer::shared();
    minio.create_bucket(bucket).unwrap();
    minio_config_with(bucket, minio.secret_key())
}

/// An S3 store on the shared MinIO server with the given secret key; the
/// bucket is not created.
pub fn minio_config_with(bucket: &str, secret: &str) -> StoreConfig {
    let minio = MinioServer::shared();
    config(
        "S3",
        bucket,
        Some(minio.endpoint()),
        &[
            ("region", minio.region()),
            ("accessKeyID", minio.access_key()),
            ("secretAccessKey", secret),
        ],
    )
}

/// An ABS store on the shared Azurite server, in container `container`
/// (created), with the development account's key.
pub fn azurite_config(container: &str) -> StoreConfig {
    let azurite = druid_test_support::AzuriteServer::shared();
    azurite.create_container(container).unwrap();
    azurite_config_with(container, azurite.key())
}

/// An ABS store on the shared Azurite server with the given account key
/// (base64); the container is not created.
pub fn azurite_config_with(container: &str, key: &str) -> StoreConfig {
    let azurite = druid_test_support::AzuriteServer::shared();
    config(
        "ABS",
        container,
        Some(azurite.endpoint()),
        &[("storageAccount", azurite.account()), ("storageKey", key)],
    )
}

/// A GCS store on the shared fake-gcs-server, in bucket `bucket`
/// (created), in upstream's emulator form: the override with
/// `/storage/v1/`, plain http, no token.
pub fn fake_gcs_config(bucket: &str) -> StoreConfig {
    let gcs = druid_test_support::FakeGcsServer::shared();
    gcs.create_bucket(bucket).unwrap();
    let endpoint = format!("{}/storage/v1/", gcs.endpoint());
    config(
        "GCS",
        bucket,
        Some(&endpoint),
        &[("serviceaccount.json", "{}")],
    )
}

/// A GCS store behind `gate` (the test token endpoint in front of the
/// shared fake-gcs-server), with the test service account: every request
/// needs a token the gate issued.
pub fn gated_gcs_config(gate: &druid_test_support::GcsAuthGate, bucket: &str) -> StoreConfig {
    let gcs = druid_test_support::FakeGcsServer::shared();
    gcs.create_bucket(bucket).unwrap();
    let mut c = config("gcp", bucket, Some(gate.endpoint()), &[]);
    c.credentials = gate.service_account().into_iter().collect();
    c
}

/// A Swift store on the shared Swift (with Keystone v3), in container
/// `container` (created), signed in with the test user's password. The
/// catalog's object store is on another port than Keystone, so the
/// override names it (the host allows only what the user named).
pub fn swift_config(container: &str) -> StoreConfig {
    let swift = druid_test_support::SwiftServer::shared();
    swift.create_container(container).unwrap();
    swift_config_with(container, swift.password())
}

/// A Swift store on the shared Swift with the given password; the
/// container is not created.
pub fn swift_config_with(container: &str, password: &str) -> StoreConfig {
    let swift = druid_test_support::SwiftServer::shared();
    config(
        "Swift",
        container,
        Some(swift.proxy_url()),
        &swift.store_secret(password),
    )
}

/// An OSS store on the shared OSS gateway (MinIO behind a front that
/// checks each request's OSS V4 signature with Alibaba's Go SDK), in
/// bucket `bucket` (created), with the gateway's key.
pub fn oss_config(bucket: &str) -> StoreConfig {
    let oss = druid_test_support::OssGateway::shared();
    oss.create_bucket(bucket).unwrap();
    oss_config_with(bucket, oss.secret())
}

/// An OSS store on the shared OSS gateway with the given AccessKey
/// secret; the bucket is not created.
pub fn oss_config_with(bucket: &str, secret: &str) -> StoreConfig {
    let oss = druid_test_support::OssGateway::shared();
    config("OSS", bucket, None, &oss.store_secret(secret))
}
