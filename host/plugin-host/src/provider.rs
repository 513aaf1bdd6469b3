//! A provider plugin: the typed handle the registry hands out for a
//! `storageProvider` value. It opens stores ([`crate::PluginStore`]) and
//! answers the operator's pod-wiring questions (`pod-config`,
//! `check-secret`) under the short wiring limits and with no grants.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Error;
use crate::config::canonical_provider;
use crate::contract::{DeclaredContract, StoreContract};
use crate::grants::Grants;
use crate::limits::{MAX_SECRET_PROBLEM, MAX_SECRET_PROBLEMS, MAX_WIRING_MESSAGE, truncate};
use crate::runtime::bindings::provider::exports::druid::plugin::object_store as wit_store;
use crate::runtime::bindings::provider::exports::druid::plugin::pod_wiring as wit;
use crate::runtime::bindings::provider::{Provider, ProviderPre};
use crate::runtime::{HostState, PluginHost, Session, guarded};
use crate::wiring::{SidecarConfig, SidecarVolume, VolumeSource, WiringError};

/// A loaded plugin that exports the `provider` world.
#[derive(Clone)]
pub struct ProviderPlugin {
    host: Arc<PluginHost>,
    name: String,
    pre: ProviderPre<HostState>,
    /// The checked store contract of each provider served, by canonical
    /// provider name.
    contracts: Arc<BTreeMap<String, StoreContract>>,
}

impl std::fmt::Debug for ProviderPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderPlugin")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ProviderPlugin {
    pub(crate) fn new(host: Arc<PluginHost>, name: String, pre: ProviderPre<HostState>) -> Self {
        Self {
            host,
            name,
            pre,
            contracts: Arc::default(),
        }
    }

    /// Reads and checks the store contract of each of `providers` (the
    /// plugin's `describe` list): the plugin with the valid ones kept, and
    /// each provider whose contract failed with its error.
    pub(crate) async fn with_contracts(
        mut self,
        providers: &[String],
    ) -> (Self, Vec<(String, Error)>) {
        let mut good = BTreeMap::new();
        let mut bad = Vec::new();
        for provider in providers {
            match self.read_contract(provider).await {
                Ok(c) => {
                    good.insert(canonical_provider(provider).to_string(), c);
                }
                Err(e) => bad.push((provider.clone(), e)),
            }
        }
        self.contracts = Arc::new(good);
        (self, bad)
    }

    /// Calls the plugin's `contract` for `provider` and checks the answer.
    async fn read_contract(&self, provider: &str) -> Result<StoreContract, Error> {
        let mut session = self.wiring_session()?;
        let instance = guarded!(&mut session, "instantiate", |store| self
            .pre
            .instantiate_async(store))?;
        let declared: wit_store::StoreContract =
            guarded!(&mut session, "contract", |store| instance
                .druid_plugin_object_store()
                .call_contract(store, provider))?;
        StoreContract::check(DeclaredContract {
            credential_variables: declared.credential_variables,
            credentials_required: declared.credentials_required,
            credential_value_variables: declared.credential_value_variables,
            endpoint_keys: declared.endpoint_keys,
            official_endpoints: declared.official_endpoints,
        })
        .map_err(|problems| Error::InvalidContract {
            plugin: self.name.clone(),
            provider: provider.to_string(),
            problems: problems.join("; "),
        })
    }

    /// The store contract of `provider` (aliases included); the empty
    /// contract (no credentials, no endpoints) if the plugin does not serve
    /// it.
    pub fn contract(&self, provider: &str) -> &StoreContract {
        static NONE: std::sync::LazyLock<StoreContract> =
            std::sync::LazyLock::new(StoreContract::default);
        self.contracts
            .get(canonical_provider(provider))
            .unwrap_or(&NONE)
    }

    /// The plugin's name, as its `describe` gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host the plugin runs on.
    pub(crate) fn host(&self) -> &PluginHost {
        &self.host
    }

    /// A fresh store with `grants` and an instance of the plugin in it.
    pub(crate) async fn instantiate(&self, grants: &Grants) -> Result<(Session, Provider), Error> {
        let mut session = self.host.session(&self.name, grants)?;
        let instance = guarded!(&mut session, "instantiate", |store| self
            .pre
            .instantiate_async(store))?;
        Ok((session, instance))
    }

    /// The sidecar's env vars and volumes for a store: `provider`,
    /// `container`, `prefix` as in the spec and the secret's name if any.
    pub async fn pod_config(
        &self,
        provider: &str,
        container: &str,
        prefix: &str,
        secret_name: Option<&str>,
    ) -> Result<SidecarConfig, WiringError> {
        let spec = wit::StoreSpec {
            provider: provider.into(),
            container: container.into(),
            prefix: prefix.into(),
            secret_name: secret_name.map(Into::into),
        };
        let mut session = self.wiring_session()?;
        let instance = guarded!(&mut session, "instantiate", |store| self
            .pre
            .instantiate_async(store))?;
        let result = guarded!(&mut session, "pod-config", |store| instance
            .druid_plugin_pod_wiring()
            .call_pod_config(store, &spec))?;
        let cfg =
            result.map_err(|m| WiringError::Spec(truncate(&m, MAX_WIRING_MESSAGE).to_string()))?;
        Ok(SidecarConfig {
            env: cfg.env.into_iter().map(|e| (e.name, e.value)).collect(),
            volumes: cfg
                .volumes
                .into_iter()
                .map(|v| SidecarVolume {
                    name: v.name,
                    source: match v.source {
                        wit::VolumeSource::StoreSecret => VolumeSource::StoreSecret,
                        wit::VolumeSource::HostPath(p) => VolumeSource::HostPath(p),
                    },
                    mount_path: v.mount_path,
                })
                .collect(),
        })
    }

    /// Checks the key names of a store's Secret; the error lists each
    /// problem.
    pub async fn check_secret(&self, provider: &str, keys: &[String]) -> Result<(), WiringError> {
        let mut session = self.wiring_session()?;
        let instance = guarded!(&mut session, "instantiate", |store| self
            .pre
            .instantiate_async(store))?;
        let result = guarded!(&mut session, "check-secret", |store| instance
            .druid_plugin_pod_wiring()
            .call_check_secret(store, provider, keys))?;
        result.map_err(|problems| {
            WiringError::Secret(
                problems
                    .into_iter()
                    .take(MAX_SECRET_PROBLEMS)
                    .map(|p| truncate(&p, MAX_SECRET_PROBLEM).to_string())
                    .collect(),
            )
        })
    }

    /// A session for a pod-wiring call: no grants, the short limits of
    /// [`crate::Limits::wiring`].
    fn wiring_session(&self) -> Result<Session, Error> {
        self.host
            .session_with_limits(&self.name, &Grants::none(), &self.host.limits().wiring())
    }
}
