//! Pure-Rust access to etcd's database: bbolt pages, etcd's mvcc schema and
//! the snapshot formats. It builds natively and for wasm32, so the compactor
//! plugin, the host and the tests share one implementation.
//!
//! # Reading
//!
//! [`Db::open`] reads a bbolt file (etcd's `member/snap/db`, or the database
//! part of a snapshot stream) through [`ReadAt`], a random-access source: an
//! in-memory slice, a `Vec<u8>`, or (natively, on Unix) a [`std::fs::File`].
//! The reader never loads the whole database: it reads one page (plus its
//! overflow pages) at a time and holds at most one root-to-leaf path of a
//! bucket's B+tree while iterating.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use druid_etcd_db::{Db, KEY_BUCKET, revision_of_key};
//!
//! let db = Db::open(std::fs::File::open("member/snap/db")?)?;
//! db.check()?; // every page accounted for, keys sorted
//! let revision = db.last_revision()?; // main revision of the newest key
//! let keys = db.bucket(KEY_BUCKET)?.ok_or("no key bucket")?;
//! for entry in db.iter(&keys) {
//!     let entry = entry?;
//!     let rev = revision_of_key(&entry.key)?;
//!     // entry.value is the mvccpb.KeyValue of that revision
//! #   let _ = (rev, revision);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A snapshot stream (`etcdctl snapshot save`) opens the same way: the
//! reader stops at the last page the meta counts, so the SHA-256 trailer
//! is ignored (see [`split_snapshot`] and [`Prefix`] to cut it off).
//!
//! Malformed input is an [`Error`], never a panic: every offset and size is
//! checked against its page, trees are walked with a depth limit and a bound
//! on page visits, and no allocation exceeds the input's size (nor
//! [`MAX_PAGE_BYTES`] for one page).

mod check;
pub mod compact;
mod content;
mod db;
pub mod delta;
mod mvcc;
mod page;
mod proto;
mod read;
mod sort;
#[cfg(test)]
mod testdb;
mod write;

pub use check::{CheckReport, Problem};
pub use compact::{CompactError, CompactOptions, CompactReport, DeltaInput, SnapshotInfo, compact};
pub use content::{ContentDigest, content_of, expected_content};
pub use db::{Bucket, Db, Entry, Iter, MAX_DEPTH, MAX_PAGE_BYTES, Meta};
pub use delta::{
    DeltaEntry, DeltaError, EventKey, check_delta_hash, decode_delta, encode_delta, parse_entries,
    parse_event_keys, parse_events, split_delta, verify_delta, write_entry,
};
pub use mvcc::{
    ALARM_BUCKET, AUTH_BUCKET, AUTH_ROLES_BUCKET, AUTH_USERS_BUCKET, CLUSTER_BUCKET,
    CLUSTER_VERSION_KEY, CONSISTENT_INDEX_KEY, ETCD_BUCKETS, FINISHED_COMPACT_KEY, KEY_BUCKET,
    LEASE_BUCKET, MEMBERS_BUCKET, MEMBERS_REMOVED_BUCKET, META_BUCKET, REVISION_KEY_LEN, Revision,
    RevisionKey, SCHEDULED_COMPACT_KEY, STORAGE_VERSION_KEY, TERM_KEY, TOMBSTONE_MARK,
    revision_of_key,
};
pub use proto::{Event, EventType, KeyValue, Lease, lease_key};
pub use read::{Prefix, ReadAt};
pub use write::{DbWriter, Sink, WRITE_PAGE_SIZE, Written};

/// Length of the SHA-256 that ends every snapshot: the trailer etcd
/// appends to a full snapshot stream (over the database before it) and
/// the hash after a delta's JSON (over that JSON).
pub const SNAPSHOT_HASH_LEN: usize = 32;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is shorter than a snapshot can be.
    #[error("snapshot is {len} bytes, shorter than its {SNAPSHOT_HASH_LEN}-byte SHA-256 trailer")]
    Truncated {
        /// The length seen.
        len: usize,
    },
    /// Reading from the source failed.
    #[error("cannot read {len} bytes at offset {offset}: {source}")]
    Io {
        /// Where the read started.
        offset: u64,
        /// How many bytes were asked for.
        len: usize,
        /// The source's error.
        #[source]
        source: std::io::Error,
    },
    /// The database is shorter than its meta page says it is (a truncated
    /// file or stream).
    #[error("database is {len} bytes, but {what} needs {needed} bytes (truncated?)")]
    TooShort {
        /// The length of the source.
        len: u64,
        /// The length needed.
        needed: u64,
        /// What needs it.
        what: String,
    },
    /// Neither meta page is valid: not a bbolt file, or both metas are
    /// damaged.
    #[error("no valid meta page: meta 0: {meta0}; meta 1: {meta1}")]
    NoValidMeta {
        /// Why meta page 0 was rejected.
        meta0: String,
        /// Why meta page 1 was rejected.
        meta1: String,
    },
    /// A page is malformed: bad header, element outside the page, keys out
    /// of order, a cycle, an absurd count, ...
    #[error("page {page}{}: {reason}", inline_note(*.inline))]
    Corrupt {
        /// The page id (for an inline bucket: the page holding the bucket's
        /// value, 0 if unknown).
        page: u64,
        /// Whether the page is an inline bucket's page, stored inside a
        /// value rather than on its own.
        inline: bool,
        /// What is wrong.
        reason: String,
    },
    /// A bucket that etcd always has is missing.
    #[error("bucket {name:?} is missing")]
    MissingBucket {
        /// The bucket's name.
        name: String,
    },
    /// A key or value of etcd's schema does not have the expected form.
    #[error("bucket {bucket:?}, key {key}: {reason}")]
    Schema {
        /// The bucket.
        bucket: String,
        /// The key, hex-encoded.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The writer was used wrongly (keys out of order, a bucket name twice,
    /// a value too large for a page field): a bug in the caller.
    #[error("cannot write the database: {reason}")]
    Write {
        /// What was wrong.
        reason: String,
    },
    /// [`Db::check`] found problems; the report lists them.
    #[error("database check failed: {0}")]
    Inconsistent(Box<CheckReport>),
}

fn inline_note(inline: bool) -> &'static str {
    if inline { " (inline bucket)" } else { "" }
}

/// Lower-case hex of `bytes`, for error messages (long inputs are
/// shortened).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s = String::with_capacity(bytes.len().min(MAX) * 2 + 8);
    for b in bytes.iter().take(MAX) {
        s.push_str(&format!("{b:02x}"));
    }
    if bytes.len() > MAX {
        s.push_str(&format!("...({} bytes)", bytes.len()));
    }
    s
}

/// Splits an in-memory snapshot stream into the database bytes and the
/// SHA-256 trailer.
pub fn split_snapshot(bytes: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    if bytes.len() < SNAPSHOT_HASH_LEN {
        return Err(Error::Truncated { len: bytes.len() });
    }
    Ok(bytes.split_at(bytes.len() - SNAPSHOT_HASH_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_off_the_trailer() {
        let mut stream = vec![7u8; 100];
        stream.extend([1u8; SNAPSHOT_HASH_LEN]);
        let (db, hash) = split_snapshot(&stream).unwrap();
        assert_eq!(db.len(), 100);
        assert_eq!(hash, &[1u8; SNAPSHOT_HASH_LEN]);
    }

    #[test]
    fn too_short_is_an_error() {
        let err = split_snapshot(&[0u8; 5]).unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
    }

    #[test]
    fn hex_is_shortened() {
        assert_eq!(hex(&[0, 0xab]), "00ab");
        assert!(hex(&[0u8; 100]).ends_with("...(100 bytes)"));
    }
}
