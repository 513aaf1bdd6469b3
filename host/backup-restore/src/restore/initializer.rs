//! Initialization before etcd starts: validate the data directory and
//! restore it from the store when it is missing, corrupt or behind.
//!
//! Sanity mode checks the structure (`member/`, `member/snap`,
//! `member/wal`), opens the database and reads its revision; full mode
//! also walks every page of the database (`druid_etcd_db::Db::check`).
//! A single member whose database revision is behind the store's latest
//! snapshot first gets the chance to replay its WAL (a temporary etcd on
//! the data directory until its revision reaches the store's or stops
//! moving, at most 60 s); only if it stays behind is it restored.
//!
//! With several members an invalid data directory is not restored from
//! the bucket: the member is removed from the
//! cluster, its data moved aside and it is added back as a learner, so it
//! syncs from the leader (upstream's behaviour).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{EtcdArgs, RestoreArgs};
use crate::etcd::temp::{TempEtcd, TempEtcdError};
use crate::formats::version::{self, VersionError};
use crate::metrics::{Metrics, RestoreLabels, Succeeded};
use crate::restore;
use crate::store::Snapstore;

/// How long one attempt to add this member as a learner may take.
const MEMBER_ADD_TIMEOUT: Duration = Duration::from_secs(10);

/// How thoroughly to validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Structure and revision.
    Sanity,
    /// Also every page of the database.
    Full,
}

impl Mode {
    /// Parses `full` or `sanity` (anything else is `full`, as upstream).
    pub fn parse(mode: Option<&str>) -> Self {
        match mode {
            Some("sanity") => Mode::Sanity,
            _ => Mode::Full,
        }
    }
}

/// The state of the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirStatus {
    /// Usable, at this revision.
    Valid {
        /// The database's revision.
        revision: i64,
    },
    /// There is no data directory.
    Missing,
    /// A part of the layout is missing.
    InvalidStructure(String),
    /// The database cannot be read.
    Corrupt(String),
}

/// Why initialization failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The volume belongs to another namespace.
    #[error(
        "wrong volume mounted: {path} says namespace {found:?}, this pod runs in {expected:?}; \
         refusing to touch data that belongs to another cluster"
    )]
    WrongVolume {
        /// The safe_guard file.
        path: PathBuf,
        /// Its content.
        found: String,
        /// $POD_NAMESPACE.
        expected: String,
    },
    /// The restore failed.
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The temporary etcd that lets the data directory replay its WAL did
    /// not start.
    #[error(transparent)]
    TempEtcd(#[from] TempEtcdError),
    /// The data directory records a newer etcd minor version than the
    /// member's etcd.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Reads the revision of an etcd database file.
pub fn db_revision(db: &Path) -> Result<i64, String> {
    let file = std::fs::File::open(db).map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let db = druid_etcd_db::Db::open(file).map_err(|e| format!("{}: {e}", db.display()))?;
    // An empty key bucket is a fresh etcd, whose revision is 1.
    db.last_revision()
        .map(|r| r.unwrap_or(1))
        .map_err(|e| e.to_string())
}

/// Reads the revision of a full snapshot staged on disk (the database plus
/// its 32-byte trailer).
pub fn snapshot_revision(path: &Path) -> Result<i64, String> {
    db_revision(path)
}

/// Validates the data directory.
pub fn validate(data_dir: &Path, mode: Mode) -> DataDirStatus {
    if !data_dir.exists() {
        return DataDirStatus::Missing;
    }
    for sub in ["member", "member/snap", "member/wal"] {
        if !data_dir.join(sub).is_dir() {
            return DataDirStatus::InvalidStructure(format!(
                "{} is missing",
                data_dir.join(sub).display()
            ));
        }
    }
    let db_path = data_dir.join("member/snap/db");
    let file = match std::fs::File::open(&db_path) {
        Ok(f) => f,
        Err(e) => return DataDirStatus::Corrupt(format!("cannot open {}: {e}", db_path.display())),
    };
    let db = match druid_etcd_db::Db::open(file) {
        Ok(db) => db,
        Err(e) => return DataDirStatus::Corrupt(format!("{}: {e}", db_path.display())),
    };
    if mode == Mode::Full
        && let Err(e) = db.check()
    {
        return DataDirStatus::Corrupt(format!("{}: {e}", db_path.display()));
    }
    match db.last_revision() {
        Ok(revision) => DataDirStatus::Valid {
            revision: revision.unwrap_or(1),
        },
        Err(e) => DataDirStatus::Corrupt(format!("{}: {e}", db_path.display())),
    }
}

/// Checks (and creates) `<parent of data dir>/safe_guard`, which holds
/// the namespace the volume belongs to.
pub fn check_safe_guard(data_dir: &Path) -> Result<(), InitError> {
    let Ok(namespace) = std::env::var("POD_NAMESPACE") else {
        return Ok(());
    };
    let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let path = parent.join("safe_guard");
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == namespace => Ok(()),
        Ok(found) => Err(InitError::WrongVolume {
            path,
            found: found.trim().to_string(),
            expected: namespace,
        }),
        Err(_) => std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::write(&path, &namespace))
            .map_err(|e| InitError::Other(format!("cannot write {}: {e}", path.display()))),
    }
}

/// Everything initialization needs.
pub struct Initializer<'a> {
    /// Restore settings (data dir, member name, cluster).
    pub restore: &'a RestoreArgs,
    /// etcd connection settings (for the multi-member path).
    pub etcd: &'a EtcdArgs,
    /// The store, if one is configured.
    pub store: Option<&'a Snapstore>,
    /// Whether the members renew member leases (pods the operator runs),
    /// named as the members of `--initial-cluster`: they tell whether the
    /// cluster ran before.
    pub member_leases: bool,
    /// Metrics.
    pub metrics: &'a Metrics,
}

/// What initialization did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The data directory is valid as it is.
    Valid,
    /// It was restored from the store.
    Restored(restore::RestoreReport),
    /// There was nothing to restore: etcd starts empty.
    StartEmpty,
    /// The member was re-added as a learner and syncs from the leader.
    RejoinAsLearner,
}

impl Initializer<'_> {
    fn multi_member(&self) -> bool {
        self.restore
            .initial_cluster
            .split(',')
            .filter(|s| !s.is_empty())
            .count()
            > 1
    }

    /// The member names of `--initial-cluster`.
    fn member_names(&self) -> Vec<String> {
        self.restore
            .initial_cluster
            .split(',')
            .filter_map(|m| m.split_once('=').map(|(name, _)| name.trim().to_string()))
            .filter(|name| !name.is_empty())
            // A member with several peer URLs is listed once per URL.
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// A member without data that finds no running member of its cluster
    /// would found a new, empty cluster with the other members starting
    /// (etcd's own bootstrap). That is right only for a cluster's first
    /// start: refuses when the cluster ran before, as the store's backups
    /// or the members' leases show. Members that start together without
    /// data are staged by the operator when there is a store (member 0
    /// alone first, the others join it as learners), so this is a cluster
    /// that lost its quorum: a new, empty cluster of the new members, next
    /// to the survivors, would be what the client Service serves.
    async fn refuse_to_found_over_history(&self) -> Result<(), InitError> {
        let asked = self.etcd.cluster_endpoints().join(",");
        // A URL's user information never reaches a log.
        let endpoints = druid_plugin_host::redact::redact_urls(&asked);
        if let Some(store) = self.store {
            let set = store.list().await?.latest_set();
            if set.full.is_some() {
                return Err(InitError::Other(format!(
                    "no member of this cluster answers at {endpoints} and this member has no \
                     data, but the store holds the cluster's backups (up to revision {}): not \
                     founding a new, empty cluster. If the other members are starting, this is \
                     retried until one answers; if a majority of the members is lost for good, \
                     the operator's quorum-loss recovery restores the cluster from the store",
                    set.last_revision()
                )));
            }
        }
        if !self.member_leases {
            return Ok(());
        }
        let ran = crate::k8s::leases::member_revisions(&self.member_names())
            .await
            .map_err(|e| {
                InitError::Other(format!(
                    "no member of this cluster answers at {endpoints} and this member has no \
                     data; whether the cluster ran before (and must not be founded anew) is \
                     on the member leases, which cannot be read: {e} (retried)"
                ))
            })?;
        // A new cluster is at revision 1 until its first write.
        let Some((lease, revision)) = ran
            .into_iter()
            .filter(|(_, revision)| *revision > 1)
            .max_by_key(|(_, revision)| *revision)
        else {
            return Ok(());
        };
        Err(InitError::Other(format!(
            "no member of this cluster answers at {endpoints} and this member has no data, but \
             the cluster ran before (lease {lease}: its member reached revision {revision}) and \
             {}: not founding a new, empty cluster. If the other members are starting, this is \
             retried until one answers. If a majority of the members lost its data for good, \
             the data is only on the members that kept their volumes; to start an empty cluster \
             knowingly instead, delete this Etcd's member leases (the operator creates them \
             again)",
            if self.store.is_some() {
                "the store holds no full snapshot to restore"
            } else {
                "there is no store to restore from"
            }
        )))
    }

    /// Validates and, where needed, restores.
    pub async fn run(&self, mode: Mode) -> Result<Outcome, InitError> {
        let data_dir = &self.restore.data_dir;
        check_safe_guard(data_dir)?;
        let started = Instant::now();
        let dir = data_dir.clone();
        let status = tokio::task::spawn_blocking(move || validate(&dir, mode))
            .await
            .map_err(|e| InitError::Other(e.to_string()))?;
        self.metrics
            .validation_duration
            .get_or_create(&Succeeded::new(matches!(
                status,
                DataDirStatus::Valid { .. }
            )))
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(data_dir = %data_dir.display(), ?mode, ?status, "data directory validated");
        if matches!(status, DataDirStatus::Valid { .. }) {
            self.check_data_version().await?;
        }

        if self.multi_member() {
            let membership = self.membership().await;
            if membership.is_none()
                && self.etcd.join_existing_cluster
                && !matches!(status, DataDirStatus::Valid { .. })
            {
                // Starting without data and without the source cluster
                // would found a cluster of its own next to the source's.
                return Err(InitError::Other(format!(
                    "this member joins an existing cluster, but no voting member answers at {}: \
                     not founding a new cluster; check that the source cluster runs and that \
                     spec.etcd.bootstrapWithExistingCluster.clientEndpoints reach it (retried)",
                    // A URL's user information never reaches a log.
                    druid_plugin_host::redact::redact_urls(
                        &self.etcd.cluster_endpoints().join(",")
                    )
                )));
            }
            if membership.is_none() && matches!(status, DataDirStatus::Missing) {
                self.refuse_to_found_over_history().await?;
            }
            match membership {
                // Not in the running cluster: a scale-up, or a member
                // removed by an earlier attempt. Join as a learner.
                Some(None) => return self.rejoin_as_learner(&DataDirStatus::Missing).await,
                // In the running cluster and it ran before, but its data is
                // gone (a lost volume): starting empty under its old
                // identity would confuse raft, and a restore from the store
                // would found a cluster of its own. Rejoin as a learner.
                Some(Some(true)) if matches!(status, DataDirStatus::Missing) => {
                    return self.rejoin_as_learner(&status).await;
                }
                _ => {}
            }
            return match status {
                DataDirStatus::Valid { .. } | DataDirStatus::Missing => Ok(Outcome::Valid),
                _ => self.rejoin_as_learner(&status).await,
            };
        }
        let Some(store) = self.store else {
            return match status {
                DataDirStatus::Valid { .. } | DataDirStatus::Missing => Ok(Outcome::Valid),
                other => Err(InitError::Other(format!(
                    "the data directory is invalid ({other:?}) and no store is configured to restore it from"
                ))),
            };
        };
        let set = store.list().await?.latest_set();
        let store_revision = set.last_revision();
        match &status {
            DataDirStatus::Valid { revision } if *revision >= store_revision => {
                return Ok(Outcome::Valid);
            }
            DataDirStatus::Valid { revision } => {
                tracing::warn!(
                    db_revision = revision,
                    store_revision,
                    "the database is behind the latest snapshot; letting etcd replay its WAL first"
                );
                match Box::pin(self.wal_catch_up(store_revision)).await {
                    Ok(rev) if rev >= store_revision => {
                        tracing::info!(
                            revision = rev,
                            "the WAL brought the data up to the store's revision"
                        );
                        return Ok(Outcome::Valid);
                    }
                    Ok(rev) => tracing::warn!(
                        revision = rev,
                        store_revision,
                        "the data stays behind the store after WAL replay: restoring"
                    ),
                    Err(e) => tracing::warn!(error = %e, "WAL replay failed: restoring"),
                }
            }
            other => tracing::warn!(status = ?other, "the data directory is unusable: restoring"),
        }
        if set.full.is_none() {
            if let Some(bak) = restore::move_aside(data_dir)? {
                tracing::error!(moved_to = %bak.display(), "no snapshot in the store to restore from: the unusable data directory was moved aside and etcd starts empty");
            }
            return Ok(Outcome::StartEmpty);
        }
        let report = restore::restore(self.restore, store, &set, self.metrics).await?;
        Ok(Outcome::Restored(report))
    }

    /// Refuses to start an etcd older than the version the data directory
    /// records ([`version::check_data_dir`]). Acts only on a version the
    /// etcd-wrapper reported or `--etcd-version` set: the restore tool's
    /// version may differ from the member's etcd, and a wrong refusal
    /// would keep a healthy member down.
    async fn check_data_version(&self) -> Result<(), InitError> {
        let Some(target) = restore::stated_version(self.restore) else {
            tracing::debug!(
                "no etcd version stated (etcd-wrapper, --etcd-version): the data directory's \
                 version is not checked"
            );
            return Ok(());
        };
        let db = self.restore.data_dir.join("member/snap/db");
        let path = db.clone();
        let written = tokio::task::spawn_blocking(move || version::written_by(&path))
            .await
            .map_err(|e| InitError::Other(e.to_string()))?;
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which etcd version last ran on the data directory; etcd starts on it");
                return Ok(());
            }
        };
        version::check_data_dir(&db, &written, &target)?;
        tracing::info!(
            written_by = %written.version,
            recorded = written.recorded,
            etcd = %target.version,
            etcd_version_source = %target.source,
            "the data directory's version suits this member's etcd"
        );
        Ok(())
    }

    /// Starts etcd on the data directory until its revision reaches
    /// `target` (60 s at most); returns the revision reached.
    async fn wal_catch_up(&self, target: i64) -> Result<i64, InitError> {
        let etcd = TempEtcd::start(self.restore, &self.restore.data_dir).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut client = etcd.client.clone();
        let mut revision = 0;
        // etcd applies the committed WAL entries right after it starts:
        // once the revision stops moving for a few seconds, it is final
        // (upstream waits the full 60 s).
        let mut stable_since = Instant::now();
        while Instant::now() < deadline {
            if let Ok(s) = client.status().await {
                let now = s.header().map_or(0, |h| h.revision());
                if now != revision {
                    revision = now;
                    stable_since = Instant::now();
                }
                if revision >= target || stable_since.elapsed() > Duration::from_secs(3) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        etcd.stop().await;
        Ok(revision)
    }

    /// Removes this member from the cluster, moves its data aside and adds
    /// it back as a learner.
    fn is_me(&self, member: &etcd_client::Member) -> bool {
        member
            .peer_urls()
            .iter()
            .any(|u| self.restore.initial_advertise_peer_urls.contains(u))
    }

    /// This member's entry in the running cluster's member list (by peer
    /// URL): `Some(None)` when it is not in it, `Some(Some(started))` when
    /// it is (`started`: it ran before, so it has a name; members of a
    /// cluster being bootstrapped have none until they start); `None` when
    /// no member answers (the cluster is being bootstrapped, or down).
    async fn membership(&self) -> Option<Option<bool>> {
        let mut client = crate::etcd::connect_any(
            self.etcd,
            self.etcd.cluster_endpoints(),
            Duration::from_secs(2),
        )
        .await
        .ok()?;
        let list = tokio::time::timeout(Duration::from_secs(5), client.member_list())
            .await
            .ok()?
            .ok()?;
        Some(
            list.members()
                .iter()
                .find(|m| self.is_me(m))
                .map(|m| !m.name().is_empty()),
        )
    }

    /// Removes this member from the cluster (if it is in it), moves its
    /// data aside and adds it back as a learner, retrying while etcd
    /// refuses reconfiguration (it does so for a few seconds after a
    /// membership change).
    async fn rejoin_as_learner(&self, status: &DataDirStatus) -> Result<Outcome, InitError> {
        let started = Instant::now();
        let result = self.rejoin_as_learner_inner(status).await;
        self.metrics
            .restoration_duration
            .get_or_create(&RestoreLabels::rejoined(result.is_ok()))
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn rejoin_as_learner_inner(&self, status: &DataDirStatus) -> Result<Outcome, InitError> {
        tracing::warn!(
            ?status,
            "rejoining the cluster as a learner to sync from the leader"
        );
        let mut client = crate::etcd::connect_any(
            self.etcd,
            self.etcd.cluster_endpoints(),
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| InitError::Other(e.to_string()))?;
        let members = client
            .member_list()
            .await
            .map_err(|e| InitError::Other(format!("cannot list members: {e}")))?;
        if let Some(me) = members.members().iter().find(|m| self.is_me(m)) {
            if me.is_learner() && matches!(status, DataDirStatus::Missing) {
                // Added already (a retried initialization): etcd joins.
                return Ok(Outcome::RejoinAsLearner);
            }
            let removing = Instant::now();
            client.member_remove(me.id()).await.map_err(|e| {
                InitError::Other(format!("cannot remove member {}: {e}", self.restore.name))
            })?;
            self.metrics
                .member_remove_duration
                .observe(removing.elapsed().as_secs_f64());
        }
        let data_dir = &self.restore.data_dir;
        restore::move_aside(data_dir)?;
        let adding = Instant::now();
        let deadline = adding + Duration::from_secs(120);
        let mut backoff = Duration::from_secs(1);
        loop {
            // Each attempt is bounded: etcd 3.4 never answers a proposal
            // that raft ignored ("ignoring conf change" while another
            // member's addition is pending, as when two members of a
            // scale-up ask at the same moment).
            let attempt = tokio::time::timeout(
                MEMBER_ADD_TIMEOUT,
                client.member_add(
                    self.restore.initial_advertise_peer_urls.clone(),
                    Some(etcd_client::MemberAddOptions::new().with_is_learner()),
                ),
            )
            .await;
            let why = match attempt {
                Ok(Ok(_)) => {
                    self.metrics
                        .add_learner_duration
                        .observe(adding.elapsed().as_secs_f64());
                    return Ok(Outcome::RejoinAsLearner);
                }
                Ok(Err(e)) if e.to_string().contains("already exists") => {
                    return Ok(Outcome::RejoinAsLearner);
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("etcd did not answer within {MEMBER_ADD_TIMEOUT:?}"),
            };
            if Instant::now() >= deadline {
                return Err(InitError::Other(format!(
                    "cannot add {} as a learner: {why}",
                    self.restore.name
                )));
            }
            tracing::info!(error = %why, retry_in_s = backoff.as_secs(), "adding this member as a learner failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}
