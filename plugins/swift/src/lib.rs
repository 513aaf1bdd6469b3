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

use druid_plugin_sdk::download::RangedBody;
use druid_plugin_sdk::object::ObjectStore;
use druid_plugin_sdk::parts::PartUpload;
use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};
use druid_plugin_sdk::{plugin_info, provider, store};

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

    type Store = ObjectStore<Client>;
    type Upload = PartUpload<HttpSink>;
    type Download = RangedBody;
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Swift);

#[cfg(test)]
mod tests;
