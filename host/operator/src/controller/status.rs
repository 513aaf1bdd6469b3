//! The status of an Etcd, from what the cluster shows: the StatefulSet, the
//! member and snapshot leases (renewed by the sidecars), and warning events
//! on the data volumes. [`observe`] reads; [`compute`] is pure.

use std::collections::BTreeMap;
use std::time::Duration;

use druid_api::etcd::{
    Condition, CrossVersionObjectReference, EtcdMemberStatus, EtcdStatus, LastError,
};
use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

use super::Settings;
use super::validate::Problem;
use crate::names;

/// Condition types this operator writes.
pub mod types {
    /// Quorum.
    pub const READY: &str = "Ready";
    /// Every member ready.
    pub const ALL_MEMBERS_READY: &str = "AllMembersReady";
    /// Every member at the StatefulSet's current revision.
    pub const ALL_MEMBERS_UPDATED: &str = "AllMembersUpdated";
    /// Snapshots are recent.
    pub const BACKUP_READY: &str = "BackupReady";
    /// No warnings on the data volumes.
    pub const DATA_VOLUMES_READY: &str = "DataVolumesReady";
    /// The spec and what it refers to are valid.
    pub const SPEC_VALID: &str = "SpecValid";
    /// How the last snapshot compaction (or the full snapshot taken instead)
    /// went: written by the compaction controller only.
    pub const LAST_SNAPSHOT_COMPACTION_SUCCEEDED: &str = "LastSnapshotCompactionSucceeded";
    /// Every type, for metrics.
    pub const ALL: &[&str] = &[
        READY,
        ALL_MEMBERS_READY,
        ALL_MEMBERS_UPDATED,
        BACKUP_READY,
        DATA_VOLUMES_READY,
        SPEC_VALID,
        LAST_SNAPSHOT_COMPACTION_SUCCEEDED,
    ];
    /// Types other controllers own: [`super::compute`] keeps them as they
    /// are.
    pub const FOREIGN: &[&str] = &[LAST_SNAPSHOT_COMPACTION_SUCCEEDED];
}

/// How the spec part of a reconcile went.
#[derive(Debug, Clone)]
pub enum SpecOutcome {
    /// Every component was applied.
    Reconciled,
    /// This generation was applied recently; only the status is synced.
    UpToDate,
    /// Not reconciled: suspended by annotation.
    Suspended,
    /// Not reconciled: waiting for the reconcile annotation.
    NotRequested,
    /// The spec or what it refers to is invalid (nothing was written).
    Invalid(Vec<Problem>),
    /// Applying a component failed.
    Failed {
        /// `ERR_SYNC_<COMPONENT>`.
        code: String,
        /// What failed.
        message: String,
    },
}

/// What the cluster shows about an Etcd.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// The StatefulSet.
    pub statefulset: Option<StatefulSet>,
    /// Member leases by name.
    pub member_leases: BTreeMap<String, Lease>,
    /// The full snapshot lease.
    pub full_snapshot_lease: Option<Lease>,
    /// The delta snapshot lease.
    pub delta_snapshot_lease: Option<Lease>,
    /// Warning messages on the data volumes.
    pub volume_warnings: Vec<String>,
    /// Whether any data volume claim exists yet.
    pub claims_exist: bool,
}

/// Reads what [`compute`] needs.
pub async fn observe(
    client: &kube::Client,
    caches: Option<&super::Caches>,
    etcd: &Etcd,
    model: Option<&EtcdModel>,
) -> Result<Observed, kube::Error> {
    let ns = etcd.namespace().unwrap_or_default();
    let name = etcd.name_any();
    if let Some(c) = caches {
        c.ready().await;
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    // From the watch caches when the controllers run; else by name (a
    // label LIST scans every lease of the namespace).
    let statefulset = match caches {
        Some(c) => c.statefulset(&ns, &names::statefulset(&name)),
        None => {
            Api::<StatefulSet>::namespaced(client.clone(), &ns)
                .get_opt(&names::statefulset(&name))
                .await?
        }
    };
    let lease = |lname: String| {
        let leases = leases.clone();
        let ns = ns.clone();
        async move {
            match caches {
                Some(c) => Ok::<_, kube::Error>(c.lease(&ns, &lname)),
                None => leases.get_opt(&lname).await,
            }
        }
    };
    let mut member_leases = BTreeMap::new();
    if let Some(model) = model {
        for i in 0..model.replicas {
            let member = names::member(model, i);
            if let Some(l) = lease(member.clone()).await? {
                member_leases.insert(member, l);
            }
        }
    }
    let full_snapshot_lease = lease(names::full_snapshot_lease(&name)).await?;
    let delta_snapshot_lease = lease(names::delta_snapshot_lease(&name)).await?;

    // Warning events of the data volumes: only looked at while the
    // StatefulSet is not ready and its claims exist (events are not
    // indexed, so a list costs as much as the namespace has events).
    let mut volume_warnings = Vec::new();
    let mut claims_exist = false;
    if let Some(sts) = &statefulset {
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let claims: Vec<String> = sts
            .spec
            .iter()
            .flat_map(|s| s.volume_claim_templates.iter().flatten())
            .flat_map(|t| {
                let tname = t.name_any();
                (0..replicas).map(move |i| format!("{tname}-{}-{i}", sts.name_any()))
            })
            .collect();
        let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(client.clone(), &ns);
        for claim in &claims {
            if pvcs.get_metadata_opt(claim).await?.is_some() {
                claims_exist = true;
                break;
            }
        }
        let ready = sts
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            >= replicas;
        if claims_exist && !ready {
            let events: Api<Event> = Api::namespaced(client.clone(), &ns);
            let lp = ListParams::default()
                .fields("involvedObject.kind=PersistentVolumeClaim,type=Warning");
            for ev in events.list(&lp).await?.items {
                if ev
                    .involved_object
                    .name
                    .as_ref()
                    .is_some_and(|n| claims.contains(n))
                    && let Some(m) = ev.message
                {
                    volume_warnings.push(m);
                }
            }
        }
    }
    Ok(Observed {
        claims_exist,
        statefulset,
        member_leases,
        full_snapshot_lease,
        delta_snapshot_lease,
        volume_warnings,
    })
}

/// The new status. `previous` keeps transition times of unchanged
/// conditions and the last observed generation.
pub fn compute(
    etcd: &Etcd,
    model: Option<&EtcdModel>,
    observed: &Observed,
    outcome: &SpecOutcome,
    settings: &Settings,
    now: Timestamp,
) -> EtcdStatus {
    let name = etcd.name_any();
    let previous = etcd.status.clone().unwrap_or_default();
    let replicas = etcd.spec.replicas;
    let members = members(observed, settings, now);
    let mut conditions = Vec::new();
    let mut set = |type_: &str, status: &str, reason: &str, message: String| {
        conditions.push(condition(
            &previous.conditions,
            type_,
            status,
            reason,
            message,
            now,
        ));
    };

    // Spec validity first: it says what to fix.
    match outcome {
        SpecOutcome::Invalid(problems) => set(
            types::SPEC_VALID,
            "False",
            problems.first().map_or("InvalidSpec", |p| p.reason),
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        SpecOutcome::Reconciled => set(
            types::SPEC_VALID,
            "True",
            "Valid",
            "the spec and the Secrets it refers to are valid".into(),
        ),
        _ => {
            if let Some(c) = previous
                .conditions
                .iter()
                .find(|c| c.type_ == types::SPEC_VALID)
            {
                set(&c.type_, &c.status, &c.reason, c.message.clone());
            }
        }
    }

    if replicas == 0 {
        for t in [types::READY, types::ALL_MEMBERS_READY] {
            set(
                t,
                "Unknown",
                "NotChecked",
                "the cluster is scaled to 0 replicas (hibernated)".into(),
            );
        }
    } else if members.is_empty() {
        for t in [types::READY, types::ALL_MEMBERS_READY] {
            set(
                t,
                "Unknown",
                "NoMembersInStatus",
                "no member has renewed its lease yet (the cluster is starting)".into(),
            );
        }
    } else {
        let ready = members.iter().filter(|m| m.status != "NotReady").count();
        let quorum = members.len() / 2 + 1;
        if ready >= quorum {
            set(
                types::READY,
                "True",
                "Quorate",
                format!(
                    "{ready} of {} members are up: the cluster has quorum",
                    members.len()
                ),
            );
        } else {
            set(
                types::READY,
                "False",
                "QuorumLost",
                format!(
                    "only {ready} of {} members are up, {quorum} are needed for quorum",
                    members.len()
                ),
            );
        }
        let all_ready = members.iter().filter(|m| m.status == "Ready").count();
        if all_ready == members.len() && members.len() >= usize::try_from(replicas).unwrap_or(0) {
            set(
                types::ALL_MEMBERS_READY,
                "True",
                "AllMembersReady",
                "every member is ready".into(),
            );
        } else {
            set(
                types::ALL_MEMBERS_READY,
                "False",
                "NotAllMembersReady",
                format!("{all_ready} of {replicas} members are ready"),
            );
        }
    }

    match &observed.statefulset {
        None => {
            set(
                types::ALL_MEMBERS_UPDATED,
                "Unknown",
                "StatefulSetNotFound",
                format!("StatefulSet {name} does not exist yet"),
            );
            set(
                types::DATA_VOLUMES_READY,
                "Unknown",
                "StatefulSetNotFound",
                format!("StatefulSet {name} does not exist yet"),
            );
        }
        Some(sts) => {
            if statefulset_updated(sts) {
                set(
                    types::ALL_MEMBERS_UPDATED,
                    "True",
                    "AllMembersUpdated",
                    "every member runs the current pod template".into(),
                );
            } else {
                set(
                    types::ALL_MEMBERS_UPDATED,
                    "False",
                    "NotAllMembersUpdated",
                    "the StatefulSet is rolling out a new pod template".into(),
                );
            }
            if !observed.claims_exist {
                set(
                    types::DATA_VOLUMES_READY,
                    "Unknown",
                    "NoClaimsYet",
                    "the StatefulSet's volume claims do not exist yet".into(),
                );
            } else if observed.volume_warnings.is_empty() {
                set(
                    types::DATA_VOLUMES_READY,
                    "True",
                    "NoWarningsFoundForDataVolumes",
                    "no warnings on the data volumes".into(),
                );
            } else {
                let shown: Vec<&str> = observed
                    .volume_warnings
                    .iter()
                    .take(2)
                    .map(String::as_str)
                    .collect();
                set(
                    types::DATA_VOLUMES_READY,
                    "False",
                    "FoundWarningsForDataVolumes",
                    shown.join("; "),
                );
            }
        }
    }

    if let Some(model) = model.filter(|m| m.store.is_some()) {
        let (status, reason, message) = backup_ready(model, observed, &previous, now);
        set(types::BACKUP_READY, status, reason, message);
    }
    // Conditions of other controllers, as they are (the status is written
    // whole, with an optimistic lock: see `etcd::apply`).
    conditions.extend(
        previous
            .conditions
            .iter()
            .filter(|c| types::FOREIGN.contains(&c.type_.as_str()))
            .cloned(),
    );
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));

    let sts_status = observed.statefulset.as_ref().and_then(|s| s.status.clone());
    let (last_errors, last_operation, observed_generation) = match outcome {
        SpecOutcome::Reconciled => (
            Vec::new(),
            operation("Reconcile", "Succeeded", "every component is applied", now),
            etcd.metadata.generation,
        ),
        SpecOutcome::Invalid(problems) => (
            problems
                .iter()
                .map(|p| LastError {
                    code: "ERR_INVALID_SPEC".into(),
                    description: p.to_string(),
                    observed_at: Some(Time(now)),
                })
                .collect(),
            operation(
                "Reconcile",
                "Error",
                "the spec is invalid: see the SpecValid condition",
                now,
            ),
            previous.observed_generation,
        ),
        SpecOutcome::Failed { code, message } => (
            vec![LastError {
                code: code.clone(),
                description: message.clone(),
                observed_at: Some(Time(now)),
            }],
            operation("Reconcile", "Error", message, now),
            previous.observed_generation,
        ),
        SpecOutcome::Suspended | SpecOutcome::NotRequested | SpecOutcome::UpToDate => (
            previous.last_errors.clone(),
            previous.last_operation.clone(),
            previous.observed_generation,
        ),
    };

    EtcdStatus {
        observed_generation,
        etcd: Some(CrossVersionObjectReference {
            api_version: Some("apps/v1".into()),
            kind: "StatefulSet".into(),
            name: names::statefulset(&name),
        }),
        conditions,
        members,
        current_replicas: Some(
            sts_status
                .as_ref()
                .and_then(|s| s.current_replicas)
                .unwrap_or(0),
        ),
        ready_replicas: Some(
            sts_status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
        ),
        replicas: Some(sts_status.as_ref().map_or(0, |s| s.replicas)),
        ready: Some(
            observed
                .statefulset
                .as_ref()
                .is_some_and(|s| statefulset_ready(s, replicas)),
        ),
        selector: Some(names::selector(Some(&name), None).to_string()),
        last_errors,
        last_operation,
    }
}

fn operation(
    type_: &str,
    state: &str,
    description: &str,
    now: Timestamp,
) -> Option<druid_api::etcd::LastOperation> {
    Some(druid_api::etcd::LastOperation {
        type_: type_.into(),
        state: state.into(),
        description: description.into(),
        run_id: String::new(),
        last_update_time: Some(Time(now)),
    })
}

fn condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .or(Some(Time(now)));
    Condition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time,
        last_update_time: Some(Time(now)),
        reason: reason.into(),
        message,
    }
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    let ms = now.as_millisecond().saturating_sub(then.as_millisecond());
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Members from their leases: a lease never renewed is skipped (the member
/// is still bootstrapping); one not renewed for `member_unknown_after` is
/// Unknown, and NotReady after `member_not_ready_after` more.
fn members(observed: &Observed, settings: &Settings, now: Timestamp) -> Vec<EtcdMemberStatus> {
    let mut out = Vec::new();
    for (name, lease) in &observed.member_leases {
        let Some(spec) = &lease.spec else { continue };
        let Some(renew) = &spec.renew_time else {
            continue;
        };
        let (id, role) = parse_holder(spec.holder_identity.as_deref().unwrap_or_default());
        let since = age(now, renew.0);
        let (status, reason) =
            if since > settings.member_unknown_after + settings.member_not_ready_after {
                ("NotReady", "UnknownGracePeriodExceeded")
            } else if since > settings.member_unknown_after {
                ("Unknown", "LeaseExpired")
            } else {
                ("Ready", "LeaseSucceeded")
            };
        out.push(EtcdMemberStatus {
            name: name.clone(),
            id,
            role,
            status: status.into(),
            reason: reason.into(),
            last_transition_time: Some(Time(renew.0)),
            last_defragmentation: last_defragmentation(lease),
        });
    }
    out
}

/// The member's last defragmentation, from its lease's annotation (a
/// value that does not parse is ignored with a log line).
fn last_defragmentation(lease: &Lease) -> Option<druid_api::etcd::DefragmentationResult> {
    let text = lease
        .metadata
        .annotations
        .as_ref()?
        .get(druid_api::LAST_DEFRAGMENTATION_ANNOTATION)?;
    match serde_json::from_str(text) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(lease = ?lease.metadata.name, error = %e, "ignoring an unreadable defragmentation result on a member lease");
            None
        }
    }
}

/// `<memberID>[:<clusterID>]:<role>` → (id, role).
fn parse_holder(holder: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = holder.split(':').collect();
    match parts.as_slice() {
        [id, .., role] if *role == "Leader" || *role == "Member" => (
            Some((*id).to_string()).filter(|s| !s.is_empty()),
            Some((*role).to_string()),
        ),
        [id] if !id.is_empty() => (Some((*id).to_string()), None),
        _ => (None, None),
    }
}

fn statefulset_updated(sts: &StatefulSet) -> bool {
    let Some(status) = &sts.status else {
        return false;
    };
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    status.observed_generation == sts.metadata.generation
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.update_revision == status.current_revision
}

fn statefulset_ready(sts: &StatefulSet, replicas: i32) -> bool {
    let Some(status) = &sts.status else {
        return false;
    };
    status.observed_generation == sts.metadata.generation
        && status.ready_replicas.unwrap_or(0) >= replicas
        && status.update_revision == status.current_revision
        && status.current_replicas == status.updated_replicas
}

fn backup_ready(
    model: &EtcdModel,
    observed: &Observed,
    previous: &EtcdStatus,
    now: Timestamp,
) -> (&'static str, &'static str, String) {
    let renewed = |l: &Option<Lease>| {
        l.as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| age(now, t.0))
    };
    let delta_period = model.backup.delta_snapshot_period;
    let full_interval = schedule_interval(&model.backup.full_snapshot_schedule)
        .unwrap_or(Duration::from_secs(24 * 3600));
    match (
        renewed(&observed.full_snapshot_lease),
        renewed(&observed.delta_snapshot_lease),
    ) {
        (Some(full), Some(delta))
            if delta <= delta_period.saturating_mul(2)
                && full <= full_interval.saturating_add(model.backup.snapshot_timeout) =>
        {
            (
                "True",
                "BackupSucceeded",
                format!(
                    "last full snapshot {}s ago, last delta snapshot {}s ago",
                    full.as_secs(),
                    delta.as_secs()
                ),
            )
        }
        (_, Some(delta)) if delta > delta_period.saturating_mul(3) => {
            let was_true = previous
                .conditions
                .iter()
                .any(|c| c.type_ == types::BACKUP_READY && c.status == "True");
            if was_true {
                (
                    "Unknown",
                    "Unknown",
                    format!("no delta snapshot for {}s", delta.as_secs()),
                )
            } else {
                (
                    "False",
                    "BackupFailed",
                    format!(
                        "stale snapshot leases: no delta snapshot for {}s (period {}s); check the backup-restore sidecar's log and the store",
                        delta.as_secs(),
                        delta_period.as_secs()
                    ),
                )
            }
        }
        (None, _) | (_, None) => (
            "Unknown",
            "NoSnapshotYet",
            "no snapshot has been taken yet".into(),
        ),
        (Some(full), Some(_)) => (
            "Unknown",
            "Unknown",
            format!(
                "the last full snapshot is {}s old (schedule every {}s)",
                full.as_secs(),
                full_interval.as_secs()
            ),
        ),
    }
}

/// The time between two runs of a cron schedule, around now.
fn schedule_interval(schedule: &str) -> Option<Duration> {
    let cron = druid_api::model::parse_cron(schedule).ok()?;
    let now = chrono::Utc::now();
    let prev = cron.find_previous_occurrence(&now, false).ok()?;
    let next = cron.find_next_occurrence(&prev, false).ok()?;
    (next - prev).to_std().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;
    use crate::components::fixtures;

    fn lease(name: &str, holder: &str, renewed_secs_ago: i64, now: Timestamp) -> (String, Lease) {
        let mut l = Lease::default();
        l.metadata.name = Some(name.into());
        l.spec = Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(
                Timestamp::from_second(now.as_second() - renewed_secs_ago).unwrap(),
            )),
            ..LeaseSpec::default()
        });
        (name.into(), l)
    }

    fn cond<'a>(s: &'a EtcdStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn members_show_their_last_defragmentation_from_the_lease() {
        let etcd = fixtures::seed();
        let model = fixtures::model(&etcd);
        let now = Timestamp::now();
        let mut observed = Observed::default();
        let (name, mut l) = lease("test-0", "1a:c1:Leader", 5, now);
        l.metadata.annotations = Some(BTreeMap::from([(
            druid_api::LAST_DEFRAGMENTATION_ANNOTATION.to_string(),
            r#"{"time":"2026-11-30T00:00:05Z","outcome":"Defragmented","reclaimedBytes":1048576,"dbSizeBefore":3145728,"dbSizeAfter":2097152,"durationSeconds":0.5}"#.to_string(),
        )]));
        observed.member_leases.insert(name, l);
        let (name, mut broken) = lease("test-1", "1b:c1:Member", 5, now);
        broken.metadata.annotations = Some(BTreeMap::from([(
            druid_api::LAST_DEFRAGMENTATION_ANNOTATION.to_string(),
            "not json".to_string(),
        )]));
        observed.member_leases.insert(name, broken);
        let s = compute(
            &etcd,
            Some(&model),
            &observed,
            &SpecOutcome::Reconciled,
            &Settings::default(),
            now,
        );
        let d = s.members[0].last_defragmentation.as_ref().unwrap();
        assert_eq!(d.outcome, "Defragmented");
        assert_eq!(d.reclaimed_bytes, 1 << 20);
        assert_eq!(d.duration_seconds, 0.5);
        assert!(
            s.members[1].last_defragmentation.is_none(),
            "an unreadable annotation is ignored"
        );
    }

    #[test]
    fn quorum_follows_the_member_leases() {
        let mut etcd = fixtures::seed();
        etcd.spec.replicas = 3;
        let model = fixtures::model(&etcd);
        let now = Timestamp::now();
        let settings = Settings::default();
        let mut observed = Observed::default();
        observed.member_leases.extend([
            lease("test-0", "1a:c1:Leader", 5, now),
            lease("test-1", "1b:c1:Member", 5, now),
            lease("test-2", "1c:c1:Member", 1000, now),
        ]);
        let s = compute(
            &etcd,
            Some(&model),
            &observed,
            &SpecOutcome::Reconciled,
            &settings,
            now,
        );
        assert_eq!(cond(&s, types::READY).status, "True");
        assert_eq!(cond(&s, types::ALL_MEMBERS_READY).status, "False");
        assert_eq!(s.members[0].role.as_deref(), Some("Leader"));
        assert_eq!(s.members[2].status, "NotReady");

        observed
            .member_leases
            .extend([lease("test-1", "1b:c1:Member", 1000, now)]);
        let s = compute(
            &etcd,
            Some(&model),
            &observed,
            &SpecOutcome::Reconciled,
            &settings,
            now,
        );
        assert_eq!(cond(&s, types::READY).status, "False");
        assert_eq!(cond(&s, types::READY).reason, "QuorumLost");
        assert_eq!(s.etcd.as_ref().unwrap().kind, "StatefulSet");
        assert_eq!(s.observed_generation, Some(1));
    }

    #[test]
    fn invalid_specs_say_why_and_keep_the_observed_generation() {
        let etcd = fixtures::seed();
        let problems = vec![Problem {
            reason: "StoreSecretMissing",
            field: "spec.store.storeSecret".into(),
            message: "Secret demo/etcd-backup does not exist".into(),
        }];
        let s = compute(
            &etcd,
            None,
            &Observed::default(),
            &SpecOutcome::Invalid(problems),
            &Settings::default(),
            Timestamp::now(),
        );
        let c = cond(&s, types::SPEC_VALID);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "StoreSecretMissing")
        );
        assert!(
            c.message.contains("spec.store.storeSecret"),
            "{}",
            c.message
        );
        assert_eq!(s.last_errors[0].code, "ERR_INVALID_SPEC");
        assert_eq!(s.observed_generation, None);
    }

    #[test]
    fn the_compaction_controllers_condition_is_kept_as_it_is() {
        let mut etcd = fixtures::seed();
        let model = fixtures::model(&etcd);
        let now = Timestamp::now();
        let theirs = Condition {
            type_: types::LAST_SNAPSHOT_COMPACTION_SUCCEEDED.into(),
            status: "False".into(),
            last_transition_time: Some(Time(Timestamp::from_second(1_000_000).unwrap())),
            last_update_time: Some(Time(Timestamp::from_second(1_000_000).unwrap())),
            reason: "DeadlineExceeded".into(),
            message: "compaction job test-compactor failed".into(),
        };
        etcd.status = Some(EtcdStatus {
            conditions: vec![theirs.clone()],
            ..EtcdStatus::default()
        });
        let s = compute(
            &etcd,
            Some(&model),
            &Observed::default(),
            &SpecOutcome::Reconciled,
            &Settings::default(),
            now,
        );
        assert_eq!(cond(&s, types::LAST_SNAPSHOT_COMPACTION_SUCCEEDED), &theirs);
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        let mut sorted = types.clone();
        sorted.sort_unstable();
        assert_eq!(types, sorted, "conditions stay sorted by type");
        // Never made up when the compaction controller has not written it.
        etcd.status = None;
        let s = compute(
            &etcd,
            Some(&model),
            &Observed::default(),
            &SpecOutcome::Reconciled,
            &Settings::default(),
            now,
        );
        assert!(
            !s.conditions
                .iter()
                .any(|c| c.type_ == types::LAST_SNAPSHOT_COMPACTION_SUCCEEDED)
        );
    }

    #[test]
    fn backup_ready_follows_the_snapshot_leases() {
        let etcd = fixtures::seed();
        let model = fixtures::model(&etcd);
        let now = Timestamp::now();
        let mut observed = Observed::default();
        let s = compute(
            &etcd,
            Some(&model),
            &observed,
            &SpecOutcome::Reconciled,
            &Settings::default(),
            now,
        );
        assert_eq!(cond(&s, types::BACKUP_READY).reason, "NoSnapshotYet");
        observed.full_snapshot_lease = Some(lease("test-full-snap", "100", 3600, now).1);
        observed.delta_snapshot_lease = Some(lease("test-delta-snap", "120", 60, now).1);
        let s = compute(
            &etcd,
            Some(&model),
            &observed,
            &SpecOutcome::Reconciled,
            &Settings::default(),
            now,
        );
        assert_eq!(cond(&s, types::BACKUP_READY).status, "True");
        // Deltas every 300s: 1000s without one is stale.
        observed.delta_snapshot_lease = Some(lease("test-delta-snap", "120", 1000, now).1);
        let s = compute(
            &etcd,
            Some(&model),
            &observed,
            &SpecOutcome::Reconciled,
            &Settings::default(),
            now,
        );
        assert_eq!(cond(&s, types::BACKUP_READY).status, "False");
    }
}
