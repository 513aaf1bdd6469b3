//! The OSS storage provider plugin: Alibaba Cloud Object Storage Service
//! (`OSS`, `alicloud`).
//!
//! Requests carry OSS V4 signatures (`OSS4-HMAC-SHA256`, `sign`) made
//! afresh for each attempt and go over the SDK's blocking `wasi:http`
//! client, each retried on its own with backoff. Uploads buffer one part
//! at a time: small objects are one PutObject, larger ones a multipart
//! upload.
//!
//! The pure logic (configuration, signing, XML, error mapping, pod
//! wiring) lives in its own modules and is unit-tested natively; the
//! functions that make requests only run in the wasm build.

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
pub struct Oss;

impl provider::Guest for Oss {
    fn describe() -> provider::PluginInfo {
        plugin_info("oss", env!("CARGO_PKG_VERSION"), config::PROVIDERS)
    }
}

impl druid_plugin_sdk::wiring::Guest for Oss {
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        wiring::pod_config(&spec)
    }

    fn check_secret(provider: String, keys: Vec<String>) -> Result<(), Vec<String>> {
        wiring::check_secret(&provider, &keys)
    }
}

impl store::Guest for Oss {
    fn contract(provider: String) -> store::StoreContract {
        if config::PROVIDERS.contains(&provider.as_str()) {
            config::contract()
        } else {
            druid_plugin_sdk::no_credentials_contract()
        }
    }

    type Store = ObjectStore<Client>;
    type Upload = PartUpload<HttpSink>;
    type Download = RangedBody;
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Oss);

#[cfg(test)]
mod tests;
