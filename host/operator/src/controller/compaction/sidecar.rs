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
    let result = match sidecar_tls(ctx, model, &url).await {
        Ok(tls) => request_full_snapshot(url.clone(), tls, timeout).await,
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

/// The data of key `key` of Secret `name`, or an error naming the field
/// that names the Secret.
async fn secret_key(
    ctx: &Context,
    namespace: &str,
    name: &str,
    key: &str,
    field: &str,
) -> Result<Vec<u8>, String> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read the Secret {namespace}/{name}: {e}"))?
        .ok_or_else(|| format!("the Secret {namespace}/{name} ({field}) does not exist"))?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("the Secret {namespace}/{name} ({field}) has no key {key:?}"))
}

/// How to call the sidecar over HTTPS, for an `https` URL: the CA bundle
/// that verifies its certificate (`spec.backup.tls.tlsCASecretRef`), and
/// the client certificate it requires when the spec names one
/// (`spec.backup.tls.clientTLSSecretRef`, mTLS).
pub(super) async fn sidecar_tls(
    ctx: &Context,
    model: &EtcdModel,
    url: &str,
) -> Result<Option<druid_sidecar_tls::SidecarTls>, String> {
    let Some(tls) = model
        .backup
        .tls
        .as_ref()
        .filter(|_| url.starts_with("https://"))
    else {
        return Ok(None);
    };
    let ns = &model.namespace;
    let ca_field = "spec.backup.tls.tlsCASecretRef";
    let ca = secret_key(ctx, ns, &tls.ca_secret, &tls.ca_key, ca_field).await?;
    let mut client = druid_sidecar_tls::SidecarTls::new(
        &ca,
        &format!("Secret {ns}/{} ({ca_field})", tls.ca_secret),
    )
    .map_err(|e| e.to_string())?;
    if let Some(secret) = &tls.client_secret {
        let field = "spec.backup.tls.clientTLSSecretRef";
        let cert = secret_key(ctx, ns, secret, "tls.crt", field).await?;
        let key = secret_key(ctx, ns, secret, "tls.key", field).await?;
        client = client
            .with_client_cert(&cert, &key, &format!("Secret {ns}/{secret} ({field})"))
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(client))
}

/// `GET <url>` on a blocking thread (ureq with rustls; `tls` says what to
/// trust and present for HTTPS). Any answer but 2xx is an error with the
/// status and the start of the body.
pub(super) async fn request_full_snapshot(
    url: String,
    tls: Option<druid_sidecar_tls::SidecarTls>,
    timeout: Duration,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The sidecar is in the cluster: never through a proxy.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(timeout));
        if let Some(tls) = tls {
            config = config.tls_config(tls.config());
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
