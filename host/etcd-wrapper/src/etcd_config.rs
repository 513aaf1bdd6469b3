//! What the wrapper needs from etcd's configuration file: its name and
//! data directory (for the log) and its client TLS files, which decide, as
//! upstream, whether the readiness check talks TLS to etcd and whether the
//! wrapper's own server is HTTPS.

use std::path::PathBuf;

use serde_yaml_ng::{Mapping, Value};

use crate::Error;

/// etcd's client-facing TLS (`client-transport-security`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// etcd's serving certificate.
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// The CA etcd's clients (and its certificate) are checked against.
    pub trusted_ca_file: PathBuf,
}

/// The parts of etcd's configuration the wrapper uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `name`.
    pub name: Option<String>,
    /// `data-dir`.
    pub data_dir: Option<String>,
    /// Client TLS, when cert, key and trusted CA are all set (upstream's
    /// condition).
    pub client_tls: Option<ClientTls>,
}

fn text<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get(Value::String(key.to_string()))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl EtcdConfig {
    /// Parses the YAML the sidecar served.
    pub fn parse(yaml: &str) -> Result<Self, Error> {
        let map: Mapping = serde_yaml_ng::from_str(yaml)
            .map_err(|e| Error::Config(format!("not a YAML mapping: {e}")))?;
        let client_tls = map
            .get(Value::String("client-transport-security".into()))
            .and_then(Value::as_mapping)
            .and_then(|tls| {
                Some(ClientTls {
                    cert_file: text(tls, "cert-file")?.into(),
                    key_file: text(tls, "key-file")?.into(),
                    trusted_ca_file: text(tls, "trusted-ca-file")?.into(),
                })
            });
        Ok(EtcdConfig {
            name: text(&map, "name").map(str::to_string),
            data_dir: text(&map, "data-dir").map(str::to_string),
            client_tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tls_needs_all_three_files() {
        let plain = EtcdConfig::parse("name: m0\ndata-dir: /var/etcd/data/new.etcd\n").unwrap();
        assert_eq!(plain.name.as_deref(), Some("m0"));
        assert_eq!(plain.client_tls, None);
        let tls = EtcdConfig::parse(
            "name: m0\nclient-transport-security:\n  cert-file: /s/tls.crt\n  key-file: /s/tls.key\n  trusted-ca-file: /ca/ca.crt\n  client-cert-auth: true\n",
        )
        .unwrap();
        assert_eq!(
            tls.client_tls.unwrap().cert_file,
            PathBuf::from("/s/tls.crt")
        );
        let partial = EtcdConfig::parse(
            "client-transport-security:\n  cert-file: /s/tls.crt\n  key-file: ''\n",
        )
        .unwrap();
        assert_eq!(partial.client_tls, None);
        assert!(EtcdConfig::parse("- a list").is_err());
    }
}
