//! Defragmentation seen from the operator. The sidecars run it (on their
//! schedule, or when asked through their `/defragment` endpoint); the
//! sidecar's Role grants no access to its Etcd and no events, as
//! upstream's, so the operator does the Kubernetes side:
//!
//! - the on-demand annotation ([`druid_api::DEFRAGMENT_ANNOTATION`]) on an
//!   Etcd: the operator asks the backup leader's sidecar for a run through
//!   the client Service, and removes the annotation once the sidecar
//!   answered with a report (kept, and asked again, while the sidecar
//!   cannot be reached or a run is in progress);
//! - events: each run's summary, which the coordinating sidecar writes on
//!   its member lease ([`druid_api::LAST_DEFRAGMENTATION_RUN_ANNOTATION`]),
//!   becomes one event on the Etcd.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use druid_api::etcd::DefragmentationRun;
use druid_api::{DEFRAGMENT_ANNOTATION, Etcd, EtcdModel, LAST_DEFRAGMENTATION_RUN_ANNOTATION};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt as _};

use super::Context;
use super::sidecar::{base_url, get, sidecar_tls};
use crate::names;

/// The action of the events published here.
const EVENT_ACTION: &str = "Defragment";

/// How long an on-demand run may take before the request gives up (the
/// run goes on in the sidecar; the annotation stays and is asked again).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// On-demand requests in flight at once, over all Etcds (each holds a
/// blocking thread for up to [`REQUEST_TIMEOUT`]); more wait, annotated,
/// for a later reconcile.
pub const MAX_IN_FLIGHT: usize = 16;

/// What the operator remembers about defragmentation, per Etcd UID.
#[derive(Debug)]
pub struct DefragState {
    /// When this operator started: runs that ended before are not
    /// published again.
    started: Timestamp,
    /// Etcds with an on-demand request in flight.
    in_flight: Mutex<HashSet<String>>,
    /// The end time of the last run published per Etcd.
    published: Mutex<HashMap<String, Timestamp>>,
    /// Requests not handled yet, per Etcd: reported (a warning and an
    /// event) once per interval while the reason stays the same.
    pending: super::backoff::Backoff,
}

impl Default for DefragState {
    fn default() -> Self {
        DefragState {
            started: Timestamp::now(),
            in_flight: Mutex::default(),
            published: Mutex::default(),
            pending: super::backoff::Backoff::default(),
        }
    }
}

/// The newest run summary on the member leases of `model`.
pub fn newest_run(leases: &[Lease]) -> Option<(Timestamp, DefragmentationRun)> {
    leases
        .iter()
        .filter_map(|l| {
            l.metadata
                .annotations
                .as_ref()?
                .get(LAST_DEFRAGMENTATION_RUN_ANNOTATION)
        })
        .filter_map(|v| serde_json::from_str::<DefragmentationRun>(v).ok())
        .filter_map(|run| Some((run.time.parse::<Timestamp>().ok()?, run)))
        .max_by_key(|(t, _)| *t)
}

/// Whether a run that ended at `time` is to be published, given the last
/// one published and when the operator started; records it if so.
pub fn is_new(
    published: &mut HashMap<String, Timestamp>,
    started: Timestamp,
    uid: &str,
    time: Timestamp,
) -> bool {
    let last = published.get(uid).copied().unwrap_or(started);
    if time <= last {
        return false;
    }
    published.insert(uid.to_string(), time);
    true
}

/// Admits a request for Etcd `uid` unless one is in flight for it or
/// `max` are in flight in all.
pub fn admit(in_flight: &mut HashSet<String>, uid: &str, max: usize) -> bool {
    if in_flight.contains(uid) || in_flight.len() >= max {
        return false;
    }
    in_flight.insert(uid.to_string())
}

/// The event reason for a run's outcome.
pub fn reason(outcome: &str) -> (EventType, &'static str) {
    match outcome {
        "Succeeded" => (EventType::Normal, "DefragmentationSucceeded"),
        "Refused" => (EventType::Warning, "DefragmentationRefused"),
        "TimedOut" => (EventType::Warning, "DefragmentationTimedOut"),
        _ => (EventType::Warning, "DefragmentationFailed"),
    }
}

/// Publishes the newest run summary of `etcd`'s member leases, if it is
/// new, and starts an on-demand run if the Etcd asks for one.
pub async fn sync(ctx: &Arc<Context>, etcd: &Etcd, model: &EtcdModel) {
    publish_new_run(ctx, etcd, model).await;
    if etcd.annotations().contains_key(DEFRAGMENT_ANNOTATION) {
        request(ctx, etcd, model);
    }
}

async fn publish_new_run(ctx: &Context, etcd: &Etcd, model: &EtcdModel) {
    let Some(caches) = ctx.caches.get() else {
        return;
    };
    let leases: Vec<Lease> = (0..model.replicas.max(1))
        .filter_map(|i| caches.lease(&model.namespace, &names::member(model, i)))
        .collect();
    let Some((time, run)) = newest_run(&leases) else {
        return;
    };
    let uid = etcd.uid().unwrap_or_default();
    let new = match ctx.defrag.published.lock() {
        Ok(mut published) => is_new(&mut published, ctx.defrag.started, &uid, time),
        Err(_) => false,
    };
    if new {
        let (type_, reason) = reason(&run.outcome);
        super::publish(ctx, etcd, type_, EVENT_ACTION, reason, &run.note).await;
    }
}

/// Starts asking the backup leader's sidecar for a run, unless a request
/// for this Etcd is in flight.
fn request(ctx: &Arc<Context>, etcd: &Etcd, model: &EtcdModel) {
    let uid = etcd.uid().unwrap_or_default();
    match ctx.defrag.in_flight.lock() {
        Ok(mut in_flight) => {
            if !admit(&mut in_flight, &uid, MAX_IN_FLIGHT) {
                tracing::debug!(etcd = %model.name, namespace = %model.namespace, in_flight = in_flight.len(), "defragmentation request not started now (one in flight for it, or the most at once); asked again at the next reconcile");
                return;
            }
        }
        Err(_) => return,
    }
    let ctx = ctx.clone();
    let etcd = etcd.clone();
    let model = model.clone();
    tokio::spawn(async move {
        ask_sidecar(&ctx, &etcd, &model).await;
        if let Ok(mut in_flight) = ctx.defrag.in_flight.lock() {
            in_flight.remove(&uid);
        }
    });
}

async fn ask_sidecar(ctx: &Context, etcd: &Etcd, model: &EtcdModel) {
    let (ns, name) = (&model.namespace, &model.name);
    let url = format!("{}/defragment", base_url(ctx, model));
    tracing::info!(etcd = %name, namespace = %ns, %url, annotation = DEFRAGMENT_ANNOTATION, "defragmentation requested: asking the backup leader's sidecar");
    let answer = match sidecar_tls(ctx, model, &url).await {
        Ok(tls) => get(url.clone(), tls, REQUEST_TIMEOUT).await,
        Err(e) => Err(e),
    };
    let done = match &answer {
        // The run's report: done (succeeded, refused or failed; the
        // sidecar's run summary becomes the event).
        Ok((200 | 500, _)) => true,
        Ok((409, body)) => !body.contains("in progress"),
        _ => false,
    };
    if done {
        let api: Api<Etcd> = Api::namespaced(ctx.client.clone(), ns);
        let patch = serde_json::json!({"metadata": {"annotations": {DEFRAGMENT_ANNOTATION: null}}});
        if let Err(e) = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(etcd = %name, namespace = %ns, error = %e, "cannot remove the defragmentation request; it will be asked again");
        }
        tracing::info!(etcd = %name, namespace = %ns, "defragmentation request handled");
        ctx.defrag
            .pending
            .succeeded(&etcd.uid().unwrap_or_default());
        return;
    }
    let why = match answer {
        Ok((status, body)) => format!(
            "{url} answered {status}: {}",
            body.trim().chars().take(300).collect::<String>()
        ),
        Err(e) => e,
    };
    let pending = ctx
        .defrag
        .pending
        .failed(&etcd.uid().unwrap_or_default(), &why);
    if !pending.report {
        tracing::debug!(etcd = %name, namespace = %ns, error = %why, "the defragmentation request was not handled; asked again at the next reconcile");
        return;
    }
    tracing::warn!(etcd = %name, namespace = %ns, error = %why, held_back = pending.held_back, "the defragmentation request was not handled; asked again at the next reconcile");
    super::publish(
        ctx,
        etcd,
        EventType::Warning,
        EVENT_ACTION,
        "DefragmentationRequestPending",
        &format!(
            "the backup leader's sidecar did not run the requested defragmentation ({why}); the annotation {DEFRAGMENT_ANNOTATION} stays and the request is repeated: check that the Etcd's pods run"
        ),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_per_etcd_and_bounded_in_all() {
        let mut in_flight = HashSet::new();
        assert!(admit(&mut in_flight, "a", 2));
        assert!(
            !admit(&mut in_flight, "a", 2),
            "a second one for the same Etcd"
        );
        assert!(admit(&mut in_flight, "b", 2));
        assert!(!admit(&mut in_flight, "c", 2), "past the bound");
        in_flight.remove("a");
        assert!(admit(&mut in_flight, "c", 2));
    }

    fn lease(run: Option<&str>) -> Lease {
        let mut l = Lease::default();
        if let Some(run) = run {
            l.metadata.annotations = Some(
                [(
                    LAST_DEFRAGMENTATION_RUN_ANNOTATION.to_string(),
                    run.to_string(),
                )]
                .into(),
            );
        }
        l
    }

    #[test]
    fn the_newest_run_summary_of_the_member_leases_is_published_once() {
        let leases = [
            lease(Some(
                r#"{"time":"2026-12-05T10:00:00Z","outcome":"Refused","note":"a member is unhealthy"}"#,
            )),
            lease(None),
            lease(Some("not json")),
            lease(Some(
                r#"{"time":"2026-12-05T11:00:00Z","outcome":"Succeeded","note":"m0: reclaimed 5 bytes in 0.1s"}"#,
            )),
        ];
        let (time, run) = newest_run(&leases).unwrap();
        assert_eq!(run.outcome, "Succeeded");
        assert_eq!(reason(&run.outcome).1, "DefragmentationSucceeded");
        assert_eq!(reason("Refused").1, "DefragmentationRefused");
        let started: Timestamp = "2026-12-05T09:00:00Z".parse().unwrap();
        let mut published = HashMap::new();
        assert!(is_new(&mut published, started, "u", time));
        assert!(
            !is_new(&mut published, started, "u", time),
            "published twice"
        );
        // A run that ended before the operator started is not repeated.
        let old: Timestamp = "2026-12-05T08:00:00Z".parse().unwrap();
        assert!(!is_new(&mut published, started, "other", old));
        assert!(newest_run(&[lease(None)]).is_none());
    }
}
