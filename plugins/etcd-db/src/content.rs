//! What a compaction must produce, as a digest the host can compare with a
//! compactor's output: the compactor is a plugin, and a buggy or hostile
//! one could write a well-formed database that lacks keys or holds other
//! values. Structure checks (trailer, bbolt consistency, revision) cannot
//! see that; this can.
//!
//! [`expected_content`] runs the compaction's merge natively over the same
//! inputs (the same bounded-memory passes, without writing a database) and
//! digests every live key; [`content_of`] digests a database the same way.
//! They are equal exactly when the database holds the same live keys, at
//! the same revisions, with the same fields (key, create and mod revision,
//! version, value, lease), every lease those keys name, and the base's
//! other buckets (membership, cluster, alarms, auth) unchanged.
//!
//! The digest reads decoded fields, not the stored bytes, so a compactor
//! may encode a `KeyValue` differently (field order, defaults) and still
//! match.

use std::cell::RefCell;
use std::collections::BTreeSet;

use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::compact::merge::{merge_live, open_base};
use crate::sort::Scratch;
use crate::{
    CompactError, CompactOptions, Db, DeltaInput, Error, KEY_BUCKET, KeyValue, LEASE_BUCKET,
    META_BUCKET, ReadAt, Sink, SnapshotInfo, hex, revision_of_key,
};

/// The content of a compacted database, digested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    /// How many live keys there are.
    pub keys: u64,
    /// SHA-256 over the live keys in revision order: each one's revision
    /// key and its decoded fields.
    pub keys_sha256: [u8; 32],
    /// The leases the live keys name (each must exist in the output).
    pub leases: BTreeSet<i64>,
    /// SHA-256 over every bucket other than `key`, `lease` and `meta`, in
    /// order (a compaction copies them as they are).
    pub other_buckets_sha256: [u8; 32],
}

impl ContentDigest {
    /// What differs between `self` (expected) and `found`, in words; `None`
    /// when they agree. Every lease the expected keys name must be in
    /// `found_leases` (the output's lease bucket).
    pub fn mismatch(&self, found: &ContentDigest, found_leases: &BTreeSet<i64>) -> Option<String> {
        if self.keys != found.keys {
            return Some(format!(
                "it holds {} live keys, but the snapshots give {}",
                found.keys, self.keys
            ));
        }
        if self.keys_sha256 != found.keys_sha256 {
            return Some(format!(
                "its {} live keys differ from the snapshots' in a key, a revision, a version, a \
                 value or a lease (content digest {}, expected {})",
                found.keys,
                hex(&found.keys_sha256[..8]),
                hex(&self.keys_sha256[..8])
            ));
        }
        if let Some(missing) = self.leases.iter().find(|l| !found_leases.contains(l)) {
            return Some(format!(
                "live keys name lease {missing:x}, which its lease bucket does not hold"
            ));
        }
        if self.other_buckets_sha256 != found.other_buckets_sha256 {
            return Some(
                "its membership, cluster, alarm or auth buckets differ from the full snapshot's"
                    .into(),
            );
        }
        None
    }
}

/// Digests live keys one at a time.
struct KeyDigest {
    keys: u64,
    sha: Sha256,
    leases: BTreeSet<i64>,
}

impl KeyDigest {
    fn new() -> Self {
        Self {
            keys: 0,
            sha: Sha256::new(),
            leases: BTreeSet::new(),
        }
    }

    fn add(&mut self, revision_key: &[u8], value: &[u8]) -> Result<(), Error> {
        let kv = KeyValue::decode(value).map_err(|e| Error::Schema {
            bucket: "key".into(),
            key: hex(revision_key),
            reason: format!("value is not an mvccpb.KeyValue: {e}"),
        })?;
        let field = |sha: &mut Sha256, bytes: &[u8]| {
            sha.update((bytes.len() as u64).to_be_bytes());
            sha.update(bytes);
        };
        field(&mut self.sha, revision_key);
        field(&mut self.sha, &kv.key);
        for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
            self.sha.update(n.to_be_bytes());
        }
        field(&mut self.sha, &kv.value);
        if kv.lease != 0 {
            self.leases.insert(kv.lease);
        }
        self.keys += 1;
        Ok(())
    }
}

/// Digests every bucket but `key`, `lease` and `meta` of `db`.
fn other_buckets<R: ReadAt>(db: &Db<R>) -> Result<[u8; 32], Error> {
    let mut sha = Sha256::new();
    for name in db.buckets()? {
        if [KEY_BUCKET, LEASE_BUCKET, META_BUCKET].contains(&name.as_slice()) {
            continue;
        }
        let Some(bucket) = db.bucket(&name)? else {
            continue;
        };
        sha.update((name.len() as u64).to_be_bytes());
        sha.update(&name);
        for entry in db.iter(&bucket) {
            let entry = entry?;
            for part in [&entry.key, &entry.value] {
                sha.update((part.len() as u64).to_be_bytes());
                sha.update(part);
            }
        }
    }
    Ok(sha.finalize().into())
}

/// What compacting `base_data` and `deltas` must produce, computed the
/// way [`compact`](mod@crate::compact) merges them (bounded memory: the
/// sorts spill to `scratch`), without writing a database.
pub fn expected_content<R: ReadAt, D: ReadAt, S: Sink>(
    base: &SnapshotInfo,
    base_data: R,
    deltas: &[DeltaInput<D>],
    scratch: S,
    options: &CompactOptions,
) -> Result<ContentDigest, CompactError> {
    let base_err = |source| CompactError::Base {
        snapshot: base.name.clone(),
        source,
    };
    let (db, keys) = open_base(base, base_data)?;
    let scratch = RefCell::new(Scratch::new(scratch));
    let mut digest = KeyDigest::new();
    merge_live(
        base,
        &db,
        &keys,
        deltas,
        &scratch,
        options,
        &mut |key, value, _| digest.add(key, value).map_err(base_err),
    )?;
    Ok(ContentDigest {
        keys: digest.keys,
        keys_sha256: digest.sha.finalize().into(),
        leases: digest.leases,
        other_buckets_sha256: other_buckets(&db).map_err(base_err)?,
    })
}

/// The content of a compacted database, and the leases its lease bucket
/// holds. A tombstone in its `key` bucket is an error: a compaction keeps
/// live keys only.
pub fn content_of<R: ReadAt>(db: &Db<R>) -> Result<(ContentDigest, BTreeSet<i64>), Error> {
    let keys = db
        .bucket(KEY_BUCKET)?
        .ok_or_else(|| Error::MissingBucket { name: "key".into() })?;
    let mut digest = KeyDigest::new();
    for entry in db.iter(&keys) {
        let entry = entry?;
        if revision_of_key(&entry.key)?.tombstone {
            return Err(Error::Schema {
                bucket: "key".into(),
                key: hex(&entry.key),
                reason: "a deletion (tombstone) in a compacted database".into(),
            });
        }
        digest.add(&entry.key, &entry.value)?;
    }
    let mut held = BTreeSet::new();
    if let Some(leases) = db.bucket(LEASE_BUCKET)? {
        for entry in db.iter(&leases) {
            let entry = entry?;
            // Lease keys are the id, big-endian (see `lease_key`).
            if let Ok(id) = <[u8; 8]>::try_from(entry.key.as_slice()) {
                held.insert(i64::from_be_bytes(id));
            }
        }
    }
    Ok((
        ContentDigest {
            keys: digest.keys,
            keys_sha256: digest.sha.finalize().into(),
            leases: digest.leases,
            other_buckets_sha256: other_buckets(db)?,
        },
        held,
    ))
}
