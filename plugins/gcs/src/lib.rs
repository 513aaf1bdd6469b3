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

use druid_plugin_sdk::download::RangedBody;
use druid_plugin_sdk::object::ObjectStore;
use druid_plugin_sdk::parts::PartUpload;
use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};
use druid_plugin_sdk::{plugin_info, provider, store};

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

    type Store = ObjectStore<Client>;
    type Upload = PartUpload<HttpSink>;
    type Download = RangedBody;
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Gcs);

#[cfg(test)]
mod tests;
