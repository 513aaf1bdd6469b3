//! A test stand-in for a Kubernetes cluster's service-account token issuer
//! (a fake, named as such): it serves OpenID Connect discovery
//! (`/.well-known/openid-configuration`) and its public key set
//! (`/openid/v1/jwks`) as kube-apiserver does with
//! `--service-account-issuer`, and mints tokens shaped like projected
//! service-account tokens (RS256, `kid`, `iss`, `sub`
//! `system:serviceaccount:<ns>:<name>`, `aud`, `iat`, `nbf`, `exp`).
//!
//! An STS service (MinIO's `AssumeRoleWithWebIdentity`) configured with
//! this issuer checks the tokens against the published key, so that the
//! whole web identity exchange runs against a real STS; only the token's
//! issuer is ours. (kube-apiserver's own discovery would need its TLS CA
//! trusted by MinIO and anonymous discovery access: more parts, the same
//! token format.)

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use sha2::Sha256;

use crate::gate::now;
use crate::{Error, Result};

/// The issuer's signing key (tests/support/testdata/README.md).
pub const OIDC_TEST_KEY: &str = include_str!("../testdata/oidc-test-key.pem");

/// The key ID the issuer publishes and puts into its tokens' headers.
pub const OIDC_KEY_ID: &str = "druid-test-issuer-1";

/// A running issuer on a loopback port.
pub struct OidcIssuer {
    url: String,
    key: SigningKey<Sha256>,
    server: Arc<tiny_http::Server>,
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn key(pem: &str, what: &str) -> Result<rsa::PrivateKey> {
    rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|e| Error::Io {
        context: format!("the {what} key"),
        source: std::io::Error::other(e.to_string()),
    })
}

impl OidcIssuer {
    /// Starts the issuer.
    pub fn start() -> Result<Self> {
        let private = key(OIDC_TEST_KEY, "OIDC test issuer")?;
        let public = private.to_public_key();
        let server = Arc::new(
            tiny_http::Server::http("127.0.0.1:0").map_err(|e| Error::Io {
                context: "cannot start the OIDC test issuer".into(),
                source: std::io::Error::other(e.to_string()),
            })?,
        );
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| Error::Io {
                context: "the OIDC test issuer's address".into(),
                source: std::io::Error::other("not an IP address"),
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let discovery = serde_json::json!({
            "issuer": url,
            "jwks_uri": format!("{url}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string();
        let jwks = serde_json::json!({
            "keys": [{
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": OIDC_KEY_ID,
                "n": B64URL.encode(public.n_bytes()),
                "e": B64URL.encode(public.e_bytes()),
            }]
        })
        .to_string();
        let serving = Arc::clone(&server);
        std::thread::spawn(move || {
            for request in serving.incoming_requests() {
                let body = match request.url() {
                    "/.well-known/openid-configuration" => Some(&discovery),
                    "/openid/v1/jwks" => Some(&jwks),
                    _ => None,
                };
                let json = tiny_http::Header::from_bytes("content-type", "application/json").ok();
                let response = match body {
                    Some(b) => tiny_http::Response::from_string(b.clone()),
                    None => tiny_http::Response::from_string("not found").with_status_code(404),
                };
                let response = match json {
                    Some(h) => response.with_header(h),
                    None => response,
                };
                let _ = request.respond(response);
            }
        });
        Ok(Self {
            url,
            key: SigningKey::new(private),
            server,
        })
    }

    /// The issuer URL (`iss`); discovery is below it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The discovery document's URL (what an STS service is configured
    /// with).
    pub fn config_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.url)
    }

    /// A token for service account `namespace/name`, for `audience`,
    /// valid from now for `lifetime` seconds (negative: expired already).
    pub fn token(&self, namespace: &str, name: &str, audience: &str, lifetime: i64) -> String {
        sign_token(&self.key, &self.url, namespace, name, audience, lifetime)
    }

    /// A token like [`OidcIssuer::token`] but signed with another key
    /// (under the issuer's key ID): a forgery the STS must refuse.
    pub fn forged_token(&self, audience: &str) -> Result<String> {
        let other = SigningKey::new(key(crate::GCS_TEST_KEY, "GCS test")?);
        Ok(sign_token(
            &other, &self.url, "default", "etcd", audience, 3600,
        ))
    }
}

fn sign_token(
    key: &SigningKey<Sha256>,
    issuer: &str,
    namespace: &str,
    name: &str,
    audience: &str,
    lifetime: i64,
) -> String {
    let now = now();
    let header = serde_json::json!({"alg": "RS256", "kid": OIDC_KEY_ID, "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": issuer,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "aud": [audience],
        "iat": now.min(now + lifetime),
        "nbf": now.min(now + lifetime) - 1,
        "exp": now + lifetime,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
    });
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", B64URL.encode(signature))
}
