//! The registry: which plugin serves which `storageProvider` value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use druid_etcd_db::CompactReport;

use crate::compact::{CompactJob, CompactionError, Compactor};
use crate::config::{StoreConfig, canonical_provider, name_problem};
use crate::contract::StoreContract;
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
    /// Providers of its `describe` list whose store contract was refused,
    /// with the reason: they are not served.
    refused_providers: Vec<(String, String)>,
}

/// A registered plugin as what it serves: the one place the kind of a
/// component is matched.
#[derive(Clone)]
enum Handle {
    Provider(ProviderPlugin),
    Compactor(Compactor),
}

/// How the registry treats the plugins directory.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Lets a plugin file replace the built-in plugin of the same name
    /// (`--plugins-override-builtin`), with a warning. Without it such a
    /// file is refused (unless it is the very component built in) and the
    /// built-in plugin serves.
    pub allow_builtin_override: bool,
}

/// A plugin file the registry refused, or a provider of a plugin whose
/// store contract it refused, and why. Those providers are not served;
/// asking for one gives an error naming the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedPlugin {
    /// The file (for a built-in plugin, `built-in plugin <name>`).
    pub file: PathBuf,
    /// The providers it claims, if it got as far as describing itself
    /// (for a refused contract, that one provider).
    pub providers: Vec<String>,
    /// Why it was refused.
    pub reason: String,
}

/// A plugin that failed to register: the providers it claims (if it got
/// as far as describing itself) and the error.
type Failed = (Vec<String>, Error);

/// The plugins of a host, by provider.
pub struct Registry {
    plugins: Vec<RegisteredPlugin>,
    /// Canonical provider name → index into `plugins`.
    providers: BTreeMap<String, usize>,
    /// Plugin files that were refused.
    refused: Vec<RefusedPlugin>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.providers.keys())
            .field("refused", &self.refused)
            .finish()
    }
}

impl Registry {
    /// [`Registry::load_with`] with the default options (a file does not
    /// replace a built-in plugin).
    pub async fn load(
        host: Arc<PluginHost>,
        dir: Option<&Path>,
        builtins: &[(&str, &[u8])],
    ) -> Result<Self, Error> {
        Self::load_with(host, dir, builtins, &RegistryOptions::default()).await
    }

    /// Loads the built-in plugins (`(name, wasm)` pairs) and every `*.wasm`
    /// file of `dir`. A file that cannot be loaded or registered (not a
    /// component, another WIT version, invalid names, a trap in
    /// `describe`, a built-in plugin's name without
    /// [`RegistryOptions::allow_builtin_override`]) is refused, logged at
    /// error level and kept in [`Registry::refused`]: it disables only its
    /// own providers. Without the override, a file that is the very
    /// component built in is skipped. Errors: a built-in plugin that does not load, an
    /// unreadable directory, two plugins claiming one provider.
    pub async fn load_with(
        host: Arc<PluginHost>,
        dir: Option<&Path>,
        builtins: &[(&str, &[u8])],
        options: &RegistryOptions,
    ) -> Result<Self, Error> {
        let mut loaded: Vec<RegisteredPlugin> = Vec::new();
        // The component of each built-in plugin, by the name it describes.
        let mut builtin_wasm: BTreeMap<String, &[u8]> = BTreeMap::new();
        for (name, wasm) in builtins {
            let plugin = host.load_bytes(name, wasm)?;
            let reg = Self::register(&host, plugin, PluginSource::Builtin)
                .await
                .map_err(|(_, e)| e)?;
            builtin_wasm.insert(reg.info.name.clone(), wasm);
            loaded.push(reg);
        }
        let mut refused = Vec::new();
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
                let mut refuse = |providers: Vec<String>, e: Error| {
                    tracing::error!(file = %path.display(), error = %e, "plugin file refused: its providers are not served; fix, rebuild or remove it");
                    refused.push(RefusedPlugin {
                        file: path.clone(),
                        providers,
                        reason: e.to_string(),
                    });
                };
                let (reg, wasm) = match Self::register_file(&host, &path).await {
                    Ok(r) => r,
                    Err((providers, e)) => {
                        refuse(providers, e);
                        continue;
                    }
                };
                let same_name = loaded.iter().position(|p| {
                    p.source == PluginSource::Builtin && p.info.name == reg.info.name
                });
                if let Some(i) = same_name {
                    if !options.allow_builtin_override {
                        if builtin_wasm.get(&reg.info.name) == Some(&wasm.as_slice()) {
                            tracing::info!(plugin = %reg.info.name, file = %path.display(), "a plugin file is the built-in plugin itself; the built-in one serves");
                            continue;
                        }
                        let e = Error::BuiltinOverride {
                            plugin: reg.info.name.clone(),
                            file: path.clone(),
                        };
                        refuse(reg.info.providers.clone(), e);
                        continue;
                    }
                    tracing::warn!(plugin = %reg.info.name, file = %path.display(), "a plugin file replaces the built-in plugin of the same name (allowed by --plugins-override-builtin)");
                    loaded.remove(i);
                }
                loaded.push(reg);
            }
        }
        let mut providers: BTreeMap<String, usize> = BTreeMap::new();
        for (i, p) in loaded.iter().enumerate() {
            for (provider, reason) in &p.refused_providers {
                let file = match &p.source {
                    PluginSource::File(path) => path.clone(),
                    PluginSource::Builtin => {
                        PathBuf::from(format!("built-in plugin {}", p.info.name))
                    }
                };
                tracing::error!(file = %file.display(), %provider, error = %reason, "storage provider refused: its store contract breaks the host's rules; fix and rebuild the plugin");
                refused.push(RefusedPlugin {
                    file,
                    providers: vec![provider.clone()],
                    reason: reason.clone(),
                });
            }
            for provider in &p.info.providers {
                if p.refused_providers.iter().any(|(r, _)| r == provider) {
                    continue;
                }
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
            refused,
        })
    }

    /// Loads and registers one plugin file; also returns its bytes.
    async fn register_file(
        host: &Arc<PluginHost>,
        path: &Path,
    ) -> Result<(RegisteredPlugin, Vec<u8>), Failed> {
        let load_error = |source| {
            let e = Error::Load {
                path: path.to_path_buf(),
                source,
            };
            (Vec::new(), e)
        };
        let wasm = std::fs::read(path).map_err(|e| load_error(wasmtime::Error::from(e)))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plugin = host.load_bytes(&stem, &wasm).map_err(|e| match e {
            Error::Load { source, .. } => load_error(source),
            other => (Vec::new(), other),
        })?;
        let reg = Self::register(host, plugin, PluginSource::File(path.to_path_buf())).await?;
        Ok((reg, wasm))
    }

    /// Describes `plugin` and checks what it says ([`check_info`]) before
    /// any of its providers is mapped.
    async fn register(
        host: &Arc<PluginHost>,
        plugin: Plugin,
        source: PluginSource,
    ) -> Result<RegisteredPlugin, Failed> {
        let info = host.describe(&plugin).await.map_err(|e| (Vec::new(), e))?;
        if let Err(e) = check_info(&info, &source) {
            return Err((info.providers, e));
        }
        let mut refused_providers = Vec::new();
        let (kind, handle) = match plugin.pre {
            Pre::Provider(pre) => {
                let (provider, refused) = ProviderPlugin::new(host.clone(), info.name.clone(), pre)
                    .with_contracts(&info.providers)
                    .await;
                refused_providers = refused
                    .into_iter()
                    .map(|(p, e)| (p, e.to_string()))
                    .collect();
                (PluginKind::Provider, Handle::Provider(provider))
            }
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
            refused_providers,
        })
    }

    /// The plugin files that were refused, and why.
    pub fn refused(&self) -> &[RefusedPlugin] {
        &self.refused
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
            .ok_or_else(|| self.unknown(provider))
    }

    /// Why no plugin serves `provider`: the refused file that claims it,
    /// else the providers served and the refused files whose providers are
    /// not known.
    fn unknown(&self, provider: &str) -> Error {
        let canonical = canonical_provider(provider);
        if let Some(r) = self.refused.iter().find(|r| {
            r.providers
                .iter()
                .any(|p| canonical_provider(p) == canonical)
        }) {
            return Error::PluginRefused {
                provider: provider.to_string(),
                file: r.file.clone(),
                reason: r.reason.clone(),
            };
        }
        let refused: Vec<String> = self
            .refused
            .iter()
            .filter(|r| r.providers.is_empty())
            .map(|r| format!("{}: {}", r.file.display(), r.reason))
            .collect();
        Error::UnknownProvider {
            provider: provider.to_string(),
            known: self.providers().join(", "),
            refused: if refused.is_empty() {
                String::new()
            } else {
                format!("; plugin files refused: {}", refused.join("; "))
            },
        }
    }

    /// The provider plugin serving `provider` (aliases included).
    pub fn provider(&self, provider: &str) -> Result<&ProviderPlugin, Error> {
        let registered = self.plugin_for(provider)?;
        registered
            .as_provider()
            .ok_or_else(|| self.unknown(provider))
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

    /// The store contract of `provider` (aliases included).
    pub fn contract(&self, provider: &str) -> Result<&StoreContract, Error> {
        Ok(self.provider(provider)?.contract(provider))
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

/// Checks what a plugin says about itself: its WIT version first (the
/// cause of anything else being off), then its name and each provider
/// name, so that an empty or invalid name is refused as such before any
/// provider is mapped (an empty provider would otherwise stand for Local).
fn check_info(info: &PluginInfo, source: &PluginSource) -> Result<(), Error> {
    if !api_compatible(&info.api_version) {
        return Err(Error::ApiVersion {
            plugin: info.name.chars().take(64).collect(),
            plugin_api: info.api_version.chars().take(64).collect(),
            host_api: crate::API_VERSION,
        });
    }
    let names = std::iter::once(("plugin name", &info.name))
        .chain(info.providers.iter().map(|p| ("storage provider", p)));
    for (what, name) in names {
        if let Some(problem) = name_problem(name) {
            return Err(Error::InvalidName {
                problem,
                plugin: info.name.chars().take(64).collect(),
                source_desc: match source {
                    PluginSource::File(path) => path.display().to_string(),
                    PluginSource::Builtin => "built in".into(),
                },
                what,
                name: name.chars().take(64).collect(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_name(name: &str) -> bool {
        name_problem(name).is_none()
    }

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
    fn empty_and_invalid_names_are_refused_as_such_before_any_provider_is_mapped() {
        let info = |name: &str, providers: &[&str], api: &str| PluginInfo {
            name: name.into(),
            version: "1.0.0".into(),
            api_version: api.into(),
            providers: providers.iter().map(|p| (*p).to_string()).collect(),
        };
        let source = PluginSource::File("plugins/x.wasm".into());
        let api = crate::API_VERSION;
        check_info(&info("mine", &["Mine", "aws"], api), &source).unwrap();
        for (bad, says) in [
            (
                info("", &["Mine"], api),
                "claims the plugin name \"\", which is empty",
            ),
            // An empty provider would stand for Local: refused as empty,
            // not as a second claim on Local.
            (
                info("mine", &[""], api),
                "the storage provider \"\", which is empty",
            ),
            (
                info("mine", &["3x"], api),
                "which does not start with a letter",
            ),
            (
                info("mine", &["a b"], api),
                "which holds a character other than",
            ),
            // The version comes first: it explains anything else.
            (info("", &[""], "0.9.0"), "built for druid:plugin@0.9.0"),
        ] {
            let text = check_info(&bad, &source).unwrap_err().to_string();
            assert!(text.contains(says), "{text}");
            if !says.starts_with("built for") {
                assert!(text.contains("plugins/x.wasm"), "{text}");
            }
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
