//! Defragmentation without downtime, coordinated by the leader's sidecar.
//!
//! Why the leader's sidecar coordinates (and not the operator): it already
//! talks to every member (the operator by design never needs to reach
//! etcd), it knows who leads, and it is the process that takes full
//! snapshots, so the two exclude each other with one lock
//! ([`MaintenanceLock`]) instead of a protocol across processes.
//!
//! A run:
//! 1. refuses to start while anything else changes the cluster: a member
//!    that does not answer (restoring, restarting), a learner or fewer
//!    members than the cluster was created with (scale-up), a StatefulSet
//!    whose pods are not all updated and ready (rolling update, see
//!    [`Blockers`]), or an alarm other than NOSPACE;
//! 2. defragments the followers one at a time, each only while all other
//!    members are healthy, waiting until it is healthy again before the
//!    next;
//! 3. moves leadership to a healthy, already-defragmented follower
//!    (MoveLeader) and then defragments the former leader, so writes never
//!    wait on a defragmenting leader;
//! 4. disarms a NOSPACE alarm once every member has room again.
//!
//! Members whose fragmentation (dbSize − dbSizeInUse) is under the
//! threshold are skipped, and the report says so. No member is started
//! after the run's deadline (`--etcd-defrag-timeout` from the start of the
//! window); a failure or a timeout stops the run, leaves the cluster as it
//! is (healthy members stay healthy; etcd finishes a defragmentation it
//! started) and is retried in the next window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, StatusResponse};
use futures::future::BoxFuture;
use serde::Serialize;

use druid_api::LAST_DEFRAGMENTATION_ANNOTATION;
use druid_api::etcd::{DefragmentationResult, DefragmentationRun};

use crate::config::EtcdArgs;
use crate::etcd::MaintenanceLock;
use crate::k8s::EtcdHandle;
use crate::metrics::Metrics;

/// How long a member may take to answer a status call.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a member may take to become healthy again after a
/// defragmentation or a leadership move.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest time from the run's start after which no member is started.
    pub window: Duration,
    /// Timeout of one member's defragmentation.
    pub member_timeout: Duration,
    /// Members with less fragmentation (bytes) are skipped.
    pub threshold_bytes: u64,
    /// The number of members the cluster was created with.
    pub expected_members: usize,
}

/// What happened to one member.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberResult {
    /// The member's name.
    pub name: String,
    /// The member's ID (hex).
    pub id: String,
    /// Whether it led when the run started.
    pub was_leader: bool,
    /// `Defragmented`, `Skipped` or `Failed`.
    pub outcome: String,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// dbSize before.
    pub db_size_before: i64,
    /// dbSize after (before when not defragmented).
    pub db_size_after: i64,
    /// Bytes reclaimed.
    pub reclaimed_bytes: i64,
    /// Seconds the defragmentation took.
    pub duration_seconds: f64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `Succeeded`, `Refused` (a blocker), `Failed` or `TimedOut`.
    pub outcome: String,
    /// Why the run was refused, failed or stopped.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Per member, in the order they were handled.
    pub members: Vec<MemberResult>,
    /// Whether a NOSPACE alarm was disarmed.
    pub nospace_disarmed: bool,
    /// Seconds the run took.
    pub duration_seconds: f64,
}

impl Report {
    fn refused(reason: String, started: Instant) -> Self {
        Report {
            outcome: "Refused".into(),
            reason,
            members: Vec::new(),
            nospace_disarmed: false,
            duration_seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// What else may block a run (a rolling update or a scale-up seen from
/// Kubernetes): resolves to why the run must not start, if it must not.
pub type Blockers = Arc<dyn Fn() -> BoxFuture<'static, Option<String>> + Send + Sync>;

/// No blockers beyond what etcd shows.
pub fn no_blockers() -> Blockers {
    Arc::new(|| Box::pin(async { None }))
}

/// A member as the member list and its status show it.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    id: u64,
    endpoint: String,
}

/// The coordinator.
pub struct Coordinator {
    etcd: EtcdArgs,
    /// Any endpoints of the cluster (to list members).
    cluster_endpoints: Vec<String>,
    settings: Settings,
    metrics: Arc<Metrics>,
    lock: MaintenanceLock,
    blockers: Blockers,
}

impl Coordinator {
    /// A coordinator.
    pub fn new(
        etcd: EtcdArgs,
        cluster_endpoints: Vec<String>,
        settings: Settings,
        metrics: Arc<Metrics>,
        lock: MaintenanceLock,
        blockers: Blockers,
    ) -> Self {
        Coordinator {
            etcd,
            cluster_endpoints,
            settings,
            metrics,
            lock,
            blockers,
        }
    }

    async fn client(&self, endpoint: &str) -> Result<Client, String> {
        crate::etcd::connect(&self.etcd, &[endpoint.to_string()], STATUS_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }

    async fn status(&self, endpoint: &str) -> Result<StatusResponse, String> {
        let mut client = self.client(endpoint).await?;
        match tokio::time::timeout(STATUS_TIMEOUT, client.status()).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {STATUS_TIMEOUT:?}")),
        }
    }

    /// A client of the first cluster endpoint that answers (a balanced
    /// client would still send some calls to a member that is down).
    async fn cluster_client(&self) -> Result<Client, String> {
        crate::etcd::connect_any(&self.etcd, &self.cluster_endpoints, STATUS_TIMEOUT)
            .await
            .map_err(|e| format!("no member of the cluster answers: {e}"))
    }

    /// The members, or why the cluster is not in a state to defragment.
    async fn members(&self) -> Result<Vec<Member>, String> {
        let mut client = self.cluster_client().await?;
        let list = tokio::time::timeout(STATUS_TIMEOUT, client.member_list())
            .await
            .map_err(|_| "the member list did not answer".to_string())?
            .map_err(|e| format!("cannot list members: {e}"))?;
        let mut members = Vec::new();
        for m in list.members() {
            if m.is_learner() {
                return Err(format!(
                    "member {} is a learner: a scale-up is in progress",
                    m.name()
                ));
            }
            let Some(endpoint) = m.client_urls().first() else {
                return Err(format!(
                    "member {:x} has no client URL yet (name {:?}): a scale-up is in progress",
                    m.id(),
                    m.name()
                ));
            };
            members.push(Member {
                name: m.name().to_string(),
                id: m.id(),
                endpoint: endpoint.clone(),
            });
        }
        if members.len() < self.settings.expected_members {
            return Err(format!(
                "{} of {} members are in the cluster: a scale-up or a member replacement is in progress",
                members.len(),
                self.settings.expected_members
            ));
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(members)
    }

    /// Every member answers; `except` may be skipped. Returns the statuses
    /// by member index.
    async fn all_healthy(
        &self,
        members: &[Member],
        except: Option<u64>,
    ) -> Result<Vec<Option<StatusResponse>>, String> {
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            if Some(m.id) == except {
                out.push(None);
                continue;
            }
            let s = self
                .status(&m.endpoint)
                .await
                .map_err(|e| format!("member {} is not healthy: {e}", m.name))?;
            // A raised NOSPACE alarm shows in every member's errors; it is
            // what a run clears, not a reason to refuse one.
            if let Some(err) = s.errors().iter().find(|e| !e.contains("alarm:NOSPACE")) {
                return Err(format!("member {} reports: {err}", m.name));
            }
            out.push(Some(s));
        }
        Ok(out)
    }

    async fn wait_healthy(&self, member: &Member) -> Result<StatusResponse, String> {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        loop {
            match self.status(&member.endpoint).await {
                Ok(s) => return Ok(s),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "member {} did not become healthy within {RECOVERY_TIMEOUT:?}: {e}",
                        member.name
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Alarms other than NOSPACE block; returns whether NOSPACE is raised.
    async fn alarms(&self) -> Result<bool, String> {
        let mut client = self.cluster_client().await?;
        let resp = client
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .map_err(|e| format!("cannot read alarms: {e}"))?;
        let mut nospace = false;
        for a in resp.alarms() {
            match a.alarm() {
                AlarmType::Nospace => nospace = true,
                AlarmType::None => {}
                other => {
                    return Err(format!(
                        "member {:x} has alarm {other:?}: fix it before defragmenting",
                        a.member_id()
                    ));
                }
            }
        }
        Ok(nospace)
    }

    /// Runs one defragmentation pass over the cluster.
    pub async fn run(&self) -> Report {
        let started = Instant::now();
        let deadline = started + self.settings.window;
        if let Some(reason) = (self.blockers)().await {
            return self.finish(Report::refused(reason, started));
        }
        let _guard = self.lock.lock().await;
        let members = match self.members().await {
            Ok(m) => m,
            Err(reason) => return self.finish(Report::refused(reason, started)),
        };
        let statuses = match self.all_healthy(&members, None).await {
            Ok(s) => s,
            Err(reason) => return self.finish(Report::refused(reason, started)),
        };
        let nospace = match self.alarms().await {
            Ok(n) => n,
            Err(reason) => return self.finish(Report::refused(reason, started)),
        };
        let leader_id = statuses
            .iter()
            .flatten()
            .map(StatusResponse::leader)
            .find(|&l| l != 0)
            .unwrap_or(0);
        if !members.iter().any(|m| m.id == leader_id) {
            return self.finish(Report::refused("the cluster has no leader".into(), started));
        }
        tracing::info!(members = members.len(), leader = %format!("{leader_id:x}"), nospace, "defragmentation starting");
        let mut report = Report {
            outcome: "Succeeded".into(),
            reason: String::new(),
            members: Vec::new(),
            nospace_disarmed: false,
            duration_seconds: 0.0,
        };
        // Followers first, then the leader.
        let mut order: Vec<&Member> = members.iter().filter(|m| m.id != leader_id).collect();
        order.extend(members.iter().filter(|m| m.id == leader_id));
        let mut done: Vec<u64> = Vec::new();
        for member in order {
            let was_leader = member.id == leader_id;
            if Instant::now() > deadline {
                report.outcome = "TimedOut".into();
                report.reason = format!(
                    "the window ({:?}) ended before member {}; it is tried in the next window",
                    self.settings.window, member.name
                );
                break;
            }
            // Every other member must be healthy before this one starts.
            if let Err(reason) = self.all_healthy(&members, Some(member.id)).await {
                report.outcome = "Failed".into();
                report.reason = format!("stopped before member {}: {reason}", member.name);
                break;
            }
            let status = match self.status(&member.endpoint).await {
                Ok(s) => s,
                Err(e) => {
                    report.outcome = "Failed".into();
                    report.reason = format!("member {} is not healthy: {e}", member.name);
                    break;
                }
            };
            let before = status.db_size();
            let fragmented = before - status.raft_used_db_size();
            let mut result = MemberResult {
                name: member.name.clone(),
                id: format!("{:x}", member.id),
                was_leader,
                outcome: String::new(),
                reason: String::new(),
                db_size_before: before,
                db_size_after: before,
                reclaimed_bytes: 0,
                duration_seconds: 0.0,
            };
            if !nospace && u64::try_from(fragmented).unwrap_or(0) < self.settings.threshold_bytes {
                result.outcome = "Skipped".into();
                result.reason = format!(
                    "fragmentation {fragmented} bytes is under the threshold of {} bytes",
                    self.settings.threshold_bytes
                );
                tracing::info!(member = %member.name, fragmented, "skipping defragmentation: under the threshold");
                done.push(member.id);
                report.members.push(result);
                continue;
            }
            if was_leader
                && members.len() > 1
                && let Err(reason) = self.move_leadership(&members, member, &done).await
            {
                result.outcome = "Failed".into();
                result.reason = reason.clone();
                report.members.push(result);
                report.outcome = "Failed".into();
                report.reason = reason;
                break;
            }
            match self.defragment(member).await {
                Ok((after, took)) => {
                    result.outcome = "Defragmented".into();
                    result.db_size_after = after;
                    result.reclaimed_bytes = before - after;
                    result.duration_seconds = took.as_secs_f64();
                    done.push(member.id);
                    report.members.push(result);
                }
                Err(reason) => {
                    result.outcome = "Failed".into();
                    result.reason = reason.clone();
                    report.members.push(result);
                    report.outcome = "Failed".into();
                    report.reason = reason;
                    break;
                }
            }
        }
        if nospace && report.outcome == "Succeeded" {
            match self.disarm_nospace().await {
                Ok(()) => report.nospace_disarmed = true,
                Err(e) => {
                    report.outcome = "Failed".into();
                    report.reason = e;
                }
            }
        }
        report.duration_seconds = started.elapsed().as_secs_f64();
        self.finish(report)
    }

    /// Moves leadership from `leader` to a healthy follower already
    /// handled in this run.
    async fn move_leadership(
        &self,
        members: &[Member],
        leader: &Member,
        done: &[u64],
    ) -> Result<(), String> {
        let mut target = None;
        for m in members
            .iter()
            .filter(|m| m.id != leader.id && done.contains(&m.id))
        {
            if self.status(&m.endpoint).await.is_ok() {
                target = Some(m);
                break;
            }
        }
        let Some(target) = target else {
            return Err("no healthy, already defragmented follower to move leadership to".into());
        };
        let mut client = self.client(&leader.endpoint).await?;
        client.move_leader(target.id).await.map_err(|e| {
            format!(
                "moving leadership from {} to {}: {e}",
                leader.name, target.name
            )
        })?;
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        loop {
            if let Ok(s) = self.status(&leader.endpoint).await
                && s.leader() == target.id
            {
                tracing::info!(from = %leader.name, to = %target.name, "leadership moved before defragmenting the former leader");
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "leadership did not move to {} within {RECOVERY_TIMEOUT:?}",
                    target.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Defragments one member and waits until it is healthy again;
    /// returns its db size after and the time taken.
    async fn defragment(&self, member: &Member) -> Result<(i64, Duration), String> {
        tracing::info!(member = %member.name, endpoint = %member.endpoint, "defragmenting");
        let mut client = self.client(&member.endpoint).await?;
        let started = Instant::now();
        let result = tokio::time::timeout(self.settings.member_timeout, client.defragment()).await;
        let took = started.elapsed();
        let ok = matches!(result, Ok(Ok(_)));
        self.metrics
            .defrag_duration
            .get_or_create(&crate::metrics::DefragLabels::new(&member.endpoint, ok))
            .observe(took.as_secs_f64());
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let _ = self.wait_healthy(member).await;
                return Err(format!("defragmenting {} failed: {e}", member.name));
            }
            Err(_) => {
                // etcd goes on with a defragmentation it started; wait for
                // it so the cluster is left healthy.
                let _ = self.wait_healthy(member).await;
                return Err(format!(
                    "defragmenting {} took longer than {:?} (--etcd-defrag-timeout)",
                    member.name, self.settings.member_timeout
                ));
            }
        }
        let status = self.wait_healthy(member).await?;
        let after = status.db_size();
        tracing::info!(member = %member.name, db_size_after = after, seconds = took.as_secs_f64(), "defragmented");
        Ok((after, took))
    }

    async fn disarm_nospace(&self) -> Result<(), String> {
        let mut client = self.cluster_client().await?;
        let resp = client
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .map_err(|e| format!("cannot read alarms: {e}"))?;
        for a in resp.alarms() {
            if a.alarm() == AlarmType::Nospace {
                let mut options = AlarmOptions::new();
                options.with_member(a.member_id());
                client
                    .alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(options))
                    .await
                    .map_err(|e| {
                        format!("cannot disarm NOSPACE of member {:x}: {e}", a.member_id())
                    })?;
                tracing::info!(member = %format!("{:x}", a.member_id()), "NOSPACE alarm disarmed");
            }
        }
        Ok(())
    }

    fn finish(&self, report: Report) -> Report {
        self.metrics
            .defrag_runs
            .get_or_create(&crate::metrics::RunOutcome {
                outcome: report.outcome.clone(),
            })
            .inc();
        let now = chrono::Utc::now().timestamp();
        for m in &report.members {
            let labels = crate::metrics::MemberLabel::new(&m.name);
            self.metrics.defrag_last_run.get_or_create(&labels).set(now);
            self.metrics
                .defrag_reclaimed
                .get_or_create(&labels)
                .set(m.reclaimed_bytes);
            self.metrics
                .defrag_total
                .get_or_create(&crate::metrics::DefragOutcome::new(&m.name, &m.outcome))
                .inc();
        }
        match report.outcome.as_str() {
            "Succeeded" => tracing::info!(report = ?report, "defragmentation finished"),
            _ => {
                tracing::warn!(outcome = %report.outcome, reason = %report.reason, "defragmentation did not complete")
            }
        }
        report
    }
}
/// The note of a run: why it was refused or failed, each member's result,
/// a disarmed NOSPACE alarm; at most 1,000 bytes.
pub fn run_note(report: &Report) -> String {
    let mut note = report
        .members
        .iter()
        .map(|m| match m.outcome.as_str() {
            "Defragmented" => format!(
                "{}: reclaimed {} bytes in {:.1}s",
                m.name, m.reclaimed_bytes, m.duration_seconds
            ),
            _ => format!("{}: {} ({})", m.name, m.outcome, m.reason),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if !report.reason.is_empty() {
        note = if note.is_empty() {
            report.reason.clone()
        } else {
            format!("{}; {note}", report.reason)
        };
    }
    if report.nospace_disarmed {
        note.push_str("; NOSPACE alarm disarmed");
    }
    druid_plugin_host::truncate(&note, 1000).to_string()
}

/// Publishes a run's results on the member leases: the run's summary on
/// this member's lease (the operator turns it into an event on the Etcd)
/// and each member's result on its lease (`status.members` shows it).
pub async fn publish(handle: &EtcdHandle, report: &Report) {
    let run = DefragmentationRun {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        outcome: report.outcome.clone(),
        note: run_note(report),
    };
    if let Ok(value) = serde_json::to_string(&run) {
        handle
            .annotate_member_lease(
                handle.own_lease(),
                druid_api::LAST_DEFRAGMENTATION_RUN_ANNOTATION,
                &value,
            )
            .await;
    }
    let time = run.time.clone();
    for m in &report.members {
        let result = DefragmentationResult {
            time: time.clone(),
            outcome: m.outcome.clone(),
            reason: m.reason.clone(),
            reclaimed_bytes: m.reclaimed_bytes,
            db_size_before: m.db_size_before,
            db_size_after: m.db_size_after,
            duration_seconds: m.duration_seconds,
        };
        let Ok(value) = serde_json::to_string(&result) else {
            continue;
        };
        handle
            .annotate_member_lease(&m.name, LAST_DEFRAGMENTATION_ANNOTATION, &value)
            .await;
    }
}
