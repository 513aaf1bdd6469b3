//! Asking the backup leader's sidecar for a full snapshot.

use std::time::Duration;

use druid_api::{Etcd, EtcdModel};
use kube::ResourceExt as _;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::conditions::set_condition;
use super::decide::FullSnapshotCause;
use super::{EVENT_ACTION, Error, FULL_SNAPSHOT_GRACE, RETRY, reasons};
use crate::controller::Context;
use crate::controller::sidecar::{base_url, request};
use crate::metrics::FullSnapshotLabels;

/// How soon a full snapshot the sidecar is taking is looked at again.
const PENDING_RECHECK: Duration = Duration::from_secs(5);

/// Asks the sidecar for a full snapshot and reports how it went.
pub(super) async fn full_snapshot(
    ctx: &Context,
    etcd: &Etcd,
    model: &EtcdModel,
    events: i64,
    cause: &FullSnapshotCause,
) -> Result<Action, Error> {
    let ns = &model.namespace;
    let name = &model.name;
    let url = format!("{}/snapshot/full", base_url(ctx, model));
    let why = match cause {
        FullSnapshotCause::TooManyEvents => format!(
            "{events} delta events since the last full snapshot, at least the full snapshot threshold"
        ),
        FullSnapshotCause::LastAttempt(r) => format!(
            "{events} delta events since the last full snapshot, and the last attempt ended with {r}"
        ),
    };
    tracing::debug!(etcd = %name, namespace = %ns, %url, events, ?cause, "asking the sidecar for a full snapshot instead of a compaction");
    let timeout = model.backup.snapshot_timeout + FULL_SNAPSHOT_GRACE;
    let uid = etcd.uid().unwrap_or_default();
    // A snapshot that takes long holds no compaction worker: the request
    // goes on and a later reconcile picks its answer up.
    let Some(answer) = request(
        ctx,
        model,
        (&uid, "full snapshot"),
        false,
        url.clone(),
        timeout,
    )
    .await
    else {
        return Ok(Action::requeue(PENDING_RECHECK));
    };
    let result = answer.and_then(|(status, body)| {
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "GET {url} answered {status}: {}",
                body.trim().chars().take(300).collect::<String>()
            ))
        }
    });
    let succeeded = result.is_ok();
    ctx.metrics
        .compaction
        .full_snapshot_triggered
        .get_or_create(&FullSnapshotLabels {
            succeeded: succeeded.to_string(),
            etcd_namespace: ns.clone(),
        })
        .inc();
    match result {
        Ok(()) => {
            let message = format!("the backup-restore sidecar took a full snapshot ({why})");
            tracing::info!(etcd = %name, namespace = %ns, events, "full snapshot taken");
            set_condition(
                ctx,
                ns,
                name,
                "True",
                reasons::FULL_SNAPSHOT_TAKEN,
                &message,
            )
            .await?;
            crate::controller::publish(
                ctx,
                etcd,
                EventType::Normal,
                EVENT_ACTION,
                "FullSnapshotTaken",
                &message,
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            let message = format!(
                "could not get a full snapshot from the backup-restore sidecar: {e}. It was asked for because of {why}; the deltas stay uncompacted until it works: check that the Etcd's pods run and their sidecar serves on port {} (a restore meanwhile merges every delta). Retried at the next delta snapshot or within {}s",
                model.backup.port,
                RETRY.as_secs()
            );
            tracing::warn!(etcd = %name, namespace = %ns, error = %e, "cannot trigger a full snapshot");
            if set_condition(
                ctx,
                ns,
                name,
                "False",
                reasons::ERROR_TRIGGERING_FULL_SNAPSHOT,
                &message,
            )
            .await?
            {
                crate::controller::publish(
                    ctx,
                    etcd,
                    EventType::Warning,
                    EVENT_ACTION,
                    reasons::ERROR_TRIGGERING_FULL_SNAPSHOT,
                    &message,
                )
                .await;
            }
            Ok(Action::requeue(RETRY))
        }
    }
}
