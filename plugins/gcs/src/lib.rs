//! The GCS storage provider plugin: Google Cloud Storage (`GCS`, `gcp`)
//! through its JSON API, and services that speak it, such as the
//! fake-gcs-server emulator.
//!
//! Requests carry a bearer token from the service account's OAuth2 token
//! endpoint (a JWT signed RS256 with the account's key, held by the store
//! and renewed before it expires); an emulator over plain http
//! gets none, as upstream. Each request is retried on its own with
//! backoff. Uploads hold one part at a time: small objects are one simple
//! upload, larger ones a resumable upload sent part by part.
//!
//! The pure logic (configuration, the JWT, listing, error mapping, pod
//! wiring) lives in its own modules and is unit-tested natively; the
//! requests run in the wasm build, tested through the host against
//! fake-gcs-server and a token endpoint the tests run.

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
pub struct Gcs;

impl provider::Guest for Gcs {
    fn describe() -> provider::PluginInfo {
        plugin_info("gcs", env!("CARGO_PKG_VERSION"), config::PROVIDERS)
    }
}

impl druid_plugin_sdk::wiring::Guest for Gcs {
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        wiring::pod_config(&spec)
    }

    fn check_secret(provider: String, keys: Vec<String>) -> Result<(), Vec<String>> {
        wiring::check_secret(&provider, &keys)
    }
}

impl store::Guest for Gcs {
    fn contract(_provider: String) -> store::StoreContract {
        config::contract()
    }

    type Store = GcsStore;
    type Upload = PartUpload<HttpSink>;
    type Download = RangedBody;
}

/// A bucket.
pub struct GcsStore {
    client: Rc<Client>,
}

impl GuestStore for GcsStore {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let settings = config::parse(&config)?;
        for warning in &settings.warnings {
            log::warn(warning);
        }
        log::debug(&format!(
            "{} bucket {:?} at {} ({:?}, {})",
            settings.provider,
            settings.bucket,
            settings.origin,
            settings.endpoint_source,
            match &settings.auth {
                config::Auth::ServiceAccount(a) => format!("service account {}", a.email),
                config::Auth::Emulator => "no token (an emulator over plain http)".into(),
            }
        ));
        Ok(Store::new(GcsStore {
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
        let sink = HttpSink::new(Rc::clone(&self.client), key.clone(), part_size);
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
druid_plugin_sdk::provider::export_provider!(Gcs);

#[cfg(test)]
mod tests;
