//! The registry: which plugin serves which `storageProvider` value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::grants::Grants;
use crate::runtime::bindings::provider::exports::druid::plugin::pod_wiring as wit;
use crate::runtime::{Plugin, PluginHost, Pre, guarded, truncate};
use crate::store::{PluginStore, StoreConfig};
use crate::{Error, PluginInfo, api_compatible};

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

/// What kind of plugin a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Exports the `provider` world.
    Provider,
    /// Exports the `compactor` world.
    Compactor,
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A file of the plugins directory.
    File(PathBuf),
    /// Built into the binary.
    Builtin,
}

/// A loaded plugin and what it said about itself.
#[derive(Clone)]
pub struct RegisteredPlugin {
    /// Its `describe` answer.
    pub info: PluginInfo,
    /// Where it came from.
    pub source: PluginSource,
    /// Its kind.
    pub kind: PluginKind,
    plugin: Plugin,
}

/// The sidecar wiring for a store, from the provider's plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    /// Environment variables (name, value).
    pub env: Vec<(String, String)>,
    /// Volumes and their mounts.
    pub volumes: Vec<SidecarVolume>,
}

/// A volume of the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarVolume {
    /// The volume's name.
    pub name: String,
    /// Where it comes from.
    pub source: VolumeSource,
    /// The mount path.
    pub mount_path: String,
}

/// Where a volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// The store's Secret.
    StoreSecret,
    /// A node directory.
    HostPath(String),
}

/// Why the wiring of a store was refused.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The spec is invalid for the provider.
    #[error("{0}")]
    Spec(String),
    /// The secret lacks keys or has conflicting ones (one entry each).
    #[error("{}", .0.join("; "))]
    Secret(Vec<String>),
    /// The plugin failed.
    #[error(transparent)]
    Plugin(#[from] Error),
}

/// The plugins of a host, by provider.
pub struct Registry {
    host: Arc<PluginHost>,
    plugins: Vec<RegisteredPlugin>,
    /// Canonical provider name → index into `plugins`.
    providers: BTreeMap<String, usize>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.providers.keys())
            .finish()
    }
}

impl Registry {
    /// Loads the built-in plugins (`(name, wasm)` pairs) and every `*.wasm`
    /// file of `dir`. A file plugin with the name of a built-in one replaces
    /// it; two different plugins claiming one provider is an error.
    pub async fn load(
        host: Arc<PluginHost>,
        dir: Option<&Path>,
        builtins: &[(&str, &[u8])],
    ) -> Result<Self, Error> {
        let mut loaded: Vec<RegisteredPlugin> = Vec::new();
        for (name, wasm) in builtins {
            let plugin = host.load_bytes(name, wasm)?;
            loaded.push(Self::register(&host, plugin, PluginSource::Builtin).await?);
        }
        if let Some(dir) = dir {
            let io = |source| Error::PluginsDir {
                path: dir.to_path_buf(),
                source,
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
                .collect();
            files.sort();
            for path in files {
                let plugin = host.load_file(&path)?;
                let reg = Self::register(&host, plugin, PluginSource::File(path.clone())).await?;
                if let Some(i) = loaded
                    .iter()
                    .position(|p| p.source == PluginSource::Builtin && p.info.name == reg.info.name)
                {
                    tracing::warn!(plugin = %reg.info.name, file = %path.display(), "a plugin file replaces the built-in plugin of the same name");
                    loaded.remove(i);
                }
                loaded.push(reg);
            }
        }
        let mut providers: BTreeMap<String, usize> = BTreeMap::new();
        for (i, p) in loaded.iter().enumerate() {
            for provider in &p.info.providers {
                let canonical = canonical_provider(provider).to_string();
                match providers.get(&canonical) {
                    Some(&j) if j != i => {
                        return Err(Error::DuplicateProvider {
                            provider: provider.clone(),
                            first: describe_source(&loaded[j]),
                            second: describe_source(p),
                        });
                    }
                    _ => {
                        providers.insert(canonical, i);
                    }
                }
            }
        }
        for p in &loaded {
            tracing::info!(plugin = %p.info.name, version = %p.info.version, providers = ?p.info.providers, source = ?p.source, "plugin registered");
        }
        Ok(Self {
            host,
            plugins: loaded,
            providers,
        })
    }

    async fn register(
        host: &PluginHost,
        plugin: Plugin,
        source: PluginSource,
    ) -> Result<RegisteredPlugin, Error> {
        let info = host.describe(&plugin).await?;
        let names = std::iter::once(("plugin name", &info.name))
            .chain(info.providers.iter().map(|p| ("storage provider", p)));
        for (what, name) in names {
            if !valid_name(name) {
                return Err(Error::InvalidName {
                    plugin: info.name.chars().take(64).collect(),
                    source_desc: match &source {
                        PluginSource::File(path) => path.display().to_string(),
                        PluginSource::Builtin => "built in".into(),
                    },
                    what,
                    name: name.chars().take(64).collect(),
                });
            }
        }
        if !api_compatible(&info.api_version) {
            return Err(Error::ApiVersion {
                plugin: info.name,
                plugin_api: info.api_version,
                host_api: crate::API_VERSION,
            });
        }
        let kind = match plugin.pre {
            Pre::Provider(_) => PluginKind::Provider,
            Pre::Compactor(_) => PluginKind::Compactor,
        };
        Ok(RegisteredPlugin {
            info,
            source,
            kind,
            plugin,
        })
    }

    /// The host the plugins run on.
    pub(crate) fn host(&self) -> &PluginHost {
        &self.host
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &[RegisteredPlugin] {
        &self.plugins
    }

    /// The canonical provider names served.
    pub fn providers(&self) -> Vec<&str> {
        self.providers.keys().map(String::as_str).collect()
    }

    /// The plugin serving `provider` (aliases included).
    pub fn plugin_for(&self, provider: &str) -> Result<&RegisteredPlugin, Error> {
        self.providers
            .get(canonical_provider(provider))
            .and_then(|&i| self.plugins.get(i))
            .filter(|p| p.kind == PluginKind::Provider)
            .ok_or_else(|| Error::UnknownProvider {
                provider: provider.to_string(),
                known: self.providers().join(", "),
            })
    }

    /// The store for `config`, served by its provider's plugin.
    pub fn store(&self, config: StoreConfig) -> Result<PluginStore, Error> {
        let plugin = self.plugin_for(&config.provider)?.plugin.clone();
        Ok(PluginStore::new(self.host.clone(), plugin, config))
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
        let plugin = &self.plugin_for(provider)?.plugin;
        let Pre::Provider(pre) = &plugin.pre else {
            return Err(WiringError::Plugin(
                self.plugin_for(provider)
                    .err()
                    .unwrap_or(Error::UnknownProvider {
                        provider: provider.into(),
                        known: String::new(),
                    }),
            ));
        };
        let spec = wit::StoreSpec {
            provider: provider.into(),
            container: container.into(),
            prefix: prefix.into(),
            secret_name: secret_name.map(Into::into),
        };
        let mut session = self.wiring_session(plugin)?;
        let instance = guarded!(&mut session, "instantiate", |store| pre
            .instantiate_async(store))?;
        let result = guarded!(&mut session, "pod-config", |store| instance
            .druid_plugin_pod_wiring()
            .call_pod_config(store, &spec))?;
        let cfg = result.map_err(|m| WiringError::Spec(truncate(&m, 4096).to_string()))?;
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
        let plugin = &self.plugin_for(provider)?.plugin;
        let Pre::Provider(pre) = &plugin.pre else {
            return Ok(());
        };
        let mut session = self.wiring_session(plugin)?;
        let instance = guarded!(&mut session, "instantiate", |store| pre
            .instantiate_async(store))?;
        let result = guarded!(&mut session, "check-secret", |store| instance
            .druid_plugin_pod_wiring()
            .call_check_secret(store, provider, keys))?;
        result.map_err(|problems| {
            WiringError::Secret(
                problems
                    .into_iter()
                    .take(64)
                    .map(|p| truncate(&p, 1024).to_string())
                    .collect(),
            )
        })
    }
}

impl Registry {
    /// A session for a pod-wiring call: no grants, the short limits of
    /// [`Limits::wiring`].
    fn wiring_session(&self, plugin: &Plugin) -> Result<crate::runtime::Session, Error> {
        self.host
            .session_with_limits(plugin, &Grants::none(), &self.host.limits().wiring())
    }
}

impl RegisteredPlugin {
    /// The compiled plugin.
    pub(crate) fn plugin(&self) -> &Plugin {
        &self.plugin
    }
}

/// A plugin or provider name the host serves: 1 to 63 ASCII letters,
/// digits, `_` or `-`, starting with a letter (the Etcd CRD's rule for
/// `store.provider`).
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn describe_source(p: &RegisteredPlugin) -> String {
    match &p.source {
        PluginSource::File(path) => format!("{} ({})", p.info.name, path.display()),
        PluginSource::Builtin => format!("{} (built in)", p.info.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_and_provider_names_follow_the_crd_rule() {
        for good in ["S3", "aws", "Local", "my-store_2", "a"] {
            assert!(valid_name(good), "{good:?}");
        }
        let long = "a".repeat(64);
        for bad in ["", " S3", "3store", "-x", "a b", "../x", "é", long.as_str()] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn upstream_aliases_map_to_canonical_names() {
        assert_eq!(canonical_provider("aws"), "S3");
        assert_eq!(canonical_provider("S3"), "S3");
        assert_eq!(canonical_provider("azure"), "ABS");
        assert_eq!(canonical_provider("gcp"), "GCS");
        assert_eq!(canonical_provider("openstack"), "Swift");
        assert_eq!(canonical_provider("alicloud"), "OSS");
        assert_eq!(canonical_provider(""), "Local");
        assert_eq!(canonical_provider("Mystery"), "Mystery");
    }
}
