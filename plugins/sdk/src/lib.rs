//! The plugin SDK: bindings for the `druid:plugin` WIT package and what a
//! plugin author needs besides (blocking HTTP over `wasi:http`, retries with
//! backoff, part buffers for multipart uploads, log helpers).
//!
//! A provider plugin implements three traits and registers itself with
//! [`provider::export_provider!`] (which also installs the [`panic`] hook
//! that forwards a panic's message to the host's log):
//! - `provider::Guest`: `describe`;
//! - `wiring::Guest`: the sidecar's env vars and volumes for a store, and a
//!   check of a secret's key names;
//! - `store::Guest` (`contract`: where a store's credentials come from and
//!   which hosts it calls, see [`secret_contract`]) with `store::GuestStore`,
//!   `store::GuestUpload` and `store::GuestDownload`: the object store.
//!
//! See the crate's README for a walkthrough (`scripts/new-plugin.sh`
//! instantiates `plugins/sdk/template/` out of tree) and the repository's
//! `docs/plugin-api.md` for the contract, function by function.

pub mod download;
pub mod exchange;
pub mod http;
pub mod oauth;
pub mod object;
pub mod panic;
pub mod parts;
pub mod retry;
pub mod time;

/// The version of the WIT package these bindings were generated from. A
/// plugin reports it as its `api-version`.
pub const API_VERSION: &str = "0.2.0";

/// Bindings of the `provider` world.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod provider {
    wit_bindgen::generate!({
        path: "wit",
        world: "druid:plugin/provider",
        pub_export_macro: true,
        export_macro_name: "export_provider_bindings",
        default_bindings_module: "druid_plugin_sdk::provider",
        generate_all,
    });

    /// Exports a type that implements [`Guest`], `wiring::Guest` and
    /// `store::Guest` as the plugin's component exports, and installs the
    /// SDK's panic hook ([`crate::panic`]) before the first export runs.
    /// Use it once, in the plugin's crate, for wasm only:
    /// `#[cfg(target_arch = "wasm32")] druid_plugin_sdk::provider::export_provider!(MyPlugin);`
    #[doc(inline)]
    pub use crate::__druid_export_provider as export_provider;
}

#[doc(hidden)]
#[macro_export]
macro_rules! __druid_export_provider {
    ($ty:ident) => {
        $crate::provider::export_provider_bindings!($ty with_types_in $crate::provider);
        $crate::__druid_panic_hook_ctor!($crate::panic::install_provider);
    };
}

/// Bindings of the `compactor` world.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod compactor {
    wit_bindgen::generate!({
        path: "wit",
        world: "druid:plugin/compactor",
        pub_export_macro: true,
        export_macro_name: "export_compactor_bindings",
        default_bindings_module: "druid_plugin_sdk::compactor",
    });

    /// Exports a type that implements [`Guest`] and `compaction::Guest` as
    /// the plugin's component exports, and installs the SDK's panic hook
    /// ([`crate::panic`]) before the first export runs.
    #[doc(inline)]
    pub use crate::__druid_export_compactor as export_compactor;
}

#[doc(hidden)]
#[macro_export]
macro_rules! __druid_export_compactor {
    ($ty:ident) => {
        $crate::compactor::export_compactor_bindings!($ty with_types_in $crate::compactor);
        $crate::__druid_panic_hook_ctor!($crate::panic::install_compactor);
    };
}

/// The object-store interface a provider exports (`druid:plugin/object-store`).
pub use provider::exports::druid::plugin::object_store as store;
/// The pod-wiring interface a provider exports (`druid:plugin/pod-wiring`).
pub use provider::exports::druid::plugin::pod_wiring as wiring;

/// The `describe` answer for a provider plugin built against this SDK.
pub fn plugin_info(name: &str, version: &str, providers: &[&str]) -> provider::PluginInfo {
    provider::PluginInfo {
        name: name.into(),
        version: version.into(),
        api_version: API_VERSION.into(),
        providers: providers.iter().map(|p| (*p).to_string()).collect(),
    }
}

/// The store contract of a provider whose credentials are the store
/// Secret, mounted by the operator at `/var/etcd-backup` and named by
/// `<PREFIX>_APPLICATION_CREDENTIALS` (or a JSON file in it named by
/// `<PREFIX>_APPLICATION_CREDENTIALS_JSON`, which wins): every key of the
/// Secret reaches `open`. `endpoint_keys` are the keys whose values are
/// endpoints the user chose (the host lets the plugin reach them);
/// `official_endpoints` the provider's own hosts as `https://` templates
/// (`{container}` and `{<credential key>}` stand for whole DNS labels),
/// reached only when no endpoint override is set. The host checks the
/// contract when it loads the plugin (docs/plugin-api.md, `store-contract`).
/// `pod-config` must set `<PREFIX>_APPLICATION_CREDENTIALS` (or the
/// `_JSON` variable), nothing else, for the Secret.
pub fn secret_contract(
    prefix: &str,
    required: bool,
    endpoint_keys: &[&str],
    official_endpoints: &[&str],
) -> store::StoreContract {
    store::StoreContract {
        credential_variables: vec![
            format!("{prefix}_APPLICATION_CREDENTIALS_JSON"),
            format!("{prefix}_APPLICATION_CREDENTIALS"),
        ],
        credentials_required: required,
        credential_value_variables: Vec::new(),
        endpoint_keys: endpoint_keys.iter().map(|k| (*k).to_string()).collect(),
        official_endpoints: official_endpoints
            .iter()
            .map(|e| (*e).to_string())
            .collect(),
    }
}

/// Where the operator's pods mount the store Secret for the sidecar.
pub const SECRET_MOUNT: &str = "/var/etcd-backup";
/// The name of the store Secret's volume in the pod.
pub const SECRET_VOLUME: &str = "etcd-backup-secret";

/// The sidecar wiring of a provider whose credentials are the store
/// Secret (the counterpart of [`secret_contract`] with the same
/// `prefix`): `STORAGE_CONTAINER`, `<PREFIX>_APPLICATION_CREDENTIALS`
/// naming the Secret mounted at [`SECRET_MOUNT`], and that volume.
pub fn secret_pod_config(prefix: &str, container: &str) -> wiring::SidecarConfig {
    wiring::SidecarConfig {
        env: vec![
            wiring::EnvVar {
                name: "STORAGE_CONTAINER".into(),
                value: container.to_string(),
            },
            wiring::EnvVar {
                name: format!("{prefix}_APPLICATION_CREDENTIALS"),
                value: SECRET_MOUNT.into(),
            },
        ],
        volumes: vec![wiring::Volume {
            name: SECRET_VOLUME.into(),
            source: wiring::VolumeSource::StoreSecret,
            mount_path: SECRET_MOUNT.into(),
        }],
    }
}

/// The sidecar wiring ([`secret_pod_config`]) of `spec` for a provider
/// whose credentials are the store Secret, after the checks each such
/// provider makes: a container is named (`container` says what it is,
/// e.g. "bucket"), and `secretRef` is set (`secret` says what the secret
/// holds, e.g. "the keys `storageAccount` and `storageKey`").
pub fn secret_store_wiring(
    spec: &wiring::StoreSpec,
    prefix: &str,
    container: &str,
    secret: &str,
) -> Result<wiring::SidecarConfig, String> {
    if spec.container.trim().is_empty() {
        return Err(format!(
            "store.container is empty: set it to the name of the {container}"
        ));
    }
    if spec
        .secret_name
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        return Err(format!(
            "store.secretRef is required for storage provider {:?}: create a secret with \
             {secret} and reference it (this provider takes no workload identity without a \
             Secret)",
            spec.provider
        ));
    }
    Ok(secret_pod_config(prefix, &spec.container))
}

/// Refuses a `storageProvider` value the plugin named `plugin` does not
/// serve (names are case-sensitive, as upstream).
pub fn require_provider(plugin: &str, providers: &[&str], provider: &str) -> Result<(), String> {
    if providers.contains(&provider) {
        Ok(())
    } else {
        Err(format!(
            "storage provider {provider:?} is not served by the {plugin} plugin (it serves {}; \
             names are case-sensitive)",
            providers.join(", ")
        ))
    }
}

/// The store contract of a provider that takes no credentials and calls
/// no endpoint of its own (the Local provider).
pub fn no_credentials_contract() -> store::StoreContract {
    store::StoreContract {
        credential_variables: Vec::new(),
        credentials_required: false,
        credential_value_variables: Vec::new(),
        endpoint_keys: Vec::new(),
        official_endpoints: Vec::new(),
    }
}

/// Looks up a credential key in a store configuration.
pub fn credential<'a>(config: &'a store::StoreConfig, key: &str) -> Option<&'a str> {
    config
        .credentials
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A credential key's value, trimmed; none when it is missing or blank.
pub fn credential_value<'a>(config: &'a store::StoreConfig, key: &str) -> Option<&'a str> {
    credential(config, key)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Looks up a credential key in a list of pairs, owned.
pub fn credential_owned(credentials: &[(String, String)], key: &str) -> Option<String> {
    credentials
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Returns one "missing key" problem per key of `required` that `keys`
/// lacks, for `check-secret`.
pub fn missing_keys(keys: &[String], required: &[&str], provider: &str) -> Vec<String> {
    required
        .iter()
        .filter(|r| !keys.iter().any(|k| k == *r))
        .map(|r| format!("the {provider} store secret has no key `{r}`: add it to the secret"))
        .collect()
}

/// Logs through the host's `logging` import (provider world).
pub mod log {
    use crate::provider::druid::plugin::logging::{Level, log};

    /// Logs a debug line.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    /// Logs an informational line.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs a warning.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs an error.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_version_matches_the_wit_package() {
        let wit = include_str!("../wit/plugin.wit");
        let expected = format!("package druid:plugin@{};", super::API_VERSION);
        assert!(
            wit.lines().any(|l| l.trim() == expected),
            "wit/plugin.wit does not declare `{expected}`: update API_VERSION"
        );
    }

    #[test]
    fn a_secret_backed_store_needs_a_container_and_a_secret() {
        use super::*;
        let spec = |container: &str, secret: Option<&str>| wiring::StoreSpec {
            provider: "P".into(),
            container: container.into(),
            prefix: "x".into(),
            secret_name: secret.map(Into::into),
        };
        let c = secret_store_wiring(&spec("b", Some("s")), "ACME", "bucket", "the keys").unwrap();
        assert_eq!(c.env[0].name, "STORAGE_CONTAINER");
        assert_eq!(c.env[0].value, "b");
        assert_eq!(c.env[1].name, "ACME_APPLICATION_CREDENTIALS");
        assert_eq!(c.env[1].value, SECRET_MOUNT);
        let e = secret_store_wiring(&spec(" ", Some("s")), "ACME", "bucket", "k").unwrap_err();
        assert!(e.contains("name of the bucket"), "{e}");
        let e = secret_store_wiring(&spec("b", Some(" ")), "ACME", "bucket", "the keys `a`")
            .unwrap_err();
        assert!(e.contains("secretRef") && e.contains("the keys `a`"), "{e}");
        assert!(require_provider("acme", &["P", "p"], "P").is_ok());
        let e = require_provider("acme", &["P", "p"], "Q").unwrap_err();
        assert!(
            e.contains("\"Q\"") && e.contains("acme plugin") && e.contains("P, p"),
            "{e}"
        );
    }

    #[test]
    fn missing_keys_names_each_missing_key() {
        let keys = vec!["region".to_string()];
        let problems =
            super::missing_keys(&keys, &["region", "accessKeyID", "secretAccessKey"], "S3");
        assert_eq!(problems.len(), 2);
        assert!(problems[0].contains("`accessKeyID`"), "{problems:?}");
        assert!(problems[1].contains("`secretAccessKey`"), "{problems:?}");
    }
}
