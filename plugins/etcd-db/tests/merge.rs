//! Property tests of the merge: a model of etcd's mvcc store runs random
//! operations (puts, deletes, transactions, keys with leases, lease grants)
//! and records them as etcd would: a base database (with history,
//! tombstones and optionally a compaction) and delta events. The
//! compaction of base + deltas must hold exactly the model's live keys at
//! their revisions, with their leases, at the model's revision.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;

use druid_etcd_db::{
    CompactError, CompactOptions, Db, DbWriter, DeltaInput, Event, EventType, KEY_BUCKET, KeyValue,
    LEASE_BUCKET, Lease, META_BUCKET, Revision, SnapshotInfo, compact, content_of, encode_delta,
    expected_content, lease_key, revision_of_key,
};
use proptest::prelude::*;
use prost::Message as _;

/// One operation of the random workload.
#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        value: Vec<u8>,
        lease: Option<u8>,
    },
    Delete {
        key: u8,
    },
    Txn(Vec<(u8, Option<Vec<u8>>)>),
    Grant {
        ttl: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12, proptest::collection::vec(any::<u8>(), 0..40), proptest::option::of(0u8..4))
            .prop_map(|(key, value, lease)| Op::Put { key, value, lease }),
        2 => (0u8..12).prop_map(|key| Op::Delete { key }),
        1 => proptest::collection::btree_map(0u8..12, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)), 1..4)
            .prop_map(|m| Op::Txn(m.into_iter().collect())),
        1 => (1i64..5000).prop_map(|ttl| Op::Grant { ttl }),
    ]
}

/// A put's value and lease.
type Put = (Vec<u8>, i64);

/// What a scenario yields: the model, the base database, the deltas and
/// the leases the base holds.
type Scenario = (Model, Vec<u8>, Vec<DeltaInput<Vec<u8>>>, BTreeMap<i64, i64>);

/// etcd's mvcc store, as far as the snapshots see it.
struct Model {
    revision: i64,
    live: BTreeMap<Vec<u8>, KeyValue>,
    /// Every change: revision, tombstone?, value bytes.
    history: Vec<(Revision, bool, KeyValue)>,
    leases: BTreeMap<i64, i64>,
}

fn key_name(k: u8) -> Vec<u8> {
    format!("/registry/key-{k:02}").into_bytes()
}

impl Model {
    /// A fresh store: etcd starts at revision 1 with no keys.
    fn new() -> Self {
        Model {
            revision: 1,
            live: BTreeMap::new(),
            history: Vec::new(),
            leases: BTreeMap::new(),
        }
    }

    fn apply(&mut self, op: &Op) -> Vec<Event> {
        let changes: Vec<(u8, Option<Put>)> = match op {
            Op::Grant { ttl } => {
                let id = 0x7000 + self.leases.len() as i64;
                self.leases.insert(id, *ttl);
                return Vec::new();
            }
            Op::Put { key, value, lease } => {
                let lease = lease
                    .and_then(|i| self.leases.keys().nth(i as usize).copied())
                    .unwrap_or(0);
                vec![(*key, Some((value.clone(), lease)))]
            }
            Op::Delete { key } => vec![(*key, None)],
            Op::Txn(ops) => ops
                .iter()
                .map(|(k, v)| (*k, v.clone().map(|v| (v, 0))))
                .collect(),
        };
        // A revision only when something changes (a delete of a missing
        // key changes nothing).
        let effective: Vec<_> = changes
            .into_iter()
            .filter(|(k, v)| v.is_some() || self.live.contains_key(&key_name(*k)))
            .collect();
        if effective.is_empty() {
            return Vec::new();
        }
        self.revision += 1;
        let main = self.revision;
        let mut events = Vec::new();
        for (sub, (k, change)) in effective.into_iter().enumerate() {
            let key = key_name(k);
            let rev = Revision {
                main,
                sub: sub as i64,
            };
            match change {
                Some((value, lease)) => {
                    let prev = self.live.get(&key);
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.map_or(main, |p| p.create_revision),
                        mod_revision: main,
                        version: prev.map_or(1, |p| p.version + 1),
                        value,
                        lease,
                    };
                    self.history.push((rev, false, kv.clone()));
                    self.live.insert(key, kv.clone());
                    events.push(Event {
                        kind: EventType::Put,
                        kv,
                    });
                }
                None => {
                    self.live.remove(&key);
                    let tomb = KeyValue {
                        key: key.clone(),
                        ..Default::default()
                    };
                    self.history.push((rev, true, tomb));
                    events.push(Event {
                        kind: EventType::Delete,
                        kv: KeyValue {
                            key,
                            mod_revision: main,
                            ..Default::default()
                        },
                    });
                }
            }
        }
        events
    }

    /// The base database as etcd would hold it, compacted at `compact_at`
    /// (0: never).
    fn database(&self, compact_at: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = DbWriter::new(&mut out);
        w.begin_bucket(KEY_BUCKET, 0).unwrap();
        // After a compaction at C, etcd keeps every revision above C and,
        // at or below C, the newest revision of each live key.
        let mut newest_at_or_below: BTreeMap<Vec<u8>, Revision> = BTreeMap::new();
        for (rev, tomb, kv) in &self.history {
            if rev.main <= compact_at {
                if *tomb {
                    newest_at_or_below.remove(&kv.key);
                } else {
                    newest_at_or_below.insert(kv.key.clone(), *rev);
                }
            }
        }
        for (rev, tomb, kv) in &self.history {
            if rev.main <= compact_at && (*tomb || newest_at_or_below.get(&kv.key) != Some(rev)) {
                continue;
            }
            let mut k = rev.to_key().to_vec();
            if *tomb {
                k.push(b't');
            }
            w.put(&k, &kv.encode_to_vec()).unwrap();
        }
        w.end_bucket().unwrap();
        w.begin_bucket(LEASE_BUCKET, 0).unwrap();
        for (id, ttl) in &self.leases {
            let l = Lease {
                id: *id,
                ttl: *ttl,
                remaining_ttl: 0,
            };
            w.put(&lease_key(*id), &l.encode_to_vec()).unwrap();
        }
        w.end_bucket().unwrap();
        w.begin_bucket(META_BUCKET, 0).unwrap();
        w.put(b"consistent_index", &42u64.to_be_bytes()).unwrap();
        if compact_at > 0 {
            let r = Revision {
                main: compact_at,
                sub: 0,
            }
            .to_key();
            w.put(b"finishedCompactRev", &r).unwrap();
            w.put(b"scheduledCompactRev", &r).unwrap();
        }
        w.end_bucket().unwrap();
        w.begin_bucket(b"members", 0).unwrap();
        w.put(b"8e9e05c52164694d", br#"{"id":1}"#).unwrap();
        w.end_bucket().unwrap();
        let written = w.finish(0).unwrap();
        assert_eq!(out.len() as u64, written.db_bytes + 32);
        out
    }
}

/// Splits `events` (in revision order) into deltas at revision boundaries.
fn deltas(events: &[Event], cuts: &[usize]) -> Vec<DeltaInput<Vec<u8>>> {
    let mut groups: Vec<Vec<Event>> = vec![Vec::new()];
    let mut cut = cuts.iter().cycle();
    let mut target = *cut.next().unwrap_or(&5);
    for e in events {
        let last = groups.last_mut().unwrap();
        let same_rev = last
            .last()
            .is_some_and(|p: &Event| p.kv.mod_revision == e.kv.mod_revision);
        if last.len() >= target && !same_rev {
            groups.push(Vec::new());
            target = *cut.next().unwrap_or(&5);
        }
        groups.last_mut().unwrap().push(e.clone());
    }
    let mut start = events.first().map_or(1, |e| e.kv.mod_revision);
    groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(|g| {
            let last = g.last().unwrap().kv.mod_revision;
            let info = SnapshotInfo {
                name: format!("Incr-{start:08}-{last:08}-1700000000.gz"),
                start_revision: start,
                last_revision: last,
            };
            start = last + 1;
            DeltaInput {
                info,
                data: encode_delta(&g, "2024-01-01T00:00:00Z"),
            }
        })
        .collect()
}

fn base_info(rev: i64) -> SnapshotInfo {
    SnapshotInfo {
        name: format!("Full-00000000-{rev:08}-1700000000.gz"),
        start_revision: 0,
        last_revision: rev,
    }
}

/// Runs the model on `ops`, splitting at `split`; returns the model, the
/// base database and the deltas.
fn scenario(ops: &[Op], split: usize, compact_frac: u8, cuts: &[usize]) -> Scenario {
    let mut m = Model::new();
    for op in &ops[..split] {
        m.apply(op);
    }
    let compact_at = m.revision * i64::from(compact_frac) / 4;
    let base = m.database(compact_at);
    let base_leases = m.leases.clone();
    let mut events = Vec::new();
    for op in &ops[split..] {
        events.extend(m.apply(op));
    }
    let d = deltas(&events, cuts);
    (m, base, d, base_leases)
}

fn check_output(m: &Model, out: &[u8], base_leases: &BTreeMap<i64, i64>, ttl_default: i64) {
    let db = Db::open(out).unwrap();
    db.check().unwrap();
    let keys = db.bucket(KEY_BUCKET).unwrap().unwrap();
    let mut got = BTreeMap::new();
    for e in db.iter(&keys) {
        let e = e.unwrap();
        let rk = revision_of_key(&e.key).unwrap();
        assert!(!rk.tombstone, "no tombstones in a compacted database");
        let kv = KeyValue::decode(e.value.as_slice()).unwrap();
        assert_eq!(rk.revision.main, kv.mod_revision);
        // The sub revision is the one etcd gave the change.
        let (rev, _, _) = m
            .history
            .iter()
            .rev()
            .find(|(r, t, h)| !t && h.key == kv.key && r.main == kv.mod_revision)
            .unwrap();
        assert_eq!(rk.revision, *rev);
        got.insert(kv.key.clone(), kv);
    }
    assert_eq!(got, m.live, "live keys");
    if m.revision > 0 {
        assert_eq!(
            db.finished_compact_revision().unwrap().map(|r| r.main),
            Some(m.revision)
        );
    }
    let lb = db.bucket(LEASE_BUCKET).unwrap().unwrap();
    let mut leases = BTreeMap::new();
    for e in db.iter(&lb) {
        let e = e.unwrap();
        let l = Lease::decode(e.value.as_slice()).unwrap();
        assert_eq!(e.key, lease_key(l.id));
        leases.insert(l.id, l.ttl);
    }
    for (id, ttl) in base_leases {
        assert_eq!(leases.get(id), Some(ttl), "base lease {id:x} kept");
    }
    for kv in m.live.values().filter(|kv| kv.lease != 0) {
        let want = base_leases.get(&kv.lease).copied().unwrap_or(ttl_default);
        assert_eq!(
            leases.get(&kv.lease),
            Some(&want),
            "lease {:x} of a live key",
            kv.lease
        );
    }
    let members = db.bucket(b"members").unwrap().unwrap();
    assert_eq!(db.iter(&members).count(), 1, "other buckets are copied");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn compaction_holds_exactly_the_live_keys(
        ops in proptest::collection::vec(op(), 1..120),
        split_frac in 0usize..=100,
        compact_frac in 0u8..=4,
        cuts in proptest::collection::vec(1usize..20, 1..4),
        small_sort in any::<bool>(),
    ) {
        let split = ops.len() * split_frac / 100;
        let (m, base, d, base_leases) = scenario(&ops, split, compact_frac, &cuts);
        let base_rev = d.first().map_or(m.revision, |x| x.info.start_revision - 1);
        let options = CompactOptions {
            sort_memory_bytes: if small_sort { 1 } else { 1 << 20 },
            ..CompactOptions::default()
        };
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let report = compact(&base_info(base_rev), base.as_slice(), &d, &mut out, &mut scratch, &options).unwrap();
        prop_assert_eq!(report.revision, m.revision);
        prop_assert_eq!(report.keys, m.live.len() as u64);
        let longest = base_leases.values().max().copied().unwrap_or(druid_etcd_db::compact::DEFAULT_UNKNOWN_LEASE_TTL);
        prop_assert_eq!(report.recreated_lease_ttl, longest);
        check_output(&m, &out, &base_leases, longest);
        // The host's check: the inputs' expected content is the output's.
        let expected = expected_content(&base_info(base_rev), base.as_slice(), &d, Vec::new(), &options).unwrap();
        let (found, leases) = content_of(&Db::open(out.as_slice()).unwrap()).unwrap();
        prop_assert_eq!(expected.keys, report.keys);
        prop_assert_eq!(expected.mismatch(&found, &leases), None);
        // Compacting the output again changes nothing.
        let mut again = Vec::new();
        let report2 = compact(&base_info(m.revision), out.as_slice(), &[] as &[DeltaInput<Vec<u8>>], &mut again, Vec::new(), &options).unwrap();
        prop_assert_eq!(report2.keys, report.keys);
        prop_assert_eq!(report2.revision, report.revision);
    }

    /// A delta that overlaps the base (the snapshot's name said a lower
    /// revision than its content, upstream issue #1044) is checked and
    /// skipped.
    #[test]
    fn an_overlapping_first_delta_is_checked_and_skipped(
        ops in proptest::collection::vec(op(), 10..80),
        back in 1usize..5,
    ) {
        let split = ops.len() / 2;
        let mut m = Model::new();
        let mut early_events = Vec::new();
        for op in &ops[..split] {
            early_events.push(m.apply(op));
        }
        let base = m.database(0);
        let base_leases = m.leases.clone();
        // The deltas restart `back` operations before the base's end.
        let mut events: Vec<Event> = early_events[split.saturating_sub(back)..].iter().flatten().cloned().collect();
        for op in &ops[split..] {
            events.extend(m.apply(op));
        }
        prop_assume!(!events.is_empty());
        let d = deltas(&events, &[7]);
        let mut out = Vec::new();
        let report = compact(&base_info(0), base.as_slice(), &d, &mut out, Vec::new(), &CompactOptions::default()).unwrap();
        prop_assert_eq!(report.revision, m.revision);
        let longest = base_leases.values().max().copied().unwrap_or(druid_etcd_db::compact::DEFAULT_UNKNOWN_LEASE_TTL);
        check_output(&m, &out, &base_leases, longest);
    }
}

/// Compacts `base` (named `Full-…-00000010`) and `deltas`, which must fail.
fn refused(base: &[u8], deltas: &[DeltaInput<Vec<u8>>], options: &CompactOptions) -> CompactError {
    match compact(
        &base_info(10),
        base,
        deltas,
        Vec::new(),
        Vec::new(),
        options,
    ) {
        Ok(r) => panic!("compacted to revision {}", r.revision),
        Err(e) => e,
    }
}

/// Copies database `out`, passing each `key` bucket entry through `edit`
/// (`None` drops it) and each lease through `keep_lease`: a compactor's
/// output as a buggy or hostile compactor would write it, well formed.
fn tampered(
    out: &[u8],
    edit: &mut dyn FnMut(usize, Vec<u8>) -> Option<Vec<u8>>,
    keep_lease: &dyn Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let db = Db::open(out).unwrap();
    let mut copy = Vec::new();
    let mut w = DbWriter::new(&mut copy);
    for name in db.buckets().unwrap() {
        let b = db.bucket(&name).unwrap().unwrap();
        w.begin_bucket(&name, b.sequence()).unwrap();
        for (i, e) in db.iter(&b).enumerate() {
            let e = e.unwrap();
            let value = if name == KEY_BUCKET {
                edit(i, e.value)
            } else if name == LEASE_BUCKET && !keep_lease(&e.key) {
                None
            } else {
                Some(e.value)
            };
            if let Some(v) = value {
                w.put(&e.key, &v).unwrap();
            }
        }
        w.end_bucket().unwrap();
    }
    w.finish(db.meta().sequence).unwrap();
    copy
}

fn simple() -> (Model, Vec<u8>, Vec<DeltaInput<Vec<u8>>>) {
    let ops: Vec<Op> = (0..40u8)
        .map(|i| Op::Put {
            key: i % 9,
            value: vec![i; 3],
            lease: None,
        })
        .collect();
    let (m, base, d, _) = scenario(&ops, 10, 0, &[6]);
    (m, base, d)
}

#[test]
fn a_missing_delta_is_a_gap_naming_both_neighbours() {
    let (_, base, mut d) = simple();
    assert!(d.len() >= 3);
    let removed = d.remove(1);
    let err = refused(&base, &d, &CompactOptions::default());
    let text = err.to_string();
    assert!(matches!(err, CompactError::Gap { .. }), "{text}");
    assert!(
        text.contains(&d[0].info.name) && text.contains(&d[1].info.name),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}..={}",
            removed.info.start_revision, removed.info.last_revision
        )),
        "{text}"
    );
    // A first delta that starts after base + 1 names the base.
    let err = refused(&base, &d[1..], &CompactOptions::default());
    assert!(err.to_string().contains("Full-00000000-00000010"), "{err}");
}

#[test]
fn a_delta_sent_twice_is_checked_against_the_first_copy() {
    let (m, base, d) = simple();
    // The same delta again right after itself: skipped, same result.
    let mut again: Vec<DeltaInput<Vec<u8>>> = d
        .iter()
        .map(|x| DeltaInput {
            info: x.info.clone(),
            data: x.data.clone(),
        })
        .collect();
    again.insert(
        2,
        DeltaInput {
            info: d[1].info.clone(),
            data: d[1].data.clone(),
        },
    );
    let mut out = Vec::new();
    let report = compact(
        &base_info(10),
        base.as_slice(),
        &again,
        &mut out,
        Vec::new(),
        &CompactOptions::default(),
    )
    .unwrap();
    assert_eq!(report.revision, m.revision);
    assert!(report.events_skipped > 0);
    // A second copy with another value at one of its revisions.
    let mut events = druid_etcd_db::decode_delta(&d[1].data).unwrap();
    events[0].kv.value = b"changed".to_vec();
    let mut info = d[1].info.clone();
    info.name = "Incr-resent.gz".into();
    again[2] = DeltaInput {
        info,
        data: encode_delta(&events, "t"),
    };
    let err = refused(&base, &again, &CompactOptions::default());
    assert!(matches!(err, CompactError::Overlap { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("Incr-resent.gz") && text.contains(&d[1].info.name),
        "{text}"
    );
}

#[test]
fn an_overlap_that_disagrees_is_refused() {
    let (_, base, d) = simple();
    // Re-send the base's last revision with another value.
    let events = vec![Event {
        kind: EventType::Put,
        kv: KeyValue {
            key: key_name(9 % 9),
            create_revision: 10,
            mod_revision: 10,
            version: 2,
            value: b"other".to_vec(),
            lease: 0,
        },
    }];
    let overlapping = DeltaInput {
        info: SnapshotInfo {
            name: "Incr-00000010-00000010-1.gz".into(),
            start_revision: 10,
            last_revision: 10,
        },
        data: encode_delta(&events, "t"),
    };
    let mut all = vec![overlapping];
    all.extend(d);
    let err = refused(&base, &all, &CompactOptions::default());
    assert!(matches!(err, CompactError::Overlap { .. }), "{err}");
    assert!(
        err.to_string().contains("Incr-00000010-00000010-1.gz"),
        "{err}"
    );
}

#[test]
fn events_that_do_not_fit_the_name_are_refused() {
    let (_, base, mut d) = simple();
    d[0].info.last_revision += 1;
    let err = refused(&base, &d, &CompactOptions::default());
    assert!(
        err.to_string()
            .contains("its name says it ends at revision"),
        "{err}"
    );
    let (_, base, mut d) = simple();
    let n = d[1].data.len();
    d[1].data[n / 2] ^= 1;
    let err = refused(&base, &d, &CompactOptions::default());
    assert!(matches!(err, CompactError::Delta { .. }), "{err}");
    assert!(err.to_string().contains(&d[1].info.name), "{err}");
}

#[test]
fn a_damaged_base_is_refused_with_its_name() {
    let (_, mut base, d) = simple();
    base.truncate(4096 * 3);
    let err = refused(&base, &d, &CompactOptions::default());
    assert!(matches!(err, CompactError::Base { .. }), "{err}");
    assert!(err.to_string().contains("Full-00000000-00000010"), "{err}");
}

#[test]
fn an_oversized_delta_is_refused_before_it_is_read() {
    let (_, base, d) = simple();
    let options = CompactOptions {
        max_delta_bytes: 10,
        ..CompactOptions::default()
    };
    let err = refused(&base, &d, &options);
    assert!(matches!(err, CompactError::DeltaTooLarge { .. }), "{err}");
}

#[test]
fn an_output_that_lost_or_changed_a_key_does_not_match_the_expected_content() {
    // Keys with leases, some overwritten and deleted after the base.
    let ops: Vec<Op> = [Op::Grant { ttl: 60 }]
        .into_iter()
        .chain((0..60u8).map(|i| match i % 7 {
            3 => Op::Delete { key: i % 11 },
            _ => Op::Put {
                key: i % 11,
                value: vec![i; 5],
                lease: (i % 5 == 0).then_some(0),
            },
        }))
        .collect();
    let (m, base, d, _) = scenario(&ops, 20, 1, &[7, 9]);
    let base_rev = d.first().unwrap().info.start_revision - 1;
    let options = CompactOptions::default();
    let mut out = Vec::new();
    compact(
        &base_info(base_rev),
        base.as_slice(),
        &d,
        &mut out,
        Vec::new(),
        &options,
    )
    .unwrap();
    let expected = expected_content(
        &base_info(base_rev),
        base.as_slice(),
        &d,
        Vec::new(),
        &options,
    )
    .unwrap();
    assert_eq!(expected.keys, m.live.len() as u64);
    assert!(
        !expected.leases.is_empty(),
        "the scenario has keys with leases"
    );
    let check = |db: &[u8]| {
        let (found, leases) = content_of(&Db::open(db).unwrap()).unwrap();
        expected.mismatch(&found, &leases)
    };
    assert_eq!(check(&out), None, "the real output matches");

    // One key dropped: the count says so.
    let lost = tampered(&out, &mut |i, v| (i != 2).then_some(v), &|_| true);
    Db::open(lost.as_slice()).unwrap().check().unwrap();
    let why = check(&lost).unwrap();
    assert!(
        why.contains(&format!("{} live keys", m.live.len() - 1)),
        "{why}"
    );

    // One value changed, re-encoded: the digest says so.
    let changed = tampered(
        &out,
        &mut |i, v| {
            let mut kv = KeyValue::decode(v.as_slice()).unwrap();
            if i == 3 {
                kv.value.push(b'!');
            }
            Some(kv.encode_to_vec())
        },
        &|_| true,
    );
    let why = check(&changed).unwrap();
    assert!(why.contains("differ"), "{why}");

    // Re-encoding alone (no field changed) still matches.
    let reencoded = tampered(
        &out,
        &mut |_, v| Some(KeyValue::decode(v.as_slice()).unwrap().encode_to_vec()),
        &|_| true,
    );
    assert_eq!(check(&reencoded), None);

    // A lease that live keys name, dropped from the lease bucket.
    let leaseless = tampered(&out, &mut |_, v| Some(v), &|_| false);
    let why = check(&leaseless).unwrap();
    assert!(why.contains("lease"), "{why}");
}
