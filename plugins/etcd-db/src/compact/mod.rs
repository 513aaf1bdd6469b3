//! Offline compaction: a base full snapshot plus its deltas into one fresh,
//! compact etcd database, without running etcd.
//!
//! # What comes out
//! - Every live key once, at its original revision (main and sub),
//!   `create_revision`, `mod_revision`, `version`, value and lease. Deleted
//!   keys are gone; older revisions of live keys are dropped.
//! - `meta`: the base's entries, with `finishedCompactRev` and
//!   `scheduledCompactRev` set to the final revision. etcd sets its
//!   current revision to the larger of the newest key and the finished
//!   compaction, so the revision never goes backwards after a restore,
//!   even when the newest events were deletions; reading or watching older
//!   revisions gives `ErrCompacted`, as after any compaction.
//! - `lease`: every lease of the base, and a lease for every live key's
//!   lease that the base does not know (granted after the base snapshot:
//!   lease grants are not watch events, so no delta records them). Such a
//!   lease is recreated with the TTL policy of [`CompactOptions::unknown_lease_ttl`]:
//!   by default the longest TTL among the base's leases, or
//!   [`DEFAULT_UNKNOWN_LEASE_TTL`] when the base has none. etcd counts the
//!   TTL from the moment a leader takes over after the restore, so such a
//!   key lives at most that long unless its owner keeps the lease alive;
//!   no key that was meant to expire becomes permanent (unlike a restore
//!   by replay, which drops every key's lease: upstream issue #1045).
//! - Every other bucket (membership, cluster, alarm, auth) copied as is.
//! - The SHA-256 trailer of a snapshot stream, so the output is accepted
//!   by `etcdctl snapshot restore` with its hash check.
//!
//! # Continuity
//! The base's revision is the larger of its newest key and its finished
//! compaction (the content, not the name: upstream issue #1044), and 1 for
//! an empty database (etcd's first revision). The first
//! delta must start at or before base + 1 and each next one right after the
//! previous one; a gap is an error naming both snapshots. Events at or
//! below the revision reached so far (an overlap) are checked against the
//! base (when its history still holds them) or the previous delta and
//! skipped; an overlap that disagrees is an error naming both snapshots.
//! Inside a delta, events must ascend, lie in the range its name gives,
//! and the last one must be at the name's last revision.
//!
//! # Memory
//! Bounded by the options, not by the database: three streaming passes.
//! 1. The base's `key` bucket and the deltas' events become small records
//!    `(user key, revision, deleted?)` (no values), sorted externally by
//!    key (spilling runs to the scratch sink beyond
//!    [`CompactOptions::sort_memory_bytes`]).
//! 2. Per key the newest record wins; live winners' revisions (16 bytes)
//!    are sorted the same way.
//! 3. The base and the deltas are read again in revision order and the
//!    winners' values go to the writer, which holds one page per tree
//!    level. One delta is in memory at a time (at most
//!    [`CompactOptions::max_delta_bytes`]); leases are kept in memory
//!    (tens of bytes each).
//!
//! # Code
//! This module holds the public types and [`compact`], which writes the
//! merge's live keys, the leases, `meta` and the other buckets. The merge
//! itself (passes 1 to 3, continuity and overlap checks) is the submodule
//! `merge`, which the host's content check ([`crate::expected_content`])
//! runs too, without writing.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;

use crate::delta::DeltaError;
use crate::sort::Scratch;
use crate::{
    Bucket, DbWriter, Error, FINISHED_COMPACT_KEY, KEY_BUCKET, LEASE_BUCKET, Lease, META_BUCKET,
    ReadAt, Revision, SCHEDULED_COMPACT_KEY, Sink, hex, lease_key,
};

pub(crate) mod merge;

use merge::{merge_live, open_base};

/// TTL in seconds of a recreated lease when the base has no lease to take
/// the TTL from.
pub const DEFAULT_UNKNOWN_LEASE_TTL: i64 = 3600;

/// A snapshot as the store names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its name (the object key), for messages.
    pub name: String,
    /// The first revision it covers (0 for a full snapshot).
    pub start_revision: i64,
    /// The last revision it covers, as its name says.
    pub last_revision: i64,
}

/// A delta snapshot and its decompressed payload (JSON and SHA-256).
#[derive(Debug)]
pub struct DeltaInput<R> {
    /// Its name and revisions.
    pub info: SnapshotInfo,
    /// The decompressed payload (JSON and SHA-256); read whole, once per
    /// pass, so it must give the same bytes each time.
    pub data: R,
}

/// Knobs of a compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactOptions {
    /// TTL in seconds of a lease a live key names but the base does not
    /// hold; `None` for the default policy (see the module docs).
    pub unknown_lease_ttl: Option<i64>,
    /// Memory for each of the two sorts before they spill to scratch.
    pub sort_memory_bytes: usize,
    /// Largest delta payload accepted (one is held in memory at a time).
    pub max_delta_bytes: u64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            unknown_lease_ttl: None,
            sort_memory_bytes: 32 << 20,
            max_delta_bytes: 512 << 20,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// The base's revision (from its content).
    pub base_revision: i64,
    /// The output's revision, also its compaction revision.
    pub revision: i64,
    /// Live keys written.
    pub keys: u64,
    /// Entries of the base's `key` bucket read.
    pub base_entries: u64,
    /// Deltas read.
    pub deltas: u64,
    /// Delta events applied.
    pub events: u64,
    /// Delta events skipped because the base or an earlier delta already
    /// held them (checked to agree).
    pub events_skipped: u64,
    /// Leases written.
    pub leases: u64,
    /// Leases recreated because the base did not hold them.
    pub leases_recreated: u64,
    /// The TTL given to recreated leases.
    pub recreated_lease_ttl: i64,
    /// The output database's size, without its 32-byte trailer.
    pub db_bytes: u64,
    /// The SHA-256 of the output database (its trailer).
    pub sha256: [u8; 32],
    /// Bytes the sorts spilled to scratch.
    pub spilled_bytes: u64,
    /// The largest memory the sorts' records took at once.
    pub sort_peak_bytes: u64,
}

/// Why a compaction failed. Nothing is written to the store on error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// The base full snapshot is not a readable etcd database.
    #[error("full snapshot {snapshot}: {source}")]
    Base {
        /// The base's name.
        snapshot: String,
        /// What is wrong.
        #[source]
        source: Error,
    },
    /// A delta could not be read from its source.
    #[error("delta snapshot {snapshot}: cannot read it: {source}")]
    DeltaRead {
        /// The delta's name.
        snapshot: String,
        /// What went wrong.
        #[source]
        source: Error,
    },
    /// A delta's payload is damaged or not a list of events.
    #[error("delta snapshot {snapshot}: {source}")]
    Delta {
        /// The delta's name.
        snapshot: String,
        /// What is wrong.
        #[source]
        source: DeltaError,
    },
    /// A delta's payload is larger than the limit.
    #[error(
        "delta snapshot {snapshot} is {size} bytes decompressed, over the limit of {limit} bytes \
         (raise the compactor's delta size limit: etcdbr --compaction-max-delta-size, with \
         --compaction-memory-limit at least four times it; or restore by replay, \
         --restore-method replay)"
    )]
    DeltaTooLarge {
        /// The delta's name.
        snapshot: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A delta's events do not fit its name or each other.
    #[error("delta snapshot {snapshot}: {reason}")]
    DeltaContent {
        /// The delta's name.
        snapshot: String,
        /// What is wrong.
        reason: String,
    },
    /// Revisions are missing between two snapshots.
    #[error(
        "revisions {from}..={to} are missing between {before} and {after}: the snapshots are not \
         continuous (a delta was lost or deleted); take a new full snapshot"
    )]
    Gap {
        /// The snapshot before the gap.
        before: String,
        /// The snapshot after the gap.
        after: String,
        /// The first missing revision.
        from: i64,
        /// The last missing revision.
        to: i64,
    },
    /// Two snapshots hold different events for the same revision.
    #[error("{after} overlaps {before} at revision {revision} and disagrees: {reason}")]
    Overlap {
        /// The earlier snapshot.
        before: String,
        /// The later snapshot.
        after: String,
        /// The revision.
        revision: i64,
        /// How they differ.
        reason: String,
    },
    /// Writing the output failed.
    #[error("cannot write the compacted database: {0}")]
    Output(#[source] Error),
    /// Spilling to scratch space failed.
    #[error("cannot use the scratch space: {0}")]
    Scratch(#[source] Error),
}

impl CompactError {
    /// Whether reading or writing failed (the inputs, the output, the
    /// scratch space), as opposed to the snapshots being unusable.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            CompactError::Output(_) | CompactError::Scratch(_) | CompactError::DeltaRead { .. }
        )
    }
}

/// Compacts `base_data` (the base full snapshot's database, trailer or
/// not) and `deltas` (in order) into `output`, spilling to `scratch`. See
/// the module docs for what comes out.
pub fn compact<R: ReadAt, D: ReadAt, O: Sink, S: Sink>(
    base: &SnapshotInfo,
    base_data: R,
    deltas: &[DeltaInput<D>],
    output: O,
    scratch: S,
    options: &CompactOptions,
) -> Result<CompactReport, CompactError> {
    let base_err = |source| CompactError::Base {
        snapshot: base.name.clone(),
        source,
    };
    let (db, keys) = open_base(base, base_data)?;
    let scratch = RefCell::new(Scratch::new(scratch));
    let mut writer = DbWriter::new(output);
    let mut leases_used = BTreeSet::new();
    writer
        .begin_bucket(KEY_BUCKET, keys.sequence())
        .map_err(CompactError::Output)?;
    let (mut report, sort_peak) = merge_live(
        base,
        &db,
        &keys,
        deltas,
        &scratch,
        options,
        &mut |key, value, lease| {
            if lease != 0 {
                leases_used.insert(lease);
            }
            writer.put(key, value).map_err(CompactError::Output)
        },
    )?;
    writer.end_bucket().map_err(CompactError::Output)?;

    // Leases: the base's, plus the ones live keys name that it lacks.
    let lease_bucket = db.bucket(LEASE_BUCKET).map_err(base_err)?;
    let mut leases: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut longest_ttl = 0i64;
    if let Some(b) = &lease_bucket {
        for entry in db.iter(b) {
            let entry = entry.map_err(base_err)?;
            let lease = Lease::decode(entry.value.as_slice()).map_err(|e| {
                base_err(Error::Schema {
                    bucket: "lease".into(),
                    key: hex(&entry.key),
                    reason: format!("not a leasepb.Lease: {e}"),
                })
            })?;
            longest_ttl = longest_ttl.max(lease.ttl);
            leases.insert(entry.key, entry.value);
        }
    }
    let ttl = options.unknown_lease_ttl.unwrap_or(if longest_ttl > 0 {
        longest_ttl
    } else {
        DEFAULT_UNKNOWN_LEASE_TTL
    });
    report.recreated_lease_ttl = ttl;
    for id in leases_used {
        if let std::collections::btree_map::Entry::Vacant(slot) =
            leases.entry(lease_key(id).to_vec())
        {
            let lease = Lease {
                id,
                ttl,
                remaining_ttl: 0,
            };
            slot.insert(lease.encode_to_vec());
            report.leases_recreated += 1;
        }
    }
    report.leases = leases.len() as u64;
    let seq = |b: &Option<Bucket>| b.as_ref().map_or(0, Bucket::sequence);
    write_bucket(&mut writer, LEASE_BUCKET, seq(&lease_bucket), leases)?;

    // meta: the base's, with the compaction at the final revision.
    let meta_bucket = db.bucket(META_BUCKET).map_err(base_err)?;
    let mut meta: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    if let Some(b) = &meta_bucket {
        for entry in db.iter(b) {
            let entry = entry.map_err(base_err)?;
            meta.insert(entry.key, entry.value);
        }
    }
    if report.revision > 0 {
        let rev = Revision {
            main: report.revision,
            sub: 0,
        }
        .to_key()
        .to_vec();
        meta.insert(FINISHED_COMPACT_KEY.to_vec(), rev.clone());
        meta.insert(SCHEDULED_COMPACT_KEY.to_vec(), rev);
    }
    write_bucket(&mut writer, META_BUCKET, seq(&meta_bucket), meta)?;

    // Every other bucket as it is.
    for name in db.buckets().map_err(base_err)? {
        if [KEY_BUCKET, LEASE_BUCKET, META_BUCKET].contains(&name.as_slice()) {
            continue;
        }
        let bucket = db
            .bucket(&name)
            .and_then(|b| {
                b.ok_or_else(|| Error::MissingBucket {
                    name: String::from_utf8_lossy(&name).into_owned(),
                })
            })
            .map_err(base_err)?;
        writer
            .begin_bucket(&name, bucket.sequence())
            .map_err(CompactError::Output)?;
        for entry in db.iter(&bucket) {
            let entry = entry.map_err(base_err)?;
            if entry.is_bucket {
                return Err(base_err(Error::Schema {
                    bucket: String::from_utf8_lossy(&name).into_owned(),
                    key: hex(&entry.key),
                    reason: "a nested bucket: etcd's buckets hold none (not an etcd database?)"
                        .into(),
                }));
            }
            writer
                .put(&entry.key, &entry.value)
                .map_err(CompactError::Output)?;
        }
        writer.end_bucket().map_err(CompactError::Output)?;
    }
    let written = writer
        .finish(db.meta().sequence)
        .map_err(CompactError::Output)?;
    report.db_bytes = written.db_bytes;
    report.sha256 = written.sha256;
    report.spilled_bytes = scratch.borrow().spilled();
    report.sort_peak_bytes = sort_peak as u64;
    Ok(report)
}

fn write_bucket<O: Sink>(
    writer: &mut DbWriter<O>,
    name: &[u8],
    sequence: u64,
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<(), CompactError> {
    writer
        .begin_bucket(name, sequence)
        .map_err(CompactError::Output)?;
    for (k, v) in entries {
        writer.put(&k, &v).map_err(CompactError::Output)?;
    }
    writer.end_bucket().map_err(CompactError::Output)
}
