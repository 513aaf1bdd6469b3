//! The service account's OAuth2 flow (RFC 7523, as Google's token endpoint
//! takes it): a JWT naming the account, the storage scope and the token
//! endpoint, signed RS256 with the account's private key, exchanged for a
//! bearer token. Pure logic, tested natively; the exchange's request runs
//! in `client`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use druid_plugin_sdk::http::encode;
use druid_plugin_sdk::store::{StoreConfig, StoreError};
use rsa::PrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde::Deserialize;
use sha2::Sha256;

/// Google's OAuth2 token endpoint, when the service account names none.
pub const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The scope asked for: read and write objects (what a backup store does;
/// no bucket or IAM administration).
pub const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

/// How long an assertion (and so the token) is asked to live: Google's
/// maximum.
pub const LIFETIME_SECS: i64 = 3600;

/// The grant type of the JWT bearer flow.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A service account: who it is, where its tokens come from and its key.
#[derive(Clone)]
pub struct ServiceAccount {
    /// `client_email`.
    pub email: String,
    /// `private_key_id`, sent as the JWT's `kid` when present.
    pub key_id: Option<String>,
    /// `token_uri`: Google's endpoint unless the key file names another.
    pub token_uri: String,
    key: SigningKey<Sha256>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("email", &self.email)
            .field("token_uri", &self.token_uri)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn invalid(message: String) -> StoreError {
    StoreError::InvalidConfig(message)
}

/// Whether `id` is a project ID as Google makes them (upstream checks the
/// same): a lower-case letter, then 4 to 28 lower-case letters, digits or
/// hyphens, then a letter or digit.
pub fn valid_project_id(id: &str) -> bool {
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.last().is_some_and(|c| *c != b'-')
}

/// Reads an RSA private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what
/// Google's key files hold) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
pub fn parse_private_key(pem: &str) -> Result<PrivateKey, String> {
    let pem = pem.trim();
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        PrivateKey::from_pkcs1_pem(pem).map_err(|e| format!("not a PKCS#1 RSA key ({e})"))
    } else if pem.contains("BEGIN PRIVATE KEY") {
        PrivateKey::from_pkcs8_pem(pem).map_err(|e| format!("not a PKCS#8 RSA key ({e})"))
    } else {
        Err("not a PEM private key (no `-----BEGIN PRIVATE KEY-----` line)".into())
    }
}

impl ServiceAccount {
    /// The service account of a store secret in the form of Google's key
    /// file (`serviceaccount.json`, whose fields reach the plugin as keys).
    pub fn from_config(config: &StoreConfig) -> Result<Self, StoreError> {
        let provider = &config.provider;
        let get = |k: &str| druid_plugin_sdk::credential_value(config, k);
        match get("type") {
            None | Some("service_account") => {}
            Some("external_account") => {
                return Err(invalid(format!(
                    "the {provider} store secret is an `external_account` (workload identity \
                     federation), which this plugin does not support yet: give a service \
                     account key (`type: service_account`)"
                )));
            }
            Some(other) => {
                return Err(invalid(format!(
                    "the {provider} store secret's `type` is {other:?}: give a service account \
                     key (`type: service_account`, as `gcloud iam service-accounts keys create` \
                     writes it)"
                )));
            }
        }
        if let Some(project) = get("project_id")
            && !valid_project_id(project)
        {
            return Err(invalid(format!(
                "the {provider} store secret's `project_id` {project:?} is not a project ID (a \
                 lower-case letter, then 4 to 28 lower-case letters, digits or hyphens, then a \
                 letter or digit)"
            )));
        }
        let missing = |k: &str| {
            invalid(format!(
                "the {provider} store secret has no `{k}`: it must hold a service account key \
                 (`serviceaccount.json` as `gcloud iam service-accounts keys create` writes it)"
            ))
        };
        let email = get("client_email").ok_or_else(|| missing("client_email"))?;
        let pem = get("private_key").ok_or_else(|| missing("private_key"))?;
        let key = parse_private_key(pem).map_err(|why| {
            invalid(format!(
                "the {provider} store secret's `private_key` is {why}: copy it unchanged from \
                 the key file"
            ))
        })?;
        let token_uri = get("token_uri").unwrap_or(TOKEN_URI);
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
            return Err(invalid(format!(
                "the {provider} store secret's `token_uri` {token_uri:?} is not an http(s) URL"
            )));
        }
        Ok(Self {
            email: email.to_string(),
            key_id: get("private_key_id").map(str::to_string),
            token_uri: token_uri.to_string(),
            key: SigningKey::new(key),
        })
    }

    /// The signed JWT asking for a token at `now` (Unix seconds).
    pub fn assertion(&self, now: i64) -> String {
        let header = match &self.key_id {
            Some(kid) => serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            None => serde_json::json!({"alg": "RS256", "typ": "JWT"}),
        };
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64URL.encode(signature))
    }

    /// The RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256) of `input`.
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        self.key.sign(input).to_vec()
    }

    /// The token request's form body for `assertion`.
    pub fn token_request_body(assertion: &str) -> String {
        format!(
            "grant_type={}&assertion={}",
            encode(GRANT_TYPE, false),
            encode(assertion, false)
        )
    }
}

/// A bearer token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The access token.
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Token {
    /// Whether the token is still good for a request of up to `margin`
    /// seconds at `now`.
    pub fn fresh(&self, now: i64, margin: i64) -> bool {
        now + margin < self.expires_at
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<i64>,
    token_type: Option<String>,
}

/// Reads the token endpoint's answer (received at `now`).
pub fn parse_token_response(body: &str, now: i64) -> Result<Token, String> {
    let r: TokenResponse = serde_json::from_str(body)
        .map_err(|e| format!("the token endpoint's answer is not a token response ({e})"))?;
    if let Some(kind) = &r.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!(
            "the token endpoint answered a {kind:?} token, not a bearer token"
        ));
    }
    let access_token = r
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint's answer has no access_token")?;
    if access_token.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err("the token endpoint's access_token is not a header-safe token".into());
    }
    Ok(Token {
        access_token,
        // Google's tokens live an hour; without expires_in, assume less.
        expires_at: now + r.expires_in.unwrap_or(600).clamp(0, LIFETIME_SECS),
    })
}

/// The fields of an OAuth2 error (`{"error": ..., "error_description": ...}`).
#[derive(Debug, Default, Deserialize)]
pub struct OAuthError {
    /// E.g. `invalid_grant`.
    pub error: Option<String>,
    /// Google's explanation, e.g. "Invalid JWT Signature.".
    pub error_description: Option<String>,
}

/// Reads an OAuth2 error body; empty fields when it is not one.
pub fn parse_oauth_error(body: &str) -> OAuthError {
    serde_json::from_str(body).unwrap_or_default()
}
