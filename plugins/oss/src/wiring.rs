//! pod-wiring: the sidecar's env vars and the secret volume, and the check
//! of a store secret's key names.

use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};

use crate::config::{ENV_PREFIX, PROVIDERS, REQUIRED_KEYS};

fn require(provider: &str) -> Result<(), String> {
    druid_plugin_sdk::require_provider("oss", PROVIDERS, provider)
}

/// The sidecar configuration for `spec`: the store Secret mounted at the
/// SDK's path and named by `ALICLOUD_APPLICATION_CREDENTIALS`.
pub fn pod_config(spec: &StoreSpec) -> Result<SidecarConfig, String> {
    require(&spec.provider)?;
    druid_plugin_sdk::secret_store_wiring(
        spec,
        ENV_PREFIX,
        "bucket",
        "the keys `accessKeyID`, `accessKeySecret` and `storageEndpoint`",
    )
}

/// Checks a store secret's key names for `provider`: upstream's JSON file
/// (any `*.json`), or `accessKeyID`, `accessKeySecret` and
/// `storageEndpoint`.
pub fn check_secret(provider: &str, keys: &[String]) -> Result<(), Vec<String>> {
    require(provider).map_err(|e| vec![e])?;
    if keys.iter().any(|k| k.ends_with(".json")) {
        return Ok(());
    }
    let problems = druid_plugin_sdk::missing_keys(keys, REQUIRED_KEYS, provider);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
