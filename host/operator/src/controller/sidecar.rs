//! Calling the backup leader's sidecar through the Etcd's client Service:
//! its URL, what to trust and present over HTTPS, and the request itself.
//! The compaction controller asks it for full snapshots, the etcd
//! controller for on-demand defragmentation runs.

use std::time::Duration;

use druid_api::EtcdModel;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::Context;
use crate::components::configmap;
use crate::names;

/// How long a membership step's request may take (the sidecar waits up
/// to 30 s for the cluster to settle, twice when leadership moves).
const MEMBER_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long connecting to a sidecar may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sidecar's base URL from the template.
pub fn sidecar_url(template: &str, scheme: &str, etcd: &str, namespace: &str, port: i32) -> String {
    template
        .replace("{scheme}", scheme)
        .replace("{etcd}", etcd)
        .replace("{namespace}", namespace)
        .replace("{port}", &port.to_string())
}

/// The base URL of `model`'s backup leader sidecar: the operator's URL
/// template with `https` when the sidecar serves TLS (`spec.backup.tls`).
pub(crate) fn base_url(ctx: &Context, model: &EtcdModel) -> String {
    let scheme = if model.backup.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = sidecar_url(
        &ctx.settings.compaction.sidecar_url_template,
        scheme,
        &model.name,
        &model.namespace,
        model.backup.port,
    );
    base.trim_end_matches('/').to_string()
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
pub(crate) async fn sidecar_tls(
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
/// trust and present for HTTPS): the status and the start of the body
/// (64 KiB at most), whatever the status.
pub(crate) async fn get(
    url: String,
    tls: Option<druid_sidecar_tls::SidecarTls>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    call(false, url, tls, timeout).await
}

/// `POST <url>` with an empty body, as [`get`].
pub(crate) async fn post(
    url: String,
    tls: Option<druid_sidecar_tls::SidecarTls>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    call(true, url, tls, timeout).await
}

async fn call(
    post: bool,
    url: String,
    tls: Option<druid_sidecar_tls::SidecarTls>,
    timeout: Duration,
) -> Result<(u16, String), String> {
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
        let sent = if post {
            agent.post(&url).send_empty()
        } else {
            agent.get(&url).call()
        };
        let method = if post { "POST" } else { "GET" };
        let mut resp = sent.map_err(|e| format!("{method} {url} failed: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 10)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, body))
    })
    .await
    .map_err(|e| format!("the request task failed: {e}"))?
}

/// Asks a sidecar for a membership step for the member of `ordinal`
/// (`POST /members/scale-in/{step}?member=<name>&peerUrls=<urls>`):
/// `prepare` checks that every other member is a healthy voter and moves
/// leadership off the member (what makes it safe to stop: scale-in and
/// the roll use it), `remove` takes it out of the membership. Its peer
/// URLs find it while it never started (an unstarted learner has no
/// name). The report, or why not.
pub(crate) async fn member_step(
    ctx: &Context,
    model: &EtcdModel,
    step: &str,
    ordinal: i32,
) -> Result<serde_json::Value, String> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("member", &names::member(model, ordinal))
        .append_pair("peerUrls", &configmap::peer_urls(model, ordinal).join(","))
        .finish();
    let url = format!("{}/members/scale-in/{step}?{query}", base_url(ctx, model));
    let tls = sidecar_tls(ctx, model, &url).await?;
    match post(url, tls, MEMBER_STEP_TIMEOUT).await? {
        (200, body) => serde_json::from_str(&body)
            .map_err(|e| format!("the sidecar's report is not JSON ({e}): {body}")),
        (code, body) => Err(format!("the sidecar answered {code}: {}", body.trim())),
    }
}
