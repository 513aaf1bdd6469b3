//! The ABS storage provider plugin: Azure Blob Storage (`ABS`, `azure`)
//! and blob services that speak its REST API, such as the Azurite
//! emulator.
//!
//! Requests are authorized with the account's Shared Key (HMAC-SHA256,
//! signed afresh for each attempt) or a SAS token, and sent over the SDK's
//! blocking `wasi:http` client; each is retried on its own with backoff.
//! Uploads hold one block at a time: small objects are one Put Blob,
//! larger ones staged blocks committed with Put Block List.
//!
//! The pure logic (configuration, signing, listing, the upload sequence,
//! error mapping, pod wiring) lives in its own modules and is unit-tested
//! natively; the requests run in the wasm build, tested through the host
//! against Azurite.

pub mod client;
pub mod config;
pub mod errors;
pub mod listing;
pub mod sign;
pub mod upload;
pub mod wiring;

use std::rc::Rc;

use druid_plugin_sdk::download::RangedBody;
use druid_plugin_sdk::parts::PartUpload;
use druid_plugin_sdk::store::{
    ByteRange, Download, GuestStore, ListPage, ObjectInfo, Store, StoreConfig, StoreError, Upload,
};
use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};
use druid_plugin_sdk::{log, plugin_info, provider, store};

use crate::client::{Client, HttpSink};

/// The plugin.
pub struct Abs;

impl provider::Guest for Abs {
    fn describe() -> provider::PluginInfo {
        plugin_info("abs", env!("CARGO_PKG_VERSION"), config::PROVIDERS)
    }
}

impl druid_plugin_sdk::wiring::Guest for Abs {
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        wiring::pod_config(&spec)
    }

    fn check_secret(provider: String, keys: Vec<String>) -> Result<(), Vec<String>> {
        wiring::check_secret(&provider, &keys)
    }
}

impl store::Guest for Abs {
    fn contract(_provider: String) -> store::StoreContract {
        config::contract()
    }

    type Store = AbsStore;
    type Upload = PartUpload<HttpSink>;
    type Download = RangedBody;
}

/// A blob container.
pub struct AbsStore {
    client: Rc<Client>,
}

impl GuestStore for AbsStore {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let settings = config::parse(&config)?;
        for warning in &settings.warnings {
            log::warn(warning);
        }
        log::debug(&format!(
            "{} container {:?} of storage account {:?} at {} ({:?}, {})",
            settings.provider,
            settings.container,
            settings.account,
            settings.origin,
            settings.endpoint_source,
            match settings.auth {
                config::Auth::SharedKey(_) => "shared key",
                config::Auth::Sas(_) => "SAS token",
            }
        ));
        Ok(Store::new(AbsStore {
            client: Rc::new(Client::new(settings)),
        }))
    }

    fn list(
        &self,
        prefix: String,
        page_token: Option<String>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        self.client.list(&prefix, page_token.as_deref(), max_keys)
    }

    fn head(&self, key: String) -> Result<ObjectInfo, StoreError> {
        self.client.head(&key)
    }

    fn delete(&self, key: String) -> Result<(), StoreError> {
        self.client.delete(&key)
    }

    fn upload(&self, key: String, size_hint: Option<u64>) -> Result<Upload, StoreError> {
        client::check_key(&key)?;
        let sink = HttpSink::new(Rc::clone(&self.client), key.clone());
        Ok(Upload::new(PartUpload::new(
            key,
            sink,
            upload::block_size(size_hint),
        )))
    }

    fn download(&self, key: String, range: Option<ByteRange>) -> Result<Download, StoreError> {
        RangedBody::open(
            key,
            range,
            |k| self.client.head(k),
            |k, r| self.client.get(k, r),
        )
        .map(Download::new)
    }
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Abs);

#[cfg(test)]
mod tests;
