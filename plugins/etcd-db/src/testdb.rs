//! Unit tests on hand-built databases: the layout as bbolt writes it, and
//! one test per kind of damage.

use crate::page::{BRANCH_PAGE, FREELIST_PAGE, LEAF_PAGE, META_PAGE, fnv1a64};
use crate::{Bucket, Db, Error, Prefix};
use proptest::prelude::*;

const PS: usize = 4096;

/// One leaf element: flags, key, value.
type Elem = (u32, Vec<u8>, Vec<u8>);

fn header(id: u64, flags: u16, count: u16, overflow: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(PS);
    p.extend(id.to_le_bytes());
    p.extend(flags.to_le_bytes());
    p.extend(count.to_le_bytes());
    p.extend(overflow.to_le_bytes());
    p
}

/// Pads `body` (header included) to whole pages and sets the overflow.
fn finish(mut body: Vec<u8>) -> Vec<u8> {
    let pages = body.len().div_ceil(PS).max(1);
    body.resize(pages * PS, 0);
    body[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    body
}

/// A leaf page as bbolt writes it: elements, then keys and values.
fn leaf_bytes(id: u64, elems: &[Elem]) -> Vec<u8> {
    let mut p = header(id, LEAF_PAGE, elems.len() as u16, 0);
    let mut data: Vec<u8> = Vec::new();
    for (i, (flags, k, v)) in elems.iter().enumerate() {
        let elem_off = 16 + i * 16;
        let pos = 16 + elems.len() * 16 + data.len() - elem_off;
        for w in [*flags, pos as u32, k.len() as u32, v.len() as u32] {
            p.extend(w.to_le_bytes());
        }
        data.extend(k);
        data.extend(v);
    }
    p.extend(data);
    p
}

fn leaf(id: u64, elems: &[Elem]) -> Vec<u8> {
    finish(leaf_bytes(id, elems))
}

fn branch(id: u64, elems: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let mut p = header(id, BRANCH_PAGE, elems.len() as u16, 0);
    let mut data: Vec<u8> = Vec::new();
    for (i, (k, child)) in elems.iter().enumerate() {
        let elem_off = 16 + i * 16;
        let pos = 16 + elems.len() * 16 + data.len() - elem_off;
        p.extend((pos as u32).to_le_bytes());
        p.extend((k.len() as u32).to_le_bytes());
        p.extend(child.to_le_bytes());
        data.extend(k);
    }
    p.extend(data);
    finish(p)
}

fn freelist(id: u64, ids: &[u64]) -> Vec<u8> {
    let mut p = header(id, FREELIST_PAGE, ids.len() as u16, 0);
    for i in ids {
        p.extend(i.to_le_bytes());
    }
    finish(p)
}

fn meta(id: u64, txid: u64, root: u64, freelist: u64, hwm: u64) -> Vec<u8> {
    let mut p = header(id, META_PAGE, 0, 0);
    let mut m = Vec::new();
    m.extend(0xED0C_DAEDu32.to_le_bytes());
    m.extend(2u32.to_le_bytes());
    m.extend((PS as u32).to_le_bytes());
    m.extend(0u32.to_le_bytes());
    m.extend(root.to_le_bytes());
    m.extend(0u64.to_le_bytes());
    m.extend(freelist.to_le_bytes());
    m.extend(hwm.to_le_bytes());
    m.extend(txid.to_le_bytes());
    let sum = fnv1a64(&m);
    m.extend(sum.to_le_bytes());
    p.extend(m);
    finish(p)
}

fn bucket_value(root: u64, inline: &[Elem]) -> Vec<u8> {
    let mut v = root.to_le_bytes().to_vec();
    v.extend(7u64.to_le_bytes());
    if root == 0 {
        v.extend(leaf_bytes(0, inline));
    }
    v
}

fn key(i: usize) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}

/// Lays pages out by the ids in their headers.
fn assemble(pages: Vec<Vec<u8>>) -> Vec<u8> {
    let mut file = Vec::new();
    for p in pages {
        let id = u64::from_le_bytes(p[..8].try_into().unwrap()) as usize;
        if file.len() < (id * PS) + p.len() {
            file.resize(id * PS + p.len(), 0);
        }
        file[id * PS..id * PS + p.len()].copy_from_slice(&p);
    }
    file
}

/// The standard test database:
/// - 0, 1: metas (txid 4 on page 0, 3 on page 1)
/// - 2: freelist [8]
/// - 3: root leaf: "big" -> bucket at 4, "inl" -> inline bucket {a:1, b:2},
///   "plain" -> value
/// - 4: branch k00 -> 5, k50 -> 6
/// - 5: leaf k00..k49
/// - 6..=7: leaf k50..k99, k99's value 5000 bytes (one overflow page)
/// - 8: free; high-water mark 9
struct Layout {
    pages: Vec<Vec<u8>>,
}

impl Layout {
    fn new() -> Self {
        let left: Vec<Elem> = (0..50).map(|i| (0, key(i), vec![b'v'; 4])).collect();
        let mut right: Vec<Elem> = (50..100).map(|i| (0, key(i), vec![b'w'; 4])).collect();
        right[49].2 = vec![b'x'; 5000];
        let root = vec![
            (1, b"big".to_vec(), bucket_value(4, &[])),
            (
                1,
                b"inl".to_vec(),
                bucket_value(
                    0,
                    &[
                        (0, b"a".to_vec(), b"1".to_vec()),
                        (0, b"b".to_vec(), b"2".to_vec()),
                    ],
                ),
            ),
            (0, b"plain".to_vec(), b"value".to_vec()),
        ];
        Layout {
            pages: vec![
                meta(0, 4, 3, 2, 9),
                meta(1, 3, 3, 2, 9),
                freelist(2, &[8]),
                leaf(3, &root),
                branch(4, &[(key(0), 5), (key(50), 6)]),
                leaf(5, &left),
                leaf(6, &right),
                finish(header(8, FREELIST_PAGE, 0, 0)),
            ],
        }
    }

    fn set(mut self, id: u64, page: Vec<u8>) -> Self {
        self.pages
            .retain(|p| u64::from_le_bytes(p[..8].try_into().unwrap()) != id);
        self.pages.push(page);
        self
    }

    fn bytes(self) -> Vec<u8> {
        assemble(self.pages)
    }
}

fn standard() -> Vec<u8> {
    Layout::new().bytes()
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn collect(db: &Db<&Vec<u8>>, b: &Bucket) -> Result<Pairs, Error> {
    db.iter(b).map(|e| e.map(|e| (e.key, e.value))).collect()
}

fn problems(bytes: &Vec<u8>) -> Vec<String> {
    let db = Db::open(bytes).unwrap();
    let report = db.check_report().unwrap();
    assert_eq!(
        report.problems.len(),
        (report.problem_count as usize).min(1000)
    );
    assert!(db.check().is_err());
    report.problems.iter().map(|p| p.to_string()).collect()
}

fn assert_problem(bytes: &Vec<u8>, needle: &str) {
    let p = problems(bytes);
    assert!(
        p.iter().any(|m| m.contains(needle)),
        "no {needle:?} in {p:#?}"
    );
}

#[test]
fn reads_the_standard_layout() {
    let bytes = standard();
    assert_eq!(bytes.len(), 9 * PS);
    let db = Db::open(&bytes).unwrap();
    assert_eq!(db.meta().txid, 4);
    assert_eq!(db.meta().page, 0);
    assert_eq!(db.meta().high_water_mark, 9);
    assert_eq!(db.other_meta().unwrap().txid, 3);
    assert_eq!(
        db.buckets().unwrap(),
        vec![b"big".to_vec(), b"inl".to_vec()]
    );

    let big = db.bucket(b"big").unwrap().unwrap();
    assert_eq!(big.root_page(), Some(4));
    assert_eq!(big.sequence(), 7);
    let all = collect(&db, &big).unwrap();
    assert_eq!(all.len(), 100);
    assert!(all.iter().enumerate().all(|(i, (k, _))| *k == key(i)));
    assert_eq!(all[99].1.len(), 5000);

    let last = db.last(&big).unwrap().unwrap();
    assert_eq!((last.key, last.value.len()), (key(99), 5000));
    let got = db.get(&big, &key(42)).unwrap().unwrap();
    assert_eq!(got.value, b"vvvv");
    assert_eq!(db.get(&big, &key(50)).unwrap().unwrap().value, b"wwww");
    assert!(db.get(&big, b"k420").unwrap().is_none());
    assert!(db.get(&big, b"a").unwrap().is_none());
    assert!(db.get(&big, b"z").unwrap().is_none());

    let inl = db.bucket(b"inl").unwrap().unwrap();
    assert!(inl.is_inline());
    assert_eq!(
        collect(&db, &inl).unwrap(),
        vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec())
        ]
    );
    assert_eq!(db.last(&inl).unwrap().unwrap().key, b"b");
    assert_eq!(db.get(&inl, b"b").unwrap().unwrap().value, b"2");

    // A plain key is not a bucket; a missing bucket is None.
    assert!(db.bucket(b"plain").unwrap().is_none());
    assert!(db.bucket(b"nope").unwrap().is_none());
    let entry = db.get(&db.root(), b"inl").unwrap().unwrap();
    assert!(entry.bucket().unwrap().unwrap().is_inline());

    let report = db.check().unwrap();
    assert_eq!(report.reachable_pages, 8);
    assert_eq!(report.free_pages, 1);
    assert_eq!(report.unreachable_pages, 0);
    assert_eq!(
        (report.buckets, report.inline_buckets, report.keys),
        (2, 1, 103)
    );
    assert_eq!(report.max_depth, 2);
}

#[test]
fn a_snapshot_trailer_or_preallocated_tail_is_ignored() {
    let mut bytes = standard();
    bytes.extend([0xAB; 32]);
    Db::open(&bytes).unwrap().check().unwrap();
    let db = Db::open(Prefix::new(&bytes, 9 * PS as u64)).unwrap();
    assert_eq!(db.source_size(), 9 * PS as u64);
    let err = Db::open(Prefix::new(&bytes, 9 * PS as u64 - 1)).unwrap_err();
    assert!(matches!(err, Error::TooShort { .. }), "{err}");
}

#[test]
fn picks_the_valid_meta_with_the_highest_txid() {
    // Meta 0 damaged: meta 1 (txid 3) is used, found by probing page sizes.
    let mut bytes = standard();
    bytes[16 + 50] ^= 1;
    let db = Db::open(&bytes).unwrap();
    assert_eq!((db.meta().page, db.meta().txid), (1, 3));
    assert!(db.other_meta().unwrap_err().contains("checksum"));

    // Meta 1 newer but damaged: meta 0.
    let mut bytes = Layout::new().set(1, meta(1, 9, 3, 2, 9)).bytes();
    assert_eq!(Db::open(&bytes).unwrap().meta().txid, 9);
    bytes[PS + 16 + 48] ^= 1;
    assert_eq!(Db::open(&bytes).unwrap().meta().txid, 4);

    // Both damaged.
    bytes[16] ^= 1;
    let err = Db::open(&bytes).unwrap_err().to_string();
    assert!(err.contains("magic") && err.contains("meta 1"), "{err}");
}

#[test]
fn short_and_foreign_inputs_are_errors() {
    let bytes = standard();
    for len in [0, 10, 79, 80, PS, 2 * PS, 5 * PS + 17, 9 * PS - 1] {
        let err = Db::open(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err, Error::TooShort { .. } | Error::NoValidMeta { .. }),
            "{len}: {err}"
        );
    }
    let err = Db::open(&vec![0u8; 3 * PS]).unwrap_err().to_string();
    assert!(err.contains("not a bbolt file"), "{err}");
}

#[test]
fn a_cycle_is_an_error() {
    let bytes = Layout::new()
        .set(4, branch(4, &[(key(0), 5), (key(50), 4)]))
        .bytes();
    let db = Db::open(&bytes).unwrap();
    let big = db.bucket(b"big").unwrap().unwrap();
    let err = collect(&db, &big).unwrap_err().to_string();
    assert!(err.contains("page 4") && err.contains("cycle"), "{err}");
    let err = db.last(&big).unwrap_err().to_string();
    assert!(err.contains("cycle"), "{err}");
    assert_problem(&bytes, "page 4: multiple references");
}

#[test]
fn a_shared_page_is_an_error() {
    let bytes = Layout::new()
        .set(4, branch(4, &[(key(0), 5), (key(50), 5)]))
        .bytes();
    let db = Db::open(&bytes).unwrap();
    let big = db.bucket(b"big").unwrap().unwrap();
    let err = collect(&db, &big).unwrap_err().to_string();
    assert!(
        err.contains("page 5") && err.contains("does not follow"),
        "{err}"
    );
    let p = problems(&bytes);
    assert!(
        p.iter().any(|m| m.contains("page 5: multiple references")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("page 6: unreachable unfreed")),
        "{p:#?}"
    );
}

#[test]
fn an_exponential_dag_ends_quickly() {
    // Pages 3..=12 are branches whose 200 children are all the next page;
    // page 13 is a leaf. Walking it as a tree would take 200^10 steps.
    let mut layout = Layout::new()
        .set(0, meta(0, 4, 3, 2, 14))
        .set(1, meta(1, 3, 3, 2, 14));
    layout.pages.retain(|p| p[0] <= 2);
    for id in 3..13u64 {
        let elems: Vec<_> = (0..200).map(|i| (key(i), id + 1)).collect();
        layout.pages.push(branch(id, &elems));
    }
    layout
        .pages
        .push(leaf(13, &[(0, b"k".to_vec(), b"v".to_vec())]));
    let bytes = layout.bytes();
    let db = Db::open(&bytes).unwrap();
    assert!(collect(&db, &db.root()).is_err());
    assert_problem(&bytes, "multiple references");
}

#[test]
fn a_deep_chain_is_an_error_without_recursion() {
    let depth = 200u64;
    let hwm = 3 + depth + 1;
    let mut pages = vec![
        meta(0, 4, 3, 2, hwm),
        meta(1, 3, 3, 2, hwm),
        freelist(2, &[]),
    ];
    for id in 3..3 + depth {
        pages.push(branch(id, &[(b"k".to_vec(), id + 1)]));
    }
    pages.push(leaf(3 + depth, &[(0, b"k".to_vec(), b"v".to_vec())]));
    let bytes = assemble(pages);
    let db = Db::open(&bytes).unwrap();
    let err = collect(&db, &db.root()).unwrap_err().to_string();
    assert!(err.contains("deeper than 64"), "{err}");
    assert!(db.last(&db.root()).is_err());
    assert!(db.get(&db.root(), b"k").is_err());
    let p = problems(&bytes);
    assert!(p.iter().any(|m| m.contains("deeper than 64")), "{p:#?}");
    assert!(
        p.iter().any(|m| m.contains("unreachable unfreed")),
        "{p:#?}"
    );
}

#[test]
fn elements_outside_the_page_are_errors() {
    let mut bytes = standard();
    // Leaf 5, element 3: pos = u32::MAX.
    let off = 5 * PS + 16 + 3 * 16 + 4;
    bytes[off..off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let db = Db::open(&bytes).unwrap();
    let big = db.bucket(b"big").unwrap().unwrap();
    let err = collect(&db, &big).unwrap_err().to_string();
    assert!(
        err.contains("page 5: element 3") && err.contains("outside"),
        "{err}"
    );
    assert_problem(&bytes, "page 5: element 3");

    // Leaf 5: an absurd count.
    let mut bytes = standard();
    bytes[5 * PS + 10..5 * PS + 12].copy_from_slice(&0xFFFFu16.to_le_bytes());
    assert_problem(&bytes, "page 5: 65535 elements");
}

#[test]
fn header_damage_is_reported_by_page() {
    // Page id in the header does not match.
    let mut bytes = standard();
    bytes[5 * PS] = 9;
    assert_problem(&bytes, "page 5: page header carries id 9");

    // Overflow past the high-water mark.
    let mut bytes = standard();
    bytes[6 * PS + 12..6 * PS + 16].copy_from_slice(&1000u32.to_le_bytes());
    assert_problem(&bytes, "page 6: 1000 overflow pages run past");

    // A branch child beyond the high-water mark.
    let bytes = Layout::new()
        .set(4, branch(4, &[(key(0), 5), (key(50), 60)]))
        .bytes();
    assert_problem(&bytes, "page 60: out of bounds: referenced from page 4");

    // A freelist page type.
    let bytes = Layout::new().set(5, freelist(5, &[])).bytes();
    assert_problem(
        &bytes,
        "page 5: expected a branch or leaf page, found freelist",
    );
}

#[test]
fn key_order_is_checked() {
    // Branch key differs from the child's first key.
    let bytes = Layout::new()
        .set(4, branch(4, &[(key(0), 5), (b"k4".to_vec(), 6)]))
        .bytes();
    assert_problem(&bytes, "page 6: first key 6b3530 differs from the key 6b34");

    // Keys out of order inside a leaf.
    let mut left: Vec<Elem> = (0..50).map(|i| (0, key(i), b"v".to_vec())).collect();
    left.swap(10, 11);
    let bytes = Layout::new().set(5, leaf(5, &left)).bytes();
    assert_problem(&bytes, "page 5: keys out of order: element 11");
    let db = Db::open(&bytes).unwrap();
    let big = db.bucket(b"big").unwrap().unwrap();
    assert!(collect(&db, &big).is_err());

    // A left child holding a key at or above its right sibling's.
    let mut left: Vec<Elem> = (0..50).map(|i| (0, key(i), b"v".to_vec())).collect();
    left.push((0, key(77), b"v".to_vec()));
    let bytes = Layout::new().set(5, leaf(5, &left)).bytes();
    assert_problem(&bytes, "page 5: element 50 key 6b3737 is not below 6b3530");
}

#[test]
fn freelist_accounting_is_checked() {
    // Page 8 neither used nor free.
    let bytes = Layout::new().set(2, freelist(2, &[])).bytes();
    let db = Db::open(&bytes).unwrap();
    let report = db.check_report().unwrap();
    assert_eq!(report.unreachable_pages, 1);
    assert_eq!(
        report.problems[0].to_string(),
        "page 8: unreachable unfreed (neither in use nor on the freelist)"
    );
    let err = db.check().unwrap_err().to_string();
    assert!(
        err.contains("1 problems") && err.contains("page 8"),
        "{err}"
    );

    // A page in use and free; a free page beyond the high-water mark.
    let bytes = Layout::new().set(2, freelist(2, &[5, 8, 8, 99])).bytes();
    let p = problems(&bytes);
    for needle in [
        "page 5: reachable freed",
        "page 8: listed twice",
        "page 2: the freelist lists page 99",
    ] {
        assert!(
            p.iter().any(|m| m.contains(needle)),
            "no {needle:?} in {p:#?}"
        );
    }

    // No persisted freelist: unreachable pages count as free.
    let bytes = Layout::new()
        .set(0, meta(0, 4, 3, u64::MAX, 9))
        .set(1, meta(1, 3, 3, u64::MAX, 9))
        .bytes();
    let report = Db::open(&bytes).unwrap().check().unwrap();
    assert!(!report.freelist_persisted);
    assert_eq!((report.reachable_pages, report.free_pages), (7, 2));
}

#[test]
fn an_inline_bucket_inside_an_inline_bucket_is_reported() {
    let inner = bucket_value(0, &[(0, b"x".to_vec(), b"y".to_vec())]);
    let outer = bucket_value(0, &[(1, b"sub".to_vec(), inner)]);
    let root = vec![
        (1, b"big".to_vec(), bucket_value(4, &[])),
        (1, b"inl".to_vec(), outer),
    ];
    let bytes = Layout::new().set(3, leaf(3, &root)).bytes();
    assert_problem(
        &bytes,
        "page 3 (inline bucket): element 0: an inline bucket holds",
    );
}

/// One change to the standard database: xor a byte, or truncate.
#[derive(Debug, Clone)]
enum Damage {
    Xor(usize, u8),
    Set(usize, u8),
    Truncate(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let len = 9 * PS;
    // Mostly headers and element arrays, where damage matters most.
    let hot = (0..9usize, 0..96usize).prop_map(|(p, o)| p * PS + o);
    prop_oneof![
        4 => (hot.clone(), 1..=255u8).prop_map(|(o, x)| Damage::Xor(o, x)),
        2 => (hot, prop_oneof![Just(0u8), Just(0xFF), Just(1), Just(9)]).prop_map(|(o, v)| Damage::Set(o, v)),
        2 => (0..len, 1..=255u8).prop_map(|(o, x)| Damage::Xor(o, x)),
        1 => (0..len).prop_map(Damage::Truncate),
    ]
}

/// Everything a reader of a damaged database may do: errors are fine,
/// panics, endless loops and huge allocations are not.
fn exercise(bytes: &[u8]) {
    let Ok(db) = Db::open(bytes) else { return };
    let report = db.check_report().unwrap();
    let mut walk_ok = true;
    let mut stack = vec![db.root()];
    let mut buckets = 0;
    while let Some(b) = stack.pop() {
        let _ = db.last(&b);
        for e in db.iter(&b) {
            match e {
                Ok(e) => {
                    let _ = db.get(&b, &e.key);
                    if let Ok(Some(nested)) = e.bucket() {
                        buckets += 1;
                        if buckets < 10_000 {
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
    if report.is_ok() {
        assert!(walk_ok, "check passed but iteration failed");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_databases_never_panic(damages in proptest::collection::vec(damage(), 1..6)) {
        let mut bytes = standard();
        for d in damages {
            match d {
                Damage::Xor(o, x) => if let Some(b) = bytes.get_mut(o) { *b ^= x },
                Damage::Set(o, v) => if let Some(b) = bytes.get_mut(o) { *b = v },
                Damage::Truncate(n) => bytes.truncate(n),
            }
        }
        exercise(&bytes);
    }
}
