//! Full snapshot + deltas → one database, through the compactor plugin:
//! used by restores (no replay) and by `etcdbr compact` (the compaction
//! job, which uploads the result as a new full snapshot).
//!
//! 1. The full snapshot is downloaded and decompressed to the work
//!    directory and its SHA-256 trailer checked; the deltas are downloaded
//!    and decompressed, `--max-fetchers` at a time.
//! 2. The compactor plugin (plugins/compactor, `druid_etcd_db::compact`)
//!    merges them into `compacted.db` under the plugin host's limits
//!    (`--compaction-memory-limit`, `--compaction-timeout`); it sees the
//!    files only as handles and may write at most a bounded output.
//! 3. The output is verified on the host before anyone uses it: its
//!    content (the plugin host merges the inputs natively and compares
//!    the live keys, their revisions, fields and leases with the output's,
//!    see `druid_plugin_host::CompactJob`), its trailer, bbolt's
//!    consistency check, and the revision (newest key or compaction) equal
//!    to what the plugin reported and to the last delta.
//!
//! Nothing in the store changes here; errors name the snapshot at fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use druid_etcd_db::{CompactOptions, CompactReport, Db, Prefix, SnapshotInfo};
use druid_plugin_host::{CompactJob, CompactionError, Limits};
use futures::StreamExt as _;

use crate::config::{CompactionArgs, RestoreArgs};
use crate::formats::compression::Compression;
use crate::formats::delta;
use crate::formats::full::{self, FileCheckError};
use crate::formats::names::Snapshot;
use crate::k8s::leases::Leases;
use crate::store::{self, Cutoff, Snapstore};

/// Why a compaction failed. Nothing in the store changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store was opened without the plugin registry.
    #[error("this store was opened without plugins; no compactor")]
    NoPlugins,
    /// The store holds no full snapshot.
    #[error("the store holds no full snapshot to compact onto; take a full snapshot first")]
    NoFullSnapshot,
    /// Listing, downloading or uploading failed, or the full snapshot is
    /// corrupt.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The work directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The snapshots are damaged, discontinuous or disagree.
    #[error("the snapshots cannot be compacted, nothing was changed: {0}")]
    InvalidInput(String),
    /// The compactor plugin failed, hit a limit or wrote the wrong content.
    #[error(transparent)]
    Plugin(CompactionError),
    /// The compacted database failed the host's checks.
    #[error("the compacted database {path} failed verification and was not used: {problem}")]
    Unverified {
        /// The database.
        path: PathBuf,
        /// What is wrong with it.
        problem: OutputProblem,
    },
}

/// What is wrong with a compacted database.
#[derive(Debug, thiserror::Error)]
pub enum OutputProblem {
    /// Its SHA-256 trailer.
    #[error(transparent)]
    Trailer(#[from] FileCheckError),
    /// It cannot be opened or fails bbolt's consistency check.
    #[error(transparent)]
    Db(#[from] druid_etcd_db::Error),
    /// Its revision is not what the compactor reported or what the
    /// snapshots end at.
    #[error(
        "it is at revision {found}; the compactor reported {reported} and the snapshots end at \
         {expected}"
    )]
    Revision {
        /// The database's revision (newest key or compaction).
        found: i64,
        /// What the compactor reported.
        reported: i64,
        /// The last delta's revision.
        expected: i64,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// A compacted database on disk.
#[derive(Debug)]
pub struct Compacted {
    /// The database followed by its SHA-256 (a snapshot stream).
    pub path: PathBuf,
    /// What the compactor reported.
    pub report: CompactReport,
    /// Seconds spent downloading and decompressing.
    pub download_seconds: f64,
    /// Seconds the plugin ran.
    pub compact_seconds: f64,
}

fn info(store: &Snapstore, s: &Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        name: store.key(s),
        start_revision: s.start_revision,
        last_revision: s.last_revision,
    }
}

/// The plugin limits and options of a compaction from the flags.
pub fn job_settings(args: &CompactionArgs) -> (Limits, CompactOptions) {
    let limits = Limits {
        memory_bytes: usize::try_from(args.compaction_memory_limit).unwrap_or(usize::MAX),
        call_cpu_time: args.compaction_timeout,
        call_timeout: args.compaction_timeout,
        // The plugin reads in pieces of at most 8 MiB.
        max_return_bytes: Limits::default().max_return_bytes,
    };
    let options = CompactOptions {
        unknown_lease_ttl: args
            .unknown_lease_ttl
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)),
        sort_memory_bytes: usize::try_from(args.compaction_sort_memory).unwrap_or(usize::MAX),
        max_delta_bytes: args.compaction_max_delta_size,
    };
    (limits, options)
}

/// Compacts `full`, already downloaded and checked into `base_file` (see
/// [`download_full`]), and `deltas`, downloaded into `workdir`, into
/// `workdir/compacted.db`, verified. The inputs, `base_file` included, are
/// removed afterwards.
#[allow(
    clippy::too_many_arguments,
    reason = "the compaction's inputs and settings"
)]
pub async fn compact_set(
    args: &CompactionArgs,
    max_fetchers: usize,
    store: &Snapstore,
    full: &Snapshot,
    base_file: &Path,
    deltas: &[Snapshot],
    cut: Option<Cutoff>,
    workdir: &Path,
) -> Result<Compacted, Error> {
    let registry = store.registry().ok_or(Error::NoPlugins)?;
    std::fs::create_dir_all(workdir).map_err(io("cannot create", workdir))?;
    let started = Instant::now();
    let shared = Arc::new(store.clone());
    let mut downloads = futures::stream::iter(deltas.iter().cloned().enumerate().map(|(i, d)| {
        let store = shared.clone();
        let path = workdir.join(format!("delta-{i:06}"));
        async move {
            store.download_to_file(&d, &path).await?;
            Ok::<_, store::Error>((d, path))
        }
    }))
    .buffered(max_fetchers.max(1));
    let mut inputs = Vec::with_capacity(deltas.len());
    while let Some(item) = downloads.next().await {
        let (d, path) = item?;
        inputs.push((info(store, &d), path));
    }
    drop(downloads);
    if let Some(cut) = cut {
        cut_last_delta(&mut inputs, cut)?;
    }
    let download_seconds = started.elapsed().as_secs_f64();

    let (limits, options) = job_settings(args);
    let input_bytes: u64 = std::iter::once(base_file)
        .chain(inputs.iter().map(|(_, p)| p.as_path()))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let job = CompactJob {
        base: info(store, full),
        base_file: base_file.to_path_buf(),
        deltas: inputs,
        output: workdir.join("compacted.db"),
        scratch: workdir.join("scratch"),
        options,
        limits,
        // The output holds at most the inputs' data, rewritten; scratch
        // holds keys and revisions.
        max_output_bytes: input_bytes.saturating_mul(2).saturating_add(64 << 20),
    };
    tracing::info!(full = %full.name(), deltas = deltas.len(), input_bytes, "compacting");
    let started = Instant::now();
    let result = registry.compact(&job).await;
    let compact_seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(base_file);
    for (_, p) in &job.deltas {
        let _ = std::fs::remove_file(p);
    }
    let report = result.map_err(|e| match e {
        CompactionError::InvalidInput(m) => Error::InvalidInput(m),
        other => Error::Plugin(other),
    })?;
    let expected = job
        .deltas
        .last()
        .map_or(report.base_revision, |(info, _)| info.last_revision);
    verify_output(&job.output, &report, expected)?;
    tracing::info!(
        revision = report.revision,
        keys = report.keys,
        leases = report.leases,
        leases_recreated = report.leases_recreated,
        events = report.events,
        db_bytes = report.db_bytes,
        download_s = download_seconds,
        compact_s = compact_seconds,
        "compacted"
    );
    Ok(Compacted {
        path: job.output,
        report,
        download_seconds,
        compact_seconds,
    })
}

/// Drops the events past `cut` from the last delta (a point-in-time
/// restore): its payload is rewritten with the events kept (and their
/// SHA-256), its revisions end at the last one kept; a delta left without
/// events is dropped.
fn cut_last_delta(inputs: &mut Vec<(SnapshotInfo, PathBuf)>, cut: Cutoff) -> Result<(), Error> {
    let Some((info, path)) = inputs.last_mut() else {
        return Ok(());
    };
    let payload = std::fs::read(&*path).map_err(io("cannot read", path))?;
    let events = delta::decode_payload(&payload)
        .map_err(|e| Error::InvalidInput(format!("delta {}: {e}", info.name)))?;
    let total = events.len();
    let kept: Vec<_> = events
        .into_iter()
        .filter(|e| cut.keeps(e.event.kv.mod_revision, &e.time))
        .collect();
    tracing::info!(delta = %info.name, %cut, events = total, kept = kept.len(), "point-in-time restore: the last delta is cut");
    match kept.last() {
        None => {
            let _ = std::fs::remove_file(&*path);
            inputs.pop();
        }
        Some(last) if kept.len() < total => {
            info.last_revision = last.event.kv.mod_revision;
            let payload = delta::encode(&kept, Compression::None)
                .map_err(|e| Error::InvalidInput(format!("delta {}: {e}", info.name)))?;
            std::fs::write(&*path, payload).map_err(io("cannot write", path))?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// What `etcdbr compact` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobReport {
    /// The new full snapshot's object key.
    pub snapshot: String,
    /// The base it replaces as the latest full snapshot.
    pub base: String,
    /// Deltas merged.
    pub deltas: usize,
    /// The new snapshot's revision.
    pub revision: i64,
    /// Live keys.
    pub keys: u64,
    /// Leases, and how many were recreated.
    pub leases: u64,
    /// Leases recreated because the base lacked them.
    pub leases_recreated: u64,
    /// The database's size.
    pub db_bytes: u64,
    /// Bytes stored (compressed).
    pub stored_bytes: u64,
    /// Seconds downloading, compacting and uploading.
    pub download_seconds: f64,
    /// Seconds the plugin ran.
    pub compact_seconds: f64,
    /// Seconds uploading.
    pub upload_seconds: f64,
}

/// The compaction job: compacts the store's latest full snapshot and its
/// deltas in `workdir`, uploads the result as a full snapshot named with
/// its real revision (the compression of the last delta and the base's
/// final flag, as upstream), and records it in the full snapshot lease.
/// `Ok(None)` when there are no deltas to compact. The old snapshots stay;
/// garbage collection removes them by its policy.
pub async fn run_job(
    args: &RestoreArgs,
    store: &Snapstore,
    leases: Option<&Leases>,
    workdir: &Path,
) -> Result<Option<JobReport>, Error> {
    let set = store.list().await?.latest_set();
    let full = set.full.as_ref().ok_or(Error::NoFullSnapshot)?;
    if set.deltas.is_empty() {
        tracing::info!(full = %full.name(), "no deltas after the latest full snapshot: nothing to compact");
        return Ok(None);
    }
    let _ = std::fs::remove_dir_all(workdir);
    std::fs::create_dir_all(workdir).map_err(io("cannot create", workdir))?;
    let base_file = workdir.join("base.db");
    store
        .download_full(full, &base_file, args.skip_hash_check)
        .await?;
    let compacted = compact_set(
        &args.compaction,
        args.max_fetchers,
        store,
        full,
        &base_file,
        &set.deltas,
        None,
        workdir,
    )
    .await?;
    let compression = set
        .deltas
        .last()
        .map_or(full.compression, |d| d.compression);
    let mut snapshot = Snapshot::full(
        compacted.report.revision,
        chrono::Utc::now().timestamp(),
        compression,
    );
    snapshot.is_final = full.is_final;
    let started = Instant::now();
    let stored_bytes = store.upload_file(&snapshot, &compacted.path).await?;
    let upload_seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(workdir);
    if let Some(leases) = leases {
        let created = chrono::DateTime::from_timestamp(snapshot.created_at, 0)
            .unwrap_or_else(chrono::Utc::now);
        if let Err(e) = leases.full_snapshot(snapshot.last_revision, created).await {
            tracing::warn!(error = %e, "cannot update the full snapshot lease");
        }
        if let Err(e) = leases.delta_snapshot(snapshot.last_revision, 0).await {
            tracing::warn!(error = %e, "cannot update the delta snapshot lease");
        }
    }
    let r = &compacted.report;
    Ok(Some(JobReport {
        snapshot: store.key(&snapshot),
        base: store.key(full),
        deltas: set.deltas.len(),
        revision: r.revision,
        keys: r.keys,
        leases: r.leases,
        leases_recreated: r.leases_recreated,
        db_bytes: r.db_bytes,
        stored_bytes,
        download_seconds: compacted.download_seconds,
        compact_seconds: compacted.compact_seconds,
        upload_seconds,
    }))
}

/// Checks a compacted database before it is used: its trailer, bbolt's
/// consistency check and its revision.
pub fn verify_output(path: &Path, report: &CompactReport, expected: i64) -> Result<(), Error> {
    check_output(path, report, expected).map_err(|problem| Error::Unverified {
        path: path.to_path_buf(),
        problem,
    })
}

fn check_output(path: &Path, report: &CompactReport, expected: i64) -> Result<(), OutputProblem> {
    full::check_file(path)?;
    let file = std::fs::File::open(path).map_err(|source| FileCheckError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let db = Db::open(Prefix::new(file, report.db_bytes))?;
    db.check()?;
    let newest = db.last_revision()?.unwrap_or(0);
    let compacted = db.finished_compact_revision()?.map_or(0, |r| r.main);
    let found = newest.max(compacted);
    if found != report.revision || found < expected {
        return Err(OutputProblem::Revision {
            found,
            reported: report.revision,
            expected,
        });
    }
    Ok(())
}
