//! What a listing of the store holds: the snapshots in upstream's order,
//! and the sets a restore uses (the latest full snapshot and its deltas,
//! or the ones a point in time needs).

use crate::formats::names::{Chunk, Snapshot, SnapshotKind};

/// The result of listing the store.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// Snapshots, in upstream's order (by last revision, then creation).
    pub snapshots: Vec<Snapshot>,
    /// Part objects of snapshots (left by providers that upload parts as
    /// objects).
    pub chunks: Vec<Chunk>,
    /// Keys that are not snapshots (logged and ignored).
    pub ignored: Vec<String>,
    /// Stored (compressed) sizes of the snapshots, by name.
    pub sizes: std::collections::HashMap<String, u64>,
}

impl Listing {
    /// Stored bytes of the deltas after the latest full snapshot.
    pub fn delta_bytes_since_full(&self) -> u64 {
        self.latest_set()
            .deltas
            .iter()
            .filter_map(|d| self.sizes.get(&d.name()))
            .sum()
    }

    /// The latest full snapshot and the deltas after it (ascending), as
    /// upstream finds them: walk back from the newest, collecting deltas
    /// until the first full snapshot. Deltas without any full snapshot
    /// before them are returned with `full: None`.
    pub fn latest_set(&self) -> SnapshotSet {
        let mut deltas = Vec::new();
        for s in self.snapshots.iter().rev() {
            match s.kind {
                SnapshotKind::Full => {
                    deltas.reverse();
                    // A delta flushed right before a full snapshot ends at
                    // the same revision and may sort after it: it is
                    // covered by the full snapshot, not a delta after it.
                    deltas.retain(|d: &Snapshot| d.last_revision > s.last_revision);
                    return SnapshotSet {
                        full: Some(s.clone()),
                        deltas,
                    };
                }
                SnapshotKind::Incr => deltas.push(s.clone()),
            }
        }
        deltas.reverse();
        SnapshotSet { full: None, deltas }
    }
}

/// Where a point-in-time restore stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// At this revision, its events included.
    Revision(i64),
    /// At this time: the events the sidecar received at or before it.
    Time(chrono::DateTime<chrono::Utc>),
}

impl Cutoff {
    /// Whether the restore keeps a delta event at `revision` received at
    /// `time`.
    pub fn keeps(&self, revision: i64, time: &chrono::DateTime<chrono::FixedOffset>) -> bool {
        match self {
            Cutoff::Revision(r) => revision <= *r,
            Cutoff::Time(t) => time.with_timezone(&chrono::Utc) <= *t,
        }
    }
}

impl std::fmt::Display for Cutoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cutoff::Revision(r) => write!(f, "revision {r}"),
            Cutoff::Time(t) => write!(
                f,
                "{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(
        || unix.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

impl Listing {
    /// What a restore to `cut` needs: the newest full snapshot at or before
    /// the cut, and the deltas after it up to the first that reaches past
    /// the cut (whose later events the restore drops). A cut before the
    /// oldest full snapshot or after the newest snapshot is refused with
    /// the range the store holds.
    pub fn set_at(&self, cut: Cutoff) -> Result<SnapshotSet, String> {
        let fulls = || {
            self.snapshots
                .iter()
                .filter(|s| s.kind == SnapshotKind::Full)
        };
        let (Some(oldest), Some(newest)) = (
            fulls().min_by_key(|s| (s.last_revision, s.created_at)),
            self.snapshots
                .iter()
                .max_by_key(|s| (s.last_revision, s.created_at)),
        ) else {
            return Err("the store holds no full snapshot to restore from".into());
        };
        // Where a snapshot stands on the cut's axis (revision or time),
        // and where the cut does.
        let point = |s: &Snapshot| match cut {
            Cutoff::Revision(_) => s.last_revision,
            Cutoff::Time(_) => s.created_at,
        };
        let limit = match cut {
            Cutoff::Revision(r) => r,
            Cutoff::Time(t) => t.timestamp(),
        };
        let at_or_before = |s: &Snapshot| point(s) <= limit;
        let within = (point(oldest)..=point(newest)).contains(&limit);
        if !within {
            return Err(format!(
                "{cut} is outside what the store holds: revisions {} to {} (taken {} to {}); \
                 choose a cut-off in that range",
                oldest.last_revision,
                newest.last_revision,
                rfc3339(oldest.created_at),
                rfc3339(newest.created_at)
            ));
        }
        let full = fulls()
            .filter(|s| at_or_before(s))
            .max_by_key(|s| (s.last_revision, s.created_at))
            .ok_or_else(|| format!("no full snapshot is at or before {cut}"))?;
        let mut deltas = Vec::new();
        for d in self
            .snapshots
            .iter()
            .filter(|s| s.kind == SnapshotKind::Incr && s.last_revision > full.last_revision)
        {
            let reaches_past = match cut {
                Cutoff::Revision(r) => d.start_revision > r,
                Cutoff::Time(t) => deltas
                    .last()
                    .is_some_and(|prev: &Snapshot| prev.created_at > t.timestamp()),
            };
            if reaches_past {
                break;
            }
            deltas.push(d.clone());
        }
        Ok(SnapshotSet {
            full: Some(full.clone()),
            deltas,
        })
    }
}

/// A full snapshot and the deltas that follow it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotSet {
    /// The base.
    pub full: Option<Snapshot>,
    /// Deltas after the base, ascending.
    pub deltas: Vec<Snapshot>,
}

impl SnapshotSet {
    /// The last revision the set covers (0 when empty).
    pub fn last_revision(&self) -> i64 {
        self.deltas
            .last()
            .or(self.full.as_ref())
            .map_or(0, |s| s.last_revision)
    }

    /// The newest snapshot of the set.
    pub fn newest(&self) -> Option<&Snapshot> {
        self.deltas.last().or(self.full.as_ref())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
    use super::*;

    #[test]
    fn a_point_in_time_picks_the_newest_full_snapshot_before_it_and_the_deltas_up_to_it() {
        use crate::formats::compression::Compression::Gzip;
        let listing = Listing {
            snapshots: vec![
                Snapshot::full(100, 1000, Gzip),
                Snapshot::delta(101, 150, 1010, Gzip),
                Snapshot::delta(151, 200, 1020, Gzip),
                Snapshot::full(200, 1030, Gzip),
                Snapshot::delta(201, 260, 1040, Gzip),
                Snapshot::delta(261, 300, 1050, Gzip),
            ],
            ..Listing::default()
        };
        let at = |cut| {
            let set = listing.set_at(cut).unwrap();
            let ranges: Vec<(i64, i64)> = set
                .deltas
                .iter()
                .map(|d| (d.start_revision, d.last_revision))
                .collect();
            (set.full.unwrap().last_revision, ranges)
        };
        let time = |t| Cutoff::Time(chrono::DateTime::from_timestamp(t, 0).unwrap());
        use Cutoff::Revision;
        assert_eq!(at(Revision(100)), (100, vec![]));
        assert_eq!(at(Revision(120)), (100, vec![(101, 150)]));
        assert_eq!(at(Revision(150)), (100, vec![(101, 150)]));
        assert_eq!(at(Revision(151)), (100, vec![(101, 150), (151, 200)]));
        assert_eq!(at(Revision(200)), (200, vec![]));
        assert_eq!(at(Revision(230)), (200, vec![(201, 260)]));
        assert_eq!(at(Revision(300)), (200, vec![(201, 260), (261, 300)]));
        // By time: the deltas up to the first taken after it (it may hold
        // events from before it).
        assert_eq!(at(time(1015)), (100, vec![(101, 150), (151, 200)]));
        assert_eq!(at(time(1030)), (200, vec![(201, 260)]));
        assert_eq!(at(time(1050)), (200, vec![(201, 260), (261, 300)]));
        for cut in [Revision(99), Revision(301), time(999), time(1051)] {
            let e = listing.set_at(cut).unwrap_err();
            assert!(
                e.contains("revisions 100 to 300")
                    && e.contains("1970-01-01T00:16:40Z to 1970-01-01T00:17:30Z"),
                "{cut}: {e}"
            );
        }
        assert!(Listing::default().set_at(Revision(1)).is_err());
        // The events a cut keeps.
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00+01:00").unwrap();
        assert!(Revision(5).keeps(5, &t) && !Revision(5).keeps(6, &t));
        let at_nine = Cutoff::Time("2026-12-07T09:00:00Z".parse().unwrap());
        assert!(at_nine.keeps(9, &t));
        assert!(!Cutoff::Time("2026-12-07T08:59:59Z".parse().unwrap()).keeps(9, &t));
    }
}
