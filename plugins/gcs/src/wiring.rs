//! pod-wiring: the sidecar's env vars and the secret volume, and the check
//! of a store secret's key names.

use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};

use crate::config::{ENV_PREFIX, KNOWN_KEYS, PROVIDERS};

fn require(provider: &str) -> Result<(), String> {
    druid_plugin_sdk::require_provider("gcs", PROVIDERS, provider)
}

/// The sidecar configuration for `spec`: the store Secret mounted at the
/// SDK's path and named by `GOOGLE_APPLICATION_CREDENTIALS`.
pub fn pod_config(spec: &StoreSpec) -> Result<SidecarConfig, String> {
    require(&spec.provider)?;
    druid_plugin_sdk::secret_store_wiring(
        spec,
        ENV_PREFIX,
        "bucket",
        "the key `serviceaccount.json` holding a service account key",
    )
}

/// Checks a store secret's key names for `provider`: the key file as
/// upstream has it (`serviceaccount.json`, or any `*.json`), or its
/// fields as keys of their own with `client_email` and `private_key`.
pub fn check_secret(provider: &str, keys: &[String]) -> Result<(), Vec<String>> {
    require(provider).map_err(|e| vec![e])?;
    if keys.iter().any(|k| k.ends_with(".json")) {
        return Ok(());
    }
    if !keys.iter().any(|k| KNOWN_KEYS.contains(&k.as_str())) {
        return Err(vec![format!(
            "the {provider} store secret has no `serviceaccount.json`: add the service account's \
             key file under that key (kubectl create secret generic ... \
             --from-file=serviceaccount.json=key.json)"
        )]);
    }
    let problems = druid_plugin_sdk::missing_keys(keys, &["client_email", "private_key"], provider);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
