//! Calling the backup leader's sidecar through the Etcd's client Service:
//! its URL, what to trust and present over HTTPS, and the request itself.
//! The compaction controller asks it for full snapshots, the etcd
//! controller for on-demand defragmentation runs, final snapshots and
//! membership steps.
//!
//! A final snapshot takes minutes and a membership step up to two; the
//! reconcile that asks does not wait that long ([`request`]): the request
//! goes on in the background and a later reconcile of the same Etcd picks
//! its answer up. A reconcile holds one of the operator's workers while it
//! runs, so one slow sidecar, or a hundred Etcds hibernating at the same
//! hour, would otherwise stop every other Etcd's reconciles.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// How long a reconcile waits for a sidecar's answer before it lets go
/// (the request goes on; a later reconcile picks the answer up).
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// An answer that waited longer than this for a reconcile to pick it up
/// is stale (a membership step's "every other member is healthy" may no
/// longer hold), and the request is made again. Etcds with a request in
/// flight are requeued within seconds, well within it.
const ANSWER_FRESH: Duration = Duration::from_secs(30);

/// A finished request nobody picked up (the Etcd changed its mind, or was
/// deleted) is forgotten after this long.
const FORGET_AFTER: Duration = Duration::from_secs(3 * 3600);

/// A sidecar's answer: the status and the start of the body, or why there
/// is none.
pub(crate) type Answer = Result<(u16, String), String>;

/// Sidecar requests in flight, per Etcd UID and what is asked (one of each
/// at a time): see the module's comment.
#[derive(Debug, Default)]
pub struct Calls {
    running: Mutex<HashMap<(String, String), Running>>,
}

#[derive(Debug)]
struct Running {
    started: Instant,
    /// When the answer came, and the answer.
    handle: tokio::task::JoinHandle<(Instant, Answer)>,
}

impl Calls {
    fn take(&self, key: &(String, String)) -> Option<Running> {
        let mut running = self.running.lock().ok()?;
        running.retain(|_, r| !r.handle.is_finished() || r.started.elapsed() < FORGET_AFTER);
        running.remove(key)
    }

    fn keep(&self, key: (String, String), running: Running) {
        if let Ok(mut all) = self.running.lock() {
            all.insert(key, running);
        }
    }
}

/// `POST` (else `GET`) `url` on `model`'s sidecar, for the Etcd of UID
/// `uid`, asking `what`: the answer if it comes within [`ANSWER_WAIT`];
/// else `None`, and the request goes on in the background (up to
/// `timeout`) for a later reconcile to pick its answer up with the same
/// `uid` and `what`, without waiting for it. Only one request per `uid`
/// and `what` is in flight.
pub(crate) async fn request(
    ctx: &Context,
    model: &EtcdModel,
    (uid, what): (&str, &str),
    post: bool,
    url: String,
    timeout: Duration,
) -> Option<Answer> {
    let key = (uid.to_string(), what.to_string());
    let mut again = false;
    loop {
        // A request in flight is only looked at (this reconcile holds a
        // worker); a new one gets a few seconds to answer at once.
        let (mut running, wait) = match ctx.calls.take(&key).filter(|_| !again) {
            Some(running) => (running, Duration::ZERO),
            None => {
                let tls = match sidecar_tls(ctx, model, &url).await {
                    Ok(tls) => tls,
                    Err(e) => return Some(Err(e)),
                };
                tracing::info!(etcd = %model.name, namespace = %model.namespace, what, "asking the backup leader's sidecar");
                let url = url.clone();
                let running = Running {
                    started: Instant::now(),
                    handle: tokio::spawn(async move {
                        let answer = call(post, url, tls, timeout).await;
                        (Instant::now(), answer)
                    }),
                };
                (running, ANSWER_WAIT)
            }
        };
        // The answer is polled before the deadline is, so a zero wait
        // still picks up a finished request.
        match tokio::time::timeout(wait, &mut running.handle).await {
            Err(_) => {
                tracing::debug!(etcd = %model.name, namespace = %model.namespace, what, waited = ?running.started.elapsed(), "the sidecar has not answered yet; a later reconcile looks again");
                ctx.calls.keep(key, running);
                return None;
            }
            Ok(Err(e)) => return Some(Err(format!("the request task failed: {e}"))),
            Ok(Ok((at, _))) if !again && at.elapsed() > ANSWER_FRESH => {
                tracing::info!(etcd = %model.name, namespace = %model.namespace, what, "the sidecar's answer is stale; asking again");
                again = true;
            }
            Ok(Ok((_, answer))) => return Some(answer),
        }
    }
}

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
) -> Answer {
    call(false, url, tls, timeout).await
}

async fn call(
    post: bool,
    url: String,
    tls: Option<druid_sidecar_tls::SidecarTls>,
    timeout: Duration,
) -> Answer {
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
/// name). The report, or why not; `None` while the sidecar works on it
/// (see [`request`]; `uid` is the Etcd's).
pub(crate) async fn member_step(
    ctx: &Context,
    uid: &str,
    model: &EtcdModel,
    step: &str,
    ordinal: i32,
) -> Option<Result<serde_json::Value, String>> {
    let member = names::member(model, ordinal);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("member", &member)
        .append_pair("peerUrls", &configmap::peer_urls(model, ordinal).join(","))
        .finish();
    let url = format!("{}/members/scale-in/{step}?{query}", base_url(ctx, model));
    let what = format!("{step} {member}");
    let answer = request(ctx, model, (uid, &what), true, url, MEMBER_STEP_TIMEOUT).await?;
    Some(match answer {
        Ok((200, body)) => serde_json::from_str(&body)
            .map_err(|e| format!("the sidecar's report is not JSON ({e}): {body}")),
        Ok((code, body)) => Err(format!("the sidecar answered {code}: {}", body.trim())),
        Err(e) => Err(e),
    })
}
