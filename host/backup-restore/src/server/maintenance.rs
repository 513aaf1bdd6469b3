//! Defragmentation: the maintenance-window schedule, on-demand requests
//! from the Etcd's annotation, and what blocks a run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::state::AppState;
use crate::defrag::Coordinator;

/// Starts a defragmentation run at every occurrence of the schedule while
/// this member leads. The run itself is not tied to leadership: it moves
/// leadership away on purpose before defragmenting the former leader.
pub(super) async fn defrag_schedule_loop(
    state: Arc<AppState>,
    schedule: croner::Cron,
    leading: CancellationToken,
) {
    loop {
        let Some(next) = crate::snapshot::next_full_snapshot(&schedule, chrono::Utc::now()) else {
            return;
        };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = leading.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        tracing::info!("defragmentation window opens");
        let s = state.clone();
        tokio::spawn(async move {
            if run_defrag(&s).await.is_none() {
                tracing::info!(
                    "a defragmentation run is still in progress; this window is skipped"
                );
            }
        });
        // Do not fire twice within the same minute.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The coordinator for this sidecar's cluster.
pub(super) fn coordinator(state: &Arc<AppState>) -> Coordinator {
    let c = &state.config;
    let endpoints = c.etcd.cluster_endpoints().to_vec();
    let expected = c
        .restore
        .initial_cluster
        .split(',')
        .filter(|s| !s.is_empty())
        .count();
    Coordinator::new(
        c.etcd.clone(),
        endpoints,
        crate::defrag::Settings {
            window: c.etcd.etcd_defrag_timeout,
            member_timeout: c.etcd.etcd_defrag_timeout,
            threshold_bytes: c.server.defragmentation_threshold_bytes,
            expected_members: expected.max(1),
        },
        state.metrics.clone(),
        state.maintenance.clone(),
        kube_blockers(),
    )
}

/// Runs defragmentation unless a run is in progress (`None` then).
pub(super) async fn run_defrag(state: &Arc<AppState>) -> Option<crate::defrag::Report> {
    if state.defragmenting.swap(true, Ordering::SeqCst) {
        return None;
    }
    let report = coordinator(state).run().await;
    state.defragmenting.store(false, Ordering::SeqCst);
    if let Some(handle) = etcd_handle(state).await {
        crate::defrag::publish(handle, &report).await;
    }
    Some(report)
}

/// This sidecar's Etcd (looked up once).
pub(super) async fn etcd_handle(state: &Arc<AppState>) -> Option<&crate::k8s::EtcdHandle> {
    state
        .etcd_handle
        .get_or_init(|| async {
            let c = &state.config;
            crate::k8s::EtcdHandle::discover(&c.member_name()).await
        })
        .await
        .as_ref()
}

/// Blocks defragmentation while this pod's StatefulSet is not settled (a
/// rolling update or a scale-up): read through the Kubernetes API when the
/// sidecar runs in a pod ($POD_NAME, $POD_NAMESPACE).
pub(super) fn kube_blockers() -> crate::defrag::Blockers {
    let (Ok(pod), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE"))
    else {
        return crate::defrag::no_blockers();
    };
    Arc::new(move || {
        let pod = pod.clone();
        let namespace = namespace.clone();
        Box::pin(async move { statefulset_blocker(&namespace, &pod).await })
    })
}

pub(super) async fn statefulset_blocker(namespace: &str, pod: &str) -> Option<String> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Pod;
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the StatefulSet before defragmenting: no Kubernetes client");
            return None;
        }
    };
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let owner = match pods.get_opt(pod).await {
        Ok(Some(p)) => p
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.kind == "StatefulSet")
            .map(|o| o.name),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this pod to find its StatefulSet");
            None
        }
    }?;
    let sets: kube::Api<StatefulSet> = kube::Api::namespaced(client, namespace);
    let sts = match sets.get_opt(&owner).await {
        Ok(s) => s?,
        Err(e) => {
            tracing::warn!(error = %e, statefulset = %owner, "cannot read the StatefulSet");
            return None;
        }
    };
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = sts.status.unwrap_or_default();
    // Not currentRevision: under the OnDelete strategy (the operator
    // rolls the members) the StatefulSet controller never moves it.
    let updated = status.updated_replicas.unwrap_or(0);
    if updated < replicas {
        return Some(format!(
            "a rolling update of StatefulSet {owner} is in progress ({updated} of {replicas} pods run revision {})",
            status.update_revision.as_deref().unwrap_or("?")
        ));
    }
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < replicas || status.replicas < replicas {
        return Some(format!(
            "StatefulSet {owner} has {ready} of {replicas} pods ready (a scale-up, rolling update or restart is in progress)"
        ));
    }
    None
}
