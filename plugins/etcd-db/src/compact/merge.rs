//! The merge of a compaction: a base full snapshot and its deltas into
//! the live keys, in revision order, in three bounded-memory passes (see
//! the [`compact`](super) module docs). [`compact`](super::compact) writes
//! what it yields; the host's content check digests it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use prost::Message as _;

use crate::delta::{
    DeltaError, EventKey, check_delta_hash, parse_event_keys, parse_events, split_delta,
};
use crate::page::fnv1a64;
use crate::sort::{Scratch, Sorter};
use crate::{
    Bucket, Db, Error, Event, EventType, KEY_BUCKET, KeyValue, ReadAt, Revision, Sink, hex,
    revision_of_key,
};

use super::{CompactError, CompactOptions, CompactReport, DeltaInput, SnapshotInfo};

/// Opens the base full snapshot's database and its `key` bucket.
pub(crate) fn open_base<R: ReadAt>(
    base: &SnapshotInfo,
    base_data: R,
) -> Result<(Db<R>, Bucket), CompactError> {
    let db = Db::open(base_data).map_err(|source| CompactError::Base {
        snapshot: base.name.clone(),
        source,
    })?;
    let keys = key_bucket(base, &db)?;
    Ok((db, keys))
}

/// Takes a live key's revision key, `mvccpb.KeyValue` bytes and lease.
pub(crate) type Emit<'a> = dyn FnMut(&[u8], &[u8], i64) -> Result<(), CompactError> + 'a;

/// The base's `key` bucket.
pub(crate) fn key_bucket<R: ReadAt>(
    base: &SnapshotInfo,
    db: &Db<R>,
) -> Result<Bucket, CompactError> {
    db.bucket(KEY_BUCKET)
        .and_then(|b| b.ok_or_else(|| Error::MissingBucket { name: "key".into() }))
        .map_err(|source| CompactError::Base {
            snapshot: base.name.clone(),
            source,
        })
}

/// Passes 1 to 3 of a compaction: calls `emit` with every live key's
/// revision key, `mvccpb.KeyValue` bytes and lease, in revision order.
/// Returns the report so far (revisions, counts) and the sorts' peak
/// memory. [`compact`](super::compact) writes what it is given; the
/// host's check of a compactor's output digests it.
pub(crate) fn merge_live<R: ReadAt, D: ReadAt, S: Sink>(
    base: &SnapshotInfo,
    db: &Db<R>,
    keys: &Bucket,
    deltas: &[DeltaInput<D>],
    scratch: &RefCell<Scratch<S>>,
    options: &CompactOptions,
    emit: &mut Emit<'_>,
) -> Result<(CompactReport, usize), CompactError> {
    let base_err = |source| CompactError::Base {
        snapshot: base.name.clone(),
        source,
    };
    let compacted = db
        .finished_compact_revision()
        .map_err(base_err)?
        .map_or(0, |r| r.main);
    // etcd starts at revision 1 with an empty `key` bucket.
    let base_revision = db
        .last_revision()
        .map_err(base_err)?
        .unwrap_or(1)
        .max(compacted);
    let mut report = CompactReport {
        base_revision,
        ..CompactReport::default()
    };
    let ctx = Context {
        base,
        db,
        keys,
        base_revision,
        compacted,
        options,
        deltas,
    };
    let budget = options.sort_memory_bytes;

    // Pass 1: (user key, revision, deleted) of every change, by key.
    let mut by_key = Sorter::new(scratch, cmp_by_key, budget);
    let mut record = Vec::new();
    for entry in db.iter(keys) {
        let entry = entry.map_err(base_err)?;
        let rk = revision_of_key(&entry.key).map_err(base_err)?;
        let kv = decode_part::<KeyOf>(&entry.value).map_err(base_err)?;
        key_record(&mut record, rk.revision, rk.tombstone, &kv.key);
        by_key.push(&record).map_err(CompactError::Scratch)?;
        report.base_entries += 1;
    }
    let walk = ctx.walk_deltas(true, &mut |rev, change| {
        key_record(&mut record, rev, change.deleted, change.key);
        by_key.push(&record).map_err(CompactError::Scratch)
    })?;
    report.deltas = deltas.len() as u64;
    report.events = walk.applied;
    report.events_skipped = walk.skipped;
    report.revision = walk.revision;
    let mut sort_peak = by_key.peak_bytes();

    // Pass 2: the newest change of each key wins; live winners by revision.
    let mut winners = Sorter::new(scratch, |a, b| a.cmp(b), budget);
    {
        let mut merged = by_key.finish().map_err(CompactError::Scratch)?;
        let mut pending: Option<Vec<u8>> = None;
        while let Some(rec) = merged.next().map_err(CompactError::Scratch)? {
            if let Some(p) = pending.take()
                && user_key(&p) != user_key(&rec)
                && !is_deleted(&p)
            {
                winners.push(&p[..16]).map_err(CompactError::Scratch)?;
                report.keys += 1;
            }
            pending = Some(rec);
        }
        if let Some(p) = pending
            && !is_deleted(&p)
        {
            winners.push(&p[..16]).map_err(CompactError::Scratch)?;
            report.keys += 1;
        }
    }
    sort_peak = sort_peak.max(winners.peak_bytes());

    // Pass 3: the winners' values, in revision order.
    let mut winners = winners.finish().map_err(CompactError::Scratch)?;
    let mut next = winners.next().map_err(CompactError::Scratch)?;
    for entry in db.iter(keys) {
        let entry = entry.map_err(base_err)?;
        let rk = revision_of_key(&entry.key).map_err(base_err)?;
        if rk.tombstone || next.as_deref() != Some(&rev_bytes(rk.revision)[..]) {
            continue;
        }
        let kv = decode_part::<LeaseOf>(&entry.value).map_err(base_err)?;
        emit(&entry.key, &entry.value, kv.lease)?;
        next = winners.next().map_err(CompactError::Scratch)?;
    }
    let mut value = Vec::new();
    ctx.walk_deltas(false, &mut |rev, change| {
        if next.as_deref() != Some(&rev_bytes(rev)[..]) {
            return Ok(());
        }
        let Some(kv) = change.kv else {
            return Err(CompactError::Output(Error::Write {
                reason: "the second pass has no event values".into(),
            }));
        };
        value.clear();
        kv.encode(&mut value).map_err(|e| {
            CompactError::Output(Error::Write {
                reason: e.to_string(),
            })
        })?;
        emit(&rev.to_key(), &value, kv.lease)?;
        next = winners.next().map_err(CompactError::Scratch)?;
        Ok(())
    })?;
    if let Some(left) = next {
        // Pass 3 reads the same inputs as pass 1; a winner left over means
        // an input changed between the passes.
        return Err(CompactError::Output(Error::Write {
            reason: format!(
                "revision {} won in pass 1 but was not found again: an input changed during \
                 the compaction",
                hex(&left)
            ),
        }));
    }
    Ok((report, sort_peak))
}

/// The key of an `mvccpb.KeyValue`, decoded without copying the value.
#[derive(Clone, PartialEq, prost::Message)]
struct KeyOf {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
}

/// The lease of an `mvccpb.KeyValue`, decoded without copying the value.
#[derive(Clone, PartialEq, prost::Message)]
struct LeaseOf {
    #[prost(int64, tag = "6")]
    lease: i64,
}

fn decode_part<M: prost::Message + Default>(value: &[u8]) -> Result<M, Error> {
    M::decode(value).map_err(|e| Error::Schema {
        bucket: "key".into(),
        key: String::new(),
        reason: format!("value is not an mvccpb.KeyValue: {e}"),
    })
}

fn decode_kv(value: &[u8]) -> Result<KeyValue, Error> {
    KeyValue::decode(value).map_err(|e| Error::Schema {
        bucket: "key".into(),
        key: String::new(),
        reason: format!("value is not an mvccpb.KeyValue: {e}"),
    })
}

/// `main` and `sub` big-endian: byte order is revision order (revisions
/// are never negative).
fn rev_bytes(rev: Revision) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&rev.main.to_be_bytes());
    b[8..].copy_from_slice(&rev.sub.to_be_bytes());
    b
}

/// Pass-1 record: revision (16 bytes), deleted flag, user key.
fn key_record(out: &mut Vec<u8>, rev: Revision, deleted: bool, key: &[u8]) {
    out.clear();
    out.extend(rev_bytes(rev));
    out.push(u8::from(deleted));
    out.extend_from_slice(key);
}

fn user_key(rec: &[u8]) -> &[u8] {
    rec.get(17..).unwrap_or_default()
}

fn is_deleted(rec: &[u8]) -> bool {
    rec.get(16) == Some(&1)
}

fn cmp_by_key(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    user_key(a)
        .cmp(user_key(b))
        .then_with(|| a.get(..16).cmp(&b.get(..16)))
}

/// What a walk over the deltas saw.
struct Walk {
    applied: u64,
    skipped: u64,
    revision: i64,
}

struct Context<'a, R: ReadAt, D: ReadAt> {
    base: &'a SnapshotInfo,
    db: &'a Db<R>,
    keys: &'a Bucket,
    base_revision: i64,
    compacted: i64,
    options: &'a CompactOptions,
    deltas: &'a [DeltaInput<D>],
}

/// Identifies an event for overlap checks.
fn digest(event: &Event) -> u64 {
    let mut bytes = vec![u8::from(event.kind == EventType::Delete)];
    bytes.extend(event.kv.encode_to_vec());
    fnv1a64(&bytes)
}

/// The digests of a delta's events by revision.
fn digests_by_revision(events: &[Event]) -> BTreeMap<i64, Vec<u64>> {
    let mut out: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for e in events {
        out.entry(e.kv.mod_revision).or_default().push(digest(e));
    }
    out
}

/// One change a walk hands on: the revision it lands at, and the event
/// (in the first pass only its type and key are known).
pub(crate) struct Change<'a> {
    deleted: bool,
    key: &'a [u8],
    /// The whole key-value (the second pass).
    kv: Option<&'a KeyValue>,
}

impl<R: ReadAt, D: ReadAt> Context<'_, R, D> {
    fn delta_err(&self, delta: &DeltaInput<D>) -> impl Fn(DeltaError) -> CompactError {
        let snapshot = delta.info.name.clone();
        move |source| CompactError::Delta {
            snapshot: snapshot.clone(),
            source,
        }
    }

    /// Reads a delta's payload whole (bounded by `max_delta_bytes`).
    fn payload(&self, delta: &DeltaInput<D>) -> Result<Vec<u8>, CompactError> {
        let name = &delta.info.name;
        let read_err = |source| CompactError::DeltaRead {
            snapshot: name.clone(),
            source,
        };
        let size = delta.data.size().map_err(read_err)?;
        if size > self.options.max_delta_bytes {
            return Err(CompactError::DeltaTooLarge {
                snapshot: name.clone(),
                size,
                limit: self.options.max_delta_bytes,
            });
        }
        let mut payload = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
        delta.data.read_at(0, &mut payload).map_err(read_err)?;
        Ok(payload)
    }

    /// A delta's events, whole (hash not checked again).
    fn events(&self, delta: &DeltaInput<D>) -> Result<Vec<Event>, CompactError> {
        let payload = self.payload(delta)?;
        let (json, _) = split_delta(&payload).map_err(self.delta_err(delta))?;
        parse_events(json).map_err(self.delta_err(delta))
    }

    /// Calls `apply` with every event after the revision reached so far
    /// and its (main, sub) revision, in order. The first walk (`check`)
    /// verifies each delta's hash (hashed by the source, natively in the
    /// plugin host), its events, continuity and overlaps, and reads only
    /// types and keys; the second reads whole events.
    fn walk_deltas(
        &self,
        check: bool,
        apply: &mut dyn FnMut(Revision, Change<'_>) -> Result<(), CompactError>,
    ) -> Result<Walk, CompactError> {
        let mut walk = Walk {
            applied: 0,
            skipped: 0,
            revision: self.base_revision,
        };
        let mut before: Option<&DeltaInput<D>> = None;
        for delta in self.deltas {
            let info = &delta.info;
            let before_name = before.map_or(&self.base.name, |b| &b.info.name);
            if info.start_revision > walk.revision + 1 {
                return Err(CompactError::Gap {
                    before: before_name.clone(),
                    after: info.name.clone(),
                    from: walk.revision + 1,
                    to: info.start_revision - 1,
                });
            }
            let payload = self.payload(delta)?;
            let json = if check {
                let (json, _) = split_delta(&payload).map_err(self.delta_err(delta))?;
                let computed = delta.data.sha256(0, json.len() as u64).map_err(|source| {
                    CompactError::DeltaRead {
                        snapshot: info.name.clone(),
                        source,
                    }
                })?;
                check_delta_hash(&payload, &computed).map_err(self.delta_err(delta))?
            } else {
                split_delta(&payload).map_err(self.delta_err(delta))?.0
            };
            let parsed = if check {
                Parsed::Keys(parse_event_keys(json).map_err(self.delta_err(delta))?)
            } else {
                Parsed::Full(parse_events(json).map_err(self.delta_err(delta))?)
            };
            if check {
                check_events(info, &parsed).map_err(|reason| CompactError::DeltaContent {
                    snapshot: info.name.clone(),
                    reason,
                })?;
            }
            // Parsed when an overlap is checked, once per delta: this
            // delta's whole events, and the previous delta's digests.
            let mut full: Option<Vec<Event>> = None;
            let mut held: Option<BTreeMap<i64, Vec<u64>>> = None;
            let mut i = 0;
            while i < parsed.len() {
                let main = parsed.revision(i);
                let end = (i..parsed.len())
                    .find(|&j| parsed.revision(j) != main)
                    .unwrap_or(parsed.len());
                if main <= walk.revision {
                    if check {
                        if full.is_none() {
                            full = Some(parse_events(json).map_err(self.delta_err(delta))?);
                        }
                        let group = full.as_deref().map_or(&[][..], |f| &f[i..end]);
                        if main <= self.base_revision {
                            self.check_overlap_with_base(info, main, group)?;
                        } else {
                            let Some(prev) = before else {
                                return Err(CompactError::Overlap {
                                    before: self.base.name.clone(),
                                    after: info.name.clone(),
                                    revision: main,
                                    reason: "the revision is past the base".into(),
                                });
                            };
                            if held.is_none() {
                                held = Some(digests_by_revision(&self.events(prev)?));
                            }
                            let held = held.as_ref().and_then(|h| h.get(&main));
                            check_overlap_with_delta(&prev.info, held, info, main, group)?;
                        }
                    }
                    walk.skipped += (end - i) as u64;
                } else {
                    for (sub, j) in (i..end).enumerate() {
                        let rev = Revision {
                            main,
                            sub: sub as i64,
                        };
                        apply(rev, parsed.change(j))?;
                    }
                    walk.applied += (end - i) as u64;
                }
                i = end;
            }
            walk.revision = walk.revision.max(info.last_revision);
            before = Some(delta);
        }
        Ok(walk)
    }

    /// Checks events of revision `main`, already reached and held by the
    /// base, against the base (unless its history was compacted away).
    fn check_overlap_with_base(
        &self,
        info: &SnapshotInfo,
        main: i64,
        group: &[Event],
    ) -> Result<(), CompactError> {
        let overlap = |reason: String| CompactError::Overlap {
            before: self.base.name.clone(),
            after: info.name.clone(),
            revision: main,
            reason,
        };
        for (sub, event) in group.iter().enumerate() {
            let rev = Revision {
                main,
                sub: sub as i64,
            };
            let mut key = rev.to_key().to_vec();
            let deleted = event.kind == EventType::Delete;
            if deleted {
                key.push(crate::TOMBSTONE_MARK);
            }
            let found = self
                .db
                .get(self.keys, &key)
                .map_err(|source| CompactError::Base {
                    snapshot: self.base.name.clone(),
                    source,
                })?;
            match found {
                None if main <= self.compacted => {}
                None => {
                    return Err(overlap(format!(
                        "the base has no {} of key {} at sub-revision {sub}",
                        if deleted { "deletion" } else { "put" },
                        hex(&event.kv.key)
                    )));
                }
                Some(entry) => {
                    let kv = decode_kv(&entry.value).map_err(|source| CompactError::Base {
                        snapshot: self.base.name.clone(),
                        source,
                    })?;
                    let same = if deleted {
                        kv.key == event.kv.key
                    } else {
                        kv == event.kv
                    };
                    if !same {
                        return Err(overlap(format!(
                            "key {} differs at sub-revision {sub}",
                            hex(&event.kv.key)
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks events of revision `main`, already reached past the base,
/// against the previous delta's digests of that revision (`held`).
fn check_overlap_with_delta(
    prev: &SnapshotInfo,
    held: Option<&Vec<u64>>,
    info: &SnapshotInfo,
    main: i64,
    group: &[Event],
) -> Result<(), CompactError> {
    let digests: Vec<u64> = group.iter().map(digest).collect();
    let reason = match held {
        Some(d) if *d == digests => return Ok(()),
        Some(d) => format!(
            "{} events there, {} here, or different keys or values",
            d.len(),
            digests.len()
        ),
        None => "the revision is in neither the base nor the previous delta, so the overlap \
                 cannot be checked"
            .into(),
    };
    Err(CompactError::Overlap {
        before: prev.name.clone(),
        after: info.name.clone(),
        revision: main,
        reason,
    })
}

/// A delta's events as a walk parsed them: types, keys and revisions (the
/// first walk) or whole events (the second).
enum Parsed {
    Keys(Vec<EventKey>),
    Full(Vec<Event>),
}

impl Parsed {
    fn len(&self) -> usize {
        match self {
            Parsed::Keys(k) => k.len(),
            Parsed::Full(f) => f.len(),
        }
    }

    fn revision(&self, i: usize) -> i64 {
        match self {
            Parsed::Keys(k) => k[i].mod_revision,
            Parsed::Full(f) => f[i].kv.mod_revision,
        }
    }

    fn change(&self, i: usize) -> Change<'_> {
        match self {
            Parsed::Keys(k) => Change {
                deleted: k[i].kind == EventType::Delete,
                key: &k[i].key,
                kv: None,
            },
            Parsed::Full(f) => Change {
                deleted: f[i].kind == EventType::Delete,
                key: &f[i].kv.key,
                kv: Some(&f[i].kv),
            },
        }
    }
}

/// A delta's events ascend and fit the revisions its name gives.
fn check_events(info: &SnapshotInfo, events: &Parsed) -> Result<(), String> {
    let Some(last) = events.len().checked_sub(1).map(|i| events.revision(i)) else {
        return Err("it holds no events".into());
    };
    let mut prev = i64::MIN;
    for i in 0..events.len() {
        let rev = events.revision(i);
        if rev < prev {
            return Err(format!(
                "event #{i} is at revision {rev}, before the previous event's {prev}"
            ));
        }
        if rev < info.start_revision || rev > info.last_revision {
            return Err(format!(
                "event #{i} is at revision {rev}, outside the revisions {}..={} of its name",
                info.start_revision, info.last_revision
            ));
        }
        prev = rev;
    }
    if last != info.last_revision {
        return Err(format!(
            "its name says it ends at revision {}, but its last event is at {last}",
            info.last_revision
        ));
    }
    Ok(())
}
