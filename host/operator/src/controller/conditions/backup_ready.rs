//! `BackupReady`: whether the backup leader renews the snapshot leases on
//! time (only for an Etcd with a store). A failure the sidecar recorded on
//! the delta lease (and no success since) makes it `False` at once; a delta
//! snapshot lease stale for three periods makes it `False`, or `Unknown`
//! first if it was `True`.

use std::time::Duration;

use druid_api::EtcdModel;
use druid_api::etcd::Condition;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;

use super::{Check, age, types};

/// The condition from the full and delta snapshot leases at `now`;
/// `previous` are the conditions before.
pub fn check(
    model: &EtcdModel,
    full_snapshot_lease: Option<&Lease>,
    delta_snapshot_lease: Option<&Lease>,
    previous: &[Condition],
    now: Timestamp,
) -> Check {
    let renewed = |l: Option<&Lease>| {
        l.and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| age(now, t.0))
    };
    let delta_period = model.backup.delta_snapshot_period;
    let full_interval = schedule_interval(&model.backup.full_snapshot_schedule)
        .unwrap_or(Duration::from_secs(24 * 3600));
    if let Some((failed_at, why)) = recorded_failure(delta_snapshot_lease) {
        return Check::new(
            "False",
            "BackupFailed",
            format!(
                "the last snapshot attempt failed {}s ago: {why}; the sidecar retries with a backoff: fix the store (credentials, bucket, endpoint) and see the backup-restore sidecar's log",
                age(now, failed_at).as_secs()
            ),
        );
    }
    let (status, reason, message): (&str, &str, String) = match (
        renewed(full_snapshot_lease),
        renewed(delta_snapshot_lease),
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
    };
    Check::new(status, reason, message)
}

/// The failure the sidecar recorded on the delta lease, when no success
/// renewed the lease after it.
fn recorded_failure(delta_snapshot_lease: Option<&Lease>) -> Option<(Timestamp, String)> {
    let lease = delta_snapshot_lease?;
    let annotations = lease.metadata.annotations.as_ref()?;
    let failed_at: Timestamp = annotations
        .get(druid_api::SNAPSHOT_FAILED_AT_ANNOTATION)?
        .parse()
        .ok()?;
    let renewed = lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    if renewed.is_some_and(|r| r > failed_at) {
        return None;
    }
    let why = annotations
        .get(druid_api::SNAPSHOT_FAILURE_ANNOTATION)
        .map_or("no reason recorded", String::as_str);
    Some((failed_at, why.to_string()))
}

/// The time between two runs of a cron schedule, around now.
fn schedule_interval(schedule: &str) -> Option<Duration> {
    let cron = druid_api::model::parse_cron(schedule).ok()?;
    let now = chrono::Utc::now();
    let prev = cron.find_previous_occurrence(&now, false).ok()?;
    let next = cron.find_next_occurrence(&prev, false).ok()?;
    (next - prev).to_std().ok()
}
