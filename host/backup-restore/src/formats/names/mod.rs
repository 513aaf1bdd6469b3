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
mod tests;
