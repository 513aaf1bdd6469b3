//! pod-wiring: the sidecar's env vars and the secret volume, and the check
//! of a store secret's key names.

use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};

use crate::config::{ENV_PREFIX, KNOWN_KEYS, PROVIDERS};

fn require(provider: &str) -> Result<(), String> {
    if PROVIDERS.contains(&provider) {
        Ok(())
    } else {
        Err(format!(
            "storage provider {provider:?} is not served by the abs plugin (it serves {}; names \
             are case-sensitive)",
            PROVIDERS.join(", ")
        ))
    }
}

/// The sidecar configuration for `spec`.
pub fn pod_config(spec: &StoreSpec) -> Result<SidecarConfig, String> {
    require(&spec.provider)?;
    if spec.container.trim().is_empty() {
        return Err("store.container is empty: set it to the name of the blob container".into());
    }
    if spec
        .secret_name
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        return Err(format!(
            "store.secretRef is required for storage provider {:?}: create a secret with the \
             keys `storageAccount` and `storageKey` (or `sasToken`) and reference it (workload \
             identity is not supported yet)",
            spec.provider
        ));
    }
    Ok(druid_plugin_sdk::secret_pod_config(
        ENV_PREFIX,
        &spec.container,
    ))
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
