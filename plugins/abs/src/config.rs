//! Store configuration: the secret's keys to a storage account, a
//! credential (the account's Shared Key, or a SAS token) and the URL of the
//! container. Pure logic, tested natively.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use druid_plugin_sdk::credential_value as value;
use druid_plugin_sdk::store::{StoreConfig, StoreContract, StoreError};

/// The `storageProvider` values this plugin serves, as upstream spells them.
pub const PROVIDERS: &[&str] = &["ABS", "azure"];

/// The prefix of the sidecar's `AZURE_APPLICATION_CREDENTIALS[_JSON]`.
pub const ENV_PREFIX: &str = "AZURE";

/// The blob service domain when the secret names none.
pub const DEFAULT_DOMAIN: &str = "blob.core.windows.net";

/// The blob service domains of Azure's clouds (public, China, US
/// Government): the hosts the plugin may reach without an endpoint
/// override, as `https://<storageAccount>.<domain>`.
pub const CLOUD_DOMAINS: &[&str] = &[
    "blob.core.windows.net",
    "blob.core.chinacloudapi.cn",
    "blob.core.usgovcloudapi.net",
];

/// The secret keys this plugin reads.
pub const KNOWN_KEYS: &[&str] = &["storageAccount", "storageKey", "sasToken", "domain"];

/// The pod's workload identity, as Azure Workload Identity's webhook
/// injects it (`(variable, credential key)`; the token file is read by
/// the host).
pub const WORKLOAD_IDENTITY_VARIABLES: &[(&str, &str)] = &[
    ("AZURE_CLIENT_ID", "AZURE_CLIENT_ID"),
    ("AZURE_TENANT_ID", "AZURE_TENANT_ID"),
    ("AZURE_FEDERATED_TOKEN_FILE", "AZURE_FEDERATED_TOKEN"),
    ("AZURE_AUTHORITY_HOST", "AZURE_AUTHORITY_HOST"),
];

/// Microsoft Entra ID's public cloud authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The scope of a token for the Blob service.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// The store contract: credentials from the store Secret (not required:
/// the pod's workload identity serves without one, see
/// [`WORKLOAD_IDENTITY_VARIABLES`]), the authority host as the one key
/// holding an endpoint (`domain` is a DNS suffix: only Azure's clouds are
/// reached without an override), the account's blob endpoint in each of
/// Azure's clouds, and their Entra ID authorities.
pub fn contract() -> StoreContract {
    let mut c = druid_plugin_sdk::secret_contract(
        ENV_PREFIX,
        false,
        &["AZURE_AUTHORITY_HOST"],
        &[
            "https://{storageAccount}.blob.core.windows.net",
            "https://{storageAccount}.blob.core.chinacloudapi.cn",
            "https://{storageAccount}.blob.core.usgovcloudapi.net",
            "https://login.microsoftonline.com",
            "https://login.chinacloudapi.cn",
            "https://login.microsoftonline.us",
        ],
    );
    c.credential_value_variables = WORKLOAD_IDENTITY_VARIABLES
        .iter()
        .map(|(v, k)| ((*v).to_string(), (*k).to_string()))
        .collect();
    c
}

/// A workload identity: the app registration (or managed identity) whose
/// federated credential trusts the cluster's service-account token.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// `AZURE_CLIENT_ID`.
    pub client_id: String,
    /// `AZURE_TENANT_ID`.
    pub tenant_id: String,
    /// The token from `AZURE_FEDERATED_TOKEN_FILE`: a credential.
    pub token: String,
    /// The Entra ID authority (`AZURE_AUTHORITY_HOST`), without a
    /// trailing `/`.
    pub authority: String,
}

impl WorkloadIdentity {
    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority,
            druid_plugin_sdk::http::encode(&self.tenant_id, false)
        )
    }

    /// The token request's form body: client credentials with the
    /// federated token as the client assertion.
    pub fn token_request_body(&self) -> String {
        use druid_plugin_sdk::http::encode;
        format!(
            "client_id={}&scope={}&grant_type=client_credentials&client_assertion_type={}\
             &client_assertion={}",
            encode(&self.client_id, false),
            encode(STORAGE_SCOPE, false),
            encode(
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                false
            ),
            encode(&self.token, false),
        )
    }
}

/// How requests are authorized.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Shared Key: the account key, decoded from base64.
    SharedKey(Vec<u8>),
    /// A SAS token (the query string, without `?`), appended to each URL.
    Sas(String),
    /// A bearer token for the pod's workload identity.
    WorkloadIdentity(Box<WorkloadIdentity>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::SharedKey(_) => f.write_str("SharedKey([redacted])"),
            Auth::Sas(_) => f.write_str("Sas([redacted])"),
            Auth::WorkloadIdentity(w) => f
                .debug_struct("WorkloadIdentity")
                .field("client_id", &w.client_id)
                .field("tenant_id", &w.tenant_id)
                .field("token", &"[redacted]")
                .field("authority", &w.authority)
                .finish(),
        }
    }
}

/// Where the endpoint came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointSource {
    /// `store.endpointOverride` (the spec) or `--store-endpoint-override`.
    Override,
    /// `https://<storageAccount>.<domain>`.
    Account,
}

/// A parsed store configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `storageProvider` value.
    pub provider: String,
    /// The storage account.
    pub account: String,
    /// The container.
    pub container: String,
    /// `scheme://host[:port]` of the blob service.
    pub origin: String,
    /// The container's path below the origin, percent-encoded, e.g.
    /// `/etcd-backups` or, path-style (Azurite),
    /// `/devstoreaccount1/etcd-backups`.
    pub container_path: String,
    /// The credential.
    pub auth: Auth,
    /// Where `origin` came from.
    pub endpoint_source: EndpointSource,
    /// Things worth a warning in the log (never a credential).
    pub warnings: Vec<String>,
}

fn invalid(message: String) -> StoreError {
    StoreError::InvalidConfig(message)
}

/// Whether `name` is a storage account name: 3 to 24 lower-case letters
/// and digits.
pub fn valid_account(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `name` is a container name: 3 to 63 lower-case letters, digits
/// and hyphens, starting and ending with a letter or digit, no two hyphens
/// in a row.
pub fn valid_container(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| alnum(b) || b == b'-')
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum)
        && !name.contains("--")
}

/// Splits an endpoint override into origin and path (without a trailing
/// `/`).
fn split_override(endpoint: &str) -> Result<(String, String), StoreError> {
    druid_plugin_sdk::http::split_endpoint(endpoint).map_err(|why| {
        invalid(format!(
            "store.endpointOverride {endpoint:?} {why}: give the account's blob endpoint, e.g. \
             https://myaccount.blob.core.windows.net or http://azurite:10000/devstoreaccount1"
        ))
    })
}

/// The storage account an endpoint names: the first label of an Azure
/// cloud's blob host, or the first path segment of a path-style endpoint
/// (Azurite's `http://host:10000/devstoreaccount1`).
pub fn account_of_endpoint(endpoint: &str) -> Option<String> {
    let (origin, path) = druid_plugin_sdk::http::split_endpoint(endpoint).ok()?;
    let host = origin.split_once("://")?.1.split(':').next()?;
    let from_host = CLOUD_DOMAINS
        .iter()
        .find_map(|d| host.strip_suffix(d)?.strip_suffix('.'))
        .filter(|a| !a.contains('.'));
    let account = match from_host {
        Some(a) => a.to_string(),
        None => path.trim_start_matches('/').split('/').next()?.to_string(),
    };
    valid_account(&account).then_some(account)
}

/// The pod's workload identity (see [`WORKLOAD_IDENTITY_VARIABLES`]), if
/// it has one; half of one is an error saying what is missing.
fn workload_identity(
    config: &StoreConfig,
    has_override: bool,
) -> Result<Option<WorkloadIdentity>, StoreError> {
    let client_id = value(config, "AZURE_CLIENT_ID");
    let tenant_id = value(config, "AZURE_TENANT_ID");
    let token = value(config, "AZURE_FEDERATED_TOKEN").map(str::trim);
    if client_id.is_none() && token.is_none() {
        return Ok(None);
    }
    let need = |what: &str| {
        invalid(format!(
            "the pod's workload identity has no {what}: Azure Workload Identity's webhook sets \
             $AZURE_CLIENT_ID, $AZURE_TENANT_ID and $AZURE_FEDERATED_TOKEN_FILE for a pod \
             labelled azure.workload.identity/use=true whose ServiceAccount is annotated with \
             azure.workload.identity/client-id"
        ))
    };
    let client_id = client_id.ok_or_else(|| need("$AZURE_CLIENT_ID"))?;
    let tenant_id = tenant_id.ok_or_else(|| need("$AZURE_TENANT_ID"))?;
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| need("token ($AZURE_FEDERATED_TOKEN_FILE)"))?;
    if token.contains(char::is_whitespace) || token.split('.').count() != 3 {
        return Err(invalid(
            "the file $AZURE_FEDERATED_TOKEN_FILE names is not a JSON web token: it must hold \
             the projected service-account token"
                .into(),
        ));
    }
    let authority = match value(config, "AZURE_AUTHORITY_HOST") {
        Some(a) if a.starts_with("https://") || a.starts_with("http://") => {
            a.trim_end_matches('/').to_string()
        }
        Some(a) => {
            return Err(invalid(format!(
                "$AZURE_AUTHORITY_HOST {a:?} is not an http(s) URL, e.g. {DEFAULT_AUTHORITY}/"
            )));
        }
        // The host lets the plugin reach Entra ID's hosts only for a store
        // without an override.
        None if has_override => {
            return Err(invalid(format!(
                "the store has an endpoint override and the pod's workload identity, but no \
                 $AZURE_AUTHORITY_HOST: set it (the webhook does), e.g. {DEFAULT_AUTHORITY}/; the \
                 plugin reaches only endpoints the configuration names"
            )));
        }
        None => DEFAULT_AUTHORITY.to_string(),
    };
    Ok(Some(WorkloadIdentity {
        client_id: client_id.to_string(),
        tenant_id: tenant_id.to_string(),
        token: token.to_string(),
        authority,
    }))
}

/// Reads the configuration: the account, the credential and the
/// container's URL.
pub fn parse(config: &StoreConfig) -> Result<Settings, StoreError> {
    let provider = config.provider.clone();
    let mut warnings = Vec::new();
    let override_endpoint = config
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let account = match value(config, "storageAccount") {
        Some(account) => account.to_string(),
        None => override_endpoint
            .and_then(account_of_endpoint)
            .ok_or_else(|| {
                invalid(format!(
                    "the {provider} store has no storage account: add `storageAccount` to the \
                     store secret, or (with the pod's workload identity, without a Secret) set \
                     store.endpointOverride to the account's blob endpoint, e.g. \
                     https://myaccount.blob.core.windows.net"
                ))
            })?,
    };
    let account = account.as_str();
    if !valid_account(account) {
        return Err(invalid(format!(
            "the {provider} store secret's `storageAccount` {account:?} is not a storage account \
             name (3 to 24 lower-case letters and digits)"
        )));
    }
    let auth = match (value(config, "storageKey"), value(config, "sasToken")) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "the {provider} store secret has both `storageKey` and `sasToken`: keep one"
            )));
        }
        (None, None) => match workload_identity(config, override_endpoint.is_some())? {
            Some(identity) => Auth::WorkloadIdentity(Box::new(identity)),
            None => {
                return Err(invalid(format!(
                    "the {provider} store secret has neither `storageKey` (the account's access \
                     key) nor `sasToken` (a SAS for the container), and the pod has no workload \
                     identity ($AZURE_CLIENT_ID, $AZURE_TENANT_ID, \
                     $AZURE_FEDERATED_TOKEN_FILE): add one"
                )));
            }
        },
        (Some(key), None) => Auth::SharedKey(BASE64.decode(key).map_err(|_| {
            invalid(format!(
                "the {provider} store secret's `storageKey` is not base64: copy the account's \
                 access key as the portal or `az storage account keys list` shows it"
            ))
        })?),
        (None, Some(sas)) => {
            let sas = sas.trim_start_matches('?');
            let has_signature = sas.split('&').any(|p| p.starts_with("sig="));
            if !has_signature || sas.contains(['#', ' ']) {
                return Err(invalid(format!(
                    "the {provider} store secret's `sasToken` is not a SAS token (a query string \
                     with `sig=`, e.g. sv=...&sr=c&sp=racwdl&se=...&sig=...)"
                )));
            }
            Auth::Sas(sas.to_string())
        }
    };
    let container = config.container.trim();
    if !valid_container(container) {
        return Err(invalid(format!(
            "store.container {container:?} is not an Azure container name (3 to 63 lower-case \
             letters, digits and single hyphens, starting and ending with a letter or digit)"
        )));
    }
    let domain = value(config, "domain");
    let (origin, base_path, endpoint_source) = match override_endpoint {
        Some(endpoint) => {
            if domain.is_some() {
                warnings.push(format!(
                    "the {provider} store secret's `domain` is ignored: store.endpointOverride \
                     is set"
                ));
            }
            let (origin, path) = split_override(endpoint)?;
            (origin, path, EndpointSource::Override)
        }
        None => {
            let domain = domain.unwrap_or(DEFAULT_DOMAIN).to_ascii_lowercase();
            if !CLOUD_DOMAINS.contains(&domain.as_str()) {
                return Err(invalid(format!(
                    "the {provider} store secret's `domain` {domain:?} is not one of Azure's \
                     clouds ({}): for another blob service (Azure Stack, an emulator) set \
                     store.endpointOverride to the account's blob endpoint, e.g. \
                     https://{account}.{domain}",
                    CLOUD_DOMAINS.join(", ")
                )));
            }
            (
                format!("https://{account}.{domain}"),
                String::new(),
                EndpointSource::Account,
            )
        }
    };
    Ok(Settings {
        provider,
        account: account.to_string(),
        container: container.to_string(),
        origin,
        container_path: format!("{base_path}/{container}"),
        auth,
        endpoint_source,
        warnings,
    })
}
