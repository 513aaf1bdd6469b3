//! Asking the backup leader's sidecar for a full snapshot.

use std::time::Duration;

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::conditions::set_condition;
use super::decide::FullSnapshotCause;
use super::{CONNECT_TIMEOUT, EVENT_ACTION, Error, FULL_SNAPSHOT_GRACE, RETRY, reasons};
use crate::controller::Context;
use crate::metrics::FullSnapshotLabels;

/// The sidecar's base URL from the template.
pub fn sidecar_url(template: &str, scheme: &str, etcd: &str, namespace: &str, port: i32) -> String {
    template
        .replace("{scheme}", scheme)
        .replace("{etcd}", etcd)
        .replace("{namespace}", namespace)
        .replace("{port}", &port.to_string())
}

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
    let scheme = if model.backup.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = sidecar_url(
        &ctx.settings.compaction.sidecar_url_template,
        scheme,
        name,
        ns,
        model.backup.port,
    );
    let url = format!("{}/snapshot/full", base.trim_end_matches('/'));
    let why = match cause {
        FullSnapshotCause::TooManyEvents => format!(
            "{events} delta events since the last full snapshot, at least the full snapshot threshold"
        ),
        FullSnapshotCause::LastAttempt(r) => format!(
            "{events} delta events since the last full snapshot, and the last attempt ended with {r}"
        ),
    };
    tracing::info!(etcd = %name, namespace = %ns, %url, events, ?cause, "asking the sidecar for a full snapshot instead of a compaction");
    let timeout = model.backup.snapshot_timeout + FULL_SNAPSHOT_GRACE;
    let result = match ca_bundle(ctx, model, &url).await {
        Ok(ca) => request_full_snapshot(url.clone(), ca, timeout).await,
        Err(e) => Err(e),
    };
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

/// The CA bundle that verifies the sidecar's HTTPS certificate
/// (`spec.backup.tls.tlsCASecretRef`), for an `https` URL.
pub(super) async fn ca_bundle(
    ctx: &Context,
    model: &EtcdModel,
    url: &str,
) -> Result<Option<Vec<u8>>, String> {
    let Some(tls) = model
        .backup
        .tls
        .as_ref()
        .filter(|_| url.starts_with("https://"))
    else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let secret = secrets
        .get_opt(&tls.ca_secret)
        .await
        .map_err(|e| {
            format!(
                "cannot read the CA Secret {}/{}: {e}",
                model.namespace, tls.ca_secret
            )
        })?
        .ok_or_else(|| {
            format!(
                "the CA Secret {}/{} (spec.backup.tls.tlsCASecretRef) does not exist",
                model.namespace, tls.ca_secret
            )
        })?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(&tls.ca_key))
        .map(|b| Some(b.0.clone()))
        .ok_or_else(|| {
            format!(
                "the CA Secret {}/{} has no key {:?} (spec.backup.tls.tlsCASecretRef.dataKey)",
                model.namespace, tls.ca_secret, tls.ca_key
            )
        })
}

/// `GET <url>` on a blocking thread (ureq with rustls; `ca` is the PEM
/// bundle to trust for HTTPS). Any answer but 2xx is an error with the
/// status and the start of the body.
pub(super) async fn request_full_snapshot(
    url: String,
    ca: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The sidecar is in the cluster: never through a proxy.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(timeout));
        if let Some(pem) = ca {
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(
                    "the CA bundle (spec.backup.tls.tlsCASecretRef) holds no PEM certificate"
                        .to_string(),
                );
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        let agent: ureq::Agent = config.build().into();
        let mut resp = agent
            .get(&url)
            .call()
            .map_err(|e| format!("GET {url} failed: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        Err(format!(
            "GET {url} answered {status}: {}",
            body.trim().chars().take(300).collect::<String>()
        ))
    })
    .await
    .map_err(|e| format!("the request task failed: {e}"))?
}
