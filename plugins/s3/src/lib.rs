//! The S3 storage provider plugin: AWS S3 and S3-compatible stores
//! (`S3`, `aws`, `stackit`), OpenShift Container Storage (`OCS`,
//! `openshift`) and Dell ECS (`ECS`, `dell`).
//!
//! Requests are presigned with SigV4 (`UNSIGNED-PAYLOAD`) by `rusty-s3` and
//! sent over the SDK's blocking `wasi:http` client; each request is retried
//! on its own with backoff. Uploads buffer one part at a time: small
//! objects are one PutObject, larger ones a multipart upload.
//!
//! The pure logic (configuration, addressing, part sizes, error mapping,
//! pod wiring) lives in its own modules and is unit-tested natively; the
//! functions that make requests only run in the wasm build.

pub mod client;
pub mod config;
pub mod errors;
pub mod incomplete;
pub mod sts;
pub mod upload;
pub mod wiring;

use druid_plugin_sdk::download::RangedBody;
use druid_plugin_sdk::object::ObjectStore;
use druid_plugin_sdk::parts::PartUpload;
use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};
use druid_plugin_sdk::{plugin_info, provider, store};

use crate::client::{Client, HttpSink};

/// The plugin.
pub struct S3;

impl provider::Guest for S3 {
    fn describe() -> provider::PluginInfo {
        plugin_info("s3", env!("CARGO_PKG_VERSION"), config::PROVIDERS)
    }
}

impl druid_plugin_sdk::wiring::Guest for S3 {
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        wiring::pod_config(&spec)
    }

    fn check_secret(provider: String, keys: Vec<String>) -> Result<(), Vec<String>> {
        wiring::check_secret(&provider, &keys)
    }
}

impl store::Guest for S3 {
    fn contract(provider: String) -> store::StoreContract {
        config::Family::of(&provider).map_or_else(
            druid_plugin_sdk::no_credentials_contract,
            config::Family::contract,
        )
    }

    type Store = ObjectStore<Client>;
    type Upload = PartUpload<HttpSink>;
    type Download = RangedBody;
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(S3);

#[cfg(test)]
mod tests;
