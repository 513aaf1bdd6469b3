//! When a watch that fell behind should give way to a full snapshot.
//!
//! A watch that falls behind etcd's head (a burst of writes faster than the
//! sidecar turns them into deltas, or a sidecar that was away) gets the
//! history 1,000 revisions a response, and the sidecar encodes, compresses
//! and uploads every event of it. Under a CPU limit that is far slower per
//! byte than a full snapshot, which copies only the live data, once: on the
//! real node (a 100m sidecar CPU limit, dev-profile images) deltas
//! caught up 61 revisions of 10 KiB a second, 29 minutes for 107,000
//! revisions, against 3-4.6 MB/s for a full snapshot of a 0.9-1.3 GB
//! database (about 5 minutes). etcd itself is not the bottleneck: etcd 3.4.23 serves
//! 30,000 revisions of 8 KiB from 45 s behind in 4.7 s, 0.11–0.17 s a
//! response whatever the distance.
//!
//! [`CatchUp`] estimates both from what it measures — the time between
//! responses and the revisions each carries, and the throughput of the last
//! full snapshot (`--full-snapshot-rate-estimate` until one was taken) —
//! so that the snapshotter takes a full snapshot when catching up would
//! take longer. It estimates nothing while the watch keeps up.

use std::time::{Duration, Instant};

/// Responses observed while behind before any advice: one interval can be
/// an outlier (a compaction, a slow upload).
const MIN_RESPONSES: u32 = 3;

/// Databases smaller than this do not measure a full snapshot's rate: the
/// fixed costs (a status call, opening the upload) dominate, and a
/// 20 KiB snapshot taken in 50 ms would say 400 KB/s.
pub const MIN_MEASURED_DB_BYTES: u64 = 64 << 20;

/// The database bytes per second a full snapshot of `db_bytes` taking
/// `elapsed` shows, when the database is large enough to say.
pub fn measured_rate(db_bytes: u64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    (db_bytes >= MIN_MEASURED_DB_BYTES && secs > 0.0).then(|| db_bytes as f64 / secs)
}

/// How far a watch is behind, and how long catching up would take.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Revisions between the response's last event and etcd's head.
    pub behind: i64,
    /// Estimated time to catch up delta by delta.
    pub catch_up: Duration,
}

/// Measures a watch catching up.
#[derive(Debug)]
pub struct CatchUp {
    /// When the previous response (or the watch) arrived.
    last: Instant,
    /// Consecutive responses that found the watch behind.
    behind_responses: u32,
    /// Smoothed seconds per revision while behind.
    secs_per_revision: Option<f64>,
    /// Database bytes per second a full snapshot copies.
    full_rate: f64,
}

impl CatchUp {
    /// Starts measuring a new watch at `now`; `full_rate` is the database
    /// bytes per second a full snapshot copies (measured, or configured).
    pub fn new(now: Instant, full_rate: f64) -> Self {
        CatchUp {
            last: now,
            behind_responses: 0,
            secs_per_revision: None,
            full_rate,
        }
    }

    /// Records a response that carried events `first..=last` (revisions)
    /// while etcd's head was `head`, arriving at `now`. The watch is
    /// behind when more than one response of `revisions_per_response`
    /// (etcd's batch while catching up: 1,000) separates it from the head.
    /// Returns an estimate once the watch has been behind for a few
    /// responses and catching up would take a second or more; `None`
    /// while it keeps up.
    pub fn observe(
        &mut self,
        first: i64,
        last: i64,
        head: i64,
        now: Instant,
        revisions_per_response: i64,
    ) -> Option<Estimate> {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let behind = head.saturating_sub(last);
        if behind <= revisions_per_response || last < first {
            self.behind_responses = 0;
            self.secs_per_revision = None;
            return None;
        }
        self.behind_responses += 1;
        let revisions = (last - first + 1) as f64;
        let sample = elapsed.as_secs_f64() / revisions;
        // The first interval after the watch starts includes its creation;
        // later ones are smoothed so that one slow upload does not decide.
        let per_revision = match self.secs_per_revision {
            Some(prev) => 0.5 * prev + 0.5 * sample,
            None => sample,
        };
        self.secs_per_revision = Some(per_revision);
        let catch_up = per_revision * behind as f64;
        (self.behind_responses >= MIN_RESPONSES && catch_up >= 1.0).then(|| Estimate {
            behind,
            catch_up: Duration::from_secs_f64(catch_up),
        })
    }

    /// The estimated time of a full snapshot of a database of `db_bytes`;
    /// `None` when the rate is not a positive number (a rate of 0
    /// configures catching up always).
    pub fn full_snapshot_time(&self, db_bytes: u64) -> Option<Duration> {
        (self.full_rate.is_finite() && self.full_rate > 0.0)
            .then(|| Duration::from_secs_f64(db_bytes as f64 / self.full_rate))
    }
}

impl super::Snapshotter {
    /// Whether a full snapshot now would bring the store to etcd's head
    /// sooner than catching up as `estimate` says (see this module); says
    /// why in the log when it would.
    pub(super) async fn full_snapshot_is_cheaper(
        &mut self,
        catch_up: &CatchUp,
        estimate: &Estimate,
    ) -> bool {
        let db_bytes = match self.client.status().await {
            Ok(status) => u64::try_from(status.db_size()).unwrap_or(0),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the database size; catching up by deltas");
                return false;
            }
        };
        let Some(full) = catch_up.full_snapshot_time(db_bytes) else {
            return false;
        };
        if estimate.catch_up <= full {
            return false;
        }
        tracing::warn!(
            behind_revisions = estimate.behind,
            catch_up_secs = estimate.catch_up.as_secs(),
            full_snapshot_secs = full.as_secs(),
            db_bytes,
            "the delta watch is far behind etcd and catching up would take longer than a full snapshot: taking a full snapshot and watching from its revision"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: i64 = 1000;
    /// `--full-snapshot-rate-estimate`'s default.
    const ASSUMED: f64 = 4.0 * 1024.0 * 1024.0;

    /// Feeds responses of `BATCH` revisions each `every` apart, starting
    /// at revision `from`, with the head at `head`; returns the estimates.
    fn feed(
        c: &mut CatchUp,
        t0: Instant,
        from: i64,
        head: i64,
        every: Duration,
        n: u32,
    ) -> Vec<Option<Estimate>> {
        (0..n)
            .map(|i| {
                let first = from + i64::from(i) * BATCH;
                c.observe(first, first + BATCH - 1, head, t0 + every * (i + 1), BATCH)
            })
            .collect()
    }

    #[test]
    fn a_watch_that_keeps_up_is_left_alone() {
        let t0 = Instant::now();
        let mut c = CatchUp::new(t0, ASSUMED);
        // Ten revisions a response, at the head, a second apart.
        for i in 0..20u32 {
            let last = 100 + i64::from(i) * 10;
            let now = t0 + Duration::from_secs(u64::from(i) + 1);
            assert_eq!(c.observe(last - 9, last, last, now, BATCH), None);
        }
    }

    #[test]
    fn a_slow_catch_up_far_behind_costs_more_than_a_full_snapshot() {
        let t0 = Instant::now();
        // Measured on the node: 16 s a response, 107,000 revisions behind,
        // a 1.3 GB database, full snapshots at 4.6 MB/s.
        let mut c = CatchUp::new(t0, 4.6e6);
        let estimates = feed(&mut c, t0, 1, 108_000, Duration::from_secs(16), 3);
        assert_eq!(
            estimates[..2],
            [None, None],
            "two slow responses decide nothing"
        );
        let Some(Estimate { behind, catch_up }) = estimates[2].clone() else {
            panic!("{estimates:?}");
        };
        assert_eq!(behind, 108_000 - 3000);
        // 16 ms a revision, 105,000 revisions: 1,680 s.
        assert!(
            (catch_up.as_secs_f64() - 1680.0).abs() < 1.0,
            "{catch_up:?}"
        );
        // 1.3 GB at 4.6 MB/s: 283 s.
        let full = c.full_snapshot_time(1_300_000_000).unwrap();
        assert!((full.as_secs_f64() - 282.6).abs() < 1.0, "{full:?}");
        assert!(catch_up > full);
    }

    #[test]
    fn a_fast_catch_up_gives_no_estimate() {
        let t0 = Instant::now();
        // Small values: 10 ms a response, 30,000 revisions behind: 0.3 s.
        let mut c = CatchUp::new(t0, 100e6);
        let estimates = feed(&mut c, t0, 1, 31_000, Duration::from_millis(10), 10);
        assert!(estimates.iter().all(Option::is_none), "{estimates:?}");
    }

    #[test]
    fn the_full_snapshot_estimate_follows_the_rate() {
        let t0 = Instant::now();
        // 1 s a response, 50,000 behind: 50 s of catching up.
        let mut c = CatchUp::new(t0, ASSUMED);
        let estimate = feed(&mut c, t0, 1, 53_000, Duration::from_secs(1), 3)[2]
            .clone()
            .unwrap();
        assert!((estimate.catch_up.as_secs_f64() - 50.0).abs() < 0.1);
        // 1 GiB at 4 MiB/s: 256 s, more than catching up.
        assert_eq!(
            c.full_snapshot_time(1 << 30),
            Some(Duration::from_secs(256))
        );
        // At a measured 100 MB/s: 10.7 s, less.
        let c = CatchUp::new(t0, 100e6);
        assert!(c.full_snapshot_time(1 << 30).unwrap() < Duration::from_secs(11));
        // A rate of 0 (or nonsense) estimates no full snapshot: catch up.
        for rate in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            assert_eq!(CatchUp::new(t0, rate).full_snapshot_time(1 << 30), None);
        }
    }

    #[test]
    fn only_a_large_database_measures_the_rate() {
        assert_eq!(measured_rate(20 << 10, Duration::from_millis(50)), None);
        assert_eq!(measured_rate(1 << 30, Duration::ZERO), None);
        let rate = measured_rate(1 << 30, Duration::from_secs(256)).unwrap();
        assert!((rate - ASSUMED).abs() < 1.0, "{rate}");
    }

    #[test]
    fn reaching_the_head_starts_the_count_over() {
        let t0 = Instant::now();
        let mut c = CatchUp::new(t0, ASSUMED);
        let estimates = feed(&mut c, t0, 1, 108_000, Duration::from_secs(16), 2);
        assert!(estimates.iter().all(Option::is_none));
        let now = t0 + Duration::from_secs(40);
        assert_eq!(c.observe(2001, 2500, 2500, now, BATCH), None);
        let estimates = feed(&mut c, now, 2501, 108_000, Duration::from_secs(16), 2);
        assert!(estimates.iter().all(Option::is_none), "{estimates:?}");
        let third = c.observe(4501, 5500, 108_000, now + Duration::from_secs(48), BATCH);
        assert!(third.is_some());
    }
}
