//! The controllers: `etcd` (everything an Etcd needs, its status, its
//! deletion), `compaction` (offline compaction of the snapshots),
//! `ops_task` (EtcdOpsTasks: on-demand snapshots and defragmentation) and
//! `secret` (finalizers on the Secrets Etcds use).

pub mod backoff;
pub mod compaction;
pub mod conditions;
pub mod contain;
pub mod cut_over;
pub mod defrag;
pub mod etcd;
pub mod final_snapshot;
pub mod finalizers;
pub mod member_pods;
pub mod ops_task;
pub mod recovery;
mod report;
pub mod roll;
pub mod scale_in;
pub mod secrets;
pub mod sidecar;
mod spec;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use druid_api::Etcd;
use druid_plugin_host::Registry;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt as _, reflector, watcher};
use kube::{Api, Client};
use kube::{Resource as _, ResourceExt as _};

use crate::metrics::Metrics;
use crate::names;

/// The etcd image when neither a spec nor a flag names one: etcd with our
/// wrapper, as `scripts/build-images.sh` builds and tags it.
pub const DEFAULT_ETCD_IMAGE: &str = concat!("ghcr.io/druid-rs/etcd:", env!("CARGO_PKG_VERSION"));
/// The sidecar image when neither a spec nor a flag names one.
pub const DEFAULT_BACKUP_IMAGE: &str =
    concat!("ghcr.io/druid-rs/etcdbr:", env!("CARGO_PKG_VERSION"));

/// Operator settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The etcd (wrapper) image when a spec names none.
    pub etcd_image: String,
    /// The sidecar image when a spec names none.
    pub backup_image: String,
    /// How often each Etcd's status is recomputed.
    pub status_sync_period: Duration,
    /// Reconcile only on request (the `druid.gardener.cloud/operation:
    /// reconcile` annotation) once an Etcd has been reconciled.
    pub manual_reconcile: bool,
    /// Etcds reconciled at once.
    pub workers: u16,
    /// How often an unchanged Etcd's components are applied again anyway
    /// (to repair drift); between those, status syncs only read.
    pub resync_period: Duration,
    /// A member whose lease was not renewed for this long is Unknown.
    pub member_unknown_after: Duration,
    /// ... and NotReady after this much more.
    pub member_not_ready_after: Duration,
    /// The snapshot compaction controller.
    pub compaction: compaction::CompactionSettings,
    /// The longest retry delay of an Etcd that keeps failing (its
    /// backoff doubles from one second up to this).
    pub retry_backoff_max: Duration,
    /// How long a member replaced by a roll may take to become ready
    /// before the roll is reported stopped (`UpdateStalled`); a member
    /// whose container cannot start is reported at once.
    pub update_stall_after: Duration,
    /// How long a quorum loss must last (after the `Ready` condition says
    /// `QuorumLost`, and while the pods agree) before the cluster is
    /// restored from its backup (`recovery`).
    pub quorum_loss_recovery_after: Duration,
    /// What a provider plugin's pod wiring may ask for.
    pub wiring: druid_plugin_host::WiringPolicy,
    /// Where the operator's pods run, for the NetworkPolicy around each
    /// sidecar's API; `None` for no policy.
    pub operator_pods: Option<crate::components::network_policy::OperatorPods>,
    /// The plugins image whose init container gives each pod that talks
    /// to a store the provider plugins (`--plugins-image`).
    pub plugins_image: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            etcd_image: DEFAULT_ETCD_IMAGE.into(),
            backup_image: DEFAULT_BACKUP_IMAGE.into(),
            status_sync_period: Duration::from_secs(15),
            manual_reconcile: false,
            workers: 16,
            resync_period: Duration::from_secs(600),
            member_unknown_after: Duration::from_secs(60),
            member_not_ready_after: Duration::from_secs(300),
            compaction: compaction::CompactionSettings::default(),
            retry_backoff_max: Duration::from_secs(120),
            update_stall_after: Duration::from_secs(600),
            quorum_loss_recovery_after: Duration::from_secs(120),
            wiring: druid_plugin_host::WiringPolicy::default(),
            operator_pods: None,
            plugins_image: None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The client of the API server the operator manages Etcds in.
    pub client: Client,
    /// The provider plugins (for the sidecar's store wiring).
    pub registry: Arc<Registry>,
    /// The command line's settings.
    pub settings: Settings,
    /// The metrics every reconcile updates (served on `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes events on the Etcds (reporter `druid`).
    pub recorder: Recorder,
    /// When each Etcd (by UID) last had its components applied, with the
    /// generation applied.
    pub applied:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<i64>)>>,
    /// Provider-plugin answers, which depend only on their inputs: the
    /// sidecar wiring per (provider, container, prefix, secret) and the
    /// accepted key sets per provider.
    pub plugin_answers: std::sync::Mutex<validate::PluginAnswers>,
    /// Watch caches of the StatefulSets and Leases the operator manages,
    /// set once the controllers run: status syncs read them instead of
    /// asking the API server.
    pub caches: std::sync::OnceLock<Caches>,
    /// On-demand defragmentation requests in flight and the runs
    /// published as events.
    pub defrag: defrag::DefragState,
    /// Per-Etcd retry backoff and report rate limiting.
    pub backoff: backoff::Backoff,
    /// Sidecar requests that outlast the reconcile that made them (final
    /// snapshots, membership steps).
    pub calls: sidecar::Calls,
}

/// Watch caches of managed objects.
#[derive(Clone)]
pub struct Caches {
    /// StatefulSets labelled `app.kubernetes.io/managed-by=etcd-druid`.
    pub statefulsets: reflector::Store<StatefulSet>,
    /// Leases with the same label.
    pub leases: reflector::Store<k8s_openapi::api::coordination::v1::Lease>,
    /// The metadata of data volume claims with the same label (the
    /// StatefulSet controller gives its claims the selector's labels).
    pub claims: reflector::Store<PartialObjectMeta<PersistentVolumeClaim>>,
}

impl Caches {
    /// Waits until both caches hold the cluster's state (at start-up; the
    /// StatefulSet watch is driven by the running controller).
    pub async fn ready(&self) {
        let _ = tokio::join!(
            self.statefulsets.wait_until_ready(),
            self.leases.wait_until_ready(),
            self.claims.wait_until_ready()
        );
    }

    /// A StatefulSet from the cache.
    pub fn statefulset(&self, namespace: &str, name: &str) -> Option<StatefulSet> {
        self.statefulsets
            .get(&reflector::ObjectRef::new(name).within(namespace))
            .map(|s| (*s).clone())
    }

    /// Whether the claim `name` exists, from the cache.
    pub fn claim_exists(&self, namespace: &str, name: &str) -> bool {
        self.claims
            .get(&reflector::ObjectRef::new(name).within(namespace))
            .is_some()
    }

    /// A Lease from the cache.
    pub fn lease(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<k8s_openapi::api::coordination::v1::Lease> {
        self.leases
            .get(&reflector::ObjectRef::new(name).within(namespace))
            .map(|l| (*l).clone())
    }
}

/// Lease `name` in `namespace`: from the watch cache when the controllers
/// run (`caches`), else from the API by name (a label LIST would scan
/// every lease of the namespace).
pub async fn read_lease(
    client: &Client,
    caches: Option<&Caches>,
    namespace: &str,
    name: &str,
) -> Result<Option<k8s_openapi::api::coordination::v1::Lease>, kube::Error> {
    match caches {
        Some(c) => Ok(c.lease(namespace, name)),
        None => {
            Api::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
        }
    }
}

impl Context {
    /// A context reporting events as `druid` from `instance`.
    pub fn new(
        client: Client,
        registry: Arc<Registry>,
        settings: Settings,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "druid".into(),
                instance,
            },
        );
        let backoff = backoff::Backoff::new(
            Duration::from_secs(1),
            settings.retry_backoff_max,
            Duration::from_secs(300),
        );
        Self {
            client,
            registry,
            backoff,
            settings,
            metrics,
            recorder,
            applied: std::sync::Mutex::default(),
            plugin_answers: std::sync::Mutex::default(),
            caches: std::sync::OnceLock::new(),
            defrag: defrag::DefragState::default(),
            calls: sidecar::Calls::default(),
        }
    }
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let (tx, rx) = tokio::sync::watch::channel(());
    let mut rx2 = rx.clone();
    let stop = async move {
        let _ = rx2.changed().await;
    };
    // Reconcile on spec, annotation, finalizer and deletion changes, not on
    // our own status writes; status is refreshed by the periodic requeue and
    // by StatefulSet changes.
    let (etcd_store, writer) = reflector::store();
    let etcd_events = watcher(
        Api::<Etcd>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .predicate_filter(spec_or_lifecycle, PredicateConfig::default());
    let managed = watcher::Config::default().labels(&names::selector(None, None).to_string());
    let (sts_store, sts_writer) = reflector::store();
    // The caches keep only what status and scale-in need: no managed
    // fields, no annotation but the scale-in's record, no pod template
    // (the bulk of a StatefulSet).
    let sts_events = watcher(Api::<StatefulSet>::all(client.clone()), managed.clone())
        .default_backoff()
        .modify(|sts| {
            sts.managed_fields_mut().clear();
            sts.annotations_mut()
                .retain(|k, _| k == names::SCALE_IN_ANNOTATION);
            if let Some(spec) = sts.spec.as_mut() {
                spec.template = Default::default();
            }
        })
        .reflect(sts_writer)
        .touched_objects();
    let (lease_store, lease_writer) = reflector::store();
    let lease_events = watcher(
        Api::<k8s_openapi::api::coordination::v1::Lease>::all(client.clone()),
        managed.clone(),
    )
    .default_backoff()
    .modify(|lease| lease.managed_fields_mut().clear())
    .reflect(lease_writer)
    .touched_objects();
    // Claims: only whether they exist matters, so only their metadata.
    let (claim_store, claim_writer) = reflector::store();
    let mut rx5 = rx.clone();
    let claim_loop = watcher(
        Api::<PartialObjectMeta<PersistentVolumeClaim>>::all(client.clone()),
        managed.clone(),
    )
    .default_backoff()
    .modify(|claim| claim.managed_fields_mut().clear())
    .reflect(claim_writer)
    .take_until(async move {
        let _ = rx5.changed().await;
    })
    .for_each(|_| async {});
    let caches = Caches {
        statefulsets: sts_store.clone(),
        leases: lease_store.clone(),
        claims: claim_store,
    };
    let _ = ctx.caches.set(caches);
    // Lease renewals only refresh the cache; new snapshot revisions trigger
    // the compaction controller.
    let compaction_loop = if ctx.settings.compaction.enabled {
        let mut rx4 = rx.clone();
        compaction::run(ctx.clone(), lease_events, async move {
            let _ = rx4.changed().await;
        })
        .boxed()
    } else {
        tracing::info!("the snapshot compaction controller is disabled");
        lease_events.for_each(|_| async {}).boxed()
    };
    let etcd_controller = Controller::for_stream(etcd_events, etcd_store.clone())
        // Status follows the StatefulSets.
        .owns_stream(sts_events)
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.workers))
        .graceful_shutdown_on(stop);
    let etcd_loop = etcd_controller
        .run(etcd::reconcile, etcd::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "etcd controller");
            }
        });
    let mut rx3 = rx.clone();
    let secret_loop = secrets::run(ctx.clone(), etcd_store, async move {
        let _ = rx3.changed().await;
    });
    let mut rx6 = rx.clone();
    let ops_task_loop = ops_task::run(ctx.clone(), async move {
        let _ = rx6.changed().await;
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    tokio::join!(
        etcd_loop,
        secret_loop,
        compaction_loop,
        claim_loop,
        ops_task_loop
    );
}

/// Publishes an event about `etcd` (failures to publish are only logged:
/// events are for people, nothing depends on them).
pub(crate) async fn publish(
    ctx: &Context,
    etcd: &Etcd,
    type_: EventType,
    action: &str,
    reason: &str,
    note: &str,
) {
    publish_related(ctx, etcd, type_, action, reason, note, None).await;
}

/// As [`publish`], with a related object (`related`): events that differ
/// only in it are kept apart (the recorder folds events with the same
/// reason, action and objects into one series, keeping the first note).
pub(crate) async fn publish_related(
    ctx: &Context,
    etcd: &Etcd,
    type_: EventType,
    action: &str,
    reason: &str,
    note: &str,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: related,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &etcd.object_ref(&())).await {
        tracing::debug!(error = %e, reason, "cannot publish event");
    }
}

/// A reference to pod `name` in `namespace`, as the related object of an
/// event about one member.
pub(crate) fn pod_ref(namespace: &str, name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// What makes an Etcd worth a reconcile: its generation (spec), annotations
/// (reconcile/suspend requests), finalizers and deletion.
fn spec_or_lifecycle(etcd: &Etcd) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    etcd.metadata.generation.hash(&mut h);
    etcd.annotations().hash(&mut h);
    etcd.finalizers().hash(&mut h);
    etcd.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}
