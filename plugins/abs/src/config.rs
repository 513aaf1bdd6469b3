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

/// The store contract: credentials from the store Secret (required), no
/// key holding an endpoint (`domain` is a DNS suffix: only Azure's clouds
/// are reached without an override), and the account's blob endpoint in
/// each of Azure's clouds.
pub fn contract() -> StoreContract {
    druid_plugin_sdk::secret_contract(
        ENV_PREFIX,
        true,
        &[],
        &[
            "https://{storageAccount}.blob.core.windows.net",
            "https://{storageAccount}.blob.core.chinacloudapi.cn",
            "https://{storageAccount}.blob.core.usgovcloudapi.net",
        ],
    )
}

/// How requests are authorized.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Shared Key: the account key, decoded from base64.
    SharedKey(Vec<u8>),
    /// A SAS token (the query string, without `?`), appended to each URL.
    Sas(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::SharedKey(_) => f.write_str("SharedKey([redacted])"),
            Auth::Sas(_) => f.write_str("Sas([redacted])"),
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

/// Reads the configuration: the account, the credential and the
/// container's URL.
pub fn parse(config: &StoreConfig) -> Result<Settings, StoreError> {
    let provider = config.provider.clone();
    let mut warnings = Vec::new();
    let account = value(config, "storageAccount").ok_or_else(|| {
        invalid(format!(
            "the {provider} store secret has no `storageAccount`: add the storage account's name"
        ))
    })?;
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
        (None, None) => {
            return Err(invalid(format!(
                "the {provider} store secret has neither `storageKey` (the account's access key) \
                 nor `sasToken` (a SAS for the container): add one"
            )));
        }
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
    let (origin, base_path, endpoint_source) = match config
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
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
