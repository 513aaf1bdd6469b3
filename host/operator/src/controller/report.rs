//! What a reconcile's outcome tells people and dashboards: the error
//! metric (every failure), the `warn` log line and the events (rate limited
//! per Etcd by [`super::backoff`]), and the condition and readiness gauges.

use druid_api::Etcd;
use kube::ResourceExt as _;
use kube::runtime::events::EventType;

use super::Context;
use super::status::SpecOutcome;
use crate::metrics::{ConditionLabels, ErrorLabels, EtcdLabels};

/// Metrics for the outcome, every time; the `warn` log line and the
/// events only when `failure` says to report (the first failure, a
/// different one, or once per interval while it lasts).
pub(super) async fn outcome(
    ctx: &Context,
    etcd: &Etcd,
    outcome: &SpecOutcome,
    failure: Option<super::backoff::Failure>,
    status: &druid_api::EtcdStatus,
) {
    let namespace = etcd.namespace().unwrap_or_default();
    let name = etcd.name_any();
    let (loud, held_back) = failure.map_or((false, 0), |f| (f.report, f.held_back));
    match outcome {
        SpecOutcome::Invalid(problems) => {
            for p in problems {
                ctx.metrics
                    .reconcile_errors
                    .get_or_create(&ErrorLabels {
                        namespace: namespace.clone(),
                        etcd: name.clone(),
                        code: "ERR_INVALID_SPEC".into(),
                    })
                    .inc();
                if loud {
                    publish(ctx, etcd, EventType::Warning, p.reason, &p.to_string()).await;
                }
            }
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            if loud {
                tracing::warn!(etcd = %name, %namespace, ?problems, held_back, "invalid spec; nothing applied");
            } else {
                tracing::debug!(etcd = %name, %namespace, ?problems, "invalid spec; nothing applied");
            }
        }
        SpecOutcome::Failed { code, message } => {
            ctx.metrics
                .reconcile_errors
                .get_or_create(&ErrorLabels {
                    namespace: namespace.clone(),
                    etcd: name.clone(),
                    code: code.clone(),
                })
                .inc();
            let retry_in = failure.map(|f| f.retry_in);
            if loud {
                publish(ctx, etcd, EventType::Warning, "ReconcileFailed", message).await;
                tracing::warn!(etcd = %name, %namespace, %code, %message, ?retry_in, held_back, "reconcile failed; retrying with backoff");
            } else {
                tracing::debug!(etcd = %name, %namespace, %code, %message, ?retry_in, "reconcile failed");
            }
        }
        _ => {}
    }
    for c in &status.conditions {
        ctx.metrics
            .conditions
            .get_or_create(&ConditionLabels {
                namespace: namespace.clone(),
                etcd: name.clone(),
                condition: c.type_.clone(),
            })
            .set(match c.status.as_str() {
                "True" => 1,
                "False" => 0,
                _ => -1,
            });
    }
    ctx.metrics
        .ready
        .get_or_create(&EtcdLabels {
            namespace,
            etcd: name,
        })
        .set(i64::from(status.ready == Some(true)));
}

async fn publish(ctx: &Context, etcd: &Etcd, type_: EventType, reason: &str, note: &str) {
    super::publish(ctx, etcd, type_, "Reconcile", reason, note).await;
}
