//! What a store is to the host: its configuration as the caller hands it
//! over, and the names the host accepts (provider values with upstream's
//! aliases, plugin names, Local container names). The bottom of the crate:
//! the capabilities, the store and the registry all read it.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A store as the host configures it. Its `Debug` shows the credentials'
/// keys, never their values.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The `storageProvider` value, as written in the spec.
    pub provider: String,
    /// The bucket or container.
    pub container: String,
    /// The store prefix (keys are below it; the caller adds it).
    pub prefix: String,
    /// An endpoint override, if set.
    pub endpoint: Option<String>,
    /// The secret's keys and values.
    pub credentials: BTreeMap<String, String>,
    /// For the Local provider: the directory holding the containers.
    pub local_root: Option<PathBuf>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("provider", &self.provider)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(crate::redact::redact_urls),
            )
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("local_root", &self.local_root)
            .finish()
    }
}

impl StoreConfig {
    /// A credential value.
    pub fn credential(&self, key: &str) -> Option<&str> {
        self.credentials.get(key).map(String::as_str)
    }
}

/// Upstream aliases of provider values, and their canonical names.
const ALIASES: &[(&str, &str)] = &[
    ("aws", "S3"),
    ("stackit", "S3"),
    ("azure", "ABS"),
    ("gcp", "GCS"),
    ("openstack", "Swift"),
    ("alicloud", "OSS"),
    ("dell", "ECS"),
    ("openshift", "OCS"),
    ("", "Local"),
];

/// The canonical name of a provider value (`aws` → `S3`, empty → `Local`);
/// other values are returned as they are.
pub fn canonical_provider(provider: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == provider)
        .map_or(provider, |(_, canonical)| canonical)
}

/// What keeps `name` from being a plugin or provider name the host serves
/// (1 to 63 ASCII letters, digits, `_` or `-`, starting with a letter: the
/// Etcd CRD's rule for `store.provider`), worded to follow "which"; `None`
/// for a valid name.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 63 {
        Some("is longer than 63 characters")
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("does not start with a letter")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Some("holds a character other than letters, digits, '_' and '-'")
    } else {
        None
    }
}

/// A plain file or directory name: 1 to 255 of letters, digits, `.`, `_`
/// and `-`, not starting with `.` (so never `.` or `..`).
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
