use super::*;

fn snap(
    kind: SnapshotKind,
    start: i64,
    last: i64,
    created: i64,
    compression: Compression,
    is_final: bool,
    layout: Layout,
) -> Snapshot {
    Snapshot {
        kind,
        start_revision: start,
        last_revision: last,
        created_at: created,
        compression,
        is_final,
        layout,
        stored_name: None,
    }
}

#[test]
fn names_not_padded_to_8_digits_keep_their_stored_key() {
    for name in [
        "Full-0-1234-1700000000.gz",
        "Incr-000001235-000001240-1700000001",
        "Full-00000000-123456789-1700000002",
    ] {
        let key = format!("v2/{name}");
        let s = Snapshot::parse(&key).unwrap();
        assert_eq!(s.relative_key(), key);
        assert_eq!(s.stored_key("etcd-main"), format!("etcd-main/{key}"));
        assert_eq!(s.to_string(), key);
    }
    let s = Snapshot::parse("v2/Full-0-1234-1700000000").unwrap();
    assert_eq!(s.stored_name.as_deref(), Some("Full-0-1234-1700000000"));
    // What a new snapshot of it would be named: the canonical form.
    assert_eq!(s.name(), "Full-00000000-00001234-1700000000");
    let canonical = Snapshot::parse("v2/Full-00000000-00001234-1700000000").unwrap();
    assert_eq!(canonical.stored_name, None);
    assert_ne!(s, canonical);
    // 9-digit revisions are canonical: {:08} never truncates.
    assert_eq!(
        Snapshot::parse("v2/Full-00000000-123456789-1")
            .unwrap()
            .stored_name,
        None
    );
}

#[test]
fn parses_upstream_names() {
    use Compression::*;
    use SnapshotKind::*;
    let b1 = || Layout::V1 {
        backup_dir: "Backup-1600000000".to_owned(),
    };
    let cases = [
        (
            "v2/Full-00000000-00001234-1700000000",
            snap(Full, 0, 1234, 1_700_000_000, None, false, Layout::V2),
        ),
        (
            "v2/Full-00000000-00001234-1700000000.gz",
            snap(Full, 0, 1234, 1_700_000_000, Gzip, false, Layout::V2),
        ),
        (
            "v2/Full-00000000-00001234-1700000000.gz.final",
            snap(Full, 0, 1234, 1_700_000_000, Gzip, true, Layout::V2),
        ),
        (
            "v2/Full-00000000-00001234-1700000000.final",
            snap(Full, 0, 1234, 1_700_000_000, None, true, Layout::V2),
        ),
        (
            "v2/Incr-00001235-00001300-1700000020.zlib",
            snap(Incr, 1235, 1300, 1_700_000_020, Zlib, false, Layout::V2),
        ),
        (
            "v2/Incr-00001235-00001300-1700000020.Z",
            snap(Incr, 1235, 1300, 1_700_000_020, Lzw, false, Layout::V2),
        ),
        // %08d is a minimum width: long revisions are not truncated.
        (
            "v2/Incr-2324551869-2324557269-1700000020.gz",
            snap(
                Incr,
                2_324_551_869,
                2_324_557_269,
                1_700_000_020,
                Gzip,
                false,
                Layout::V2,
            ),
        ),
        // Start equal to last is allowed (a delta of one revision).
        (
            "v2/Incr-00000007-00000007-5",
            snap(Incr, 7, 7, 5, None, false, Layout::V2),
        ),
        (
            "v1/Backup-1600000000/Full-00000000-00000042-1600000000",
            snap(Full, 0, 42, 1_600_000_000, None, false, b1()),
        ),
        (
            "v1/Backup-1600000000/Incr-00000043-00000050-1600000010.gz",
            snap(Incr, 43, 50, 1_600_000_010, Gzip, false, b1()),
        ),
    ];
    for (key, want) in cases {
        let got = Snapshot::parse(key).unwrap();
        assert_eq!(got, want, "{key}");
        assert_eq!(got.relative_key(), key, "round trip of {key}");
        assert_eq!(got.to_string(), key);
    }
}

#[test]
fn round_trips_every_shape() {
    for kind in [SnapshotKind::Full, SnapshotKind::Incr] {
        for compression in Compression::ALL {
            for is_final in [false, true] {
                for (start, last) in [(0, 0), (0, 99_999_999), (12, 1_000_000_000), (5, i64::MAX)] {
                    let s = snap(
                        kind,
                        start,
                        last,
                        1_700_000_000,
                        compression,
                        is_final,
                        Layout::V2,
                    );
                    let key = s.key("");
                    assert_eq!(Snapshot::parse(&key).unwrap(), s, "{key}");
                    let full_key = s.key("a/b");
                    let (prefix, rel) = split_store_prefix(&full_key).unwrap();
                    assert_eq!((prefix, rel), ("a/b", key.as_str()));
                }
            }
        }
    }
}

#[test]
fn writes_v2_keys() {
    let s = Snapshot::full(1234, 1_700_000_000, Compression::Gzip);
    assert_eq!(s.name(), "Full-00000000-00001234-1700000000.gz");
    assert_eq!(s.key(""), "v2/Full-00000000-00001234-1700000000.gz");
    assert_eq!(
        s.key("etcd-main"),
        "etcd-main/v2/Full-00000000-00001234-1700000000.gz"
    );
    assert_eq!(
        s.key("etcd-main/"),
        "etcd-main/v2/Full-00000000-00001234-1700000000.gz"
    );
    let mut f = Snapshot::delta(1235, 1300, 1_700_000_020, Compression::None);
    f.is_final = true;
    assert_eq!(f.key("p"), "p/v2/Incr-00001235-00001300-1700000020.final");
    // A legacy snapshot is stored under v1 but written anew under v2.
    let old = Snapshot::parse("v1/Backup-9/Full-00000000-00000042-9.gz").unwrap();
    assert_eq!(old.key("p"), "p/v2/Full-00000000-00000042-9.gz");
    assert_eq!(
        old.stored_key("p"),
        "p/v1/Backup-9/Full-00000000-00000042-9.gz"
    );
    assert_eq!(
        old.stored_key(""),
        "v1/Backup-9/Full-00000000-00000042-9.gz"
    );
}

#[test]
fn unpadded_numbers_parse_and_keep_their_stored_key() {
    let s = Snapshot::parse("v2/Full-0-42-7.gz").unwrap();
    assert_eq!(
        (s.start_revision, s.last_revision, s.created_at),
        (0, 42, 7)
    );
    // Reads and deletes reach the object as stored (the re-padded key
    // would be NotFound); a new snapshot gets the canonical name.
    assert_eq!(s.relative_key(), "v2/Full-0-42-7.gz");
    assert_eq!(s.name(), "Full-00000000-00000042-7.gz");
}

#[test]
fn parses_chunks() {
    let obj = StoreObject::parse("v2/Full-00000000-00001234-1700000000.gz/0000000003").unwrap();
    let StoreObject::Chunk(chunk) = obj else {
        panic!("not a chunk: {obj:?}");
    };
    assert_eq!(chunk.part, "0000000003");
    assert_eq!(chunk.snapshot.last_revision, 1234);
    assert_eq!(
        chunk.stored_key("p"),
        "p/v2/Full-00000000-00001234-1700000000.gz/0000000003"
    );
    let obj = StoreObject::parse("v1/Backup-1/Incr-00000001-00000002-3/0000000001").unwrap();
    assert!(matches!(obj, StoreObject::Chunk(ref c) if c.snapshot.layout != Layout::V2));
    let err = Snapshot::parse("v2/Full-00000000-00001234-1700000000.gz/0000000003").unwrap_err();
    assert_eq!(
        err.kind,
        ParseErrorKind::Chunk {
            part: "0000000003".to_owned()
        }
    );
}

#[test]
fn rejects_garbage_with_a_reason() {
    use ParseErrorKind as K;
    let number = |field, found: &str| K::Number {
        field,
        found: found.to_owned(),
    };
    let cases: Vec<(&str, ParseErrorKind)> = vec![
        ("", K::EmptySegment { index: 0 }),
        ("v2/", K::EmptySegment { index: 1 }),
        ("v2", K::Depth { segments: 1 }),
        ("v2//Full-00000000-00000001-1", K::EmptySegment { index: 1 }),
        ("/v2/Full-00000000-00000001-1", K::EmptySegment { index: 0 }),
        ("v3/Full-00000000-00000001-1", K::NoLayoutDir),
        ("Full-00000000-00000001-1", K::NoLayoutDir),
        ("v1/Full-00000000-00000001-1", K::Depth { segments: 2 }),
        ("v2/a/b/c", K::Depth { segments: 4 }),
        ("v1/Backup-1/a/b/c", K::Depth { segments: 5 }),
        ("v2/README.md", K::FieldCount { found: 1 }),
        ("v2/Full-00000000-00000001", K::FieldCount { found: 3 }),
        ("v2/Full-00000000-00000001-1-2", K::FieldCount { found: 5 }),
        (
            "v2/Chunk-00000000-00000001-1",
            K::Kind {
                found: "Chunk".to_owned(),
            },
        ),
        (
            "v2/full-00000000-00000001-1",
            K::Kind {
                found: "full".to_owned(),
            },
        ),
        (
            "v2/Full-0000000x-00000001-1",
            number("start revision", "0000000x"),
        ),
        (
            "v2/Full-+0000001-00000001-1",
            number("start revision", "+0000001"),
        ),
        ("v2/Full--00000001-1", number("start revision", "")),
        ("v2/Full-00000000-00000001-", number("creation time", "")),
        ("v2/Full-00000000-00000001-.gz", number("creation time", "")),
        (
            "v2/Full-00000000-00000001-17e9",
            number("creation time", "17e9"),
        ),
        (
            "v2/Full-00000000-99999999999999999999-1",
            number("last revision", "99999999999999999999"),
        ),
        (
            "v2/Incr-00000009-00000008-1",
            K::StartAfterLast { start: 9, last: 8 },
        ),
        (
            "v2/Full-00000000-00000001-1.tmp",
            K::Compression {
                found: ".tmp".to_owned(),
            },
        ),
        (
            "v2/Full-00000000-00000001-1.gz.tmp",
            K::Suffix {
                found: ".gz.tmp".to_owned(),
            },
        ),
        (
            "v2/Full-00000000-00000001-1.gzip",
            K::Compression {
                found: ".gzip".to_owned(),
            },
        ),
        (
            "v2/Full-00000000-00000001-1.",
            K::Compression {
                found: ".".to_owned(),
            },
        ),
        (
            "v2/Full-00000000-00000001-1.final.gz",
            K::Suffix {
                found: ".final.gz".to_owned(),
            },
        ),
        (
            "v2/Full-00000000-00000001-1.gz.final.final",
            K::Suffix {
                found: ".gz.final.final".to_owned(),
            },
        ),
        (
            "v2/Full-00000000-00000001-1.gz.FINAL",
            K::Suffix {
                found: ".gz.FINAL".to_owned(),
            },
        ),
    ];
    for (key, want) in cases {
        let err = Snapshot::parse(key).unwrap_err();
        assert_eq!(err.kind, want, "{key}");
        assert_eq!(err.key, key);
        let message = err.to_string();
        assert!(message.contains(&format!("{key:?}")), "{message}");
    }
}

#[test]
fn error_messages_say_what_is_wrong() {
    let err = Snapshot::parse("v2/Full-00000000-00000001-1.bz2").unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a snapshot key \"v2/Full-00000000-00000001-1.bz2\": unknown compression \
         suffix \".bz2\" (expected .gz, .zlib or .Z)"
    );
    let err = Snapshot::parse("v2/Incr-00000009-00000008-1").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("start revision 9 is after last revision 8")
    );
}

#[test]
fn splits_the_store_prefix() {
    let cases = [
        ("v2/Full-0-1-2", Some(("", "v2/Full-0-1-2"))),
        ("etcd/v2/Full-0-1-2", Some(("etcd", "v2/Full-0-1-2"))),
        (
            "a/b/v2/Full-0-1-2/0000000001",
            Some(("a/b", "v2/Full-0-1-2/0000000001")),
        ),
        (
            "a/v1/Backup-1/Full-0-1-2",
            Some(("a", "v1/Backup-1/Full-0-1-2")),
        ),
        (
            "a/v1/Backup-1/Full-0-1-2/0001",
            Some(("a", "v1/Backup-1/Full-0-1-2/0001")),
        ),
        // A prefix that itself has a `v1` or `v2` segment.
        ("v1/team/v2/Full-0-1-2", Some(("v1/team", "v2/Full-0-1-2"))),
        (
            "v2/x/v1/Backup-1/Full-0-1-2",
            Some(("v2/x", "v1/Backup-1/Full-0-1-2")),
        ),
        ("a/Full-0-1-2", None),
        ("a/v2", None),
        ("a/v2/b/c/d", None),
        ("av2/Full-0-1-2", None),
    ];
    for (key, want) in cases {
        assert_eq!(split_store_prefix(key), want, "{key}");
    }
}

#[test]
fn orders_by_last_revision_then_creation_time() {
    let full = |last, at| Snapshot::full(last, at, Compression::Gzip);
    let delta = |start, last, at| Snapshot::delta(start, last, at, Compression::Gzip);
    let mut list = [
        delta(11, 20, 300),
        full(20, 400),
        full(10, 100),
        delta(21, 30, 500),
        delta(1, 10, 50),
        full(20, 350),
    ];
    list.sort();
    let got: Vec<(SnapshotKind, i64, i64)> = list
        .iter()
        .map(|s| (s.kind, s.last_revision, s.created_at))
        .collect();
    use SnapshotKind::*;
    assert_eq!(
        got,
        [
            (Incr, 10, 50),
            (Full, 10, 100),
            (Incr, 20, 300),
            (Full, 20, 350),
            (Full, 20, 400),
            (Incr, 30, 500),
        ]
    );
    // Ties on (last, created) still order deterministically.
    let a = full(5, 5);
    let mut b = full(5, 5);
    b.is_final = true;
    assert_eq!(a.cmp(&b), Ordering::Less);
    assert_eq!(a.cmp(&a.clone()), Ordering::Equal);
}

#[test]
fn created_hour() {
    assert_eq!(
        Snapshot::full(1, 0, Compression::None).created_hour_utc(),
        0
    );
    assert_eq!(
        Snapshot::full(1, 86_399, Compression::None).created_hour_utc(),
        23
    );
    assert_eq!(
        Snapshot::full(1, 1_700_000_000, Compression::None).created_hour_utc(),
        22
    );
}
