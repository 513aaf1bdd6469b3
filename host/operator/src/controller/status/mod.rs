//! The status of an Etcd, from what the cluster shows: the StatefulSet, the
//! member and snapshot leases (renewed by the sidecars), and warning events
//! on the data volumes. [`observe`] reads (`observe.rs`); [`compute`] is
//! pure, and composes the conditions (one file each in
//! `controller/conditions/`) with the members (`members.rs`), the
//! StatefulSet's replica counts and the outcome of the spec reconcile.

mod members;
mod observe;
#[cfg(test)]
mod tests;

use druid_api::etcd::{Condition, CrossVersionObjectReference, EtcdStatus, LastError};
use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;

pub use self::observe::{Observed, observe};
use super::Settings;
use super::conditions::spec_valid::Validated;
use super::conditions::{self, types};
use super::validate::Problem;
use crate::names;

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
        /// `ERR_SYNC_<COMPONENT>`, `ERR_BUILD`, `ERR_KUBERNETES_API` or
        /// `ERR_INTERNAL`: the code in `lastErrors` and the error metric.
        code: String,
        /// What failed, for `lastErrors`, the event and the log.
        message: String,
    },
}

/// The member that leads, by name, as a lease renewed in time says.
pub fn leader(observed: &Observed, settings: &Settings) -> Option<String> {
    members::from_leases(&observed.member_leases, settings, Timestamp::now())
        .into_iter()
        .find(|m| m.role.as_deref() == Some("Leader") && m.status == "Ready")
        .map(|m| m.name)
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
    let members = members::from_leases(&observed.member_leases, settings, now);
    let (joined_check, joined) = conditions::bootstrapped_with_existing_cluster::check(
        model,
        &members,
        previous
            .conditions
            .iter()
            .find(|c| c.type_ == types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER),
        previous.bootstrap_with_existing_cluster.as_ref(),
        observed.cut_over.as_ref(),
        now,
    );
    // Spec validity first: it says what to fix.
    let mut conditions: Vec<Condition> = [
        (
            types::SPEC_VALID,
            conditions::spec_valid::check(
                match outcome {
                    SpecOutcome::Reconciled => Validated::Valid,
                    SpecOutcome::Invalid(problems) => Validated::Invalid(problems),
                    _ => Validated::NotChecked,
                },
                &previous.conditions,
            ),
        ),
        (
            types::READY,
            Some(conditions::ready::check(replicas, &members)),
        ),
        (
            types::ALL_MEMBERS_READY,
            Some(conditions::all_members_ready::check(replicas, &members)),
        ),
        (
            types::ALL_MEMBERS_UPDATED,
            Some(conditions::all_members_updated::check(
                &name,
                observed.roll.as_ref(),
                observed.statefulset.as_ref(),
            )),
        ),
        (
            types::CLUSTER_ID_MISMATCH,
            Some(conditions::cluster_id_mismatch::check(
                &observed.member_leases,
            )),
        ),
        (
            types::DATA_VOLUMES_READY,
            Some(conditions::data_volumes_ready::check(
                &name,
                observed.statefulset.as_ref(),
                observed.claims_exist,
                &observed.volume_warnings,
            )),
        ),
        (
            types::BACKUP_READY,
            model.filter(|m| m.store.is_some()).map(|model| {
                conditions::backup_ready::check(
                    model,
                    observed.full_snapshot_lease.as_ref(),
                    observed.delta_snapshot_lease.as_ref(),
                    &previous.conditions,
                    now,
                )
            }),
        ),
        (types::BOOTSTRAPPED_WITH_EXISTING_CLUSTER, joined_check),
        (
            types::MEMBERS_SCALED_IN,
            conditions::members_scaled_in::check(
                observed.scale_in.as_ref(),
                previous
                    .conditions
                    .iter()
                    .find(|c| c.type_ == types::MEMBERS_SCALED_IN),
            ),
        ),
        (
            types::QUORUM_LOST,
            conditions::quorum_lost::check(
                observed.recovery.as_ref(),
                previous
                    .conditions
                    .iter()
                    .find(|c| c.type_ == types::QUORUM_LOST),
            ),
        ),
    ]
    .into_iter()
    .filter_map(|(type_, check)| Some(conditions::stamp(&previous.conditions, type_, check?, now)))
    .collect();
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
    let last_operation = roll_operation(observed.roll.as_ref(), last_operation, now);

    EtcdStatus {
        observed_generation,
        etcd: Some(CrossVersionObjectReference {
            api_version: Some("apps/v1".into()),
            kind: "StatefulSet".into(),
            name: names::statefulset(&name),
        }),
        conditions,
        members,
        // The members at the revision the operator rolls to: the
        // StatefulSet's own currentReplicas stays at the first revision
        // under OnDelete.
        current_replicas: Some(
            sts_status
                .as_ref()
                .and_then(|s| s.updated_replicas)
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
        label_selector: observed
            .statefulset
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .map(|s| s.selector.clone()),
        peer_url_tls_enabled: peer_url_tls_enabled(&observed.member_leases),
        last_errors,
        last_operation,
        bootstrap_with_existing_cluster: joined,
    }
}

/// Whether the members' peer URLs use TLS, as their sidecars report on
/// their leases (`member.etcd.gardener.cloud/tls-enabled`): `true` only if
/// every member that reported says so; `None` before any reported.
fn peer_url_tls_enabled(
    member_leases: &std::collections::BTreeMap<String, k8s_openapi::api::coordination::v1::Lease>,
) -> Option<bool> {
    let reports: Vec<bool> = member_leases
        .values()
        .filter_map(|l| {
            l.metadata
                .annotations
                .as_ref()?
                .get(druid_api::MEMBER_TLS_ENABLED_ANNOTATION)
                .map(|v| v == "true")
        })
        .collect();
    (!reports.is_empty()).then(|| reports.iter().all(|tls| *tls))
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

fn statefulset_ready(sts: &StatefulSet, replicas: i32) -> bool {
    let Some(status) = &sts.status else {
        return false;
    };
    status.observed_generation == sts.metadata.generation
        && status.ready_replicas.unwrap_or(0) >= replicas
        && status.updated_replicas.unwrap_or(0) >= replicas
}

/// `lastOperation` while the operator rolls the members (`Processing`,
/// with the progress) and once the roll ends (`Succeeded`); otherwise
/// what the spec reconcile says.
fn roll_operation(
    roll: Option<&conditions::all_members_updated::Roll>,
    last: Option<druid_api::etcd::LastOperation>,
    now: Timestamp,
) -> Option<druid_api::etcd::LastOperation> {
    use conditions::all_members_updated::Roll;
    let rolled_before = last
        .as_ref()
        .is_some_and(|o| o.state == "Processing" && o.description.starts_with(ROLL_PREFIX));
    match roll {
        Some(Roll::InProgress(m) | Roll::Waiting(m) | Roll::Stalled(m)) => {
            operation("Reconcile", "Processing", &format!("{ROLL_PREFIX}{m}"), now)
        }
        Some(Roll::Done) if rolled_before => operation(
            "Reconcile",
            "Succeeded",
            "the members are updated: every member runs the current pod template",
            now,
        ),
        _ => last,
    }
}

/// How `lastOperation` names a roll.
const ROLL_PREFIX: &str = "updating the members: ";
