//! Store configuration: the store secret's service account (or none, for
//! an emulator), the bucket and the JSON API's endpoint. Pure logic,
//! tested natively.

use druid_plugin_sdk::credential_value as value;
use druid_plugin_sdk::store::{StoreConfig, StoreContract, StoreError};

use crate::auth::{ExternalAccount, ServiceAccount};

/// The `storageProvider` values this plugin serves, as upstream spells them.
pub const PROVIDERS: &[&str] = &["GCS", "gcp"];

/// The prefix of the sidecar's `GOOGLE_APPLICATION_CREDENTIALS[_JSON]`
/// (upstream's variable for GCS).
pub const ENV_PREFIX: &str = "GOOGLE";

/// Google's JSON API endpoint.
pub const STORAGE_ORIGIN: &str = "https://storage.googleapis.com";

pub use crate::auth::TOKEN_URI;

/// The secret key of upstream's legacy endpoint override.
pub const LEGACY_ENDPOINT_KEY: &str = "storageAPIEndpoint";

/// The fields of a service account key file (`serviceaccount.json`), as
/// Google writes them; with the legacy endpoint key, every key this
/// plugin knows.
pub const KNOWN_KEYS: &[&str] = &[
    "type",
    "project_id",
    "private_key_id",
    "private_key",
    "client_email",
    "client_id",
    "auth_uri",
    "token_uri",
    "auth_provider_x509_cert_url",
    "client_x509_cert_url",
    "universe_domain",
    // An `external_account` (workload identity federation) and the keys
    // upstream wants next to it.
    "audience",
    "subject_token_type",
    "token_url",
    "credential_source",
    "service_account_impersonation_url",
    "token",
    "projectID",
    LEGACY_ENDPOINT_KEY,
];

/// The store contract: credentials from the store Secret (required: a
/// service account key, or any file for an emulator), the service
/// account's token endpoint and the legacy endpoint key as endpoints the
/// user chose, and Google's storage and token hosts.
pub fn contract() -> StoreContract {
    druid_plugin_sdk::secret_contract(
        ENV_PREFIX,
        true,
        &[
            "token_uri",
            "token_url",
            "service_account_impersonation_url",
            LEGACY_ENDPOINT_KEY,
        ],
        &[
            STORAGE_ORIGIN,
            "https://oauth2.googleapis.com",
            "https://sts.googleapis.com",
            "https://iamcredentials.googleapis.com",
        ],
    )
}

/// How requests are authorized.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A bearer token from the service account's OAuth2 token endpoint.
    ServiceAccount(Box<ServiceAccount>),
    /// A federated token for the Secret's `token` (workload identity
    /// federation, upstream's `external_account`).
    ExternalAccount(Box<ExternalAccount>),
    /// None: an emulator over plain http (upstream's emulator mode).
    Emulator,
}

/// Where the endpoint came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointSource {
    /// `store.endpointOverride` (the spec) or `--store-endpoint-override`.
    Override,
    /// The secret's legacy `storageAPIEndpoint`.
    LegacyKey,
    /// Google's endpoint.
    Google,
}

/// A parsed store configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `storageProvider` value.
    pub provider: String,
    /// The bucket.
    pub bucket: String,
    /// `scheme://host[:port]` of the JSON API.
    pub origin: String,
    /// The path below the origin that `/storage/v1` and
    /// `/upload/storage/v1` follow, without a trailing `/` (usually empty).
    pub base_path: String,
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

/// Whether `name` is a bucket name GCS takes: 3 to 222 characters of
/// lower-case letters, digits, `-`, `_` and `.`, starting and ending with
/// a letter or digit, each dot-separated part at most 63 characters.
pub fn valid_bucket(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=222).contains(&name.len())
        && name.bytes().all(|b| alnum(b) || b"-_.".contains(&b))
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum)
        && name.split('.').all(|p| !p.is_empty() && p.len() <= 63)
}

/// Splits an endpoint into origin and base path: upstream's form ends in
/// `/storage/v1/` (`http://fake-gcs:8000/storage/v1/`), which is dropped,
/// as is a trailing `/`.
fn split_endpoint(endpoint: &str, what: &str) -> Result<(String, String), StoreError> {
    let (origin, path) = druid_plugin_sdk::http::split_endpoint(endpoint).map_err(|why| {
        invalid(format!(
            "{what} {endpoint:?} {why}: give the JSON API's endpoint, e.g. \
             https://storage.googleapis.com or http://fake-gcs:4443/storage/v1/"
        ))
    })?;
    let path = path
        .strip_suffix("/storage/v1")
        .unwrap_or(&path)
        .to_string();
    Ok((origin, path))
}

/// Reads the configuration: the bucket, the endpoint and the credential.
///
/// An endpoint over plain `http` is an emulator: requests carry no token,
/// as upstream's emulator mode, and the secret may hold anything (even a
/// placeholder key). The one exception is a service account whose own
/// `token_uri` is plain `http` too: a token service run next to the
/// store, which is then used. Over `https` (Google, or an override) the
/// secret must hold a service account key.
pub fn parse(config: &StoreConfig) -> Result<Settings, StoreError> {
    let provider = config.provider.clone();
    let mut warnings = Vec::new();
    let bucket = config.container.trim();
    if !valid_bucket(bucket) {
        return Err(invalid(format!(
            "store.container {bucket:?} is not a GCS bucket name (3 to 63 lower-case letters, \
             digits, '-' and '_', or dotted names of such parts up to 222, starting and ending \
             with a letter or digit)"
        )));
    }
    let override_endpoint = config
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let (origin, base_path, endpoint_source) =
        match (override_endpoint, value(config, LEGACY_ENDPOINT_KEY)) {
            (Some(endpoint), legacy) => {
                if legacy.is_some() {
                    warnings.push(format!(
                        "the {provider} store secret's `{LEGACY_ENDPOINT_KEY}` is ignored: \
                         store.endpointOverride is set"
                    ));
                }
                let (o, p) = split_endpoint(endpoint, "store.endpointOverride")?;
                (o, p, EndpointSource::Override)
            }
            (None, Some(legacy)) => {
                warnings.push(format!(
                    "the {provider} store secret's `{LEGACY_ENDPOINT_KEY}` is deprecated (as \
                     upstream): set store.endpointOverride instead"
                ));
                let what = format!("the {provider} store secret's `{LEGACY_ENDPOINT_KEY}`");
                let (o, p) = split_endpoint(legacy, &what)?;
                (o, p, EndpointSource::LegacyKey)
            }
            (None, None) => (
                STORAGE_ORIGIN.to_string(),
                String::new(),
                EndpointSource::Google,
            ),
        };
    let plain_http = origin.starts_with("http://");
    let external = value(config, "type") == Some("external_account");
    let token_http = value(config, if external { "token_url" } else { "token_uri" })
        .is_some_and(|t| t.starts_with("http://"));
    let auth = if plain_http && !token_http {
        Auth::Emulator
    } else if external {
        Auth::ExternalAccount(Box::new(ExternalAccount::from_config(
            config,
            &mut warnings,
        )?))
    } else {
        Auth::ServiceAccount(Box::new(ServiceAccount::from_config(config)?))
    };
    Ok(Settings {
        provider,
        bucket: bucket.to_string(),
        origin,
        base_path,
        auth,
        endpoint_source,
        warnings,
    })
}
