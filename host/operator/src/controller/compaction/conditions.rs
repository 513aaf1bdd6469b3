//! Writes the `LastSnapshotCompactionSucceeded` condition (what it says is
//! `controller::conditions::last_snapshot_compaction_succeeded`).

use druid_api::Etcd;
use druid_api::etcd::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt as _};

use super::FIELD_MANAGER;
use crate::controller::Context;
use crate::controller::conditions::{Check, last_snapshot_compaction_succeeded};

pub(super) fn current_condition(etcd: &Etcd) -> Option<Condition> {
    last_snapshot_compaction_succeeded::current(etcd)
}

/// Sets the condition unless it already says the same; `Ok(true)` if it
/// was written.
pub(super) async fn set_condition(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Result<bool, kube::Error> {
    update_conditions(ctx, ns, name, |conditions| {
        last_snapshot_compaction_succeeded::set(
            conditions,
            Check::new(status, reason, message),
            Timestamp::now(),
        )
    })
    .await
}

/// Removes the condition if it has `reason`.
pub(super) async fn remove_condition(
    ctx: &Context,
    ns: &str,
    name: &str,
    reason: &str,
) -> Result<bool, kube::Error> {
    update_conditions(ctx, ns, name, |conditions| {
        last_snapshot_compaction_succeeded::remove(conditions, reason)
    })
    .await
}

/// Rewrites the Etcd's conditions with `change` (`None`: nothing to do),
/// on a fresh read and with its resourceVersion as a precondition, so that
/// the etcd controller's conditions are never overwritten with a stale
/// copy (nor ours by it: it writes with the same precondition). Retried on
/// conflicts.
pub(super) async fn update_conditions(
    ctx: &Context,
    ns: &str,
    name: &str,
    change: impl Fn(&[Condition]) -> Option<Vec<Condition>>,
) -> Result<bool, kube::Error> {
    let api: Api<Etcd> = Api::namespaced(ctx.client.clone(), ns);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(etcd) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let current = etcd
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let Some(conditions) = change(current) else {
            return Ok(false);
        };
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": etcd.resource_version() },
            "status": { "conditions": conditions },
        });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch_status(name, &pp, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => {
                tracing::debug!(etcd = %name, namespace = %ns, attempt, "the Etcd changed while its compaction condition was written; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}
