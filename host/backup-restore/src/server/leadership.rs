//! The leadership loop: the snapshotter, garbage collection and member
//! promotion run only on the leading member; the member lease heartbeat.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::maintenance::defrag_schedule_loop;
use super::state::{AppState, InitState};
use crate::gc::collector::{self, Policy};
use crate::k8s::leases::{Leases, MemberLease};
use crate::metrics::Succeeded;
use crate::snapshot::{Settings, Snapshotter};

/// Consecutive checks in which etcd does not say who leads (its status
/// times out or fails, or it knows no leader) before the leader's work
/// stops. A leader busy with a burst of writes misses a 5 s status now and
/// then (seen on the node during a 1 GiB preload): stopping there
/// restarted the snapshotter mid-upload. A member that another member
/// replaced as leader stops at once.
const UNKNOWN_LEADERSHIP_CHECKS: u32 = 3;

/// Checks every reelection period whether this member leads; the leader
/// runs the snapshotter and garbage collection.
pub(super) async fn leadership(
    state: Arc<AppState>,
    settings: Settings,
    policy: Policy,
    defrag_schedule: croner::Cron,
    shutdown: CancellationToken,
) {
    let c = &state.config;
    let mut running: Option<CancellationToken> = None;
    let mut unknown_checks = 0u32;
    let own = c.etcd.own_endpoint();
    let mut client = None;
    let mut ticker = tokio::time::interval(c.server.reelection_period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if client.is_none() {
            client = crate::etcd::connect(
                &c.etcd,
                own,
                c.server.etcd_connection_timeout_leader_election,
            )
            .await
            .ok();
        }
        let Some(cl) = client.as_mut() else {
            state.healthy.store(false, Ordering::SeqCst);
            continue;
        };
        let status = tokio::time::timeout(
            c.server.etcd_connection_timeout_leader_election,
            cl.status(),
        )
        .await;
        let answered = matches!(&status, Ok(Ok(_)));
        state
            .metrics
            .is_learner_checks
            .get_or_create(&Succeeded::new(answered))
            .inc();
        if let Ok(Ok(s)) = &status {
            state.metrics.is_learner.set(i64::from(s.is_learner()));
            if s.is_learner() {
                promote(&state, member_id(s)).await;
            }
        }
        let head = match &status {
            Ok(Ok(s)) => s.header().map(etcd_client::ResponseHeader::revision),
            _ => None,
        };
        let leader = match status {
            Ok(Ok(s)) if s.leader() != 0 => Some(s.leader() == member_id(&s)),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "etcd status failed");
                None
            }
            Err(_) => None,
        };
        if let Ok(Ok(list)) = tokio::time::timeout(Duration::from_secs(5), cl.member_list()).await {
            state.metrics.cluster_size.set(list.members().len() as i64);
        }
        unknown_checks = if leader.is_none() {
            unknown_checks + 1
        } else {
            0
        };
        match leader {
            None if running.is_some() && unknown_checks < UNKNOWN_LEADERSHIP_CHECKS => {
                tracing::info!(
                    checks = unknown_checks,
                    "etcd did not say who leads: the leader's work goes on until {UNKNOWN_LEADERSHIP_CHECKS} such checks in a row"
                );
                state.healthy.store(false, Ordering::SeqCst);
            }
            Some(true) => {
                if running.is_none() {
                    tracing::info!(
                        "this member leads: starting the snapshotter, garbage collection and the defragmentation schedule"
                    );
                    let token =
                        start_leader_work(&state, cl.clone(), settings.clone(), policy).await;
                    tokio::spawn(defrag_schedule_loop(
                        state.clone(),
                        defrag_schedule.clone(),
                        token.clone(),
                    ));
                    running = Some(token);
                }
                state.leading.store(true, Ordering::SeqCst);
                state.metrics.is_leader.set(1);
                if let Some(head) = head
                    && state.store.is_some()
                {
                    state.metrics.record_lag(head);
                }
                state.healthy.store(
                    *state.init.lock().await != InitState::Progress,
                    Ordering::SeqCst,
                );
            }
            other => {
                if let Some(token) = running.take() {
                    tracing::info!(state = ?other, "this member no longer leads: stopping the snapshotter");
                    token.cancel();
                    *state.snapshotter.lock().await = None;
                }
                state.leading.store(false, Ordering::SeqCst);
                state.metrics.is_leader.set(0);
                state.metrics.revision_lag.set(0);
                state.healthy.store(false, Ordering::SeqCst);
            }
        }
    }
    if let Some(token) = running {
        token.cancel();
    }
}

pub(super) async fn start_leader_work(
    state: &Arc<AppState>,
    client: etcd_client::Client,
    settings: Settings,
    policy: Policy,
) -> CancellationToken {
    let token = CancellationToken::new();
    let Some(store) = state.store.clone() else {
        return token;
    };
    let c = &state.config;
    let leases = if c.health.enable_snapshot_lease_renewal {
        match Leases::from_env(&c.health).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(error = %e, "snapshot leases cannot be updated; the operator will report backups as not ready");
                None
            }
        }
    } else {
        None
    };
    let (tx, mut rx) = mpsc::channel(4);
    *state.snapshotter.lock().await = Some(tx);
    let metrics = state.metrics.clone();
    let server = c.server.clone();
    let t = token.clone();
    let st = store.clone();
    let lock = state.maintenance.clone();
    let running = state.snapshotter_running.clone();
    tokio::spawn(async move {
        let _running = match running.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                tracing::info!("waiting for the previous snapshotter to finish its upload");
                tokio::select! {
                    _ = t.cancelled() => return,
                    guard = running.lock_owned() => guard,
                }
            }
        };
        let mut backoff = Duration::from_secs(1);
        loop {
            let reader: crate::snapshot::RevisionReader =
                Arc::new(crate::restore::initializer::snapshot_revision);
            let mut snapshotter = Snapshotter::new(
                client.clone(),
                st.clone(),
                settings.clone(),
                leases.clone(),
                metrics.clone(),
                Some(reader),
            )
            .with_maintenance_lock(lock.clone());
            let started = tokio::time::Instant::now();
            let e = match snapshotter.run(t.clone(), &mut rx).await {
                Ok(()) => return,
                Err(e) => e,
            };
            if started.elapsed() > server.backoff_threshold_time {
                backoff = Duration::from_secs(1);
            }
            metrics.failure(e.class());
            let cause = e.to_string();
            tracing::error!(store = ?st, class = e.class(), error = %cause, retry_in_s = backoff.as_secs(), "the snapshotter failed; it restarts from the last uploaded revision");
            if let Some(leases) = &leases
                && let Err(le) = leases.snapshot_failed(&format!("{st:?}: {cause}")).await
            {
                tracing::warn!(error = %le, "cannot record the failure on the delta snapshot lease");
            }
            // Requests that come while waiting are answered at once with
            // the failure, not queued behind the backoff.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = t.cancelled() => return,
                    () = &mut wait => break,
                    request = rx.recv() => match request {
                        Some(request) => request.refuse(format!(
                            "the snapshotter of the {st:?} is failing (retrying in at most {}s): {cause}",
                            backoff.as_secs().max(1)
                        )),
                        None => return,
                    },
                }
            }
            backoff =
                (backoff * server.backoff_multiplier.max(1)).min(server.backoff_threshold_time);
        }
    });
    let period = c.snapshotter.garbage_collection_period;
    if period >= Duration::from_secs(1) {
        let t = token.clone();
        let metrics = state.metrics.clone();
        let retention = c.snapshotter.delta_snapshot_retention_period;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = t.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match collector::collect(&store, policy, retention, &metrics).await {
                    Ok(r) => tracing::info!(
                        deleted = r.deleted,
                        failed = r.failed,
                        chunks = r.chunks,
                        "garbage collection done"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "garbage collection failed; retrying next period")
                    }
                }
            }
        });
    }
    token
}

/// Renews this member's lease every heartbeat period.
pub(super) async fn member_heartbeat(state: Arc<AppState>, shutdown: CancellationToken) {
    let c = &state.config;
    let lease = match MemberLease::from_env(&c.server.member_name_prefix).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the member lease cannot be renewed; the operator will not see this member");
            return;
        }
    };
    let own = c.etcd.own_endpoint();
    let mut ticker = tokio::time::interval(c.health.k8s_heartbeat_duration);
    let mut client = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if client.is_none() {
            client = crate::etcd::connect(&c.etcd, own, Duration::from_secs(5))
                .await
                .ok();
        }
        let Some(cl) = client.as_mut() else { continue };
        let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(5), cl.status()).await else {
            continue;
        };
        if status.is_learner() {
            // A learner is still joining: its lease stays unrenewed, so the
            // operator counts it as a member only once it is promoted.
            tracing::debug!("this member is a learner: its lease is renewed once it is promoted");
            continue;
        }
        let cluster_id = status.header().map_or(0, |h| h.cluster_id());
        let tls = match cl.member_list().await {
            Ok(list) => list
                .members()
                .iter()
                .find(|m| m.id() == member_id(&status))
                .is_some_and(|m| {
                    !m.peer_urls().is_empty()
                        && m.peer_urls().iter().all(|u| u.starts_with("https"))
                }),
            Err(_) => false,
        };
        let leader = status.leader() == member_id(&status);
        if let Err(e) = lease
            .renew(
                member_id(&status),
                cluster_id,
                leader,
                tls,
                status.header().map_or(0, |h| h.revision()),
            )
            .await
        {
            tracing::warn!(error = %e, "cannot renew the member lease");
        }
    }
}

pub(super) fn member_id(status: &etcd_client::StatusResponse) -> u64 {
    status.header().map_or(0, |h| h.member_id())
}

/// Promotes this member from learner to voting member (it was added as a
/// learner when it joined or rejoined). etcd refuses until the learner has
/// caught up with the leader; the leadership loop tries again every period.
pub(super) async fn promote(state: &Arc<AppState>, id: u64) {
    let c = &state.config;
    let endpoints = c.etcd.cluster_endpoints();
    let Ok(mut client) = crate::etcd::connect_any(&c.etcd, endpoints, Duration::from_secs(5)).await
    else {
        return;
    };
    let started = std::time::Instant::now();
    match tokio::time::timeout(Duration::from_secs(5), client.member_promote(id)).await {
        Ok(Ok(_)) => {
            state
                .metrics
                .member_promote_duration
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(member = %format!("{id:x}"), "this learner was promoted to a voting member")
        }
        Ok(Err(e)) if e.to_string().contains("not a learner") => {}
        Ok(Err(e)) => {
            tracing::info!(member = %format!("{id:x}"), error = %e, "learner not promoted yet")
        }
        Err(_) => tracing::debug!("member promote timed out"),
    }
}
