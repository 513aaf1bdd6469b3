//! The `store` resource of a provider whose objects are reached over HTTP:
//! a provider writes its client ([`ObjectClient`]: the configuration, the
//! listing, HEAD, DELETE, a ranged GET, and the requests of a part upload)
//! and exports [`ObjectStore`] of it, which serves the WIT's calls the same
//! way for every provider: uploads through [`PartUpload`] (one part in
//! memory), downloads through [`RangedBody`].
//!
//! ```ignore
//! impl store::Guest for MyPlugin {
//!     fn contract(provider: String) -> store::StoreContract { ... }
//!     type Store = ObjectStore<MyClient>;
//!     type Upload = PartUpload<<MyClient as ObjectClient>::Sink>;
//!     type Download = RangedBody;
//! }
//! ```

use std::rc::Rc;

use crate::download::RangedBody;
use crate::http::Response;
use crate::parts::{PartSink, PartUpload};
use crate::store::{
    ByteRange, Download, GuestStore, ListPage, ObjectInfo, Store, StoreConfig, StoreError, Upload,
};

/// A provider's requests on one bucket or container.
pub trait ObjectClient: Sized + 'static {
    /// The requests of one object's upload.
    type Sink: PartSink + 'static;

    /// Reads the store's configuration and makes the client, without a
    /// request (a store is opened before every call it serves).
    fn open(config: &StoreConfig) -> Result<Self, StoreError>;

    /// One page of the objects whose keys start with `prefix`, from the
    /// page `token`, at most `max` of them.
    fn list(&self, prefix: &str, token: Option<&str>, max: u32) -> Result<ListPage, StoreError>;

    /// The object's size and last modification.
    fn head(&self, key: &str) -> Result<ObjectInfo, StoreError>;

    /// Deletes the object; a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// The object's content, or the bytes of `range`; none when the range
    /// starts past the end.
    fn get(&self, key: &str, range: Option<&ByteRange>) -> Result<Option<Response>, StoreError>;

    /// Refuses a key the provider cannot store, before an upload starts.
    fn check_key(key: &str) -> Result<(), StoreError>;

    /// The part size of an upload of about `size_hint` bytes.
    fn part_size(size_hint: Option<u64>) -> usize;

    /// The sink of an upload of `key` in parts of `part_size` bytes.
    fn sink(client: Rc<Self>, key: String, part_size: usize) -> Self::Sink;
}

/// Logs a store's configuration warnings, then `description` (where the
/// store is and how it signs in; never a credential) at debug level.
pub fn log_open(warnings: &[String], description: &str) {
    for warning in warnings {
        crate::log::warn(warning);
    }
    crate::log::debug(description);
}

/// The object of a HEAD answer from its `Content-Length` (required; the
/// error names `what` the request was) and `Last-Modified` headers.
pub fn head_info(
    key: &str,
    content_length: Option<&str>,
    last_modified: Option<&str>,
    what: &str,
) -> Result<ObjectInfo, StoreError> {
    let size = content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            StoreError::Other(format!("{what}: the answer has no valid Content-Length"))
        })?;
    Ok(ObjectInfo {
        key: key.to_string(),
        size,
        last_modified: last_modified.and_then(crate::time::parse_http_date),
    })
}

/// The `store` resource over an [`ObjectClient`].
pub struct ObjectStore<C> {
    client: Rc<C>,
}

impl<C: ObjectClient> GuestStore for ObjectStore<C> {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        Ok(Store::new(ObjectStore {
            client: Rc::new(C::open(&config)?),
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
        C::check_key(&key)?;
        let part_size = C::part_size(size_hint);
        let sink = C::sink(Rc::clone(&self.client), key.clone(), part_size);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_answer_gives_size_and_time_and_a_missing_length_is_an_error() {
        let info = head_info(
            "k",
            Some("42"),
            Some("Wed, 12 Oct 2009 17:50:30 GMT"),
            "head",
        )
        .unwrap();
        assert_eq!(
            (info.key.as_str(), info.size, info.last_modified),
            ("k", 42, Some(1_255_369_830))
        );
        let info = head_info("k", Some(" 0 "), None, "head").unwrap();
        assert_eq!((info.size, info.last_modified), (0, None));
        for bad in [None, Some("x"), Some("-1")] {
            assert!(matches!(
                head_info("k", bad, None, "head \"k\""),
                Err(StoreError::Other(m)) if m.starts_with("head \"k\": ")
            ));
        }
    }
}
