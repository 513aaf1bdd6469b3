//! The snapshotter: full snapshots on the cron schedule and on request,
//! delta snapshots from a watch, both written in upstream's formats.
//!
//! Continuity is the invariant: every delta starts right after the last
//! revision already in the store (`Incr-<prev+1>-<last>`), and a delta is
//! cut only between watch responses, which never split a revision. When an
//! upload fails the snapshotter stops; the supervisor restarts it after a
//! backoff, and the new run lists the store again and watches etcd from the
//! last *uploaded* revision, so the events of the failed period are read
//! again from etcd's history and nothing is skipped. If etcd compacted that
//! history meanwhile, a full snapshot covers the gap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use etcd_client::{Client, WatchOptions};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::formats::compression::Compression;
use crate::formats::delta::{DeltaEvent, DeltaStream};
use crate::formats::full::TrailerCheck;
use crate::formats::names::{Snapshot, SnapshotKind};
use crate::k8s::leases::Leases;
use crate::metrics::{KindLabel, KindResult, Metrics};
use crate::store::{self, Snapstore};

mod catch_up;

use catch_up::CatchUp;

/// Revisions etcd puts in one watch response while a watch catches up
/// (`watchBatchMaxRevs`).
const WATCH_BATCH_REVISIONS: i64 = 1000;

/// The largest watch response the snapshotter accepts (Go clientv3's
/// default receive limit, `math.MaxInt32`).
pub const MAX_WATCH_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Why a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// etcd failed.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// etcd took longer than `--etcd-snapshot-timeout`.
    #[error("the full snapshot did not finish within {0:?} (--etcd-snapshot-timeout)")]
    Timeout(Duration),
    /// The snapshot etcd sent failed its integrity check; nothing was
    /// uploaded.
    #[error("the snapshot etcd sent failed its integrity check, nothing was uploaded: {0}")]
    Integrity(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// A local file failed.
    #[error("{0}")]
    Io(String),
    /// Encoding a delta failed.
    #[error("delta: {0}")]
    Delta(#[from] crate::formats::delta::DeltaError),
    /// The watch history since the last snapshot was compacted away.
    #[error(
        "etcd compacted its history at revision {compacted}, past the last snapshotted revision {last}"
    )]
    Compacted {
        /// etcd's compaction revision.
        compacted: i64,
        /// The last revision in the store.
        last: i64,
    },
    /// The watch ended.
    #[error("the watch ended: {0}")]
    WatchEnded(String),
    /// The snapshotter is not running (not the leader, or stopping).
    #[error("the snapshotter is not running on this member")]
    Inactive,
}

impl SnapshotError {
    /// A short class for the failure metric.
    pub fn class(&self) -> &'static str {
        match self {
            SnapshotError::Etcd(_) | SnapshotError::WatchEnded(_) => "etcd",
            SnapshotError::Timeout(_) => "timeout",
            SnapshotError::Integrity(_) => "integrity",
            SnapshotError::Store(_) => "store",
            SnapshotError::Io(_) => "io",
            SnapshotError::Delta(_) => "delta",
            SnapshotError::Compacted { .. } => "compacted",
            SnapshotError::Inactive => "inactive",
        }
    }
}

/// A request from the HTTP API.
#[derive(Debug)]
pub enum Request {
    /// Take a full snapshot now (`final` marks it for migration).
    Full {
        /// Whether the snapshot is final.
        is_final: bool,
        /// Where the result goes.
        reply: oneshot::Sender<Result<Option<Snapshot>, String>>,
    },
    /// Take a delta snapshot now (`None` when there were no events).
    Delta {
        /// Where the result goes.
        reply: oneshot::Sender<Result<Option<Snapshot>, String>>,
    },
}

impl Request {
    /// Answers the request with an error without taking a snapshot.
    pub fn refuse(self, message: String) {
        let reply = match self {
            Request::Full { reply, .. } | Request::Delta { reply } => reply,
        };
        let _ = reply.send(Err(message));
    }
}

/// Settings of the snapshotter.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Full snapshot schedule.
    pub schedule: croner::Cron,
    /// Delta period (zero disables deltas).
    pub delta_period: Duration,
    /// Flush a delta once buffered events reach this many JSON bytes
    /// (from [`delta_cut`]).
    pub delta_memory_limit: u64,
    /// Compression of new snapshots.
    pub compression: Compression,
    /// Where the full snapshot is staged before upload.
    pub temp_dir: PathBuf,
    /// How long streaming a full snapshot out of etcd may take.
    pub snapshot_timeout: Duration,
    /// Database bytes per second a full snapshot is assumed to copy until
    /// one is measured (0: a watch behind always catches up by deltas).
    pub full_rate_estimate: f64,
}

/// The JSON size at which the snapshotter cuts a delta: the delta memory
/// limit, but never more than half of the largest delta a restore by
/// compaction accepts (`--compaction-max-delta-size`, 256 MiB by default).
/// A delta may pass the cut by one revision's events, so the other half is
/// room for that: every delta this sidecar writes restores with the same
/// flags. (A 1Gi memory limit once gave a delta of more than 1 GiB that the
/// restore refused.)
pub fn delta_cut(memory_limit: u64, compaction_max_delta_size: u64) -> u64 {
    memory_limit.min(compaction_max_delta_size / 2).max(1)
}

/// Reads the revision of a staged full snapshot's database, to name it
/// with the revision it really holds (upstream issue #1044).
pub type RevisionReader = Arc<dyn Fn(&Path) -> Result<i64, String> + Send + Sync>;

/// The snapshotter of the leading member.
pub struct Snapshotter {
    client: Client,
    store: Snapstore,
    settings: Settings,
    leases: Option<Leases>,
    metrics: Arc<Metrics>,
    revision_reader: Option<RevisionReader>,
    /// The newest full snapshot in the store.
    prev_full: Option<Snapshot>,
    /// The last revision in the store (full or delta).
    last_revision: i64,
    /// Stored bytes of the deltas after the newest full snapshot (for the
    /// operator's compaction trigger).
    delta_bytes: u64,
    /// Held while a full snapshot is taken (excludes defragmentation).
    maintenance: Option<crate::etcd::MaintenanceLock>,
    /// Database bytes per second of the last full snapshot taken of a
    /// database large enough to say ([`catch_up::measured_rate`]).
    full_rate: Option<f64>,
}

/// A delta being uploaded.
struct InFlight {
    snapshot: Snapshot,
    events: usize,
    handle: tokio::task::JoinHandle<Result<Uploaded, SnapshotError>>,
}

/// A finished delta upload.
struct Uploaded {
    size: usize,
    elapsed: Duration,
}

/// What ended a watch session.
enum WatchEnd {
    /// A full snapshot was taken: watch again after it.
    Rewatch,
    /// Cancelled.
    Stop,
}

impl Snapshotter {
    /// A snapshotter; call [`Snapshotter::run`].
    pub fn new(
        client: Client,
        store: Snapstore,
        settings: Settings,
        leases: Option<Leases>,
        metrics: Arc<Metrics>,
        revision_reader: Option<RevisionReader>,
    ) -> Self {
        Snapshotter {
            client,
            store,
            settings,
            leases,
            metrics,
            revision_reader,
            prev_full: None,
            last_revision: 0,
            delta_bytes: 0,
            maintenance: None,
            full_rate: None,
        }
    }

    /// Full snapshots wait for (and exclude) defragmentation.
    pub fn with_maintenance_lock(mut self, lock: crate::etcd::MaintenanceLock) -> Self {
        self.maintenance = Some(lock);
        self
    }

    /// Lists the store and decides whether a full snapshot is due first.
    async fn load_state(&mut self) -> Result<bool, SnapshotError> {
        let listing = self.store.list().await?;
        let set = listing.latest_set();
        self.last_revision = set.last_revision();
        self.prev_full = set.full.clone();
        self.delta_bytes = listing.delta_bytes_since_full();
        self.metrics.latest_deltas.set(set.deltas.len() as i64);
        self.metrics.latest_deltas_revisions.set(
            set.deltas
                .iter()
                .map(|d| d.last_revision - d.start_revision + 1)
                .sum::<i64>(),
        );
        for s in [set.full.as_ref(), set.deltas.last()].into_iter().flatten() {
            let kind = KindLabel::new(s.kind.as_str());
            self.metrics
                .latest_revision
                .get_or_create(&kind)
                .set(s.last_revision);
            self.metrics
                .latest_timestamp
                .get_or_create(&kind)
                .set(s.created_at);
        }
        Ok(full_required_at_startup(
            set.full.as_ref(),
            &self.settings.schedule,
            Utc::now(),
        ))
    }

    /// Runs until cancelled or until a snapshot fails (the error is
    /// returned; the supervisor restarts the snapshotter).
    pub async fn run(
        &mut self,
        cancel: CancellationToken,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<(), SnapshotError> {
        let full_first = self.load_state().await?;
        tracing::info!(
            last_revision = self.last_revision,
            prev_full = ?self.prev_full.as_ref().map(Snapshot::name),
            full_first,
            "snapshotter starting"
        );
        if full_first {
            self.full_snapshot(false).await?;
        }
        loop {
            match self.watch_session(&cancel, requests).await {
                Ok(WatchEnd::Rewatch) => continue,
                Ok(WatchEnd::Stop) => return Ok(()),
                Err(SnapshotError::Compacted { compacted, last }) => {
                    tracing::warn!(
                        compacted,
                        last,
                        "etcd's history since the last snapshot is compacted: taking a full snapshot to keep the backup continuous"
                    );
                    self.metrics.failure("compacted");
                    self.full_snapshot(false).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn watch_session(
        &mut self,
        cancel: &CancellationToken,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<WatchEnd, SnapshotError> {
        let deltas_on = self.settings.delta_period >= Duration::from_secs(1);
        let start = self.last_revision + 1;
        let mut watch = if deltas_on {
            let options = WatchOptions::new()
                .with_all_keys()
                .with_start_revision(start)
                .with_progress_notify();
            // A response carries up to 1,000 revisions (etcd batches a
            // watch catching up): with large values that is far more than
            // tonic's 4 MiB default, which failed every delta of a
            // preloaded 1 GiB cluster. Go's clientv3 accepts up to
            // `math.MaxInt32` by default; so does this.
            Some(
                self.client
                    .watch_client()
                    .max_decoding_message_size(MAX_WATCH_RESPONSE_BYTES)
                    .watch(vec![0u8], Some(options))
                    .await?,
            )
        } else {
            None
        };
        let mut buffer = DeltaStream::new(self.settings.compression);
        let mut in_flight: Option<InFlight> = None;
        let period = if deltas_on {
            self.settings.delta_period
        } else {
            Duration::from_secs(3600)
        };
        let mut catch_up = CatchUp::new(
            Instant::now(),
            self.full_rate.unwrap_or(self.settings.full_rate_estimate),
        );
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let next_full = next_full_snapshot(&self.settings.schedule, Utc::now());
        let full_sleep = tokio::time::sleep_until(until(next_full));
        tokio::pin!(full_sleep);
        self.metrics
            .snapshot_required
            .get_or_create(&KindLabel::new("Full"))
            .set(0);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    // What is uploading is valid: let it finish.
                    let _ = self.settle(&mut in_flight).await;
                    return Ok(WatchEnd::Stop);
                }
                result = async {
                    match in_flight.as_mut() {
                        Some(upload) => (&mut upload.handle).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(upload) = in_flight.take() {
                        self.finish_delta(upload, result).await?;
                    }
                }
                message = async {
                    match watch.as_mut() {
                        Some(w) => w.message().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(resp) = message? else {
                        return Err(SnapshotError::WatchEnded("etcd closed the watch stream".into()));
                    };
                    if resp.compact_revision() > 0 {
                        return Err(SnapshotError::Compacted {
                            compacted: resp.compact_revision(),
                            last: self.last_revision,
                        });
                    }
                    if resp.canceled() {
                        return Err(SnapshotError::WatchEnded(format!(
                            "etcd cancelled the watch: {}",
                            resp.cancel_reason()
                        )));
                    }
                    let now = Utc::now();
                    let mut revisions: Option<(i64, i64)> = None;
                    for ev in resp.events() {
                        if let Some(kv) = ev.kv() {
                            let r = kv.mod_revision();
                            revisions = Some(revisions.map_or((r, r), |(a, b)| (a.min(r), b.max(r))));
                        }
                        if let Some(event) = crate::etcd::event(ev) {
                            // A response can hold many revisions (a watch
                            // catching up gets up to 1,000): cut at the
                            // first revision boundary past the limit, so a
                            // delta exceeds it by at most one revision's
                            // events (see [`delta_cut`]).
                            if buffer.last_mod_revision().is_some_and(|last| last != event.kv.mod_revision) {
                                self.cut_if_full(&mut buffer, &mut in_flight, &mut tick).await?;
                            }
                            buffer.push(&DeltaEvent::new(event, now))?;
                        }
                    }
                    self.metrics.delta_buffered_events.set(buffer.len() as i64);
                    if let (Some((first, last)), Some(head)) = (revisions, resp.header().map(|h| h.revision()))
                        && let Some(estimate) = catch_up.observe(first, last, head, Instant::now(), WATCH_BATCH_REVISIONS)
                        && self.full_snapshot_is_cheaper(&catch_up, &estimate).await
                    {
                        self.metrics.catch_up_full.inc();
                        self.delta_now(std::mem::replace(&mut buffer, DeltaStream::new(self.settings.compression)), &mut in_flight).await?;
                        self.full_snapshot(false).await?;
                        return Ok(WatchEnd::Rewatch);
                    }
                    // A response holds whole revisions, so no revision is
                    // split across deltas.
                    self.cut_if_full(&mut buffer, &mut in_flight, &mut tick).await?;
                }
                _ = tick.tick(), if deltas_on => {
                    self.start_delta(std::mem::replace(&mut buffer, DeltaStream::new(self.settings.compression)), &mut in_flight).await?;
                }
                () = &mut full_sleep => {
                    self.metrics.snapshot_required.get_or_create(&KindLabel::new("Full")).set(1);
                    self.delta_now(std::mem::replace(&mut buffer, DeltaStream::new(self.settings.compression)), &mut in_flight).await?;
                    self.full_snapshot(false).await?;
                    return Ok(WatchEnd::Rewatch);
                }
                request = requests.recv() => {
                    let Some(request) = request else { return Ok(WatchEnd::Stop) };
                    match request {
                        Request::Delta { reply } => {
                            let r = self.delta_now(std::mem::replace(&mut buffer, DeltaStream::new(self.settings.compression)), &mut in_flight).await;
                            let failed = r.is_err();
                            let _ = reply.send(r.as_ref().map(Clone::clone).map_err(ToString::to_string));
                            if failed {
                                return r.map(|_| WatchEnd::Rewatch);
                            }
                        }
                        Request::Full { is_final, reply } => {
                            let flushed = self.delta_now(std::mem::replace(&mut buffer, DeltaStream::new(self.settings.compression)), &mut in_flight).await;
                            if let Err(e) = flushed {
                                let _ = reply.send(Err(e.to_string()));
                                return Err(e);
                            }
                            let r = self.full_snapshot(is_final).await;
                            let _ = reply.send(r.as_ref().map(Clone::clone).map_err(ToString::to_string));
                            r?;
                            return Ok(WatchEnd::Rewatch);
                        }
                    }
                }
            }
        }
    }

    /// Takes a delta early once `buffer` has reached the size limit (see
    /// [`delta_cut`]), and restarts the delta period.
    async fn cut_if_full(
        &mut self,
        buffer: &mut DeltaStream,
        in_flight: &mut Option<InFlight>,
        tick: &mut tokio::time::Interval,
    ) -> Result<(), SnapshotError> {
        if (buffer.json_len() as u64) < self.settings.delta_memory_limit {
            return Ok(());
        }
        tracing::info!(
            bytes = buffer.json_len(),
            "delta size limit reached: taking a delta snapshot early"
        );
        let full = std::mem::replace(buffer, DeltaStream::new(self.settings.compression));
        self.start_delta(full, in_flight).await?;
        tick.reset();
        Ok(())
    }

    /// Cuts the buffered events into a delta and starts uploading it in
    /// the background, so the watch keeps being read while it uploads (a
    /// watch not read is marked slow by etcd). At most one upload runs: a
    /// previous one is finished first, which bounds memory to two buffers
    /// and keeps uploads in revision order. With no events, the delta lease
    /// is renewed (the store is up to date) unless an upload is running.
    async fn start_delta(
        &mut self,
        buffer: DeltaStream,
        in_flight: &mut Option<InFlight>,
    ) -> Result<(), SnapshotError> {
        self.metrics.delta_buffered_events.set(0);
        let Some(last) = buffer.last_mod_revision() else {
            if in_flight.is_none() {
                self.metrics
                    .last_success
                    .get_or_create(&KindLabel::new("Incr"))
                    .set(Utc::now().timestamp());
                self.renew_delta_lease().await;
            }
            return Ok(());
        };
        self.settle(in_flight).await?;
        let snapshot = Snapshot::delta(
            self.last_revision + 1,
            last,
            Utc::now().timestamp(),
            self.settings.compression,
        );
        // The next delta starts after this one, uploaded or not: if this
        // upload fails the session ends and the next one resumes from the
        // store's last revision.
        self.last_revision = last;
        let store = self.store.clone();
        let events = buffer.len();
        let name = snapshot.clone();
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let data = tokio::task::spawn_blocking(move || buffer.finish())
                .await
                .map_err(|e| SnapshotError::Io(format!("compressing a delta: {e}")))??;
            store.upload_bytes(&name, &data).await?;
            Ok(Uploaded {
                size: data.len(),
                elapsed: started.elapsed(),
            })
        });
        *in_flight = Some(InFlight {
            snapshot,
            events,
            handle,
        });
        Ok(())
    }

    /// Waits for the running upload, if any, and records its result.
    async fn settle(
        &mut self,
        in_flight: &mut Option<InFlight>,
    ) -> Result<Option<Snapshot>, SnapshotError> {
        let Some(mut upload) = in_flight.take() else {
            return Ok(None);
        };
        let result = (&mut upload.handle).await;
        self.finish_delta(upload, result).await.map(Some)
    }

    async fn finish_delta(
        &mut self,
        upload: InFlight,
        result: Result<Result<Uploaded, SnapshotError>, tokio::task::JoinError>,
    ) -> Result<Snapshot, SnapshotError> {
        let InFlight {
            snapshot, events, ..
        } = upload;
        let result =
            result.unwrap_or_else(|e| Err(SnapshotError::Io(format!("delta upload task: {e}"))));
        let ok = result.is_ok();
        let uploaded = match result {
            Ok(u) => u,
            Err(e) => {
                self.metrics
                    .snapshot_duration
                    .get_or_create(&KindResult::new("Incr", false))
                    .observe(0.0);
                tracing::error!(snapshot = %snapshot.name(), events, error = %e, "delta snapshot failed; the events will be read again from etcd");
                return Err(e);
            }
        };
        self.metrics
            .snapshot_duration
            .get_or_create(&KindResult::new("Incr", ok))
            .observe(uploaded.elapsed.as_secs_f64());
        tracing::info!(snapshot = %snapshot.name(), events, bytes = uploaded.size, elapsed_ms = uploaded.elapsed.as_millis() as u64, "delta snapshot uploaded");
        self.metrics
            .record_snapshot(&snapshot, uploaded.size as u64);
        self.metrics.latest_deltas.inc();
        self.metrics
            .latest_deltas_revisions
            .inc_by(snapshot.last_revision - snapshot.start_revision + 1);
        self.delta_bytes += uploaded.size as u64;
        if let Some(leases) = &self.leases
            && let Err(e) = leases
                .delta_snapshot(snapshot.last_revision, self.delta_bytes)
                .await
        {
            tracing::warn!(error = %e, "cannot update the delta snapshot lease");
        }
        Ok(snapshot)
    }

    /// Cuts the buffer and waits until it (and anything before it) is in
    /// the store; returns the delta (`None` when there were no events).
    async fn delta_now(
        &mut self,
        buffer: DeltaStream,
        in_flight: &mut Option<InFlight>,
    ) -> Result<Option<Snapshot>, SnapshotError> {
        let had_events = !buffer.is_empty();
        self.settle(in_flight).await?;
        self.start_delta(buffer, in_flight).await?;
        let taken = self.settle(in_flight).await?;
        Ok(if had_events { taken } else { None })
    }

    async fn renew_delta_lease(&self) {
        if let Some(leases) = &self.leases
            && let Err(e) = leases
                .delta_snapshot(self.last_revision, self.delta_bytes)
                .await
        {
            tracing::warn!(error = %e, "cannot update the delta snapshot lease");
        }
    }

    /// Takes a full snapshot: streams etcd's snapshot into a temporary
    /// file while checking its SHA-256 trailer, names it with the revision
    /// its database holds, and uploads it (compressed while streaming).
    pub async fn full_snapshot(
        &mut self,
        is_final: bool,
    ) -> Result<Option<Snapshot>, SnapshotError> {
        let started = Instant::now();
        let result = self.full_snapshot_inner(is_final).await;
        let ok = result.is_ok();
        self.metrics
            .snapshot_duration
            .get_or_create(&KindResult::new("Full", ok))
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            tracing::error!(error = %e, "full snapshot failed");
        }
        result
    }

    async fn full_snapshot_inner(
        &mut self,
        is_final: bool,
    ) -> Result<Option<Snapshot>, SnapshotError> {
        let lock = self.maintenance.clone();
        let _guard = match &lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let started = Instant::now();
        let status = self.client.status().await?;
        let header_revision = status.header().map_or(0, |h| h.revision());
        if is_final
            && let Some(prev) = &self.prev_full
            && prev.is_final
            && prev.last_revision >= header_revision
        {
            tracing::info!(snapshot = %prev.name(), "a final full snapshot at this revision exists already");
            return Ok(Some(prev.clone()));
        }
        std::fs::create_dir_all(&self.settings.temp_dir).map_err(|e| {
            SnapshotError::Io(format!(
                "cannot create {}: {e}",
                self.settings.temp_dir.display()
            ))
        })?;
        let path = self
            .settings
            .temp_dir
            .join(format!("full-snapshot-{}.db", std::process::id()));
        let staged = tokio::time::timeout(
            self.settings.snapshot_timeout,
            stage(&mut self.client, &path),
        )
        .await;
        let staged = match staged {
            Ok(r) => r,
            Err(_) => Err(SnapshotError::Timeout(self.settings.snapshot_timeout)),
        };
        let result = async {
            let db_len = staged?;
            let revision = match &self.revision_reader {
                Some(read) => {
                    let p = path.clone();
                    let read = read.clone();
                    let rev = tokio::task::spawn_blocking(move || read(&p))
                        .await
                        .map_err(|e| SnapshotError::Io(e.to_string()))?
                        .map_err(SnapshotError::Integrity)?;
                    if rev < header_revision {
                        tracing::warn!(db_revision = rev, header_revision, "the snapshot's database is older than the revision etcd reported before it");
                    }
                    rev
                }
                None => header_revision,
            };
            let mut snapshot = Snapshot::full(revision, Utc::now().timestamp(), self.settings.compression);
            snapshot.is_final = is_final;
            tracing::info!(snapshot = %snapshot.name(), db_bytes = db_len, "uploading full snapshot");
            let size = self.store.upload_file(&snapshot, &path).await?;
            Ok::<(Snapshot, u64, u64), SnapshotError>((snapshot, size, db_len))
        }
        .await;
        let _ = std::fs::remove_file(&path);
        let (snapshot, size, db_len) = result?;
        tracing::info!(snapshot = %snapshot.name(), db_bytes = db_len, stored_bytes = size, "full snapshot uploaded");
        if let Some(rate) = catch_up::measured_rate(db_len, started.elapsed()) {
            self.full_rate = Some(rate);
        }
        self.last_revision = snapshot.last_revision;
        self.prev_full = Some(snapshot.clone());
        self.delta_bytes = 0;
        self.metrics.record_snapshot(&snapshot, size);
        self.metrics
            .snapshot_required
            .get_or_create(&KindLabel::new("Full"))
            .set(0);
        self.metrics.latest_deltas.set(0);
        self.metrics.latest_deltas_revisions.set(0);
        if let Some(leases) = &self.leases {
            let created = DateTime::from_timestamp(snapshot.created_at, 0).unwrap_or_else(Utc::now);
            if let Err(e) = leases.full_snapshot(snapshot.last_revision, created).await {
                tracing::warn!(error = %e, "cannot update the full snapshot lease");
            }
            // No events since the full snapshot: the delta lease follows.
            if let Err(e) = leases.delta_snapshot(snapshot.last_revision, 0).await {
                tracing::warn!(error = %e, "cannot update the delta snapshot lease");
            }
        }
        Ok(Some(snapshot))
    }
}

/// Streams etcd's snapshot into `path`, checking the SHA-256 trailer;
/// returns the database length.
async fn stage(client: &mut Client, path: &Path) -> Result<u64, SnapshotError> {
    use std::io::Write as _;
    let io = |e: std::io::Error| SnapshotError::Io(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(4 << 20, file);
    let mut check = TrailerCheck::with_upstream_size_check();
    let mut stream = client.snapshot().await?;
    while let Some(resp) = stream.message().await? {
        let blob = resp.blob();
        check.update(blob);
        out.write_all(blob).map_err(io)?;
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    let verified = check
        .finish()
        .map_err(|e| SnapshotError::Integrity(e.to_string()))?;
    Ok(verified.payload_len)
}

/// The next scheduled full snapshot after `now`.
pub fn next_full_snapshot(schedule: &croner::Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.find_next_occurrence(&now, false).ok()
}

fn until(at: Option<DateTime<Utc>>) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match at {
        Some(t) => {
            let secs = (t - Utc::now()).num_milliseconds().max(0) as u64;
            now + Duration::from_millis(secs)
        }
        // No next occurrence: effectively never.
        None => now + Duration::from_secs(100 * 365 * 86_400),
    }
}

/// Whether a full snapshot is due when the snapshotter starts: there is
/// none, the latest is final (a migration marker, not a base to continue
/// from), or a scheduled one was missed since it was taken.
pub fn full_required_at_startup(
    prev_full: Option<&Snapshot>,
    schedule: &croner::Cron,
    now: DateTime<Utc>,
) -> bool {
    let Some(prev) = prev_full else { return true };
    if prev.is_final || prev.kind != SnapshotKind::Full {
        return true;
    }
    let Some(taken) = DateTime::from_timestamp(prev.created_at, 0) else {
        return true;
    };
    match schedule.find_next_occurrence(&taken, false) {
        Ok(next) => next <= now,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
