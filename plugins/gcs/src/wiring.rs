//! pod-wiring: the sidecar's env vars and the secret volume, and the check
//! of a store secret's key names.

use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};

use crate::config::{ENV_PREFIX, KNOWN_KEYS, PROVIDERS};

fn require(provider: &str) -> Result<(), String> {
    if PROVIDERS.contains(&provider) {
        Ok(())
    } else {
        Err(format!(
            "storage provider {provider:?} is not served by the gcs plugin (it serves {}; names \
             are case-sensitive)",
            PROVIDERS.join(", ")
        ))
    }
}

/// The sidecar configuration for `spec`: the store Secret mounted at the
/// SDK's path and named by `GOOGLE_APPLICATION_CREDENTIALS` (its
/// `serviceaccount.json` is read as the key file).
pub fn pod_config(spec: &StoreSpec) -> Result<SidecarConfig, String> {
    require(&spec.provider)?;
    if spec.container.trim().is_empty() {
        return Err("store.container is empty: set it to the name of the bucket".into());
    }
    if spec
        .secret_name
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        return Err(format!(
            "store.secretRef is required for storage provider {:?}: create a secret with the \
             key `serviceaccount.json` holding a service account key and reference it (workload \
             identity is not supported yet)",
            spec.provider
        ));
    }
    Ok(druid_plugin_sdk::secret_pod_config(
        ENV_PREFIX,
        &spec.container,
    ))
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
