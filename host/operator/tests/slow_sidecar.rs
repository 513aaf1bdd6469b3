//! A sidecar that takes long to answer holds none of the operator's
//! reconcile workers, against a real kube-apiserver and the real `druid`
//! binary running one worker (`--workers 1`): while one Etcd's final
//! snapshot is being taken, the others are reconciled, and the snapshot is
//! asked for once, not at every reconcile.
//!
//! No kubelet runs here, so no sidecar either: the operator reaches "the
//! sidecar" at `http://127.0.0.1:{port}` (`--sidecar-url-template`), where
//! a fake of its HTTP API (named as such) answers a final snapshot only
//! when the test lets it: a slow store, which a real sidecar shows only
//! with a large database or a slow link.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::members::{statefulset, sts_replicas, wait_condition};
use common::{apply_seed, operator_with, patch_etcd, wait_for};
use tokio::sync::Semaphore;

fn operator() -> &'static common::Operator {
    operator_with(&[
        "--sidecar-url-template",
        "{scheme}://127.0.0.1:{port}",
        "--workers",
        "1",
    ])
}

/// The seed in `ns` with backup port `port`.
fn create_etcd(ns: &str, port: u16) {
    operator();
    apply_seed(ns, &[("    port: 8080\n", &format!("    port: {port}\n"))]);
}

/// A fake of the sidecar's `GET /snapshot/full` that answers once the test
/// adds a permit to `release`; `asked` counts the requests.
struct SlowSidecar {
    port: u16,
    asked: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
}

async fn slow_sidecar() -> SlowSidecar {
    use axum::extract::State;
    use axum::routing::get;
    type Shared = (Arc<AtomicUsize>, Arc<Semaphore>);
    let asked = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route(
            "/snapshot/full",
            get(|State((asked, release)): State<Shared>| async move {
                asked.fetch_add(1, Ordering::SeqCst);
                release.acquire().await.unwrap().forget();
                r#"{"kind":"Full","snapName":"Full-00000000-00000009-1765000000.gz.final","isFinal":true}"#
            }),
        )
        .with_state((asked.clone(), release.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    SlowSidecar {
        port,
        asked,
        release,
    }
}

/// Waits until the StatefulSet of `ns` has `replicas`.
async fn sts_at(ns: &str, replicas: i32) {
    wait_for(
        &format!("the StatefulSet at {replicas} replica(s)"),
        || async {
            statefulset(ns)
                .await
                .filter(|s| sts_replicas(s) == replicas)
                .map(|_| ())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_final_snapshot_that_takes_long_holds_no_worker_and_is_asked_for_once() {
    let slow = "slow-hibernating";
    let sidecar = slow_sidecar().await;
    create_etcd(slow, sidecar.port);
    sts_at(slow, 1).await;

    // Hibernation asks for the final snapshot, which does not come.
    patch_etcd(slow, r#"{"spec":{"replicas":0}}"#);
    wait_for("the final snapshot request", || async {
        (sidecar.asked.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let waiting = wait_condition(slow, "MembersScaledIn", "False", "ScaleInInProgress").await;
    assert!(
        waiting.contains("taking the final full snapshot"),
        "{waiting}"
    );

    // The one worker is free meanwhile: another Etcd is reconciled (its
    // StatefulSet is created) while the snapshot is still being taken.
    let other = "slow-other";
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    create_etcd(other, unused);
    sts_at(other, 1).await;
    assert_eq!(
        sidecar.asked.load(Ordering::SeqCst),
        1,
        "the final snapshot was asked for again while the first request ran"
    );
    // Nothing moved without the snapshot: the member still runs.
    assert_eq!(sts_replicas(&statefulset(slow).await.unwrap()), 1);

    // The snapshot is in the store: a later reconcile picks the answer up
    // and the cluster hibernates, without asking again.
    sidecar.release.add_permits(1);
    let done = wait_condition(slow, "MembersScaledIn", "True", "ScaleInSucceeded").await;
    assert!(
        done.contains("Full-00000000-00000009-1765000000.gz.final"),
        "{done}"
    );
    sts_at(slow, 0).await;
    assert_eq!(sidecar.asked.load(Ordering::SeqCst), 1);
}
