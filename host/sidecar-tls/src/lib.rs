//! The client side of the sidecar's HTTPS API: which CA to trust and which
//! client certificate to present, as a [`ureq::tls::TlsConfig`]. See the
//! crate's README.

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// Why the TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA bundle holds no certificate.
    #[error("the CA bundle {what} holds no PEM certificate")]
    NoCa {
        /// Where the bundle came from (a file or a Secret).
        what: String,
    },
    /// The client certificate file holds no certificate.
    #[error("the client certificate {what} holds no PEM certificate")]
    NoClientCert {
        /// Where it came from.
        what: String,
    },
    /// The client key is missing or not a PEM private key.
    #[error("the client key {what} is not a PEM private key: {reason}")]
    BadClientKey {
        /// Where it came from.
        what: String,
        /// What the PEM parser found instead of a private key.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// What a client of the sidecar trusts and presents.
#[derive(Debug, Clone)]
pub struct SidecarTls {
    roots: Vec<Certificate<'static>>,
    client: Option<ClientCert>,
}

impl SidecarTls {
    /// Trusts the certificates of `ca_pem` (`ca_what` names its source in
    /// errors).
    pub fn new(ca_pem: &[u8], ca_what: &str) -> Result<Self, TlsError> {
        let roots = certificates(ca_pem);
        if roots.is_empty() {
            return Err(TlsError::NoCa {
                what: ca_what.to_string(),
            });
        }
        Ok(Self {
            roots,
            client: None,
        })
    }

    /// Trusts the certificates of the files `paths` (concatenated).
    pub fn from_files<P: AsRef<std::path::Path>>(paths: &[P]) -> Result<Self, TlsError> {
        let mut pem = Vec::new();
        for p in paths {
            pem.extend(read(p.as_ref())?);
            pem.push(b'\n');
        }
        let what = paths
            .iter()
            .map(|p| p.as_ref().display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(&pem, &what)
    }

    /// Also presents `cert_pem` (a chain) with `key_pem` (`what` names
    /// their source in errors).
    pub fn with_client_cert(
        mut self,
        cert_pem: &[u8],
        key_pem: &[u8],
        what: &str,
    ) -> Result<Self, TlsError> {
        let chain = certificates(cert_pem);
        if chain.is_empty() {
            return Err(TlsError::NoClientCert {
                what: what.to_string(),
            });
        }
        let key = PrivateKey::from_pem(key_pem).map_err(|e| TlsError::BadClientKey {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        self.client = Some(ClientCert::new_with_certs(&chain, key));
        Ok(self)
    }

    /// Also presents the certificate and key of these files.
    pub fn with_client_files(
        self,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self, TlsError> {
        let what = format!("{} / {}", cert.display(), key.display());
        self.with_client_cert(&read(cert)?, &read(key)?, &what)
    }

    /// Whether a client certificate is presented.
    pub fn has_client_cert(&self) -> bool {
        self.client.is_some()
    }

    /// The TLS configuration for a ureq agent.
    pub fn config(&self) -> TlsConfig {
        TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&self.roots))
            .client_cert(self.client.clone())
            .build()
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn empty_or_wrong_pem_is_refused_naming_its_source() {
        let err = SidecarTls::new(b"not a pem", "Secret ns/ca").unwrap_err();
        assert!(err.to_string().contains("Secret ns/ca"), "{err}");
        let err = SidecarTls::from_files(&["/nonexistent/ca.crt"]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }
}
