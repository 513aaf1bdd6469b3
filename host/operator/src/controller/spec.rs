//! Step 2 of the reconcile (see `etcd`): validate the spec, check what it
//! refers to, build every component of the component table, then apply
//! them stage by stage, pruning what a component no longer builds; and the
//! deletion of a component's objects for the cleanup.

use druid_api::{Etcd, EtcdModel, InvalidSpec};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt as _;
use kube::runtime::events::EventType;

use super::Context;
use super::status::SpecOutcome;
use super::validate::{self, Checked, Problem};
use crate::components::object::{Kind, Object};
use crate::components::table::{Component, Existing, Stage};
use crate::components::{self, BuildContext};
use crate::names;

/// The generation whose spec was last applied successfully.
pub(super) fn observed_generation(etcd: &Etcd) -> Option<i64> {
    etcd.status.as_ref().and_then(|s| s.observed_generation)
}

/// An event of the reconcile (action `Reconcile`), for the whole reconcile.
pub(super) async fn publish(
    ctx: &Context,
    etcd: &Etcd,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    super::publish(ctx, etcd, type_, "Reconcile", reason, note).await;
}

/// Step 2: validate, check references, build, apply.
pub(super) async fn reconcile_spec(
    etcd: &Etcd,
    model: Result<&EtcdModel, &InvalidSpec>,
    ctx: &Context,
) -> Result<(SpecOutcome, Option<StatefulSet>), kube::Error> {
    let model = match model {
        Ok(m) => m,
        Err(InvalidSpec(errors)) => {
            return Ok((
                SpecOutcome::Invalid(
                    errors
                        .iter()
                        .map(|e| Problem {
                            reason: "InvalidSpec",
                            field: e.field.clone(),
                            message: e.message.clone(),
                        })
                        .collect(),
                ),
                None,
            ));
        }
    };
    if observed_generation(etcd) != etcd.metadata.generation && !model.warnings.is_empty() {
        let text: Vec<String> = model.warnings.iter().map(ToString::to_string).collect();
        publish(
            ctx,
            etcd,
            EventType::Warning,
            "SpecWarning",
            &text.join("; "),
        )
        .await;
    }

    let (store_wiring, protected) = match validate::references(ctx, etcd, model).await? {
        Checked::Problems(p) => return Ok((SpecOutcome::Invalid(p), None)),
        Checked::Ok { wiring, protected } => (wiring, protected),
    };
    let bctx = BuildContext {
        etcd_image: ctx.settings.etcd_image.clone(),
        backup_image: ctx.settings.backup_image.clone(),
        operator_pods: ctx.settings.operator_pods.clone(),
        plugins_image: ctx.settings.plugins_image.clone(),
        store_wiring,
    };

    // Build everything before writing anything.
    let built = match build_all(etcd, model, &bctx) {
        Ok(b) => b,
        Err(e) => {
            return Ok((
                SpecOutcome::Failed {
                    code: "ERR_BUILD".into(),
                    message: e.to_string(),
                },
                None,
            ));
        }
    };
    let unprotected: Vec<String> = model
        .referenced_secrets()
        .into_iter()
        .filter(|n| !protected.contains(n))
        .collect();
    if let Err(e) = super::secrets::protect(ctx, &model.namespace, &unprotected).await {
        return Ok((failed("SECRET_FINALIZERS", &e), None));
    }
    // Stage by stage: every component but the StatefulSet at once, then
    // the StatefulSet (see `Stage`).
    let mut applied = None;
    for stage in [Stage::First, Stage::Last] {
        let syncs = built
            .iter()
            .filter(|(c, _)| c.stage == stage)
            .map(|(c, objects)| step(c, sync(ctx, model, c, objects)));
        for result in futures::future::join_all(syncs).await {
            match result {
                Ok(objects) => {
                    applied = applied.or_else(|| {
                        objects.into_iter().find_map(|o| match o {
                            Object::StatefulSet(sts) => Some(*sts),
                            _ => None,
                        })
                    });
                }
                Err((name, e)) => return Ok((failed(name, &e), None)),
            }
        }
    }

    let first = observed_generation(etcd).is_none();
    if observed_generation(etcd) != etcd.metadata.generation {
        publish(
            ctx,
            etcd,
            EventType::Normal,
            if first { "Created" } else { "Reconciled" },
            &format!(
                "{} StatefulSet {} with {} replica(s) and its components",
                if first { "created" } else { "updated" },
                names::statefulset(&model.name),
                model.replicas
            ),
        )
        .await;
    }
    Ok((SpecOutcome::Reconciled, applied))
}

/// One component's sync, tagged with its name for [`failed`].
async fn step<T>(
    component: &Component,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, (&'static str, kube::Error)> {
    f.await.map_err(|e| (component.name, e))
}

/// The outcome of a failed apply of `component` (a table row's name, or
/// `SECRET_FINALIZERS`): `ERR_SYNC_<COMPONENT>`.
fn failed(component: &str, e: &kube::Error) -> SpecOutcome {
    SpecOutcome::Failed {
        code: format!("ERR_SYNC_{component}"),
        message: format!(
            "cannot apply the {} component: {e}",
            component.to_lowercase().replace('_', " ")
        ),
    }
}

/// Every component of the table, built (nothing is written before all
/// are).
fn build_all(
    etcd: &Etcd,
    model: &EtcdModel,
    ctx: &BuildContext,
) -> Result<Vec<(&'static Component, Vec<Object>)>, components::BuildError> {
    let built: Vec<_> = components::table::ALL
        .iter()
        .map(|c| Ok((c, (c.build)(etcd, model, ctx)?)))
        .collect::<Result<_, components::BuildError>>()?;
    let count = built.iter().map(|(_, objects)| objects.len()).sum();
    if count > components::table::MAX_OBJECTS {
        return Err(components::BuildError::TooManyObjects {
            count,
            max: components::table::MAX_OBJECTS,
        });
    }
    Ok(built)
}

/// Applies one component's objects (all of them, even when one fails);
/// with `prune`, deletes at the same time those of its existing objects
/// the build did not make. Returns the objects as stored.
async fn sync(
    ctx: &Context,
    model: &EtcdModel,
    component: &Component,
    objects: &[Object],
) -> Result<Vec<Object>, kube::Error> {
    let client = &ctx.client;
    let ns = &model.namespace;
    let apply = futures::future::join_all(objects.iter().map(|o| o.apply(client)));
    let prune = async {
        if !component.prune {
            return Ok(());
        }
        let wanted: Vec<String> = objects.iter().map(Object::name).collect();
        for n in existing(ctx, ns, &model.name, component, true).await? {
            if !wanted.contains(&n) {
                component.kind.delete_if_exists(client, ns, &n).await?;
            }
        }
        Ok::<_, kube::Error>(())
    };
    let (applied, pruned) = futures::join!(apply, prune);
    let applied = applied.into_iter().collect::<Result<Vec<_>, _>>()?;
    pruned?;
    Ok(applied)
}

/// The names of `component`'s objects of Etcd `etcd` that may exist. Those
/// found by label come from the watch cache when the controllers run and
/// `cached` allows it (a label LIST scans every lease of the namespace).
async fn existing(
    ctx: &Context,
    ns: &str,
    etcd: &str,
    component: &Component,
    cached: bool,
) -> Result<Vec<String>, kube::Error> {
    let label = match component.existing {
        Existing::Named(names) => return Ok(names(etcd)),
        Existing::Labelled(label) => label,
    };
    let selector = names::selector(Some(etcd), Some(label));
    if let Some(c) = ctx.caches.get().filter(|_| cached)
        && component.kind == Kind::Lease
    {
        c.ready().await;
        return Ok(c
            .leases
            .state()
            .iter()
            .filter(|l| l.namespace().as_deref() == Some(ns) && selector.matches(l.labels()))
            .map(|l| l.name_any())
            .collect());
    }
    component
        .kind
        .list_names(&ctx.client, ns, &selector.to_string())
        .await
}

/// Deletes `component`'s objects of Etcd `etcd`; returns those not gone
/// yet (`<Kind> <name>`).
pub(super) async fn delete(
    ctx: &Context,
    ns: &str,
    etcd: &str,
    component: &Component,
) -> Result<Vec<String>, kube::Error> {
    let mut left = Vec::new();
    for n in existing(ctx, ns, etcd, component, false).await? {
        if !component.kind.delete_if_exists(&ctx.client, ns, &n).await? {
            left.push(format!("{} {n}", component.kind.as_str()));
        }
    }
    Ok(left)
}
