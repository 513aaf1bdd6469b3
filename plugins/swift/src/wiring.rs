//! pod-wiring: the sidecar's env vars and the secret volume, and the check
//! of a store secret's key names.

use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};

use crate::config::{APPLICATION_CREDENTIAL_KEYS, AUTH_URL_KEY, ENV_PREFIX, PROVIDERS};

fn require(provider: &str) -> Result<(), String> {
    druid_plugin_sdk::require_provider("swift", PROVIDERS, provider)
}

/// The sidecar configuration for `spec`: the store Secret mounted at the
/// SDK's path and named by `OPENSTACK_APPLICATION_CREDENTIALS`.
pub fn pod_config(spec: &StoreSpec) -> Result<SidecarConfig, String> {
    require(&spec.provider)?;
    druid_plugin_sdk::secret_store_wiring(
        spec,
        ENV_PREFIX,
        "container",
        "the keys `authURL`, `domainName`, `tenantName`, `username` and `password` (or an \
         application credential)",
    )
}

/// Checks a store secret's key names for `provider`: upstream's JSON file
/// (any `*.json`), or `authURL` with a password (`username`, `password`,
/// `domainName`, `tenantName`) or an application credential
/// (`applicationCredentialSecret` with its id, or its name and the user's),
/// not both.
pub fn check_secret(provider: &str, keys: &[String]) -> Result<(), Vec<String>> {
    require(provider).map_err(|e| vec![e])?;
    if keys.iter().any(|k| k.ends_with(".json")) {
        return Ok(());
    }
    let has = |k: &str| keys.iter().any(|key| key == k);
    let mut problems = druid_plugin_sdk::missing_keys(keys, &[AUTH_URL_KEY], provider);
    let application = APPLICATION_CREDENTIAL_KEYS.iter().any(|k| has(k));
    let password = has("password");
    match (password, application) {
        (true, true) => problems.push(format!(
            "the {provider} store secret has both `password` and an application credential: \
             keep one of them"
        )),
        (true, false) => {
            problems.extend(druid_plugin_sdk::missing_keys(
                keys,
                &["username", "password"],
                provider,
            ));
            if !has("domainName") && !has("domainID") {
                problems.extend(druid_plugin_sdk::missing_keys(
                    keys,
                    &["domainName"],
                    provider,
                ));
            }
            if !has("tenantName") && !has("tenantID") {
                problems.extend(druid_plugin_sdk::missing_keys(
                    keys,
                    &["tenantName"],
                    provider,
                ));
            }
        }
        (false, true) => {
            problems.extend(druid_plugin_sdk::missing_keys(
                keys,
                &["applicationCredentialSecret"],
                provider,
            ));
            let named = has("applicationCredentialName") && has("username");
            if !(has("applicationCredentialID") || named) {
                problems.extend(druid_plugin_sdk::missing_keys(
                    keys,
                    &["applicationCredentialID"],
                    provider,
                ));
            }
        }
        (false, false) => problems.push(format!(
            "the {provider} store secret has no credential: add `username`, `password`, \
             `domainName` and `tenantName`, or `applicationCredentialID` and \
             `applicationCredentialSecret`"
        )),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
