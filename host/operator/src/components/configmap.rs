//! The ConfigMap (`<etcd>-config`, component label `etcd-configmap` as
//! upstream's) with etcd's configuration file.
//!
//! The sidecar serves this file to the etcd wrapper (`GET /config`) after
//! filling in the member's own values: its name, its advertise URLs (picked
//! from the per-member maps below) and the initial cluster state.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use druid_api::etcd::{AutoCompactionMode, FreelistType, InitialClusterState, MetricsLevel};
use druid_api::model::Tls;
use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::pod::paths;
use super::{BuildContext, BuildError, metadata};
use crate::names;

/// The key of etcd's configuration file in the ConfigMap (and its file name
/// in the sidecar's config volume).
pub const CONFIG_KEY: &str = "etcd.conf.yaml";

/// The placeholder name; the sidecar replaces it with the member's name.
const PLACEHOLDER_NAME: &str = "etcd-config";

/// etcd's YAML configuration file, in the order it is written.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct EtcdConfigFile<'a> {
    name: &'static str,
    data_dir: String,
    metrics: MetricsLevel,
    snapshot_count: i64,
    enable_grpc_gateway: bool,
    quota_backend_bytes: i64,
    initial_cluster_token: &'a str,
    initial_cluster_state: InitialClusterState,
    initial_cluster: String,
    auto_compaction_mode: AutoCompactionMode,
    auto_compaction_retention: &'a str,
    listen_peer_urls: String,
    listen_client_urls: String,
    /// Member name → its peer URLs (the sidecar picks its own entry).
    initial_advertise_peer_urls: BTreeMap<String, Vec<String>>,
    /// Member name → its client URLs (the sidecar picks its own entry).
    advertise_client_urls: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_transport_security: Option<TransportSecurity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_transport_security: Option<TransportSecurity>,
    backend_bbolt_freelist_type: FreelistType,
    /// Read by the sidecar to name the member `<prefix>-<pod>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    member_name_prefix: Option<&'a str>,
    /// As upstream: lets a member of this version join a cluster whose
    /// version is one minor release higher (the read path of an
    /// upgrade's rollback); etcd versions that do not know it ignore it.
    next_cluster_version_compatible: bool,
}

/// TLS of one of etcd's listeners.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct TransportSecurity {
    cert_file: String,
    key_file: String,
    client_cert_auth: bool,
    trusted_ca_file: String,
    auto_tls: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skip_client_san_verification: bool,
}

impl TransportSecurity {
    fn new(tls: &Tls, ca_dir: &str, server_dir: &str) -> Self {
        Self {
            cert_file: format!("{server_dir}/tls.crt"),
            key_file: format!("{server_dir}/tls.key"),
            client_cert_auth: true,
            trusted_ca_file: format!("{ca_dir}/{}", tls.ca_key),
            auto_tls: false,
            skip_client_san_verification: tls.skip_client_san_verification,
        }
    }
}

/// `http` or `https`.
fn scheme(tls: Option<&Tls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// The peer URL of ordinal `i` over the peer Service's DNS.
fn peer_url(model: &EtcdModel, i: i32) -> String {
    format!(
        "{}://{}.{}.{}.svc:{}",
        scheme(model.etcd.peer_tls.as_ref()),
        names::pod(&model.name, i),
        names::peer_service(&model.name),
        model.namespace,
        model.etcd.server_port
    )
}

/// The client URL of ordinal `i` over the peer Service's DNS.
fn client_url(model: &EtcdModel, i: i32) -> String {
    format!(
        "{}://{}.{}.{}.svc:{}",
        scheme(model.etcd.client_tls.as_ref()),
        names::pod(&model.name, i),
        names::peer_service(&model.name),
        model.namespace,
        model.etcd.client_port
    )
}

/// Every peer URL of ordinal `i`: the cluster-internal one, then the extra
/// ones the spec lists for that member (by pod or member name).
pub fn peer_urls(model: &EtcdModel, i: i32) -> Vec<String> {
    let pod = names::pod(&model.name, i);
    let member = names::member(model, i);
    let mut urls = vec![peer_url(model, i)];
    if let Some(extra) = model
        .etcd
        .additional_peer_urls
        .iter()
        .find(|a| a.member_name == pod || a.member_name == member)
    {
        urls.extend(extra.urls.iter().cloned());
    }
    urls
}

/// Renders etcd's configuration file for `model`.
pub fn render(model: &EtcdModel) -> Result<String, BuildError> {
    let members = 0..model.replicas.max(0);
    let initial_cluster = members
        .clone()
        .flat_map(|i| {
            let member = names::member(model, i);
            peer_urls(model, i)
                .into_iter()
                .map(move |url| format!("{member}={url}"))
        })
        // The members of a source cluster being joined: a joining member
        // names every member of the cluster it joins.
        .chain(model.etcd.existing_cluster.iter().flat_map(|source| {
            source.members.iter().flat_map(|m| {
                m.peer_urls
                    .iter()
                    .map(move |url| format!("{}={url}", m.name))
            })
        }))
        .collect::<Vec<_>>()
        .join(",");
    let config =
        EtcdConfigFile {
            name: PLACEHOLDER_NAME,
            data_dir: paths::DATA_DIR.to_string(),
            metrics: model.etcd.metrics,
            snapshot_count: model.etcd.snapshot_count,
            enable_grpc_gateway: model.etcd.grpc_gateway,
            quota_backend_bytes: model.etcd.quota_bytes,
            initial_cluster_token: &model.etcd.initial_cluster_token,
            initial_cluster_state: model.etcd.initial_cluster_state,
            initial_cluster,
            auto_compaction_mode: model.auto_compaction_mode,
            auto_compaction_retention: &model.auto_compaction_retention,
            listen_peer_urls: format!(
                "{}://0.0.0.0:{}",
                scheme(model.etcd.peer_tls.as_ref()),
                model.etcd.server_port
            ),
            listen_client_urls: format!(
                "{}://0.0.0.0:{}",
                scheme(model.etcd.client_tls.as_ref()),
                model.etcd.client_port
            ),
            initial_advertise_peer_urls: members
                .clone()
                .map(|i| (names::member(model, i), peer_urls(model, i)))
                .collect(),
            advertise_client_urls: members
                .map(|i| (names::member(model, i), vec![client_url(model, i)]))
                .collect(),
            client_transport_security: model
                .etcd
                .client_tls
                .as_ref()
                .map(|t| TransportSecurity::new(t, paths::ETCD_CA, paths::ETCD_SERVER_TLS)),
            peer_transport_security: model.etcd.peer_tls.as_ref().map(|t| {
                TransportSecurity::new(t, paths::ETCD_PEER_CA, paths::ETCD_PEER_SERVER_TLS)
            }),
            backend_bbolt_freelist_type: model.etcd.freelist_type,
            member_name_prefix: model.member_name_prefix.as_deref(),
            next_cluster_version_compatible: true,
        };
    serde_yaml_ng::to_string(&config).map_err(|e| BuildError::Render {
        what: "etcd.conf.yaml",
        reason: e.to_string(),
    })
}

/// Builds the ConfigMap with etcd's configuration under [`CONFIG_KEY`].
pub fn build(etcd: &Etcd, model: &EtcdModel, _ctx: &BuildContext) -> Result<ConfigMap, BuildError> {
    Ok(ConfigMap {
        metadata: metadata(
            etcd,
            names::config_map(&model.name),
            names::component::CONFIG_MAP,
        )?,
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), render(model)?)])),
        ..ConfigMap::default()
    })
}

/// The checksum that rolls the pods ([`names::CONFIG_CHECKSUM_ANNOTATION`]):
/// [`checksum`] of the ConfigMap as built for one member. The member list
/// (`initial-cluster` and the members' URLs) changes with `spec.replicas`,
/// but etcd reads it only when a member first starts: running members need
/// not restart when members come or go, and restarting them during a
/// scale-in would cost a 2-member cluster its quorum. Any other change
/// rolls the pods.
pub fn pod_checksum(
    etcd: &Etcd,
    model: &EtcdModel,
    ctx: &BuildContext,
) -> Result<String, BuildError> {
    let one = EtcdModel {
        replicas: 1,
        ..model.clone()
    };
    Ok(checksum(&build(etcd, &one, ctx)?))
}

/// The SHA-256 (hex) of the ConfigMap's data: every key and value, in key
/// order, each followed by a NUL byte.
pub fn checksum(cm: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in cm.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize() {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use druid_api::etcd::{AdditionalPeerUrls, CaSecretReference, PeerTlsConfig, SecretReference};

    use super::super::fixtures::{context, model, seed};
    use super::{CONFIG_KEY, build, checksum, pod_checksum, render};

    #[test]
    fn seed_snapshot() {
        let etcd = seed();
        insta::assert_yaml_snapshot!(build(&etcd, &model(&etcd), &context()).unwrap());
    }

    #[test]
    fn seed_config_file_snapshot() {
        // The file itself, readable (the snapshot above shows it as one
        // escaped string).
        let etcd = seed();
        insta::assert_snapshot!(render(&model(&etcd)).unwrap());
    }

    #[test]
    fn three_members_with_tls_prefix_and_extra_peer_urls() {
        let mut etcd = seed();
        etcd.spec.replicas = 3;
        etcd.spec.member_name_prefix = Some("main".into());
        etcd.spec.etcd.enable_tls = Some(true);
        etcd.spec.etcd.peer_url_tls = Some(PeerTlsConfig {
            tls_ca_secret_ref: CaSecretReference {
                name: "peer-ca".into(),
                namespace: None,
                data_key: Some("bundle.crt".into()),
            },
            server_tls_secret_ref: SecretReference {
                name: "peer-server".into(),
                namespace: None,
            },
            client_tls_secret_ref: None,
            skip_client_san_verification: Some(true),
        });
        etcd.spec.etcd.additional_advertise_peer_urls = Some(vec![AdditionalPeerUrls {
            member_name: "test-1".into(),
            urls: vec!["https://10.0.0.1:2380".into()],
        }]);
        let text = render(&model(&etcd)).unwrap();
        insta::assert_snapshot!(text);
        assert!(text.contains("listen-client-urls: https://0.0.0.0:2379"));
        assert!(text.contains("listen-peer-urls: https://0.0.0.0:2380"));
        assert!(text.contains(
            "main-test-1=https://test-1.test-peer.demo.svc:2380,main-test-1=https://10.0.0.1:2380"
        ));
        assert!(text.contains("trusted-ca-file: /var/etcd/ssl/peer/ca/bundle.crt"));
    }

    #[test]
    fn plain_http_without_tls() {
        let etcd = seed();
        let text = render(&model(&etcd)).unwrap();
        assert!(text.contains("listen-client-urls: http://0.0.0.0:2379"));
        assert!(!text.contains("transport-security"));
        assert!(text.contains("initial-cluster: test-0=http://test-0.test-peer.demo.svc:2380\n"));
    }

    #[test]
    fn joining_members_name_the_source_members_in_the_initial_cluster() {
        use druid_api::etcd::{BootstrapExistingMember, BootstrapWithExistingCluster};
        let mut etcd = seed();
        etcd.spec.replicas = 2;
        etcd.spec.etcd.bootstrap_with_existing_cluster = Some(BootstrapWithExistingCluster {
            client_endpoints: vec!["http://10.0.0.1:2379".into()],
            members: vec![
                BootstrapExistingMember {
                    name: "vm-a".into(),
                    peer_urls: vec![
                        "http://10.0.0.1:2380".into(),
                        "http://a.example:2380".into(),
                    ],
                },
                BootstrapExistingMember {
                    name: "vm-b".into(),
                    peer_urls: vec!["http://10.0.0.2:2380".into()],
                },
            ],
        });
        let text = render(&model(&etcd)).unwrap();
        assert!(
            text.contains(concat!(
                "initial-cluster: test-0=http://test-0.test-peer.demo.svc:2380,",
                "test-1=http://test-1.test-peer.demo.svc:2380,",
                "vm-a=http://10.0.0.1:2380,vm-a=http://a.example:2380,vm-b=http://10.0.0.2:2380\n"
            )),
            "{text}"
        );
        // The source members' own URLs are theirs: no entry to pick.
        assert!(!text.contains("  vm-a:"), "{text}");
    }

    #[test]
    fn checksum_follows_the_config() {
        let etcd = seed();
        let ctx = context();
        let a = build(&etcd, &model(&etcd), &ctx).unwrap();
        let again = build(&etcd, &model(&etcd), &ctx).unwrap();
        assert_eq!(checksum(&a), checksum(&again));
        assert_eq!(checksum(&a).len(), 64);

        let mut bigger = etcd.clone();
        bigger.spec.replicas = 3;
        let b = build(&bigger, &model(&bigger), &ctx).unwrap();
        assert_ne!(checksum(&a), checksum(&b));

        let mut edited = a.clone();
        if let Some(data) = edited.data.as_mut() {
            data.insert(CONFIG_KEY.into(), "snapshot-count: 1\n".into());
        }
        assert_ne!(checksum(&a), checksum(&edited));
    }

    #[test]
    fn the_pods_checksum_ignores_the_member_count_but_not_the_rest() {
        let etcd = seed();
        let ctx = context();
        let sum = |e: &druid_api::Etcd| pod_checksum(e, &model(e), &ctx).unwrap();
        let mut three = etcd.clone();
        three.spec.replicas = 3;
        let mut two = etcd.clone();
        two.spec.replicas = 2;
        // Members coming or going restart no running member.
        assert_eq!(sum(&etcd), sum(&three));
        assert_eq!(sum(&three), sum(&two));
        // The configuration itself still rolls them.
        let mut snapshots = three.clone();
        snapshots.spec.etcd.snapshot_count = Some(1234);
        assert_ne!(sum(&three), sum(&snapshots));
    }
}
