//! `spec.etcd`: how etcd runs (image, quota, ports, schedules, TLS, the
//! client Service).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::tls::{PeerTlsConfig, SecretReference, TlsConfig};

/// How etcd runs.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.bootstrapWithExistingCluster) || has(oldSelf.bootstrapWithExistingCluster)")
        .message("spec.etcd.bootstrapWithExistingCluster can only be set when the Etcd is created (its members join the source cluster when they first start)"),
    validation = Rule::new("!has(self.bootstrapWithExistingCluster) || self.bootstrapWithExistingCluster.members.all(m, m.peerUrls.all(u, u.startsWith(has(self.peerUrlTls) ? 'https://' : 'http://')))")
        .message("spec.etcd.bootstrapWithExistingCluster.members[].peerUrls must use https:// when spec.etcd.peerUrlTls is set, http:// otherwise"),
    validation = Rule::new("!has(self.bootstrapWithExistingCluster) || self.bootstrapWithExistingCluster.clientEndpoints.all(u, u.startsWith(has(self.clientUrlTls) ? 'https://' : 'http://'))")
        .message("spec.etcd.bootstrapWithExistingCluster.clientEndpoints must use https:// when spec.etcd.clientUrlTls is set, http:// otherwise")
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdConfig {
    /// The backend quota (`quota-backend-bytes`), default 8Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quantity>,
    /// The founding manifest's spelling of `quota`; set only one of them.
    #[serde(default, rename = "Quota", skip_serializing_if = "Option::is_none")]
    pub quota_legacy: Option<Quantity>,
    /// The etcd container image (`repository:tag`); or use
    /// `imageRepository` and `imageVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The etcd image repository (with `imageVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// The etcd image tag (with `imageRepository`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_version: Option<String>,
    /// The image pull policy of both containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// The founding manifest's place for the data volume size; the same as
    /// `spec.storageCapacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_capacity: Option<Quantity>,
    /// The founding manifest's place for the storage class; the same as
    /// `spec.storageClass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Serve clients over TLS with `spec.tlsServerSecret` and
    /// `spec.tlsClientSecret` (the founding manifest's form of
    /// `clientUrlTls`).
    #[serde(default, rename = "enableTLS", skip_serializing_if = "Option::is_none")]
    pub enable_tls: Option<bool>,
    /// `new` (default) or `existing`: the etcd initial cluster state of a
    /// first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cluster_state: Option<InitialClusterState>,
    /// The etcd initial cluster token (default: `etcd-cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cluster_token: Option<String>,
    /// `basic` (default) or `extensive` etcd metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsLevel>,
    /// Resources of the etcd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The client port (default 2379).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("spec.etcd.clientPort must be a port number (1-65535)"))]
    pub client_port: Option<i32>,
    /// The peer port (default 2380).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("spec.etcd.serverPort must be a port number (1-65535)"))]
    pub server_port: Option<i32>,
    /// The port of the etcd wrapper's readiness endpoint (default 9095).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("spec.etcd.wrapperPort must be a port number (1-65535)"))]
    pub wrapper_port: Option<i32>,
    /// When the sidecar defragments etcd (cron, five fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = cron_rule!("spec.etcd.defragmentationSchedule"))]
    pub defragmentation_schedule: Option<String>,
    /// How long one defragmentation may take (default 15m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.etcd.etcdDefragTimeout"))]
    pub etcd_defrag_timeout: Option<String>,
    /// How often the sidecar renews its member lease (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = duration_rule!("spec.etcd.heartbeatDuration"))]
    pub heartbeat_duration: Option<String>,
    /// etcd `snapshot-count` (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<i64>,
    /// Enable etcd's gRPC gateway.
    #[serde(
        default,
        rename = "enableGRPCGateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_grpc_gateway: Option<bool>,
    /// TLS for client connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url_tls: Option<TlsConfig>,
    /// TLS for peer connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_url_tls: Option<PeerTlsConfig>,
    /// Extra labels, annotations and traffic distribution of the client
    /// Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_service: Option<ClientService>,
    /// Accepted for compatibility; unused (as upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretReference>,
    /// bbolt freelist type: `array` (default) or `map`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_bbolt_freelist_type: Option<FreelistType>,
    /// Extra peer URLs each member advertises.
    #[serde(
        default,
        rename = "additionalAdvertisePeerURLs",
        skip_serializing_if = "Option::is_none"
    )]
    pub additional_advertise_peer_urls: Option<Vec<AdditionalPeerUrls>>,
    /// Join an existing etcd cluster instead of founding a new one: the
    /// members start as learners of the source cluster, one at a time, and
    /// are promoted once caught up. Set it only when the Etcd is created;
    /// remove it, once the `BootstrappedWithExistingCluster` condition is
    /// True, to cut over: the operator moves leadership to a member of this
    /// Etcd and removes the source members from the cluster, one by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_with_existing_cluster: Option<BootstrapWithExistingCluster>,
}

/// CEL over a list of URLs: each is an http:// or https:// URL.
const URLS_RULE: &str =
    "self.all(u, (u.startsWith('http://') || u.startsWith('https://')) && isURL(u))";

/// The source cluster an Etcd joins.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("self.members.all(a, self.members.filter(b, b.name == a.name).size() == 1)")
        .message("spec.etcd.bootstrapWithExistingCluster.members[].name must be unique")
)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapWithExistingCluster {
    /// Client URLs of the source cluster, through which the members join
    /// (member add, promote), e.g. `https://etcd-source-client.ns.svc:2379`.
    #[schemars(length(min = 1, max = 10), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new(URLS_RULE).message("spec.etcd.bootstrapWithExistingCluster.clientEndpoints must be http:// or https:// URLs (e.g. https://etcd-source-client.source-ns.svc:2379)"))]
    pub client_endpoints: Vec<String>,
    /// The members of the source cluster, with their peer URLs.
    #[schemars(length(min = 1, max = 10))]
    pub members: Vec<BootstrapExistingMember>,
}

/// One member of the source cluster.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapExistingMember {
    /// The member's etcd name in the source cluster.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The member's peer URLs, e.g. `https://10.0.0.1:2380`.
    #[schemars(length(min = 1, max = 5), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new(URLS_RULE).message("bootstrapWithExistingCluster.members[].peerUrls must be http:// or https:// URLs (e.g. https://10.0.0.1:2380)"))]
    pub peer_urls: Vec<String>,
}

/// Image pull policy.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// etcd's initial cluster state.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialClusterState {
    /// A new cluster.
    #[default]
    New,
    /// Joining an existing cluster.
    Existing,
}

/// etcd's metrics level.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// The default metrics.
    #[default]
    Basic,
    /// Also histograms per gRPC method.
    Extensive,
}

/// bbolt freelist type.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FreelistType {
    /// Array freelist (the safe default).
    #[default]
    Array,
    /// Hash-map freelist.
    Map,
}

/// The client Service's extras.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientService {
    /// Extra annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Extra labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `PreferSameZone`, `PreferSameNode` or `PreferClose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<TrafficDistribution>,
}

/// Service traffic distribution.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficDistribution {
    /// Prefer endpoints in the same zone.
    PreferSameZone,
    /// Prefer endpoints on the same node.
    PreferSameNode,
    /// Prefer close endpoints.
    PreferClose,
}

/// Extra peer URLs of one member.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalPeerUrls {
    /// The member (pod) name, e.g. `etcd-main-0`.
    pub member_name: String,
    /// The URLs.
    pub urls: Vec<String>,
}
