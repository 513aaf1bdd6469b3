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
                     federation), not a service account key"
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

pub use druid_plugin_sdk::oauth::Token;

/// Reads the token endpoint's answer (received at `now`): a bearer token
/// of at most an hour.
pub fn parse_token_response(body: &str, now: i64) -> Result<Token, String> {
    druid_plugin_sdk::oauth::parse_token_response(body, now, LIFETIME_SECS)
}

/// Google's Security Token Service, the token URL upstream requires of an
/// `external_account`.
pub const STS_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";

/// The token exchange grant (RFC 8693).
pub const EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The subject token type of a Kubernetes service-account token.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The scope of a federated token (Google's STS wants this one; the
/// impersonated account's token gets [`SCOPE`]).
pub const FEDERATED_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Workload identity federation (`type: external_account`, upstream's GCS
/// workload identity): the Secret's `token` (a service-account token of
/// the cluster) exchanged at Google's STS for a federated access token,
/// and optionally that one for a service account's token
/// (`service_account_impersonation_url`).
#[derive(Clone)]
pub struct ExternalAccount {
    /// The workload identity pool provider
    /// (`//iam.googleapis.com/projects/.../providers/...`).
    pub audience: String,
    /// Where the token is exchanged.
    pub token_url: String,
    /// `subject_token_type`.
    pub subject_token_type: String,
    /// The subject token (secret key `token`): a credential.
    pub subject_token: String,
    /// The service account to impersonate, if any (its
    /// `generateAccessToken` URL).
    pub impersonation_url: Option<String>,
}

impl std::fmt::Debug for ExternalAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalAccount")
            .field("audience", &self.audience)
            .field("token_url", &self.token_url)
            .field("subject_token", &"[redacted]")
            .field("impersonation_url", &self.impersonation_url)
            .finish()
    }
}

#[derive(Deserialize)]
struct CredentialSource {
    file: Option<String>,
    url: Option<String>,
    format: Option<SourceFormat>,
}

#[derive(Deserialize)]
struct SourceFormat {
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn http_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

impl ExternalAccount {
    /// The `external_account` of a store secret as upstream lays it out:
    /// the JSON key file (whose `credential_source` names the Secret's
    /// `token` file) and the `token` and `projectID` keys next to it.
    /// `warnings` gets what is accepted but unusual.
    pub fn from_config(
        config: &StoreConfig,
        warnings: &mut Vec<String>,
    ) -> Result<Self, StoreError> {
        let provider = &config.provider;
        let get = |k: &str| druid_plugin_sdk::credential_value(config, k);
        let missing = |k: &str, what: &str| {
            invalid(format!(
                "the {provider} store secret is an `external_account` without `{k}` ({what}): \
                 use the credential configuration `gcloud iam workload-identity-pools \
                 create-cred-config` writes, with the token in the Secret's `token` key"
            ))
        };
        let audience = get("audience").ok_or_else(|| missing("audience", "the pool provider"))?;
        let subject_token_type = get("subject_token_type").unwrap_or(JWT_TOKEN_TYPE);
        if subject_token_type != JWT_TOKEN_TYPE {
            return Err(invalid(format!(
                "the {provider} store secret's `subject_token_type` is {subject_token_type:?}: \
                 only a Kubernetes service-account token ({JWT_TOKEN_TYPE:?}) is taken, as \
                 upstream"
            )));
        }
        let token_url = get("token_url").unwrap_or(STS_TOKEN_URL);
        if !http_url(token_url) {
            return Err(invalid(format!(
                "the {provider} store secret's `token_url` {token_url:?} is not an http(s) URL: \
                 use {STS_TOKEN_URL:?}"
            )));
        }
        if token_url != STS_TOKEN_URL {
            warnings.push(format!(
                "the {provider} store secret's `token_url` is {token_url:?}, not Google's \
                 {STS_TOKEN_URL:?} (upstream takes only Google's)"
            ));
        }
        let source = get("credential_source")
            .ok_or_else(|| missing("credential_source", "where the token is"))?;
        let source: CredentialSource = serde_json::from_str(source).map_err(|e| {
            invalid(format!(
                "the {provider} store secret's `credential_source` is not an object with \
                 `file` ({e})"
            ))
        })?;
        if source.url.is_some() {
            return Err(invalid(format!(
                "the {provider} store secret's `credential_source` has a `url`: only a `file` \
                 (the Secret's `token` key, as upstream) is taken"
            )));
        }
        let file = source.file.unwrap_or_default();
        if !(file == "token" || file.ends_with("/token")) {
            return Err(invalid(format!(
                "the {provider} store secret's `credential_source.file` is {file:?}: it must \
                 name the Secret's `token` key (`<mount path>/token`, as upstream)"
            )));
        }
        if let Some(kind) = source.format.and_then(|f| f.kind)
            && kind != "text"
        {
            return Err(invalid(format!(
                "the {provider} store secret's `credential_source.format.type` is {kind:?}: \
                 the token file is plain text (`\"text\"`)"
            )));
        }
        let subject_token = get("token")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "the {provider} store secret is an `external_account` but has no `token` \
                     key next to it (the cluster's service-account token that \
                     `credential_source` names): add it"
                ))
            })?;
        if get("projectID").is_none_or(|p| p.trim().is_empty()) {
            return Err(invalid(format!(
                "the {provider} store secret is an `external_account` but has no `projectID` \
                 key next to it (upstream requires it): add the project's ID"
            )));
        }
        let impersonation_url = get("service_account_impersonation_url").map(str::to_string);
        if let Some(url) = &impersonation_url
            && !(http_url(url) && url.ends_with(":generateAccessToken"))
        {
            return Err(invalid(format!(
                "the {provider} store secret's `service_account_impersonation_url` {url:?} is \
                 not a service account's `...:generateAccessToken` URL"
            )));
        }
        Ok(Self {
            audience: audience.to_string(),
            token_url: token_url.to_string(),
            subject_token_type: subject_token_type.to_string(),
            subject_token: subject_token.to_string(),
            impersonation_url,
        })
    }

    /// The token exchange's form body.
    pub fn exchange_body(&self) -> String {
        format!(
            "grant_type={}&audience={}&scope={}&requested_token_type={}&subject_token_type={}\
             &subject_token={}",
            encode(EXCHANGE_GRANT, false),
            encode(&self.audience, false),
            encode(FEDERATED_SCOPE, false),
            encode("urn:ietf:params:oauth:token-type:access_token", false),
            encode(&self.subject_token_type, false),
            encode(&self.subject_token, false),
        )
    }

    /// The impersonation request's JSON body.
    pub fn impersonation_body() -> String {
        serde_json::json!({"scope": [SCOPE], "lifetime": format!("{LIFETIME_SECS}s")}).to_string()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImpersonationResponse {
    access_token: Option<String>,
    expire_time: Option<String>,
}

/// Reads `generateAccessToken`'s answer (received at `now`).
pub fn parse_impersonation_response(body: &str, now: i64) -> Result<Token, String> {
    let r: ImpersonationResponse = serde_json::from_str(body)
        .map_err(|e| format!("the impersonation answer is not an access token ({e})"))?;
    let access_token = r
        .access_token
        .filter(|t| druid_plugin_sdk::oauth::header_safe(t))
        .ok_or("the impersonation answer has no usable accessToken")?;
    let expires_at = r
        .expire_time
        .as_deref()
        .and_then(druid_plugin_sdk::time::parse_iso8601)
        .unwrap_or(now + 600)
        .min(now + LIFETIME_SECS);
    Ok(Token {
        access_token,
        expires_at,
    })
}
