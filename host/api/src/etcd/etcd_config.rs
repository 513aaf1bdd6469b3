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
