//! The registry: which plugin serves which `storageProvider` value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use druid_etcd_db::CompactReport;

use crate::compact::{CompactJob, CompactionError, Compactor};
use crate::config::{StoreConfig, canonical_provider, valid_name};
use crate::provider::ProviderPlugin;
use crate::runtime::{Plugin, PluginHost, Pre};
use crate::store::PluginStore;
use crate::wiring::{SidecarConfig, WiringError};
use crate::{Error, PluginInfo, api_compatible};

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
    /// What it serves: a storage provider or the compactor (from the
    /// world its component exports).
    pub kind: PluginKind,
    handle: Handle,
}

/// A registered plugin as what it serves: the one place the kind of a
/// component is matched.
#[derive(Clone)]
enum Handle {
    Provider(ProviderPlugin),
    Compactor(Compactor),
}

/// The plugins of a host, by provider.
pub struct Registry {
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
            plugins: loaded,
            providers,
        })
    }

    async fn register(
        host: &Arc<PluginHost>,
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
        let (kind, handle) = match plugin.pre {
            Pre::Provider(pre) => (
                PluginKind::Provider,
                Handle::Provider(ProviderPlugin::new(host.clone(), info.name.clone(), pre)),
            ),
            Pre::Compactor(pre) => (
                PluginKind::Compactor,
                Handle::Compactor(Compactor::new(host.clone(), info.name.clone(), pre)),
            ),
        };
        Ok(RegisteredPlugin {
            info,
            source,
            kind,
            handle,
        })
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

    /// The provider plugin serving `provider` (aliases included).
    pub fn provider(&self, provider: &str) -> Result<&ProviderPlugin, Error> {
        let registered = self.plugin_for(provider)?;
        registered
            .as_provider()
            .ok_or_else(|| Error::UnknownProvider {
                provider: provider.to_string(),
                known: self.providers().join(", "),
            })
    }

    /// The store for `config`, served by its provider's plugin.
    pub fn store(&self, config: StoreConfig) -> Result<PluginStore, Error> {
        let provider = self.provider(&config.provider)?.clone();
        Ok(PluginStore::new(provider, config))
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
        self.provider(provider)?
            .pod_config(provider, container, prefix, secret_name)
            .await
    }

    /// Checks the key names of a store's Secret; the error lists each
    /// problem.
    pub async fn check_secret(&self, provider: &str, keys: &[String]) -> Result<(), WiringError> {
        self.provider(provider)?.check_secret(provider, keys).await
    }

    /// The compactor plugin (the first loaded).
    pub fn compactor(&self) -> Option<&Compactor> {
        self.plugins.iter().find_map(RegisteredPlugin::as_compactor)
    }

    /// Runs the compactor plugin on `job` (see [`Compactor::compact`]).
    pub async fn compact(&self, job: &CompactJob) -> Result<CompactReport, CompactionError> {
        let compactor = self
            .compactor()
            .ok_or_else(|| CompactionError::NoCompactor {
                known: self
                    .plugins
                    .iter()
                    .map(|p| p.info.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        compactor.compact(job).await
    }
}

impl RegisteredPlugin {
    /// The plugin as a storage provider, if it is one.
    pub fn as_provider(&self) -> Option<&ProviderPlugin> {
        match &self.handle {
            Handle::Provider(p) => Some(p),
            Handle::Compactor(_) => None,
        }
    }

    /// The plugin as a compactor, if it is one.
    pub fn as_compactor(&self) -> Option<&Compactor> {
        match &self.handle {
            Handle::Compactor(c) => Some(c),
            Handle::Provider(_) => None,
        }
    }
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
