//! The Swift storage provider plugin: OpenStack Swift (`Swift`,
//! `openstack`), signed in through Keystone v3.
//!
//! The plugin signs in with the store secret's password or application
//! credential, takes the object store's endpoint from the token's catalog
//! (or `store.endpointOverride`) and sends the token with each request
//! (renewed before it expires; a refused token is renewed once). Each
//! request is retried on its own with backoff. Uploads hold one part at a
//! time: small objects are one PUT, larger ones segments under a static
//! large object manifest. Listings leave segments out.
//!
//! The pure logic (configuration, Keystone's token request and catalog,
//! listing, error mapping, pod wiring) lives in its own modules and is
//! unit-tested natively; the requests run in the wasm build, tested
//! through the host against a real Swift and Keystone.

pub mod auth;
pub mod client;
pub mod config;
pub mod errors;
pub mod listing;
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
pub struct Swift;

impl provider::Guest for Swift {
    fn describe() -> provider::PluginInfo {
        plugin_info("swift", env!("CARGO_PKG_VERSION"), config::PROVIDERS)
    }
}

impl druid_plugin_sdk::wiring::Guest for Swift {
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        wiring::pod_config(&spec)
    }

    fn check_secret(provider: String, keys: Vec<String>) -> Result<(), Vec<String>> {
        wiring::check_secret(&provider, &keys)
    }
}

impl store::Guest for Swift {
    fn contract(_provider: String) -> store::StoreContract {
        config::contract()
    }

    type Store = SwiftStore;
    type Upload = PartUpload<HttpSink>;
    type Download = RangedBody;
}

/// A container.
pub struct SwiftStore {
    client: Rc<Client>,
}

impl GuestStore for SwiftStore {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let settings = config::parse(&config)?;
        for warning in &settings.warnings {
            log::warn(warning);
        }
        log::debug(&format!(
            "{} container {:?} through Keystone at {} as {}{}",
            settings.provider,
            settings.container,
            druid_plugin_sdk::http::display_url(&settings.auth_url),
            settings.credential.describe(),
            settings
                .endpoint_override
                .as_deref()
                .map(|e| format!(", object store {}", druid_plugin_sdk::http::display_url(e)))
                .unwrap_or_default()
        ));
        Ok(Store::new(SwiftStore {
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
        let part_size = upload::part_size(size_hint);
        let sink = HttpSink::new(Rc::clone(&self.client), key.clone());
        Ok(Upload::new(PartUpload::new(key, sink, part_size)))
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
druid_plugin_sdk::provider::export_provider!(Swift);

#[cfg(test)]
mod tests;
