//! Store configuration: the store secret's Keystone credentials (a user's
//! password or an application credential), the container and the object
//! store's endpoint. Pure logic, tested natively.

use druid_plugin_sdk::credential_value as value;
use druid_plugin_sdk::store::{StoreConfig, StoreContract, StoreError};

/// The `storageProvider` values this plugin serves, as upstream spells them.
pub const PROVIDERS: &[&str] = &["Swift", "openstack"];

/// The prefix of the sidecar's `OPENSTACK_APPLICATION_CREDENTIALS[_JSON]`
/// (upstream's variable for Swift).
pub const ENV_PREFIX: &str = "OPENSTACK";

/// The secret key of Keystone's endpoint.
pub const AUTH_URL_KEY: &str = "authURL";

/// The password credential's keys (upstream's names).
pub const PASSWORD_KEYS: &[&str] = &["username", "password"];

/// The application credential's keys (upstream's names).
pub const APPLICATION_CREDENTIAL_KEYS: &[&str] = &[
    "applicationCredentialID",
    "applicationCredentialName",
    "applicationCredentialSecret",
];

/// Every key this plugin reads from the secret.
pub const KNOWN_KEYS: &[&str] = &[
    AUTH_URL_KEY,
    "domainName",
    "domainID",
    "tenantName",
    "tenantID",
    "username",
    "password",
    "applicationCredentialID",
    "applicationCredentialName",
    "applicationCredentialSecret",
    "region",
];

/// The longest container name Swift takes.
const MAX_CONTAINER_BYTES: usize = 256;

/// The store contract: credentials from the store Secret (required), and
/// Keystone's endpoint (`authURL`) as an endpoint the user chose. OpenStack
/// has no official host: the object store's endpoint comes from Keystone's
/// catalog, and the host lets the plugin reach it only when it is on
/// Keystone's origin or named by `store.endpointOverride`.
pub fn contract() -> StoreContract {
    druid_plugin_sdk::secret_contract(ENV_PREFIX, true, &[AUTH_URL_KEY], &[])
}

/// A Keystone domain or project, by name or id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// By name (names of projects are unique within their domain).
    Name(String),
    /// By id.
    Id(String),
}

/// How the plugin signs in to Keystone.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user's password, scoped to a project.
    Password {
        /// The user's name.
        username: String,
        /// The password.
        password: String,
        /// The user's (and, by name, the project's) domain.
        domain: Named,
        /// The project the token is scoped to.
        project: Named,
    },
    /// An application credential (already scoped to its project).
    ApplicationCredential {
        /// Its id, or its name with its user's name and domain.
        id: Option<String>,
        /// Its name (used when there is no id).
        name: Option<String>,
        /// The user who owns it, by name (with `name`).
        username: Option<String>,
        /// The user's domain (with `name`).
        domain: Option<Named>,
        /// The secret.
        secret: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password or the secret.
        match self {
            Self::Password {
                username,
                domain,
                project,
                ..
            } => f
                .debug_struct("Password")
                .field("username", username)
                .field("domain", domain)
                .field("project", project)
                .finish_non_exhaustive(),
            Self::ApplicationCredential { id, name, .. } => f
                .debug_struct("ApplicationCredential")
                .field("id", id)
                .field("name", name)
                .finish_non_exhaustive(),
        }
    }
}

impl Credential {
    /// Who signs in, for log lines.
    pub fn describe(&self) -> String {
        match self {
            Self::Password {
                username, project, ..
            } => format!("user {username:?} in project {project:?}"),
            Self::ApplicationCredential { id: Some(id), .. } => {
                format!("application credential {id:?}")
            }
            Self::ApplicationCredential { name, username, .. } => format!(
                "application credential {:?} of user {:?}",
                name.as_deref().unwrap_or_default(),
                username.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// A parsed store configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `storageProvider` value.
    pub provider: String,
    /// The container.
    pub container: String,
    /// Keystone v3's endpoint, e.g. `https://keystone.example.com:5000/v3`
    /// (no trailing `/`).
    pub auth_url: String,
    /// The credential.
    pub credential: Credential,
    /// The catalog's region to take the object store's endpoint from; any
    /// when there is only one.
    pub region: Option<String>,
    /// `store.endpointOverride`: the object store's endpoint instead of
    /// the catalog's (an origin: the catalog's path is kept; with a path:
    /// the whole storage URL, `…/v1/AUTH_<project>`).
    pub endpoint_override: Option<String>,
    /// Things worth a warning in the log (never a credential).
    pub warnings: Vec<String>,
}

fn invalid(message: String) -> StoreError {
    StoreError::InvalidConfig(message)
}

/// Whether `name` is a container name Swift takes: 1 to 256 bytes, no
/// `/`, no control characters.
pub fn valid_container(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CONTAINER_BYTES
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

/// Keystone v3's endpoint from `authURL`: a path ending in `/v3` is kept,
/// any other gets `/v3` appended; Keystone v2.0 is refused.
pub fn auth_url(raw: &str) -> Result<String, StoreError> {
    let (origin, path) = druid_plugin_sdk::http::split_endpoint(raw).map_err(|why| {
        invalid(format!(
            "the store secret's `{AUTH_URL_KEY}` {raw:?} {why}: give Keystone's endpoint, e.g. \
             https://keystone.example.com:5000/v3"
        ))
    })?;
    let path = path.trim_end_matches('/');
    if path.ends_with("/v2.0") || path.ends_with("/v2") {
        return Err(invalid(format!(
            "the store secret's `{AUTH_URL_KEY}` {raw:?} is Keystone's v2.0 API, which OpenStack \
             removed: give the v3 endpoint (…/v3)"
        )));
    }
    if path.ends_with("/v3") {
        Ok(format!("{origin}{path}"))
    } else {
        // An unversioned endpoint (`https://keystone:5000`, devstack's
        // `https://host/identity`): its v3 API is below it.
        Ok(format!("{origin}{path}/v3"))
    }
}

fn domain(config: &StoreConfig) -> Option<Named> {
    value(config, "domainID")
        .map(|d| Named::Id(d.to_string()))
        .or_else(|| value(config, "domainName").map(|d| Named::Name(d.to_string())))
}

fn credential(config: &StoreConfig, provider: &str) -> Result<Credential, StoreError> {
    let has_password = PASSWORD_KEYS
        .iter()
        .filter(|k| **k != "username")
        .any(|k| value(config, k).is_some());
    let has_application = APPLICATION_CREDENTIAL_KEYS
        .iter()
        .any(|k| value(config, k).is_some());
    match (has_password, has_application) {
        (true, true) => Err(invalid(format!(
            "the {provider} store secret mixes a password with an application credential: keep \
             either `username` and `password`, or `applicationCredentialID` (or \
             `applicationCredentialName`) and `applicationCredentialSecret`"
        ))),
        (false, false) => Err(invalid(format!(
            "the {provider} store secret holds no credential: add `username` and `password` \
             (with `domainName` and `tenantName`), or `applicationCredentialID` and \
             `applicationCredentialSecret`"
        ))),
        (true, false) => {
            let need = |k: &str| {
                value(config, k).map(str::to_string).ok_or_else(|| {
                    invalid(format!(
                        "the {provider} store secret has a password but no `{k}`: add it"
                    ))
                })
            };
            let username = need("username")?;
            let password = need("password")?;
            let domain = domain(config).ok_or_else(|| {
                invalid(format!(
                    "the {provider} store secret has no `domainName`: add the domain of the \
                     user and project (often `Default`)"
                ))
            })?;
            let project = value(config, "tenantID")
                .map(|p| Named::Id(p.to_string()))
                .or_else(|| value(config, "tenantName").map(|p| Named::Name(p.to_string())))
                .ok_or_else(|| {
                    invalid(format!(
                        "the {provider} store secret has no `tenantName`: add the project whose \
                         object store holds the container"
                    ))
                })?;
            Ok(Credential::Password {
                username,
                password,
                domain,
                project,
            })
        }
        (false, true) => {
            let secret = value(config, "applicationCredentialSecret")
                .map(str::to_string)
                .ok_or_else(|| {
                    invalid(format!(
                        "the {provider} store secret has an application credential but no \
                         `applicationCredentialSecret`: add it"
                    ))
                })?;
            let id = value(config, "applicationCredentialID").map(str::to_string);
            let name = value(config, "applicationCredentialName").map(str::to_string);
            let username = value(config, "username").map(str::to_string);
            let domain = domain(config);
            if id.is_none() && (name.is_none() || username.is_none() || domain.is_none()) {
                return Err(invalid(format!(
                    "the {provider} store secret names its application credential by neither \
                     `applicationCredentialID` nor `applicationCredentialName` with `username` \
                     and `domainName`: add the credential's id"
                )));
            }
            Ok(Credential::ApplicationCredential {
                id,
                name,
                username,
                domain,
                secret,
            })
        }
    }
}

/// Reads the configuration: the container, Keystone's endpoint, the
/// credential, the region and the endpoint override.
pub fn parse(config: &StoreConfig) -> Result<Settings, StoreError> {
    let provider = config.provider.clone();
    let mut warnings = Vec::new();
    let container = config.container.trim();
    if !valid_container(container) {
        return Err(invalid(format!(
            "store.container {container:?} is not a Swift container name (1 to \
             {MAX_CONTAINER_BYTES} bytes, no '/')"
        )));
    }
    let raw_auth = value(config, AUTH_URL_KEY).ok_or_else(|| {
        invalid(format!(
            "the {provider} store secret has no `{AUTH_URL_KEY}`: add Keystone's endpoint, e.g. \
             https://keystone.example.com:5000/v3"
        ))
    })?;
    let auth_url = auth_url(raw_auth)?;
    let credential = credential(config, &provider)?;
    if matches!(credential, Credential::ApplicationCredential { .. })
        && (value(config, "tenantName").is_some() || value(config, "tenantID").is_some())
    {
        warnings.push(format!(
            "the {provider} store secret's `tenantName` is not used with an application \
             credential: the credential is scoped to its project"
        ));
    }
    let endpoint_override = match config
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        Some(e) => {
            let (origin, path) = druid_plugin_sdk::http::split_endpoint(e).map_err(|why| {
                invalid(format!(
                    "store.endpointOverride {e:?} {why}: give the object store's endpoint, e.g. \
                     https://swift.example.com:8080"
                ))
            })?;
            Some(format!("{origin}{}", path.trim_end_matches('/')))
        }
        None => None,
    };
    Ok(Settings {
        provider,
        container: container.to_string(),
        auth_url,
        credential,
        region: value(config, "region").map(str::to_string),
        endpoint_override,
        warnings,
    })
}
