//! A template storage-provider plugin. It compiles, loads and registers
//! provider `Template`; each store call says what is left to write.
//! See the SDK's README for the walkthrough and druid-rs's
//! `docs/plugin-api.md` for the contract.

use druid_plugin_sdk::store::{
    ByteRange, Download, GuestDownload, GuestStore, GuestUpload, ListPage, ObjectInfo, Store,
    StoreConfig, StoreError, Upload,
};
use druid_plugin_sdk::wiring::{EnvVar, SidecarConfig, StoreSpec, Volume, VolumeSource};
use druid_plugin_sdk::{http, missing_keys, plugin_info, provider, store, wiring};

/// Step 1: the secret keys your store needs.
const REQUIRED_KEYS: &[&str] = &["endpoint", "token"];

/// The plugin.
pub struct Template;

impl provider::Guest for Template {
    /// Step 2: your plugin's name and the `storageProvider` values it serves.
    fn describe() -> provider::PluginInfo {
        plugin_info("template", env!("CARGO_PKG_VERSION"), &["Template"])
    }
}

impl wiring::Guest for Template {
    /// Step 3: what the sidecar needs: here the secret mounted at
    /// `/var/etcd-backup` and an env var naming it.
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        let Some(_secret) = spec.secret_name else {
            return Err("store.secretRef is required for the Template provider".into());
        };
        Ok(SidecarConfig {
            env: vec![
                EnvVar {
                    name: "STORAGE_CONTAINER".into(),
                    value: spec.container,
                },
                EnvVar {
                    name: "TEMPLATE_APPLICATION_CREDENTIALS".into(),
                    value: "/var/etcd-backup".into(),
                },
            ],
            volumes: vec![Volume {
                name: "etcd-backup-secret".into(),
                source: VolumeSource::StoreSecret,
                mount_path: "/var/etcd-backup".into(),
            }],
        })
    }

    fn check_secret(provider: String, keys: Vec<String>) -> Result<(), Vec<String>> {
        let problems = missing_keys(&keys, REQUIRED_KEYS, &provider);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl store::Guest for Template {
    /// Step 4: where your store's credentials come from (the store Secret,
    /// named by `TEMPLATE_APPLICATION_CREDENTIALS` as `pod_config` sets it;
    /// every key reaches `open`), which of its keys hold an endpoint the
    /// user chose, and your service's own endpoints (`https://` patterns,
    /// e.g. `https://{container}.store.example.com`), if any. The host
    /// lets the plugin reach nothing else.
    fn contract(_provider: String) -> store::StoreContract {
        druid_plugin_sdk::secret_contract("TEMPLATE", true, &["endpoint"], &[])
    }

    type Store = TemplateStore;
    type Upload = TemplateUpload;
    type Download = TemplateDownload;
}

/// Step 5: your store's state, built from the configuration in `open`.
pub struct TemplateStore {
    endpoint: String,
}

fn todo_error(what: &str) -> StoreError {
    StoreError::Other(format!(
        "the Template provider does not implement {what} yet"
    ))
}

impl GuestStore for TemplateStore {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let endpoint = config
            .endpoint
            .or_else(|| druid_plugin_sdk::credential_owned(&config.credentials, "endpoint"))
            .ok_or_else(|| {
                StoreError::InvalidConfig(
                    "set store.endpointOverride or the secret's `endpoint`".into(),
                )
            })?;
        Ok(Store::new(TemplateStore { endpoint }))
    }

    /// Step 6: the calls. `http::send` reaches the store's endpoint (and
    /// nothing else); map its statuses to `StoreError`s.
    fn list(
        &self,
        prefix: String,
        _token: Option<String>,
        _max: u32,
    ) -> Result<ListPage, StoreError> {
        let _url = format!("{}/?prefix={prefix}", self.endpoint);
        let _ = http::Method::Get;
        Err(todo_error("list"))
    }

    fn head(&self, _key: String) -> Result<ObjectInfo, StoreError> {
        Err(todo_error("head"))
    }

    fn delete(&self, _key: String) -> Result<(), StoreError> {
        Err(todo_error("delete"))
    }

    fn upload(&self, _key: String, _size_hint: Option<u64>) -> Result<Upload, StoreError> {
        Ok(Upload::new(TemplateUpload))
    }

    fn download(&self, _key: String, _range: Option<ByteRange>) -> Result<Download, StoreError> {
        Err(todo_error("download"))
    }
}

/// Step 7: an upload; buffer parts with `druid_plugin_sdk::parts::PartBuffer`.
pub struct TemplateUpload;

impl GuestUpload for TemplateUpload {
    fn write(&self, _chunk: Vec<u8>) -> Result<(), StoreError> {
        Err(todo_error("upload"))
    }

    fn finish(&self) -> Result<ObjectInfo, StoreError> {
        Err(todo_error("upload"))
    }

    fn abort(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Step 8: a download; keep the `http::Response` and return its chunks.
pub struct TemplateDownload;

impl GuestDownload for TemplateDownload {
    fn read(&self, _max: u32) -> Result<Vec<u8>, StoreError> {
        Err(todo_error("download"))
    }
}

// The exports exist only in the wasm build (their names are not valid
// native symbols; native builds are for unit tests).
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Template);
