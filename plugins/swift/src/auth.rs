//! Keystone v3: the token request for a credential, and the token's
//! expiry and object-store endpoint from the answer's catalog. Pure logic,
//! tested natively; the request is made in `client`.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Credential, Named};

/// A Keystone token and where the object store is.
#[derive(Clone)]
pub struct Session {
    /// The token (`X-Subject-Token`), sent as `X-Auth-Token`.
    pub token: String,
    /// When it expires (Unix seconds); none when Keystone did not say.
    pub expires_at: Option<i64>,
    /// The object store's URL for the project (`…/v1/AUTH_<project>`),
    /// without a trailing `/`.
    pub storage_url: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires_at", &self.expires_at)
            .field("storage_url", &self.storage_url)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether the token has more than `margin` seconds left at `now`.
    pub fn fresh(&self, now: i64, margin: i64) -> bool {
        self.expires_at.is_none_or(|e| e - margin > now)
    }
}

fn named(n: &Named) -> Value {
    match n {
        Named::Name(name) => json!({ "name": name }),
        Named::Id(id) => json!({ "id": id }),
    }
}

/// The body of `POST /v3/auth/tokens` for `credential`: a password scoped
/// to its project (a project by name is in the user's domain, as
/// upstream's client has it), or an application credential (scoped
/// already, so no scope is sent).
pub fn token_request(credential: &Credential) -> String {
    let body = match credential {
        Credential::Password {
            username,
            password,
            domain,
            project,
        } => {
            let project = match project {
                Named::Id(id) => json!({ "id": id }),
                Named::Name(name) => json!({ "name": name, "domain": named(domain) }),
            };
            json!({ "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": { "user": {
                        "name": username,
                        "domain": named(domain),
                        "password": password,
                    }},
                },
                "scope": { "project": project },
            }})
        }
        Credential::ApplicationCredential {
            id,
            name,
            username,
            domain,
            secret,
        } => {
            let credential = match id {
                Some(id) => json!({ "id": id, "secret": secret }),
                None => {
                    let mut user = json!({ "name": username });
                    if let Some(d) = domain {
                        user["domain"] = named(d);
                    }
                    json!({ "name": name, "user": user, "secret": secret })
                }
            };
            json!({ "auth": { "identity": {
                "methods": ["application_credential"],
                "application_credential": credential,
            }}})
        }
    };
    body.to_string()
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token: Token,
}

#[derive(Debug, Deserialize)]
struct Token {
    expires_at: Option<String>,
    #[serde(default)]
    catalog: Vec<Service>,
}

#[derive(Debug, Deserialize)]
struct Service {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
struct Endpoint {
    interface: String,
    region_id: Option<String>,
    region: Option<String>,
    url: String,
}

/// What a token answer says: when the token expires, and the object
/// store's public endpoint in `region` (or the only one).
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// Expiry (Unix seconds).
    pub expires_at: Option<i64>,
    /// The object store's URL, without a trailing `/`.
    pub storage_url: String,
}

/// Reads a token answer's expiry and its catalog's `object-store` public
/// endpoint: the one in `region`, or the only one when no region is set.
pub fn parse_token_answer(json: &str, region: Option<&str>) -> Result<Answer, String> {
    let answer: TokenAnswer =
        serde_json::from_str(json).map_err(|e| format!("not a Keystone token: {e}"))?;
    let expires_at = answer
        .token
        .expires_at
        .as_deref()
        .and_then(druid_plugin_sdk::time::parse_iso8601);
    let endpoints: Vec<&Endpoint> = answer
        .token
        .catalog
        .iter()
        .filter(|s| s.kind == "object-store")
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.interface == "public")
        .collect();
    if endpoints.is_empty() {
        return Err(
            "the token's catalog has no public object-store endpoint (is Swift registered in \
             Keystone, and may the credential's project use it?)"
                .into(),
        );
    }
    let region_of = |e: &Endpoint| {
        e.region_id
            .clone()
            .or_else(|| e.region.clone())
            .unwrap_or_default()
    };
    let chosen = match region {
        Some(r) => endpoints
            .iter()
            .find(|e| e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r)),
        None if endpoints.len() == 1 => endpoints.first(),
        None => {
            return Err(format!(
                "the catalog has object-store endpoints in several regions ({}): set the store \
                 secret's `region`",
                endpoints
                    .iter()
                    .map(|e| region_of(e))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let Some(chosen) = chosen else {
        return Err(format!(
            "the catalog has no object-store endpoint in region {:?} (it has {}): fix the store \
             secret's `region`",
            region.unwrap_or_default(),
            endpoints
                .iter()
                .map(|e| region_of(e))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    Ok(Answer {
        expires_at,
        storage_url: chosen.url.trim_end_matches('/').to_string(),
    })
}

/// The storage URL to use: the catalog's, or with an endpoint override
/// the override itself when it has a path (`…/v1/AUTH_<project>`), else
/// the override's origin with the catalog's path.
pub fn storage_url(catalog: &str, endpoint_override: Option<&str>) -> Result<String, String> {
    let Some(over) = endpoint_override else {
        return Ok(catalog.to_string());
    };
    let (_, over_path) = druid_plugin_sdk::http::split_endpoint(over).map_err(str::to_string)?;
    if !over_path.trim_matches('/').is_empty() {
        return Ok(over.trim_end_matches('/').to_string());
    }
    let (_, path) = druid_plugin_sdk::http::split_endpoint(catalog)
        .map_err(|why| format!("the catalog's object-store endpoint {catalog:?} {why}"))?;
    Ok(format!("{}{path}", over.trim_end_matches('/')))
}

#[derive(Debug, Default, Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorBody>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    message: Option<String>,
    title: Option<String>,
}

/// Keystone's error message (`{"error": {"message", "title"}}`), if the
/// body is one.
pub fn keystone_error(body: &str) -> Option<String> {
    let e = serde_json::from_str::<ErrorEnvelope>(body)
        .unwrap_or_default()
        .error?;
    match (e.title, e.message) {
        (Some(t), Some(m)) => Some(format!("{t}: {}", m.trim())),
        (None, Some(m)) => Some(m.trim().to_string()),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}
