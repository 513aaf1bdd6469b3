//! Secret references and the TLS material of an endpoint (a CA, a server
//! certificate, optionally a client certificate).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to a Secret.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
pub struct SecretReference {
    /// The Secret's name.
    pub name: String,
    /// Its namespace (default: the Etcd's; other namespaces are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a CA bundle in a Secret.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretReference {
    /// The Secret's name.
    pub name: String,
    /// Its namespace (default: the Etcd's; other namespaces are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The key holding the CA bundle (default `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key: Option<String>,
}

/// TLS material for one endpoint: a CA, a server certificate and optionally
/// a client certificate (Secrets with `tls.crt` and `tls.key`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// The CA bundle.
    #[serde(rename = "tlsCASecretRef")]
    pub tls_ca_secret_ref: CaSecretReference,
    /// The server certificate.
    #[serde(rename = "serverTLSSecretRef")]
    pub server_tls_secret_ref: SecretReference,
    /// The client certificate.
    #[serde(
        default,
        rename = "clientTLSSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_tls_secret_ref: Option<SecretReference>,
}

/// Peer TLS.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerTlsConfig {
    /// The CA bundle.
    #[serde(rename = "tlsCASecretRef")]
    pub tls_ca_secret_ref: CaSecretReference,
    /// The peer server certificate.
    #[serde(rename = "serverTLSSecretRef")]
    pub server_tls_secret_ref: SecretReference,
    /// Accepted for compatibility; peers use no client certificate.
    #[serde(
        default,
        rename = "clientTLSSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_tls_secret_ref: Option<SecretReference>,
    /// Skip the SAN check of peer client certificates.
    #[serde(
        default,
        rename = "skipClientSANVerification",
        skip_serializing_if = "Option::is_none"
    )]
    pub skip_client_san_verification: Option<bool>,
}
