//! Names and keys of snapshot objects in the store, in the upstream layout.
//!
//! The store holds, under the user's store prefix:
//!
//! - `v2/<name>`: the current, flat layout; every new snapshot goes here.
//! - `v1/<backup dir>/<name>`: the legacy layout (`v1/Backup-<unix>/…`),
//!   read (restore, GC) but never written.
//! - `v2/<name>/<part>` and `v1/<backup dir>/<name>/<part>`: chunks, the
//!   part objects some providers (GCS composite uploads, Swift segments)
//!   leave next to a snapshot. They are parsed as [`Chunk`]s, not snapshots.
//!
//! A `<name>` is `<Kind>-<start>-<last>-<unix>[<compression>][.final]`:
//! `Kind` is `Full` or `Incr` (a delta), `start` and `last` are revisions
//! written with at least 8 digits (zero-padded, never truncated), `unix` is
//! the creation time in UTC Unix seconds, the compression suffix is one of
//! `.gz`, `.zlib`, `.Z` (see [`Compression`]) or nothing, and `.final`
//! marks the last full snapshot before a control-plane migration. Full
//! snapshots have start revision 0; a delta starts at the previous
//! snapshot's last revision plus one.
//!
//! Parsing accepts what upstream writes and reports everything else as a
//! [`ParseError`], which a lister logs before ignoring the object.

use std::cmp::Ordering;
use std::fmt;

use crate::formats::compression::Compression;

/// The directory of the current layout.
pub const V2_DIR: &str = "v2";
/// The directory of the legacy layout.
pub const V1_DIR: &str = "v1";
/// The marker appended, after any compression suffix, to a final snapshot.
pub const FINAL_SUFFIX: &str = ".final";

/// Whether a snapshot holds the whole database or the events since the
/// previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SnapshotKind {
    /// A full snapshot (`Full`): etcd's snapshot stream.
    Full,
    /// A delta snapshot (`Incr`): a JSON list of watch events.
    Incr,
}

impl SnapshotKind {
    /// The kind as it appears in object names: `Full` or `Incr`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Full => "Full",
            SnapshotKind::Incr => "Incr",
        }
    }
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which store layout a snapshot was listed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Layout {
    /// `v2/<name>`, the current layout.
    #[default]
    V2,
    /// `v1/<backup_dir>/<name>`, the legacy layout (read only).
    V1 {
        /// The directory between `v1/` and the name, e.g. `Backup-1600000000`.
        backup_dir: String,
    },
}

/// A snapshot object, as its name describes it.
///
/// Ordering is upstream's listing order: by last revision, then creation
/// time (the remaining fields only break ties, to keep `Ord` consistent
/// with `Eq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// Full or delta.
    pub kind: SnapshotKind,
    /// The first revision the snapshot covers (0 for full snapshots).
    /// Never negative in a parsed name.
    pub start_revision: i64,
    /// The last revision the snapshot covers. Never negative in a parsed
    /// name, and never below `start_revision`.
    pub last_revision: i64,
    /// When the snapshot was created, in UTC Unix seconds.
    pub created_at: i64,
    /// How the object is compressed.
    pub compression: Compression,
    /// Whether the name carries the `.final` marker.
    pub is_final: bool,
    /// The layout the snapshot was listed from ([`Layout::V2`] for new ones).
    pub layout: Layout,
    /// The name as stored, when it differs from [`Snapshot::name`] (other
    /// writers may pad revisions to fewer than 8 digits, or more): reads,
    /// deletes and copies use it, so that they reach the object that
    /// exists. `None` for names in the canonical form and new snapshots.
    pub stored_name: Option<String>,
}

impl Snapshot {
    /// A new full snapshot (start revision 0) in the current layout.
    pub fn full(last_revision: i64, created_at: i64, compression: Compression) -> Self {
        Snapshot {
            kind: SnapshotKind::Full,
            start_revision: 0,
            last_revision,
            created_at,
            compression,
            is_final: false,
            layout: Layout::V2,
            stored_name: None,
        }
    }

    /// A new delta snapshot in the current layout.
    pub fn delta(
        start_revision: i64,
        last_revision: i64,
        created_at: i64,
        compression: Compression,
    ) -> Self {
        Snapshot {
            kind: SnapshotKind::Incr,
            start_revision,
            last_revision,
            created_at,
            compression,
            is_final: false,
            layout: Layout::V2,
            stored_name: None,
        }
    }

    /// The object name, e.g. `Full-00000000-00001234-1700000000.gz.final`.
    pub fn name(&self) -> String {
        format!(
            "{}-{:08}-{:08}-{}{}{}",
            self.kind,
            self.start_revision,
            self.last_revision,
            self.created_at,
            self.compression.suffix(),
            if self.is_final { FINAL_SUFFIX } else { "" },
        )
    }

    /// The key under which a new snapshot is written: `<prefix>/v2/<name>`
    /// (`v2/<name>` for an empty prefix), whatever layout `self` was read
    /// from. `prefix` is the user's store prefix, without `v2`.
    pub fn key(&self, prefix: &str) -> String {
        join_prefix(prefix, &format!("{V2_DIR}/{}", self.name()))
    }

    /// The key relative to the store prefix where this snapshot is stored:
    /// `v2/<name>`, or `v1/<backup dir>/<name>` for a legacy snapshot.
    pub fn relative_key(&self) -> String {
        let name = self.stored_name.clone().unwrap_or_else(|| self.name());
        match &self.layout {
            Layout::V2 => format!("{V2_DIR}/{name}"),
            Layout::V1 { backup_dir } => format!("{V1_DIR}/{backup_dir}/{name}"),
        }
    }

    /// The full key where this snapshot is stored (its own layout), for
    /// fetching and deleting it.
    pub fn stored_key(&self, prefix: &str) -> String {
        join_prefix(prefix, &self.relative_key())
    }

    /// Parses a snapshot key relative to the store prefix (`v2/<name>` or
    /// `v1/<backup dir>/<name>`). Chunk keys are an error
    /// ([`ParseErrorKind::Chunk`]); use [`StoreObject::parse`] to get them.
    pub fn parse(relative_key: &str) -> Result<Self, ParseError> {
        match StoreObject::parse(relative_key)? {
            StoreObject::Snapshot(snapshot) => Ok(snapshot),
            StoreObject::Chunk(chunk) => Err(ParseError::new(
                relative_key,
                ParseErrorKind::Chunk { part: chunk.part },
            )),
        }
    }

    /// The creation time's hour of day in UTC (0..=23).
    pub fn created_hour_utc(&self) -> i64 {
        self.created_at.rem_euclid(86_400) / 3_600
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.relative_key())
    }
}

impl Ord for Snapshot {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.last_revision, self.created_at)
            .cmp(&(other.last_revision, other.created_at))
            .then_with(|| {
                (
                    self.kind,
                    self.start_revision,
                    self.compression,
                    self.is_final,
                    &self.layout,
                    &self.stored_name,
                )
                    .cmp(&(
                        other.kind,
                        other.start_revision,
                        other.compression,
                        other.is_final,
                        &other.layout,
                        &other.stored_name,
                    ))
            })
    }
}

impl PartialOrd for Snapshot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A part object stored under a snapshot's key (`<snapshot key>/<part>`),
/// left by GCS composite uploads or Swift segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Chunk {
    /// The snapshot the part belongs to.
    pub snapshot: Snapshot,
    /// The part's name, e.g. `0000000001`.
    pub part: String,
}

impl Chunk {
    /// The key relative to the store prefix.
    pub fn relative_key(&self) -> String {
        format!("{}/{}", self.snapshot.relative_key(), self.part)
    }

    /// The full key where this chunk is stored.
    pub fn stored_key(&self, prefix: &str) -> String {
        join_prefix(prefix, &self.relative_key())
    }
}

/// Any object the snapshot layout names: a snapshot or a chunk of one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoreObject {
    /// A snapshot.
    Snapshot(Snapshot),
    /// A part object of a snapshot.
    Chunk(Chunk),
}

impl StoreObject {
    /// Parses a key relative to the store prefix: `v2/<name>` and
    /// `v1/<dir>/<name>` are snapshots, `v2/<name>/<part>` and
    /// `v1/<dir>/<name>/<part>` chunks. Anything else is an error naming
    /// what is wrong.
    pub fn parse(relative_key: &str) -> Result<Self, ParseError> {
        let err = |kind| ParseError::new(relative_key, kind);
        let segments: Vec<&str> = relative_key.split('/').collect();
        if let Some(i) = segments.iter().position(|s| s.is_empty()) {
            return Err(err(ParseErrorKind::EmptySegment { index: i }));
        }
        let (layout, name, part) = match segments.as_slice() {
            [V2_DIR, name] => (Layout::V2, *name, None),
            [V2_DIR, name, part] => (Layout::V2, *name, Some(*part)),
            [V1_DIR, dir, name] => (v1(dir), *name, None),
            [V1_DIR, dir, name, part] => (v1(dir), *name, Some(*part)),
            [V2_DIR, ..] | [V1_DIR, ..] => {
                return Err(err(ParseErrorKind::Depth {
                    segments: segments.len(),
                }));
            }
            _ => return Err(err(ParseErrorKind::NoLayoutDir)),
        };
        let snapshot = parse_name(name, layout).map_err(err)?;
        Ok(match part {
            None => StoreObject::Snapshot(snapshot),
            Some(part) => StoreObject::Chunk(Chunk {
                snapshot,
                part: part.to_owned(),
            }),
        })
    }
}

fn v1(dir: &str) -> Layout {
    Layout::V1 {
        backup_dir: dir.to_owned(),
    }
}

/// Splits a full object key into the store prefix and the key relative to
/// it, e.g. `"etcd-main/v2/Full-…"` into `("etcd-main", "v2/Full-…")` and
/// `"v1/Backup-1/Full-…"` into `("", "v1/Backup-1/Full-…")`.
///
/// The layout directory is the `v2` or `v1` path segment whose depth fits
/// its layout (one or two segments after `v2`, two or three after `v1`);
/// when several fit (a prefix that itself contains `v1` or `v2` segments),
/// the one nearest the end wins. Returns `None` if no segment fits.
pub fn split_store_prefix(key: &str) -> Option<(&str, &str)> {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(key.match_indices('/').map(|(i, _)| i + 1))
        .collect();
    let count = starts.len();
    (0..count).rev().find_map(|i| {
        let start = starts[i];
        let rest = &key[start..];
        let after = count - i - 1;
        let fits = (rest.starts_with("v2/") && (1..=2).contains(&after))
            || (rest.starts_with("v1/") && (2..=3).contains(&after));
        fits.then(|| (key[..start].trim_end_matches('/'), rest))
    })
}

fn join_prefix(prefix: &str, relative: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        relative.to_owned()
    } else {
        format!("{prefix}/{relative}")
    }
}

fn parse_name(name: &str, layout: Layout) -> Result<Snapshot, ParseErrorKind> {
    let fields: Vec<&str> = name.split('-').collect();
    let [kind, start, last, rest] = fields.as_slice() else {
        return Err(ParseErrorKind::FieldCount {
            found: fields.len(),
        });
    };
    let kind = match *kind {
        "Full" => SnapshotKind::Full,
        "Incr" => SnapshotKind::Incr,
        other => {
            return Err(ParseErrorKind::Kind {
                found: other.to_owned(),
            });
        }
    };
    let start_revision = parse_number(start, "start revision")?;
    let last_revision = parse_number(last, "last revision")?;
    if start_revision > last_revision {
        return Err(ParseErrorKind::StartAfterLast {
            start: start_revision,
            last: last_revision,
        });
    }
    // `<unix>[.<compression>][.final]`
    let mut parts = rest.split('.');
    let created_at = parse_number(parts.next().unwrap_or_default(), "creation time")?;
    let suffixes: Vec<&str> = parts.collect();
    let (compression, is_final) = match suffixes.as_slice() {
        [] => (Compression::None, false),
        ["final"] => (Compression::None, true),
        [c] => (compression_of(c)?, false),
        [c, "final"] => (compression_of(c)?, true),
        _ => {
            return Err(ParseErrorKind::Suffix {
                found: rest[rest.find('.').unwrap_or(0)..].to_owned(),
            });
        }
    };
    let mut snapshot = Snapshot {
        kind,
        start_revision,
        last_revision,
        created_at,
        compression,
        is_final,
        layout,
        stored_name: None,
    };
    if snapshot.name() != name {
        snapshot.stored_name = Some(name.to_owned());
    }
    Ok(snapshot)
}

fn compression_of(suffix: &str) -> Result<Compression, ParseErrorKind> {
    Compression::from_suffix(&format!(".{suffix}")).ok_or_else(|| ParseErrorKind::Compression {
        found: format!(".{suffix}"),
    })
}

fn parse_number(field: &str, what: &'static str) -> Result<i64, ParseErrorKind> {
    let bad = || ParseErrorKind::Number {
        field: what,
        found: field.to_owned(),
    };
    // Digits only: `i64::from_str` would also take a sign.
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    field.parse().map_err(|_| bad())
}

/// A key that is not a snapshot (or chunk) name, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a snapshot key {key:?}: {kind}")]
pub struct ParseError {
    /// The key as given to the parser.
    pub key: String,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

impl ParseError {
    fn new(key: &str, kind: ParseErrorKind) -> Self {
        ParseError {
            key: key.to_owned(),
            kind,
        }
    }
}

/// What is wrong with a key; see [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The key does not start with `v2/` or `v1/`.
    #[error("it does not start with the layout directory `v2/` or `v1/`")]
    NoLayoutDir,
    /// Too few or too many path segments for the layout.
    #[error(
        "{segments} path segments do not fit the layout \
         (v2/<name>[/<part>] or v1/<dir>/<name>[/<part>])"
    )]
    Depth {
        /// How many `/`-separated segments the key has.
        segments: usize,
    },
    /// A path segment is empty (`//`, or a leading or trailing `/`).
    #[error("path segment {index} is empty")]
    EmptySegment {
        /// Zero-based index of the empty segment.
        index: usize,
    },
    /// The key names a chunk of a snapshot, not a snapshot.
    #[error("it is chunk {part:?} of a snapshot, not a snapshot")]
    Chunk {
        /// The chunk's part name.
        part: String,
    },
    /// The name does not have exactly four `-`-separated fields.
    #[error("the name has {found} `-`-separated fields, expected 4 (<Kind>-<start>-<last>-<unix>)")]
    FieldCount {
        /// How many fields it has.
        found: usize,
    },
    /// The kind is neither `Full` nor `Incr`.
    #[error("unknown kind {found:?}, expected `Full` or `Incr`")]
    Kind {
        /// The kind field as found.
        found: String,
    },
    /// A numeric field is not a non-negative decimal integer that fits i64.
    #[error("the {field} {found:?} is not a non-negative 64-bit decimal number")]
    Number {
        /// Which field: start revision, last revision or creation time.
        field: &'static str,
        /// The field as found.
        found: String,
    },
    /// The start revision is above the last revision.
    #[error("start revision {start} is after last revision {last}")]
    StartAfterLast {
        /// The start revision.
        start: i64,
        /// The last revision.
        last: i64,
    },
    /// A suffix that is not a compression upstream writes.
    #[error("unknown compression suffix {found:?} (expected .gz, .zlib or .Z)")]
    Compression {
        /// The suffix as found, with its dot.
        found: String,
    },
    /// The suffixes after the timestamp are not `[.<compression>][.final]`.
    #[error("the suffixes {found:?} are not [.<compression>][.final]")]
    Suffix {
        /// Everything after the timestamp.
        found: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
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
                    for (start, last) in
                        [(0, 0), (0, 99_999_999), (12, 1_000_000_000), (5, i64::MAX)]
                    {
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
        let err =
            Snapshot::parse("v2/Full-00000000-00001234-1700000000.gz/0000000003").unwrap_err();
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
}
