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

use druid_plugin_sdk::download::RangedBody;
use druid_plugin_sdk::object::ObjectStore;
use druid_plugin_sdk::parts::PartUpload;
use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};
use druid_plugin_sdk::{plugin_info, provider, store};

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

    type Store = ObjectStore<Client>;
    type Upload = PartUpload<HttpSink>;
    type Download = RangedBody;
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Abs);

#[cfg(test)]
mod tests;
