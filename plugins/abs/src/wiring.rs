//! pod-wiring: the sidecar's env vars and the secret volume, and the check
//! of a store secret's key names.

use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};

use crate::config::{ENV_PREFIX, KNOWN_KEYS, PROVIDERS};

fn require(provider: &str) -> Result<(), String> {
    druid_plugin_sdk::require_provider("abs", PROVIDERS, provider)
}

/// The sidecar configuration for `spec`: the store Secret mounted at the
/// SDK's path and named by `AZURE_APPLICATION_CREDENTIALS`.
pub fn pod_config(spec: &StoreSpec) -> Result<SidecarConfig, String> {
    require(&spec.provider)?;
    let no_secret = spec
        .secret_name
        .as_deref()
        .is_none_or(|s| s.trim().is_empty());
    if no_secret && !spec.container.trim().is_empty() {
        // The pod's workload identity (config::WORKLOAD_IDENTITY_VARIABLES,
        // injected by Azure Workload Identity's webhook); the account comes
        // from the store's endpoint override. Nothing to mount.
        return Ok(SidecarConfig {
            env: vec![druid_plugin_sdk::wiring::EnvVar {
                name: "STORAGE_CONTAINER".into(),
                value: spec.container.clone(),
            }],
            volumes: Vec::new(),
        });
    }
    druid_plugin_sdk::secret_store_wiring(
        spec,
        ENV_PREFIX,
        "container",
        "the keys `storageAccount` and `storageKey` (or `sasToken`)",
    )
}

/// Checks a store secret's key names for `provider`: one problem per
/// missing key, and a credential given twice.
pub fn check_secret(provider: &str, keys: &[String]) -> Result<(), Vec<String>> {
    require(provider).map_err(|e| vec![e])?;
    let has = |k: &str| keys.iter().any(|key| key == k);
    // The JSON form (e.g. `credentials.json`): its fields are not visible
    // here, so it is accepted as it is.
    let json_form = keys.iter().any(|k| k.ends_with(".json"));
    if json_form && !KNOWN_KEYS.iter().any(|k| has(k)) {
        return Ok(());
    }
    let mut problems = druid_plugin_sdk::missing_keys(keys, &["storageAccount"], provider);
    match (has("storageKey"), has("sasToken")) {
        (false, false) => problems.push(format!(
            "the {provider} store secret has neither `storageKey` (the account's access key) nor \
             `sasToken` (a SAS for the container): add one to the secret"
        )),
        (true, true) => problems.push(format!(
            "the {provider} store secret has both `storageKey` and `sasToken`: keep one"
        )),
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
