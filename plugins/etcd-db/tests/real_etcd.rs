//! Reads databases written by a real etcd 3.4: snapshots taken with
//! `etcdctl snapshot save` and the live `member/snap/db` of a stopped
//! member. The writes are known (puts, overwrites, deletes, a prefix
//! delete, transactions, leases, a compaction), so every revision key of the
//! `key` bucket can be accounted for.
//!
//! The etcd scenario runs once per test binary (the first test to need it
//! starts it); each test asserts one aspect of its results.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on error"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use druid_etcd_db::{
    Db, Error, KEY_BUCKET, LEASE_BUCKET, META_BUCKET, Prefix, ReadAt, Revision, SNAPSHOT_HASH_LEN,
    revision_of_key, split_snapshot,
};
use druid_test_support::{EtcdCluster, find_binary, run_dir};
use proptest::prelude::*;

const BULK_TXNS: usize = 10;
const BULK_PER_TXN: usize = 100;
const BIG_VALUE_LEN: usize = 60_000;

/// What the scenario did and what it left behind.
struct Scenario {
    /// The first snapshot (stream bytes: database plus SHA-256 trailer).
    snap1: Vec<u8>,
    snap1_path: PathBuf,
    /// etcd's revision when the first snapshot was taken.
    rev1: i64,
    /// Revision keys the writes before the first snapshot made.
    entries1: usize,
    /// Tombstones among them.
    tombstones1: usize,
    /// The revision of the put of the big value.
    big_rev: i64,
    /// The lease that is still granted.
    lease: u64,
    /// The second snapshot: after a compaction at `rev1` and three puts.
    snap2: Vec<u8>,
    rev2: i64,
    /// The live database of the stopped member.
    live_db: PathBuf,
    /// Keeps the (stopped) member's directory.
    _cluster: EtcdCluster,
}

struct Etcdctl {
    bin: PathBuf,
    endpoints: String,
}

impl Etcdctl {
    fn run_with(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new(&self.bin)
            .arg(format!("--endpoints={}", self.endpoints))
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn run(&self, args: &[&str]) -> String {
        self.run_with(args, None)
    }

    /// The header revision of a JSON response.
    fn revision_of(json: &str) -> i64 {
        let at = json.find("\"revision\":").expect("revision in response") + 11;
        json[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    }

    fn put(&self, key: &str, value: &str) -> i64 {
        Self::revision_of(&self.run(&["put", "-w", "json", key, value]))
    }

    /// etcd's current revision.
    fn revision(&self) -> i64 {
        Self::revision_of(&self.run(&["get", "-w", "json", "no-such-key"]))
    }

    /// A transaction of puts, all in one revision.
    fn txn_puts(&self, puts: &[(String, String)]) -> i64 {
        let mut input = String::from("\n");
        for (k, v) in puts {
            input.push_str(&format!("put {k} {v}\n"));
        }
        input.push_str("\n\n");
        Self::revision_of(&self.run_with(&["txn", "-w", "json"], Some(&input)))
    }

    fn grant(&self) -> u64 {
        let out = self.run(&["lease", "grant", "600"]);
        let id = out.split_whitespace().nth(1).unwrap();
        u64::from_str_radix(id, 16).unwrap()
    }

    fn snapshot(&self, path: &Path) -> Vec<u8> {
        self.run(&["snapshot", "save", &path.display().to_string()]);
        std::fs::read(path).unwrap()
    }
}

fn scenario() -> &'static Scenario {
    static CELL: OnceLock<Scenario> = OnceLock::new();
    CELL.get_or_init(run_scenario)
}

fn run_scenario() -> Scenario {
    let cluster = EtcdCluster::start(1).unwrap();
    let ctl = Etcdctl {
        bin: find_binary("etcdctl", "etcd").unwrap(),
        endpoints: cluster.endpoints(),
    };
    let dir = run_dir().unwrap().join("etcd-db-snapshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut entries = 0;
    let mut tombstones = 0;

    // Transactions: BULK_PER_TXN puts share one main revision.
    for t in 0..BULK_TXNS {
        let puts: Vec<_> = (0..BULK_PER_TXN)
            .map(|i| {
                let n = t * BULK_PER_TXN + i;
                (format!("bulk/{n:04}"), format!("value-{n}"))
            })
            .collect();
        ctl.txn_puts(&puts);
        entries += BULK_PER_TXN;
    }
    // Puts and overwrites.
    for k in ["a", "b", "c", "d", "e"] {
        ctl.put(k, "first");
        entries += 1;
    }
    for round in 0..2 {
        for k in ["a", "b"] {
            ctl.put(k, &format!("again-{round}"));
            entries += 1;
        }
    }
    // A value that needs overflow pages.
    let big_rev = ctl.put("big", &"x".repeat(BIG_VALUE_LEN));
    entries += 1;
    // A delete (a tombstone) and a delete of nothing (no revision).
    ctl.run(&["del", "c"]);
    entries += 1;
    tombstones += 1;
    ctl.run(&["del", "no-such-key"]);
    // A prefix delete: three tombstones in one revision.
    for k in ["p/1", "p/2", "p/3"] {
        ctl.put(k, "v");
        entries += 1;
    }
    ctl.run(&["del", "--prefix", "p/"]);
    entries += 3;
    tombstones += 3;
    // Leases: one kept with a key on it, one revoked (deleting its key).
    let lease = ctl.grant();
    ctl.run(&["put", &format!("--lease={lease:x}"), "leased", "v"]);
    entries += 1;
    let revoked = ctl.grant();
    ctl.run(&["put", &format!("--lease={revoked:x}"), "doomed", "v"]);
    entries += 1;
    ctl.run(&["lease", "revoke", &format!("{revoked:x}")]);
    entries += 1;
    tombstones += 1;

    let rev1 = ctl.revision();
    let snap1_path = dir.join("snap1.db");
    let snap1 = ctl.snapshot(&snap1_path);

    // Compact everything up to rev1, then three more puts.
    ctl.run(&["compact", &rev1.to_string(), "--physical"]);
    for k in ["n1", "n2", "n3"] {
        ctl.put(k, "new");
    }
    let rev2 = ctl.revision();
    let snap2 = ctl.snapshot(&dir.join("snap2.db"));

    // Stop the member (gracefully: etcd commits its last batch).
    let member = &cluster.members()[0];
    member.process().stop();
    assert!(member.process().exited().is_some());
    let live_db = member.data_dir().join("member/snap/db");

    Scenario {
        snap1,
        snap1_path,
        rev1,
        entries1: entries,
        tombstones1: tombstones,
        big_rev,
        lease,
        snap2,
        rev2,
        live_db,
        _cluster: cluster,
    }
}

/// Every revision key of the `key` bucket, in iteration order, with its
/// value.
fn revision_keys<R: ReadAt>(db: &Db<R>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let bucket = db.bucket(KEY_BUCKET).unwrap().expect("key bucket");
    db.iter(&bucket)
        .map(|e| {
            let e = e.unwrap();
            assert!(!e.is_bucket);
            (e.key, e.value)
        })
        .collect()
}

#[test]
fn a_snapshot_has_every_revision_in_order() {
    let s = scenario();
    let (db_bytes, _hash) = split_snapshot(&s.snap1).unwrap();
    let db = Db::open(db_bytes).unwrap();
    assert_eq!(db.len_bytes(), db_bytes.len() as u64);

    let keys = revision_keys(&db);
    assert_eq!(keys.len(), s.entries1);
    let revs: Vec<_> = keys
        .iter()
        .map(|(k, _)| revision_of_key(k).unwrap())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0].0 < w[1].0),
        "keys not ascending"
    );
    assert!(
        revs.windows(2).all(|w| w[0].revision < w[1].revision),
        "revisions not ascending"
    );
    assert_eq!(revs.iter().filter(|r| r.tombstone).count(), s.tombstones1);
    // Every revision from 2 (etcd starts at 1, with no key) to rev1 is
    // there: no compaction yet.
    let mains: BTreeSet<i64> = revs.iter().map(|r| r.revision.main).collect();
    assert_eq!(mains, (2..=s.rev1).collect());
    // The transactions: one main revision, BULK_PER_TXN sub revisions.
    let first_txn: Vec<_> = revs.iter().filter(|r| r.revision.main == 2).collect();
    assert_eq!(first_txn.len(), BULK_PER_TXN);
    assert_eq!(
        first_txn.last().unwrap().revision.sub,
        BULK_PER_TXN as i64 - 1
    );
    // The prefix delete: three tombstones in one revision.
    let prefix_del = revs.iter().find(|r| r.tombstone && r.revision.sub == 2);
    assert!(prefix_del.is_some(), "no multi-key delete found");

    assert_eq!(db.last_revision().unwrap(), Some(s.rev1));
    let last = db
        .last(&db.bucket(KEY_BUCKET).unwrap().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(last.key, keys.last().unwrap().0);
}

#[test]
fn a_snapshot_passes_the_check_and_has_etcds_buckets() {
    let s = scenario();
    let db = Db::open(&s.snap1).unwrap();
    let report = db.check().unwrap();
    assert_eq!(report.unreachable_pages, 0);
    assert_eq!(
        report.reachable_pages + report.free_pages,
        report.high_water_mark
    );
    assert!(report.keys >= s.entries1 as u64, "{report}");
    assert!(
        report.max_depth >= 2,
        "key bucket should be a tree: {report}"
    );

    let names = db.buckets().unwrap();
    for b in [
        KEY_BUCKET,
        META_BUCKET,
        LEASE_BUCKET,
        b"members",
        b"cluster",
    ] {
        assert!(names.iter().any(|n| n == b), "no bucket {b:?} in {names:?}");
    }
    let ci = db.consistent_index().unwrap().expect("consistent_index");
    assert!(ci > s.rev1 as u64, "consistent index {ci}");
    assert_eq!(db.finished_compact_revision().unwrap(), None);
    assert_eq!(db.scheduled_compact_revision().unwrap(), None);

    // The meta bucket tells which minor version wrote it (the sidecar
    // refuses a restore onto an older one): 3.4 neither a term nor a
    // storage version, 3.5 a term, 3.6 and later `storageVersion` X.Y.0.
    let printed = std::process::Command::new(find_binary("etcdctl", "etcd").unwrap())
        .env("ETCDCTL_API", "3")
        .arg("version")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    let api = printed
        .lines()
        .find_map(|l| l.strip_prefix("API version:"))
        .unwrap_or_else(|| panic!("no API version in {printed:?}"))
        .trim()
        .to_string();
    let minor: u32 = api.strip_prefix("3.").unwrap().parse().unwrap();
    let term = db.term().unwrap();
    let storage = db.storage_version().unwrap();
    // Every version records the cluster's version in the `cluster` bucket
    // (a single member decides it at once).
    assert_eq!(
        db.cluster_version().unwrap().as_deref(),
        Some(format!("{api}.0").as_str()),
        "clusterVersion"
    );
    match minor {
        4 => assert_eq!((term, storage), (None, None)),
        5 => {
            assert!(term.is_some_and(|t| t >= 1), "etcd 3.5 writes the term");
            assert_eq!(storage, None);
        }
        _ => {
            assert!(term.is_some_and(|t| t >= 1));
            assert_eq!(storage.as_deref(), Some(format!("{api}.0").as_str()));
        }
    }
}

#[test]
fn values_are_read_across_overflow_pages() {
    let s = scenario();
    let db = Db::open(&s.snap1).unwrap();
    let key_bucket = db.bucket(KEY_BUCKET).unwrap().unwrap();
    let key = Revision {
        main: s.big_rev,
        sub: 0,
    }
    .to_key();
    let entry = db.get(&key_bucket, &key).unwrap().expect("big value");
    // An mvccpb.KeyValue holding the key "big" and the value.
    assert!(entry.value.len() > BIG_VALUE_LEN);
    assert!(entry.value.windows(3).any(|w| w == b"big"));
    assert_eq!(
        entry.value.iter().filter(|b| **b == b'x').count(),
        BIG_VALUE_LEN
    );

    // The kept lease, by its id (8 bytes, big-endian).
    let leases = db.bucket(LEASE_BUCKET).unwrap().unwrap();
    let ids: Vec<_> = db.iter(&leases).map(|e| e.unwrap().key).collect();
    assert_eq!(ids, vec![s.lease.to_be_bytes().to_vec()]);
}

#[test]
fn a_snapshot_file_is_read_in_place() {
    let s = scenario();
    let file = std::fs::File::open(&s.snap1_path).unwrap();
    let len = file.size().unwrap();
    assert_eq!(len as usize, s.snap1.len());
    let db = Db::open(Prefix::new(&file, len - SNAPSHOT_HASH_LEN as u64)).unwrap();
    assert_eq!(db.last_revision().unwrap(), Some(s.rev1));
    db.check().unwrap();
    // The trailer does not get in the way either.
    let db = Db::open(file).unwrap();
    assert_eq!(db.last_revision().unwrap(), Some(s.rev1));
}

#[test]
fn after_a_compaction() {
    let s = scenario();
    let db1 = Db::open(&s.snap1).unwrap();
    let db2 = Db::open(&s.snap2).unwrap();
    db2.check().unwrap();
    let compacted = Revision {
        main: s.rev1,
        sub: 0,
    };
    assert_eq!(db2.finished_compact_revision().unwrap(), Some(compacted));
    assert_eq!(db2.scheduled_compact_revision().unwrap(), Some(compacted));
    assert_eq!(db2.last_revision().unwrap(), Some(s.rev2));
    assert!(db2.consistent_index().unwrap() > db1.consistent_index().unwrap());

    // Left: the newest revision of every live key (1000 bulk keys, a, b,
    // d, e, big, leased), no tombstones, and the three new puts.
    let keys = revision_keys(&db2);
    let mut revs: Vec<_> = keys
        .iter()
        .map(|(k, _)| revision_of_key(k).unwrap())
        .collect();
    // etcd 3.4.33, 3.5.15 and 3.6 keep a tombstone that sits exactly at
    // the compaction revision (so that a watch from there still sees the
    // delete); 3.4.23 drops it. Any other tombstone is gone on every version.
    revs.retain(|r| !(r.tombstone && r.revision.main == s.rev1));
    assert!(revs.iter().all(|r| !r.tombstone));
    let old = revs.iter().filter(|r| r.revision.main <= s.rev1).count();
    assert_eq!(old, BULK_TXNS * BULK_PER_TXN + 6);
    let new: Vec<_> = revs
        .iter()
        .filter(|r| r.revision.main > s.rev1)
        .map(|r| r.revision.main)
        .collect();
    assert_eq!(new, (s.rev1 + 1..=s.rev2).collect::<Vec<_>>());
}

#[test]
fn the_live_database_of_a_stopped_member() {
    let s = scenario();
    let file = std::fs::File::open(&s.live_db).unwrap();
    let db = Db::open(file).unwrap();
    // The live file is preallocated beyond its pages.
    assert!(db.source_size() >= db.len_bytes());
    assert_eq!(db.last_revision().unwrap(), Some(s.rev2));
    let report = db.check().unwrap();
    assert!(report.keys > 0, "{report}");
    assert_eq!(
        db.finished_compact_revision().unwrap().map(|r| r.main),
        Some(s.rev1)
    );
    let snap2 = Db::open(&s.snap2).unwrap();
    assert!(db.consistent_index().unwrap() >= snap2.consistent_index().unwrap());
}

#[test]
fn a_truncated_snapshot_is_an_error() {
    let s = scenario();
    let db_len = s.snap1.len() - SNAPSHOT_HASH_LEN;
    let page = Db::open(&s.snap1).unwrap().page_size() as usize;
    for cut in [0, 50, page, 2 * page, db_len / 2, db_len - page, db_len - 1] {
        let err = Db::open(&s.snap1[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::TooShort { .. } | Error::NoValidMeta { .. }),
            "cut at {cut}: {err}"
        );
    }
    let err = Db::open(&s.snap1[..db_len / 2]).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    Db::open(&s.snap1[..db_len]).unwrap().check().unwrap();
}

/// Opens, checks and walks every bucket of a (damaged) database: errors
/// are fine, panics are not, and a database that passes the check must be
/// readable.
fn exercise(bytes: &[u8]) {
    let Ok(db) = Db::open(bytes) else { return };
    let report = db.check_report().unwrap();
    let mut walk_ok = true;
    let mut stack = vec![db.root()];
    let mut buckets = 0;
    while let Some(b) = stack.pop() {
        walk_ok &= db.last(&b).is_ok();
        for e in db.iter(&b) {
            match e {
                Ok(e) => {
                    if let Ok(Some(nested)) = e.bucket() {
                        buckets += 1;
                        if buckets < 1000 {
                            stack.push(nested);
                        }
                    }
                }
                Err(_) => walk_ok = false,
            }
        }
    }
    let _ = db.last_revision();
    let _ = db.consistent_index();
    let _ = db.finished_compact_revision();
    if report.is_ok() {
        assert!(walk_ok, "check passed but the walk failed");
    }
}

#[derive(Debug, Clone)]
enum Damage {
    Xor(usize, u8),
    Set(usize, u8),
    Truncate(usize),
}

fn damage(len: usize, page: usize) -> impl Strategy<Value = Damage> {
    // Mostly page headers and element arrays, where damage matters most.
    let hot = (0..len / page, 0..128usize).prop_map(move |(p, o)| p * page + o);
    prop_oneof![
        4 => (hot.clone(), 1..=255u8).prop_map(|(o, x)| Damage::Xor(o, x)),
        2 => (hot, prop_oneof![Just(0u8), Just(0xFF), Just(1), Just(2)])
            .prop_map(|(o, v)| Damage::Set(o, v)),
        3 => (0..len, 1..=255u8).prop_map(|(o, x)| Damage::Xor(o, x)),
        1 => (0..len).prop_map(Damage::Truncate),
    ]
}

#[test]
fn damaged_snapshots_never_panic() {
    let s = scenario();
    let (db, _) = split_snapshot(&s.snap1).unwrap();
    let page = Db::open(db).unwrap().page_size() as usize;
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(
            &proptest::collection::vec(damage(db.len(), page), 1..5),
            |damages| {
                let mut bytes = db.to_vec();
                for d in damages {
                    match d {
                        Damage::Xor(o, x) => {
                            if let Some(b) = bytes.get_mut(o) {
                                *b ^= x;
                            }
                        }
                        Damage::Set(o, v) => {
                            if let Some(b) = bytes.get_mut(o) {
                                *b = v;
                            }
                        }
                        Damage::Truncate(n) => bytes.truncate(n),
                    }
                }
                exercise(&bytes);
                Ok(())
            },
        )
        .unwrap();
}
