//! Running the compactor plugin: the host lends it files as `blobs`
//! handles (inputs read-only, output and scratch capped in size) and
//! nothing else.
//!
//! The host does not take the plugin's word for the result: after the
//! plugin returns, it merges the same inputs natively
//! ([`druid_etcd_db::expected_content`]: the live keys, their revisions
//! and fields, without writing a database) and compares that digest with
//! the output's. A compactor that drops a key, changes a value or loses a
//! lease fails the compaction, naming the plugin, before anyone uses the
//! output.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use druid_etcd_db::{
    CompactOptions, CompactReport, ContentDigest, Db, DeltaInput, SnapshotInfo, content_of,
    expected_content,
};

use crate::grants::Grants;
use crate::limits::{MAX_COMPACT_MESSAGE, truncate};
use crate::runtime::bindings::compactor::CompactorPre;
use crate::runtime::bindings::compactor::exports::druid::plugin::compaction as wit;
use crate::runtime::lent::{BlobReader, BlobWriter};
use crate::runtime::{HostState, PluginHost, guarded};
use crate::{Error, Limits};

/// A compaction to run: the files, the options and the plugin's limits.
#[derive(Debug, Clone)]
pub struct CompactJob {
    /// The base full snapshot.
    pub base: SnapshotInfo,
    /// Its database (decompressed; the trailer may follow).
    pub base_file: PathBuf,
    /// The deltas, in order, with their decompressed payloads.
    pub deltas: Vec<(SnapshotInfo, PathBuf)>,
    /// Where the database and its SHA-256 go (created or truncated).
    pub output: PathBuf,
    /// Scratch space for spills (created or truncated; removed after).
    pub scratch: PathBuf,
    /// The compaction's options.
    pub options: CompactOptions,
    /// Limits of the plugin for this call.
    pub limits: Limits,
    /// The most bytes the output and the scratch file may each hold.
    pub max_output_bytes: u64,
}

/// Why a compaction did not produce a database.
#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    /// No plugin exports the `compactor` world.
    #[error(
        "no compactor plugin is loaded (plugins: {known}); add druid_plugin_compactor.wasm to the \
         plugins directory"
    )]
    NoCompactor {
        /// The plugins that are loaded.
        known: String,
    },
    /// A file could not be opened or created.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The plugin failed, trapped or hit a limit.
    #[error(transparent)]
    Plugin(#[from] Error),
    /// The inputs are damaged, not continuous, or disagree.
    #[error("{0}")]
    InvalidInput(String),
    /// Reading or writing a blob failed.
    #[error("{0}")]
    Io(String),
    /// The plugin's output is a well-formed database, but not what the
    /// inputs give.
    #[error(
        "the compactor plugin {plugin} wrote a database that does not hold what the snapshots \
         give: {detail}; it was not used. Replace the plugin (druid_plugin_compactor.wasm from \
         this release) and run the compaction again"
    )]
    WrongContent {
        /// The plugin's name.
        plugin: String,
        /// What differs.
        detail: String,
    },
}

fn open(path: &Path) -> Result<BlobReader, CompactionError> {
    BlobReader::open(path).map_err(|source| CompactionError::File {
        path: path.to_path_buf(),
        source,
    })
}

fn create(path: &Path, cap: u64) -> Result<BlobWriter, CompactionError> {
    BlobWriter::create(path, cap).map_err(|source| CompactionError::File {
        path: path.to_path_buf(),
        source,
    })
}

/// Where the host's own merge spills: beside the plugin's scratch file.
fn host_scratch(scratch: &Path) -> PathBuf {
    let mut name = scratch.as_os_str().to_owned();
    name.push(".host");
    PathBuf::from(name)
}

/// What the job's inputs must give, and what the output holds (with the
/// leases of its lease bucket). Native and blocking.
fn expected_of(
    job: &CompactJob,
) -> Result<
    (
        ContentDigest,
        ContentDigest,
        std::collections::BTreeSet<i64>,
    ),
    CompactionError,
> {
    let file = |path: &Path| {
        File::open(path).map_err(|source| CompactionError::File {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut deltas = Vec::with_capacity(job.deltas.len());
    for (info, path) in &job.deltas {
        deltas.push(DeltaInput {
            info: info.clone(),
            data: file(path)?,
        });
    }
    let scratch_path = host_scratch(&job.scratch);
    let scratch = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&scratch_path)
        .map_err(|source| CompactionError::File {
            path: scratch_path.clone(),
            source,
        })?;
    let expected = expected_content(
        &job.base,
        file(&job.base_file)?,
        &deltas,
        scratch,
        &job.options,
    )
    .map_err(|e| {
        if e.is_io() {
            CompactionError::Io(e.to_string())
        } else {
            CompactionError::InvalidInput(e.to_string())
        }
    })?;
    let output = Db::open(file(&job.output)?).map_err(|e| CompactionError::WrongContent {
        plugin: String::new(),
        detail: format!("the output is not a database: {e}"),
    })?;
    let (found, leases) = content_of(&output).map_err(|e| CompactionError::WrongContent {
        plugin: String::new(),
        detail: e.to_string(),
    })?;
    Ok((expected, found, leases))
}

fn wit_info(i: &SnapshotInfo) -> wit::SnapshotInfo {
    wit::SnapshotInfo {
        name: i.name.clone(),
        start_revision: i.start_revision,
        last_revision: i.last_revision,
    }
}

/// A loaded plugin that exports the `compactor` world.
#[derive(Clone)]
pub struct Compactor {
    host: Arc<PluginHost>,
    name: String,
    pre: CompactorPre<HostState>,
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Compactor {
    pub(crate) fn new(host: Arc<PluginHost>, name: String, pre: CompactorPre<HostState>) -> Self {
        Self { host, name, pre }
    }

    /// The plugin's name, as its `describe` gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the compactor plugin on `job` under `job.limits`. The output
    /// file holds the database and its SHA-256 on success; the scratch
    /// file is removed either way.
    pub async fn compact(&self, job: &CompactJob) -> Result<CompactReport, CompactionError> {
        let result = self.compact_inner(job).await;
        let _ = std::fs::remove_file(&job.scratch);
        let report = result?;
        let plugin = self.name.clone();
        let checked = job.clone();
        let expected = tokio::task::spawn_blocking(move || expected_of(&checked))
            .await
            .map_err(|e| CompactionError::Io(format!("the content check did not finish: {e}")))?;
        let _ = std::fs::remove_file(host_scratch(&job.scratch));
        let (expected, found, leases) = expected.map_err(|e| match e {
            CompactionError::WrongContent { detail, .. } => CompactionError::WrongContent {
                plugin: plugin.clone(),
                detail,
            },
            other => other,
        })?;
        if let Some(detail) = expected.mismatch(&found, &leases) {
            tracing::error!(plugin = %plugin, %detail, "the compactor's output is wrong");
            return Err(CompactionError::WrongContent { plugin, detail });
        }
        if report.keys != expected.keys {
            return Err(CompactionError::WrongContent {
                plugin,
                detail: format!(
                    "it reported {} live keys, but its output and the snapshots hold {}",
                    report.keys, expected.keys
                ),
            });
        }
        Ok(report)
    }

    async fn compact_inner(&self, job: &CompactJob) -> Result<CompactReport, CompactionError> {
        let mut session =
            self.host
                .session_with_limits(&self.name, &Grants::none(), &job.limits)?;
        let push_err = |e: wasmtime::component::ResourceTableError| {
            CompactionError::Io(format!("cannot lend a file to the plugin: {e}"))
        };
        let table = &mut session.store.data_mut().table;
        let base = table.push(open(&job.base_file)?).map_err(push_err)?;
        let mut deltas = Vec::with_capacity(job.deltas.len());
        for (_, path) in &job.deltas {
            deltas.push(table.push(open(path)?).map_err(push_err)?);
        }
        let output = table
            .push(create(&job.output, job.max_output_bytes)?)
            .map_err(push_err)?;
        let scratch = table
            .push(create(&job.scratch, job.max_output_bytes)?)
            .map_err(push_err)?;
        let infos: Vec<wit::SnapshotInfo> = job.deltas.iter().map(|(i, _)| wit_info(i)).collect();
        let options = wit::Options {
            unknown_lease_ttl: job.options.unknown_lease_ttl,
            sort_memory_bytes: job.options.sort_memory_bytes as u64,
            max_delta_bytes: job.options.max_delta_bytes,
        };
        let base_info = wit_info(&job.base);
        let instance = guarded!(&mut session, "instantiate", |store| self
            .pre
            .instantiate_async(store))?;
        let result = guarded!(&mut session, "compact", |store| instance
            .druid_plugin_compaction()
            .call_compact(
                store, &base_info, base, &infos, &deltas, output, scratch, options
            ))?;
        if result.is_err()
            && let Some(spent) = session.budget_spent("compact")
        {
            return Err(spent.into());
        }
        let r = result.map_err(|e| match e {
            wit::CompactError::InvalidInput(m) => {
                CompactionError::InvalidInput(truncate(&m, MAX_COMPACT_MESSAGE).to_string())
            }
            wit::CompactError::Io(m) => {
                CompactionError::Io(truncate(&m, MAX_COMPACT_MESSAGE).to_string())
            }
        })?;
        let sha256: [u8; 32] = r.sha256.as_slice().try_into().map_err(|_| {
            CompactionError::Io(format!(
                "the plugin reported a {}-byte SHA-256",
                r.sha256.len()
            ))
        })?;
        Ok(CompactReport {
            base_revision: r.base_revision,
            revision: r.revision,
            keys: r.keys,
            base_entries: r.base_entries,
            deltas: job.deltas.len() as u64,
            events: r.events,
            events_skipped: r.events_skipped,
            leases: r.leases,
            leases_recreated: r.leases_recreated,
            recreated_lease_ttl: r.recreated_lease_ttl,
            db_bytes: r.db_bytes,
            sha256,
            spilled_bytes: r.spilled_bytes,
            sort_peak_bytes: r.sort_peak_bytes,
        })
    }
}
