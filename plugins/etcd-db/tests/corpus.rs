//! The fuzz corpus: real inputs kept in `tests/corpus/` (a full snapshot
//! and its deltas from a real etcd 3.4 and the real sidecar, see the
//! corpus README), each mutated at random (bit flips, truncation,
//! overwritten ranges). Reading, checking, decoding and compacting a
//! mutated input is an error or a result, never a panic or a hang; a
//! mutated delta is always refused (its hash).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::path::{Path, PathBuf};

use druid_etcd_db::{
    CompactOptions, Db, DeltaInput, SnapshotInfo, compact, decode_delta, split_snapshot,
};
use proptest::prelude::*;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The corpus: the base (snapshot stream) and the deltas, in order.
fn corpus() -> (SnapshotInfo, Vec<u8>, Vec<DeltaInput<Vec<u8>>>) {
    let mut base = None;
    let mut deltas = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let parts: Vec<&str> = name.split('-').collect();
        if parts.len() < 4 {
            continue;
        }
        let (start, last): (i64, i64) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
        let info = SnapshotInfo {
            name: name.clone(),
            start_revision: start,
            last_revision: last,
        };
        let data = std::fs::read(corpus_dir().join(&name)).unwrap();
        if name.starts_with("Full-") {
            base = Some((info, data));
        } else if name.starts_with("Incr-") {
            deltas.push(DeltaInput { info, data });
        }
    }
    let (info, data) = base.expect("the corpus holds a full snapshot");
    assert!(!deltas.is_empty(), "the corpus holds deltas");
    (info, data, deltas)
}

#[test]
fn the_corpus_itself_is_sound_and_compacts() {
    let (info, base, deltas) = corpus();
    let (db, _) = split_snapshot(&base).unwrap();
    Db::open(db).unwrap().check().unwrap();
    for d in &deltas {
        assert!(
            !decode_delta(&d.data).unwrap().is_empty(),
            "{}",
            d.info.name
        );
    }
    let mut out = Vec::new();
    let report = compact(
        &info,
        base.as_slice(),
        &deltas,
        &mut out,
        Vec::new(),
        &CompactOptions::default(),
    )
    .unwrap();
    assert_eq!(report.revision, deltas.last().unwrap().info.last_revision);
    Db::open(&out[..report.db_bytes as usize])
        .unwrap()
        .check()
        .unwrap();
}

/// A mutation of an input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Truncate { at: usize },
    Overwrite { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
    ]
}

fn mutate(data: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut out = data.to_vec();
    for m in ms {
        if out.is_empty() {
            break;
        }
        match m {
            Mutation::Flip { at, bit } => {
                let i = at % out.len();
                out[i] ^= 1 << bit;
            }
            Mutation::Truncate { at } => out.truncate(at % out.len()),
            Mutation::Overwrite { at, bytes } => {
                let i = at % out.len();
                for (j, b) in bytes.iter().enumerate() {
                    if let Some(x) = out.get_mut(i + j) {
                        *x = *b;
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// A damaged base: every operation ends with a result or an error.
    #[test]
    fn a_mutated_base_never_panics(ms in proptest::collection::vec(mutation(), 1..4)) {
        let (info, base, deltas) = corpus();
        let bad = mutate(&base, &ms);
        if let Ok(db) = Db::open(bad.as_slice()) {
            let _ = db.check();
            if let Ok(buckets) = db.buckets() {
                for name in buckets {
                    if let Ok(Some(b)) = db.bucket(&name) {
                        for e in db.iter(&b) {
                            if e.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            let _ = db.last_revision();
        }
        let options = CompactOptions { sort_memory_bytes: 1, ..CompactOptions::default() };
        let _ = compact(&info, bad.as_slice(), &deltas, Vec::new(), Vec::new(), &options);
    }

    /// A damaged delta is refused: its hash no longer matches, or the
    /// mutation changed nothing.
    #[test]
    fn a_mutated_delta_is_refused(which in any::<usize>(), ms in proptest::collection::vec(mutation(), 1..4)) {
        let (info, base, mut deltas) = corpus();
        let i = which % deltas.len();
        let original = deltas[i].data.clone();
        deltas[i].data = mutate(&original, &ms);
        let decoded = decode_delta(&deltas[i].data);
        let result = compact(&info, base.as_slice(), &deltas, Vec::new(), Vec::new(), &CompactOptions::default());
        if deltas[i].data == original {
            prop_assert!(decoded.is_ok() && result.is_ok());
        } else {
            prop_assert!(decoded.is_err(), "a damaged delta decoded");
            prop_assert!(result.is_err(), "a damaged delta was compacted");
        }
    }
}
