//! The snapshot compaction controller against a real kube-apiserver, with
//! the real `druid` binary.
//!
//! No kubelet or job controller runs here, so the tests play their part:
//! they write the snapshot leases as the backup-restore sidecar does, and a
//! Job's status through its status subresource as the job controller does
//! (and finish a foreground deletion as the garbage collector does). The
//! operator reaches "the sidecar" at `{scheme}://127.0.0.1:{port}`
//! (`--sidecar-url-template`), `{port}` being the Etcd's backup port, so an
//! Etcd points at a fake sidecar HTTP server started by the test, at a
//! port where nothing listens, or (HTTPS) at the test kube-apiserver.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    apply_seed, client, condition, kubectl, ok, operator_with, patch_etcd, wait_for, wait_for_event,
};
use druid_api::Etcd;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt as _};

/// Every test of this binary starts the shared operator with these flags.
fn operator() -> &'static common::Operator {
    operator_with(&["--sidecar-url-template", "{scheme}://127.0.0.1:{port}"])
}

/// The seed in `ns` with the backup port `port` and the given
/// `spec.backup.snapshotCompaction` (flow-style YAML).
fn create_etcd(ns: &str, port: u16, compaction: &str) {
    operator();
    apply_seed(
        ns,
        &[
            ("    port: 8080\n", &format!("    port: {port}\n")),
            (
                "  backup:\n",
                &format!("  backup:\n    snapshotCompaction: {compaction}\n"),
            ),
        ],
    );
}

async fn etcd(ns: &str) -> Etcd {
    Api::<Etcd>::namespaced(client().await, ns)
        .get("test")
        .await
        .unwrap()
}

fn compaction_condition(etcd: &Etcd) -> Option<(String, String, String)> {
    condition(etcd, "LastSnapshotCompactionSucceeded")
}

async fn wait_for_condition(ns: &str, status: &str, reason: &str) -> String {
    wait_for(
        &format!("LastSnapshotCompactionSucceeded={status}/{reason} in {ns}"),
        || async {
            compaction_condition(&etcd(ns).await)
                .filter(|(s, r, _)| s == status && r == reason)
                .map(|(_, _, m)| m)
        },
    )
    .await
}

async fn job(ns: &str) -> Option<Job> {
    Api::<Job>::namespaced(client().await, ns)
        .get_opt("test-compactor")
        .await
        .unwrap()
}

/// Waits for the snapshot leases the etcd controller creates.
async fn wait_for_leases(ns: &str) {
    wait_for("the snapshot leases", || async {
        let api = Api::<Lease>::namespaced(client().await, ns);
        (api.get_opt("test-full-snap").await.unwrap().is_some()
            && api.get_opt("test-delta-snap").await.unwrap().is_some())
        .then_some(())
    })
    .await;
}

/// Writes a snapshot lease as the sidecar does: the revision as holder
/// identity, and (delta lease) the bytes of deltas since the full snapshot.
async fn snapshot_lease(ns: &str, name: &str, revision: i64, bytes: Option<u64>) {
    let mut patch = serde_json::json!({
        "spec": {
            "holderIdentity": revision.to_string(),
            "renewTime": MicroTime(Timestamp::now()),
        }
    });
    if let Some(b) = bytes {
        patch["metadata"] = serde_json::json!({
            "annotations": { druid_api::DELTA_BYTES_SINCE_FULL_ANNOTATION: b.to_string() }
        });
    }
    Api::<Lease>::namespaced(client().await, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn wait_for_metric(name_and_labels: &str, value: f64) {
    wait_for(&format!("{name_and_labels} {value}"), || async {
        (operator().metric(name_and_labels) == Some(value)).then_some(())
    })
    .await;
}

/// Writes a Job status as the job controller would.
async fn job_status(ns: &str, status: serde_json::Value) {
    Api::<Job>::namespaced(client().await, ns)
        .patch_status(
            "test-compactor",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .unwrap();
}

async fn job_started(ns: &str) {
    job_status(
        ns,
        serde_json::json!({ "startTime": Time(Timestamp::now()), "active": 1 }),
    )
    .await;
}

async fn job_completed(ns: &str) {
    let now = Time(Timestamp::now());
    job_status(
        ns,
        serde_json::json!({
            "active": 0,
            "succeeded": 1,
            "completionTime": now,
            "conditions": [
                { "type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now },
                { "type": "Complete", "status": "True", "lastTransitionTime": now },
            ],
        }),
    )
    .await;
}

async fn job_failed(ns: &str, reason: &str, message: &str) {
    let now = Time(Timestamp::now());
    job_status(
        ns,
        serde_json::json!({
            "active": 0,
            "failed": 1,
            "conditions": [
                { "type": "FailureTarget", "status": "True", "reason": reason, "message": message, "lastTransitionTime": now },
                { "type": "Failed", "status": "True", "reason": reason, "message": message, "lastTransitionTime": now },
            ],
        }),
    )
    .await;
}

/// Waits until the operator deleted the Job with foreground propagation,
/// then completes the deletion as the garbage collector does once the pods
/// are gone (there are none here).
async fn job_deleted_in_foreground(ns: &str) {
    let deleting = wait_for("the Job's foreground deletion", || async {
        job(ns)
            .await
            .filter(|j| j.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(
        deleting
            .finalizers()
            .iter()
            .any(|f| f == "foregroundDeletion"),
        "{:?}",
        deleting.finalizers()
    );
    Api::<Job>::namespaced(client().await, ns)
        .patch(
            "test-compactor",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .unwrap();
    wait_for("the Job to be gone", || async {
        job(ns).await.is_none().then_some(())
    })
    .await;
}

async fn warning_event(ns: &str, reason: &str) -> Event {
    wait_for_event(ns, &format!("a Warning event {reason}"), |e| {
        e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason)
    })
    .await
}

/// A fake of the sidecar's HTTP API: it answers `GET /snapshot/full` with
/// 200 and, as the real sidecar does after a full snapshot, raises the full
/// snapshot lease to the delta lease's revision. It records every request.
struct FakeSidecar {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn fake_sidecar(ns: &str) -> FakeSidecar {
    use axum::extract::State;
    use axum::routing::get;
    let requests = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = (requests.clone(), ns.to_string());
    let app = axum::Router::new()
        .route(
            "/snapshot/full",
            get(
                |State((requests, ns)): State<(Arc<Mutex<Vec<String>>>, String)>| async move {
                    requests.lock().unwrap().push("GET /snapshot/full".into());
                    let leases = Api::<Lease>::namespaced(client().await, &ns);
                    let delta = leases.get("test-delta-snap").await.unwrap();
                    let revision: i64 = delta
                        .spec
                        .and_then(|s| s.holder_identity)
                        .and_then(|h| h.parse().ok())
                        .unwrap_or(0);
                    snapshot_lease(&ns, "test-full-snap", revision, None).await;
                    "{\"lastRevision\":0}"
                },
            ),
        )
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeSidecar { port, requests }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_starts_past_the_events_threshold_and_its_success_is_reported() {
    let ns = "compaction-events";
    create_etcd(
        ns,
        8080,
        "{eventsThreshold: 100, triggerFullSnapshotThreshold: 100000}",
    );
    wait_for_leases(ns).await;

    // (a) Below the events threshold, and 1 byte below the bytes
    // threshold: the controller looks (the gauge shows the events) and
    // starts nothing.
    snapshot_lease(ns, "test-full-snap", 1000, None).await;
    snapshot_lease(ns, "test-delta-snap", 1099, Some((1 << 30) - 1)).await;
    wait_for_metric(
        &format!("etcddruid_compaction_num_delta_events{{etcd_namespace=\"{ns}\"}}"),
        99.0,
    )
    .await;
    assert!(job(ns).await.is_none(), "no job below the thresholds");

    // (b) Past it: the job, with the sidecar's store flags.
    snapshot_lease(ns, "test-delta-snap", 1250, Some((1 << 30) - 1)).await;
    let j = wait_for("the compaction Job", || job(ns)).await;
    let owner = &j.owner_references()[0];
    let e = etcd(ns).await;
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Etcd", "test", Some(true))
    );
    assert_eq!(Some(&owner.uid), e.metadata.uid.as_ref());
    let spec = j.spec.as_ref().unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(3 * 3600));
    assert_eq!(spec.backoff_limit, Some(0));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some("test"));
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("eu.gcr.io/gardener-project/gardener/etcdbrctl:v0.25.0")
    );
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "compact");
    for expected in [
        "--storage-provider=S3",
        "--store-container=test",
        "--store-prefix=etcd-test",
        "--enable-snapshot-lease-renewal=true",
        "--full-snapshot-lease-name=test-full-snap",
        "--delta-snapshot-lease-name=test-delta-snap",
        "--snapstore-temp-directory=/var/etcd/data/tmp",
        "--data-dir=/var/etcd/data/compaction.etcd",
        "--embedded-etcd-quota-bytes=8589934592",
    ] {
        assert!(args.contains(&expected.into()), "{expected} in {args:?}");
    }
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels["app.kubernetes.io/component"], "compactor");
    assert_eq!(labels["networking.gardener.cloud/to-dns"], "allowed");
    let created = event_message(ns, "CompactionJobCreated").await;
    assert!(
        created.contains("250 delta events") && created.contains("threshold 100"),
        "{created}"
    );

    // The job runs: nothing changes; the gauge counts it.
    job_started(ns).await;
    wait_for_metric(
        &format!("etcddruid_compaction_jobs_current{{etcd_namespace=\"{ns}\"}}"),
        1.0,
    )
    .await;

    // (d) The job uploads a compacted full snapshot (and records it in the
    // full lease, as `compact` does), then completes.
    snapshot_lease(ns, "test-full-snap", 1250, None).await;
    job_completed(ns).await;
    let message = wait_for_condition(ns, "True", "Succeeded").await;
    assert!(message.contains("test-compactor succeeded"), "{message}");
    job_deleted_in_foreground(ns).await;
    wait_for_metric(
        &format!(
            "etcddruid_compaction_jobs_total{{succeeded=\"true\",failureReason=\"none\",etcd_namespace=\"{ns}\"}}"
        ),
        1.0,
    )
    .await;
    assert_eq!(
        operator().metric(&format!(
            "etcddruid_compaction_job_duration_seconds_count{{succeeded=\"true\",failureReason=\"none\",etcd_namespace=\"{ns}\"}}"
        )),
        Some(1.0)
    );
    wait_for_metric(
        &format!("etcddruid_compaction_jobs_current{{etcd_namespace=\"{ns}\"}}"),
        0.0,
    )
    .await;
    // No deltas since the new full snapshot: no new job.
    wait_for_metric(
        &format!("etcddruid_compaction_num_delta_events{{etcd_namespace=\"{ns}\"}}"),
        0.0,
    )
    .await;
    assert!(job(ns).await.is_none());

    // The etcd controller rewrites the status (here for a spec it
    // refuses) and keeps the compaction condition.
    patch_etcd(
        ns,
        r#"{"spec":{"backup":{"fullSnapshotSchedule":"61 */24 * * *"}}}"#,
    );
    let e = wait_for("SpecValid=False", || async {
        let e = etcd(ns).await;
        e.status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "SpecValid" && c.status == "False")
            .then_some(e)
    })
    .await;
    let kept = compaction_condition(&e).unwrap();
    assert_eq!((kept.0.as_str(), kept.1.as_str()), ("True", "Succeeded"));
}

async fn event_message(ns: &str, reason: &str) -> String {
    wait_for_event(ns, &format!("an event {reason} with a message"), |e| {
        e.reason.as_deref() == Some(reason) && e.message.is_some()
    })
    .await
    .message
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn many_delta_bytes_start_a_job_with_few_events() {
    let ns = "compaction-bytes";
    create_etcd(ns, 8080, "{eventsThreshold: 1000}");
    wait_for_leases(ns).await;
    // (c) 10 events, but 1 GiB of them (the operator's default bytes
    // threshold).
    snapshot_lease(ns, "test-full-snap", 500, None).await;
    snapshot_lease(ns, "test-delta-snap", 510, Some(1 << 30)).await;
    let j = wait_for("the compaction Job", || job(ns)).await;
    assert_eq!(
        j.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .as_ref()
            .unwrap()[0],
        "compact"
    );
    let created = event_message(ns, "CompactionJobCreated").await;
    assert!(created.contains("1073741824 bytes"), "{created}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_deadline_makes_the_next_trigger_a_full_snapshot() {
    let ns = "compaction-deadline";
    let sidecar = fake_sidecar(ns).await;
    create_etcd(
        ns,
        sidecar.port,
        "{eventsThreshold: 100, triggerFullSnapshotThreshold: 100000}",
    );
    wait_for_leases(ns).await;
    snapshot_lease(ns, "test-full-snap", 2000, None).await;
    snapshot_lease(ns, "test-delta-snap", 2300, None).await;
    wait_for("the compaction Job", || job(ns)).await;

    // (e) The job runs out of time (and uploads nothing).
    job_started(ns).await;
    job_failed(
        ns,
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )
    .await;
    let message = wait_for_condition(ns, "False", "DeadlineExceeded").await;
    assert!(message.contains("active deadline of 10800s"), "{message}");
    assert!(message.contains("full snapshot"), "{message}");
    let event = warning_event(ns, "CompactionFailed").await;
    let note = event.message.unwrap_or_default();
    assert!(note.contains("active deadline of 10800s"), "{note}");
    job_deleted_in_foreground(ns).await;
    wait_for_metric(
        &format!(
            "etcddruid_compaction_jobs_total{{succeeded=\"false\",failureReason=\"deadlineExceeded\",etcd_namespace=\"{ns}\"}}"
        ),
        1.0,
    )
    .await;

    // (f) The deltas are still there: this time the sidecar is asked for a
    // full snapshot, not a job.
    let message = wait_for_condition(ns, "True", "FullSnapshotTakenSuccessfully").await;
    assert!(message.contains("300 delta events"), "{message}");
    assert_eq!(
        sidecar.requests.lock().unwrap().as_slice(),
        ["GET /snapshot/full"]
    );
    wait_for_metric(
        &format!(
            "etcddruid_compaction_full_snapshot_triggered_total{{succeeded=\"true\",etcd_namespace=\"{ns}\"}}"
        ),
        1.0,
    )
    .await;
    // The full snapshot covers the deltas: nothing more to do.
    wait_for_metric(
        &format!("etcddruid_compaction_num_delta_events{{etcd_namespace=\"{ns}\"}}"),
        0.0,
    )
    .await;
    assert!(job(ns).await.is_none(), "a full snapshot, not a job");
    assert_eq!(sidecar.requests.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_sidecar_is_reported_and_no_job_starts() {
    let ns = "compaction-unreachable";
    // Nothing listens on this port.
    let port = druid_test_support::free_port().unwrap();
    create_etcd(
        ns,
        port,
        "{eventsThreshold: 100, triggerFullSnapshotThreshold: 500}",
    );
    wait_for_leases(ns).await;
    // (f) Past the full snapshot threshold.
    snapshot_lease(ns, "test-full-snap", 1000, None).await;
    snapshot_lease(ns, "test-delta-snap", 1600, None).await;
    let message = wait_for_condition(ns, "False", "ErrorTriggeringFullSnapshot").await;
    assert!(
        message.contains(&format!("http://127.0.0.1:{port}/snapshot/full")),
        "{message}"
    );
    assert!(message.contains("600 delta events"), "{message}");
    let event = warning_event(ns, "ErrorTriggeringFullSnapshot").await;
    assert_eq!(event.involved_object.name.as_deref(), Some("test"));
    // The operator retries the trigger, and counts each failed try: at
    // least one by now (exactly one only if the test looks in time).
    let failed = format!(
        "etcddruid_compaction_full_snapshot_triggered_total{{succeeded=\"false\",etcd_namespace=\"{ns}\"}}"
    );
    wait_for(&format!("{failed} >= 1"), || async {
        operator()
            .metric(&failed)
            .is_some_and(|v| v >= 1.0)
            .then_some(())
    })
    .await;
    assert!(job(ns).await.is_none(), "no job instead of a full snapshot");
}

/// An Etcd in `ns` whose sidecar is the test kube-apiserver over HTTPS
/// (its port is returned): the backup CA Secret holds the apiserver's CA,
/// the server (and, with `client`, the client) certificate Secrets hold
/// junk. Its leases make a full snapshot due.
async fn due_with_backup_tls(ns: &str, client: bool) -> u16 {
    let server = druid_test_support::KubeApiServer::shared();
    let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    let ca = server.kubeconfig().parent().unwrap().join("pki/ca.crt");
    create_etcd(
        ns,
        port,
        "{eventsThreshold: 100, triggerFullSnapshotThreshold: 500}",
    );
    ok(&kubectl(&[
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "backup-ca",
        &format!("--from-file=bundle.crt={}", ca.display()),
    ]));
    let mut secrets = vec!["backup-server"];
    if client {
        secrets.push("backup-client");
    }
    for name in secrets {
        ok(&kubectl(&[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            name,
            "--from-literal=tls.crt=not a certificate",
            "--from-literal=tls.key=not a key",
        ]));
    }
    let client_ref = if client {
        r#","clientTLSSecretRef":{"name":"backup-client"}"#
    } else {
        ""
    };
    patch_etcd(
        ns,
        &format!(
            r#"{{"spec":{{"backup":{{"tls":{{"tlsCASecretRef":{{"name":"backup-ca","dataKey":"bundle.crt"}},"serverTLSSecretRef":{{"name":"backup-server"}}{client_ref}}}}}}}}}"#
        ),
    );
    wait_for_leases(ns).await;
    snapshot_lease(ns, "test-full-snap", 1000, None).await;
    snapshot_lease(ns, "test-delta-snap", 1600, None).await;
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn with_backup_tls_the_sidecar_is_asked_over_https_trusting_the_backup_ca() {
    let ns = "compaction-https";
    // The HTTPS server: the test kube-apiserver (serving 127.0.0.1 with a
    // certificate of the test CA), standing in for a TLS sidecar. It
    // answers /snapshot/full with an HTTP error, which is only possible
    // once the TLS handshake trusted the CA from the Etcd's CA Secret.
    let port = due_with_backup_tls(ns, false).await;
    let message = wait_for_condition(ns, "False", "ErrorTriggeringFullSnapshot").await;
    assert!(
        message.contains(&format!(
            "GET https://127.0.0.1:{port}/snapshot/full answered 40"
        )),
        "an HTTP answer over verified TLS: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_backup_client_certificate_the_operator_presents_it_and_says_what_is_wrong_with_it()
{
    let ns = "compaction-mtls";
    due_with_backup_tls(ns, true).await;
    // The client certificate the sidecar would require is read from the
    // Secret the spec names, and its fault is named before any request.
    let message = wait_for_condition(ns, "False", "ErrorTriggeringFullSnapshot").await;
    assert!(
        message.contains(&format!("Secret {ns}/backup-client"))
            && message.contains("clientTLSSecretRef")
            && message.contains("no PEM certificate"),
        "{message}"
    );
    assert!(
        !message.contains("not a key"),
        "no key material in a condition: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_thresholds_are_reported_and_start_nothing() {
    let ns = "compaction-invalid";
    let port = druid_test_support::free_port().unwrap();
    create_etcd(ns, port, "{eventsThreshold: -5}");
    wait_for_leases(ns).await;
    // (g) Far past every default threshold.
    snapshot_lease(ns, "test-full-snap", 1, None).await;
    snapshot_lease(ns, "test-delta-snap", 10_000_000, Some(5 << 30)).await;
    let message = wait_for_condition(ns, "False", "InvalidCompactionSettings").await;
    assert!(
        message.contains("spec.backup.snapshotCompaction.eventsThreshold is -5"),
        "{message}"
    );
    let event = warning_event(ns, "InvalidCompactionSettings").await;
    let note = event.message.unwrap_or_default();
    assert!(note.contains("eventsThreshold is -5"), "{note}");
    assert!(
        operator().log().contains("invalid compaction settings"),
        "a log line"
    );
    assert!(job(ns).await.is_none());
    assert_eq!(
        operator().metric(&format!(
            "etcddruid_compaction_full_snapshot_triggered_total{{succeeded=\"false\",etcd_namespace=\"{ns}\"}}"
        )),
        None,
        "no full snapshot either"
    );

    // Fixed: the condition goes away (few events and bytes: nothing to
    // do).
    snapshot_lease(ns, "test-delta-snap", 50, Some(0)).await;
    patch_etcd(
        ns,
        r#"{"spec":{"backup":{"snapshotCompaction":{"eventsThreshold":100}}}}"#,
    );
    wait_for("the condition to be removed", || async {
        compaction_condition(&etcd(ns).await)
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(job(ns).await.is_none());
}

#[test]
fn the_operator_may_manage_compaction_jobs() {
    operator();
    let path = druid_test_support::repo_root().join("deploy/operator/druid.yaml");
    ok(&kubectl(&[
        "apply",
        "--validate=strict",
        "-f",
        path.to_str().unwrap(),
    ]));
    for (verb, resource) in [
        ("get", "jobs.batch"),
        ("list", "jobs.batch"),
        ("watch", "jobs.batch"),
        ("create", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("get", "pods"),
        ("list", "pods"),
        ("get", "secrets"),
    ] {
        assert!(common::operator_can(verb, resource), "{verb} {resource}");
    }
}
