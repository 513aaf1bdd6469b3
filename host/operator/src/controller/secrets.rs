//! Finalizers on the Secrets an Etcd uses (store credentials, TLS), so that
//! a Secret still needed by a running cluster cannot be deleted by mistake.
//!
//! The etcd reconcile adds the finalizer ([`protect`]) before it applies
//! anything; this controller removes it once no Etcd of the namespace refers
//! to the Secret any more (after a spec change or the Etcd's deletion).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use druid_api::{Etcd, FINALIZER, LEGACY_FINALIZERS, is_druid_finalizer};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt as _, reflector, watcher};
use kube::{Api, ResourceExt as _};

use super::Context;

/// The Secrets the Etcds of `namespace` name (valid specs or not: see
/// [`druid_api::EtcdSpec::secret_names`]).
fn referenced(etcds: &Store<Etcd>, namespace: &str) -> BTreeSet<String> {
    etcds
        .state()
        .iter()
        .filter(|e| e.namespace().as_deref() == Some(namespace))
        .flat_map(|e| e.spec.secret_names())
        .collect()
}

/// Adds the finalizer to each named Secret of `namespace` that lacks it.
pub async fn protect(
    ctx: &Context,
    namespace: &str,
    secrets: &[String],
) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    for name in secrets {
        // Many Etcds may share one Secret and protect it at once: on a
        // conflict, read it again and retry.
        let mut attempt = 0;
        loop {
            let Some(secret) = api.get_metadata_opt(name).await? else {
                break;
            };
            let Some(finalizers) = protected(secret.finalizers()) else {
                break;
            };
            match set_finalizers(&api, name, finalizers, secret.resource_version()).await {
                Ok(()) => {
                    tracing::info!(secret = %name, %namespace, "protecting Secret with a finalizer while an Etcd uses it");
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// On an Etcd's deletion: releases its Secrets that no other Etcd of the
/// namespace uses.
pub async fn release(ctx: &Context, namespace: &str, etcd: &str) -> Result<(), kube::Error> {
    let etcds: Api<Etcd> = Api::namespaced(ctx.client.clone(), namespace);
    let all = etcds.list(&Default::default()).await?.items;
    let mut still: BTreeSet<String> = BTreeSet::new();
    let mut mine: BTreeSet<String> = BTreeSet::new();
    for e in &all {
        if e.name_any() == etcd {
            mine.extend(e.spec.secret_names());
        } else if e.metadata.deletion_timestamp.is_none() {
            still.extend(e.spec.secret_names());
        }
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    for name in mine.difference(&still) {
        unprotect(&api, name).await?;
    }
    Ok(())
}

async fn unprotect(api: &Api<Secret>, name: &str) -> Result<(), kube::Error> {
    let Some(secret) = api.get_metadata_opt(name).await? else {
        return Ok(());
    };
    if !secret.finalizers().iter().any(|f| is_druid_finalizer(f)) {
        return Ok(());
    }
    let finalizers: Vec<String> = secret
        .finalizers()
        .iter()
        .filter(|f| !is_druid_finalizer(f))
        .cloned()
        .collect();
    set_finalizers(api, name, finalizers, secret.resource_version()).await?;
    tracing::info!(secret = %name, "released Secret: no Etcd uses it any more");
    Ok(())
}

/// The finalizers a protected Secret must carry, when `current` is not
/// that yet: upstream's [`FINALIZER`] added, a legacy one replaced.
fn protected(current: &[String]) -> Option<Vec<String>> {
    let has = current.iter().any(|f| f == FINALIZER);
    let legacy = current
        .iter()
        .any(|f| LEGACY_FINALIZERS.contains(&f.as_str()));
    if has && !legacy {
        return None;
    }
    let mut finalizers: Vec<String> = current
        .iter()
        .filter(|f| !LEGACY_FINALIZERS.contains(&f.as_str()))
        .cloned()
        .collect();
    if !has {
        finalizers.push(FINALIZER.into());
    }
    Some(finalizers)
}

async fn set_finalizers(
    api: &Api<Secret>,
    name: &str,
    finalizers: Vec<String>,
    resource_version: Option<String>,
) -> Result<(), kube::Error> {
    // A merge patch with the resourceVersion: never creates the Secret, and
    // fails (to be retried) if someone changed it meanwhile.
    let patch = serde_json::json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": resource_version }
    });
    api.patch_metadata(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

struct SecretCtx {
    ctx: Arc<Context>,
    etcds: Store<Etcd>,
}

/// Runs the secret controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    etcds: Store<Etcd>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // Metadata only: the operator never holds Secret data in memory.
    let api: Api<PartialObjectMeta<Secret>> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let secrets_store = reader.clone();
    Controller::for_stream(stream, reader)
        // An Etcd change may release a Secret it referred to before: look
        // at every protected Secret of its namespace.
        .watches(
            Api::<Etcd>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |etcd| {
                let ns = etcd.namespace().unwrap_or_default();
                secrets_store
                    .state()
                    .iter()
                    .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|s| s.finalizers().iter().any(|f| is_druid_finalizer(f)))
                    .map(|s| ObjectRef::new(&s.name_any()).within(&ns))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(SecretCtx { ctx, etcds }))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "secret controller");
            }
        })
        .await;
}

/// A panic (a bug) keeps the finalizer, the safe side, and is retried.
async fn reconcile(
    secret: Arc<PartialObjectMeta<Secret>>,
    sctx: Arc<SecretCtx>,
) -> Result<Action, kube::Error> {
    let name = secret.name_any();
    let ns = secret.namespace();
    super::contain::catch_async(reconcile_one(secret, sctx))
        .await
        .unwrap_or_else(|panic| {
            tracing::error!(secret = %name, namespace = ?ns, %panic, "the secret reconcile panicked (a bug in druid); its finalizer stays; retrying in a minute");
            Ok(Action::requeue(Duration::from_secs(60)))
        })
}

async fn reconcile_one(
    secret: Arc<PartialObjectMeta<Secret>>,
    sctx: Arc<SecretCtx>,
) -> Result<Action, kube::Error> {
    if !secret.finalizers().iter().any(|f| is_druid_finalizer(f)) {
        return Ok(Action::await_change());
    }
    let ns = secret.namespace().unwrap_or_default();
    // Until the Etcd cache is filled, nothing can be said to be unused.
    if sctx.etcds.is_empty() && sctx.etcds.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if !referenced(&sctx.etcds, &ns).contains(&secret.name_any()) {
        let api: Api<Secret> = Api::namespaced(sctx.ctx.client.clone(), &ns);
        unprotect(&api, &secret.name_any()).await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_s: Arc<PartialObjectMeta<Secret>>, e: &kube::Error, _c: Arc<SecretCtx>) -> Action {
    tracing::warn!(error = %e, "secret finalizer update failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protected_secret_carries_upstreams_finalizer_and_no_legacy_one() {
        let v = |s: &[&str]| s.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(protected(&v(&[FINALIZER])), None);
        assert_eq!(protected(&v(&[])), Some(v(&[FINALIZER])));
        assert_eq!(
            protected(&v(&["other", "druid.gardener.cloud/etcd"])),
            Some(v(&["other", FINALIZER]))
        );
        assert_eq!(
            protected(&v(&[FINALIZER, "druid.gardener.cloud/etcd"])),
            Some(v(&[FINALIZER]))
        );
    }
}
