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
pub mod time;
pub mod upload;
pub mod wiring;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use druid_plugin_sdk::http::Response;
use druid_plugin_sdk::store::{
    ByteRange, Download, GuestDownload, GuestStore, GuestUpload, ListPage, ObjectInfo, Store,
    StoreConfig, StoreError, Upload,
};
use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};
use druid_plugin_sdk::{log, plugin_info, provider, store};

use crate::client::{Client, HttpSink};
use crate::upload::Uploader;

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

    type Store = S3Store;
    type Upload = S3Upload;
    type Download = S3Download;
}

/// A bucket.
pub struct S3Store {
    client: Rc<Client>,
}

impl GuestStore for S3Store {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let settings = config::parse(&config)?;
        for warning in &settings.warnings {
            log::warn(warning);
        }
        log::debug(&format!(
            "{} bucket {:?} at {} ({}, {} style, region {})",
            settings.provider,
            settings.bucket,
            settings.endpoint,
            settings.endpoint_source,
            if settings.path_style {
                "path"
            } else {
                "virtual-hosted"
            },
            settings.region
        ));
        Ok(Store::new(S3Store {
            client: Rc::new(Client::new(&settings)?),
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
        Ok(Upload::new(S3Upload(Uploader::new(
            key,
            sink,
            upload::part_size(size_hint),
        ))))
    }

    fn download(&self, key: String, range: Option<ByteRange>) -> Result<Download, StoreError> {
        if let Some(ByteRange {
            length: Some(0), ..
        }) = range
        {
            // Nothing to read; still say whether the object exists.
            self.client.head(&key)?;
            return Ok(Download::new(S3Download::new(key, None, 0, Some(0))));
        }
        let response = self.client.get(&key, range.as_ref())?;
        // A server that ignores the range answers 200 with the whole object:
        // skip to the start ourselves.
        let skip = match (&response, &range) {
            (Some(r), Some(range)) if r.status == 200 => range.start,
            _ => 0,
        };
        let remaining = range.and_then(|r| r.length);
        Ok(Download::new(S3Download::new(
            key, response, skip, remaining,
        )))
    }
}

/// An object being uploaded.
pub struct S3Upload(Uploader<HttpSink>);

impl GuestUpload for S3Upload {
    fn write(&self, chunk: Vec<u8>) -> Result<(), StoreError> {
        self.0.write(&chunk)
    }

    fn finish(&self) -> Result<ObjectInfo, StoreError> {
        self.0.finish()
    }

    fn abort(&self) -> Result<(), StoreError> {
        self.0.abort()
    }
}

/// An object being read: the GetObject response, streamed.
pub struct S3Download {
    key: String,
    response: RefCell<Option<Response>>,
    /// Bytes still to drop from the front (a server that ignored Range).
    skip: Cell<u64>,
    /// Bytes still to return, if the range had a length.
    remaining: Cell<Option<u64>>,
}

impl S3Download {
    fn new(key: String, response: Option<Response>, skip: u64, remaining: Option<u64>) -> Self {
        Self {
            key,
            response: RefCell::new(response),
            skip: Cell::new(skip),
            remaining: Cell::new(remaining),
        }
    }
}

impl GuestDownload for S3Download {
    fn read(&self, max: u32) -> Result<Vec<u8>, StoreError> {
        let mut guard = self.response.borrow_mut();
        let Some(response) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        // Drop what a server that ignored the range sent before the start.
        while self.skip.get() > 0 {
            let skip = self.skip.get();
            let n = usize::try_from(skip.min(1 << 20)).unwrap_or(1 << 20);
            let dropped = response.read(n).map_err(|e| self.broke_off(&e))?;
            if dropped.is_empty() {
                return Ok(dropped);
            }
            self.skip.set(skip - dropped.len() as u64);
        }
        let remaining = self.remaining.get();
        let want = u64::from(max.max(1)).min(remaining.unwrap_or(u64::MAX));
        if want == 0 {
            return Ok(Vec::new());
        }
        let chunk = response
            .read(usize::try_from(want).unwrap_or(usize::MAX))
            .map_err(|e| self.broke_off(&e))?;
        if let Some(rest) = remaining {
            self.remaining
                .set(Some(rest.saturating_sub(chunk.len() as u64)));
        }
        Ok(chunk)
    }
}

impl S3Download {
    fn broke_off(&self, e: &druid_plugin_sdk::http::Error) -> StoreError {
        StoreError::Unavailable(format!(
            "download {:?}: the transfer broke off: {e}",
            self.key
        ))
    }
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(S3);

#[cfg(test)]
mod tests;
