//! The Etcd finalizer's name across releases: Etcds that carry a legacy
//! finalizer of this operator ([`druid_api::LEGACY_FINALIZERS`]) get
//! upstream's [`druid_api::FINALIZER`] instead, so the Go operator can
//! delete them after a switch. A deleted Etcd that carries only a legacy
//! finalizer cannot get a new one (the API server refuses new finalizers
//! on an object being deleted): it is cleaned up here and the legacy
//! finalizer removed.

use druid_api::{Etcd, FINALIZER, LEGACY_FINALIZERS};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt as _};

/// What [`migrate`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    /// Nothing to migrate: reconcile as usual.
    None,
    /// The finalizers were rewritten: the next reconcile (the watch event
    /// of the patch) goes on.
    Rewritten,
    /// A deleted Etcd with only a legacy finalizer: clean up, then remove
    /// it with [`remove_legacy`].
    CleanUpLegacy,
}

/// The finalizers `etcd` should carry instead of its current ones, if they
/// hold a legacy one; the decision for a deleted Etcd.
pub fn plan(finalizers: &[String], deleting: bool) -> (Migration, Option<Vec<String>>) {
    let legacy = finalizers
        .iter()
        .any(|f| LEGACY_FINALIZERS.contains(&f.as_str()));
    if !legacy {
        return (Migration::None, None);
    }
    let has_current = finalizers.iter().any(|f| f == FINALIZER);
    let mut next: Vec<String> = finalizers
        .iter()
        .filter(|f| !LEGACY_FINALIZERS.contains(&f.as_str()))
        .cloned()
        .collect();
    match (deleting, has_current) {
        // Deleted with only the legacy one: it stays until cleanup is done.
        (true, false) => (Migration::CleanUpLegacy, None),
        // Deleted with both: drop the legacy one, ours drives the cleanup.
        (true, true) => (Migration::Rewritten, Some(next)),
        (false, _) => {
            if !has_current {
                next.push(FINALIZER.to_string());
            }
            (Migration::Rewritten, Some(next))
        }
    }
}

async fn set(api: &Api<Etcd>, etcd: &Etcd, finalizers: Vec<String>) -> Result<(), kube::Error> {
    // With the resourceVersion: a concurrent change fails this (retried on
    // the next reconcile) instead of being overwritten.
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": etcd.resource_version(),
        }
    });
    api.patch(
        &etcd.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

/// Rewrites a legacy finalizer of `etcd` (see [`plan`]).
pub async fn migrate(api: &Api<Etcd>, etcd: &Etcd) -> Result<Migration, kube::Error> {
    let deleting = etcd.metadata.deletion_timestamp.is_some();
    let (migration, next) = plan(etcd.finalizers(), deleting);
    if let Some(next) = next {
        set(api, etcd, next).await?;
        tracing::info!(
            etcd = %etcd.name_any(),
            namespace = ?etcd.namespace(),
            finalizer = FINALIZER,
            "replaced the legacy finalizer with upstream's"
        );
    }
    Ok(migration)
}

/// Removes the legacy finalizers of a deleted Etcd whose cleanup is done.
pub async fn remove_legacy(api: &Api<Etcd>, etcd: &Etcd) -> Result<(), kube::Error> {
    let next: Vec<String> = etcd
        .finalizers()
        .iter()
        .filter(|f| !LEGACY_FINALIZERS.contains(&f.as_str()))
        .cloned()
        .collect();
    set(api, etcd, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_legacy_finalizer_is_replaced_by_upstreams() {
        let legacy = "druid.gardener.cloud/etcd";
        assert_eq!(plan(&v(&[FINALIZER]), false), (Migration::None, None));
        assert_eq!(plan(&v(&[]), true), (Migration::None, None));
        assert_eq!(
            plan(&v(&["x", legacy]), false),
            (Migration::Rewritten, Some(v(&["x", FINALIZER])))
        );
        assert_eq!(
            plan(&v(&[legacy, FINALIZER]), false),
            (Migration::Rewritten, Some(v(&[FINALIZER])))
        );
        // Being deleted: no finalizer may be added.
        assert_eq!(plan(&v(&[legacy]), true), (Migration::CleanUpLegacy, None));
        assert_eq!(
            plan(&v(&[legacy, FINALIZER]), true),
            (Migration::Rewritten, Some(v(&[FINALIZER])))
        );
    }
}
