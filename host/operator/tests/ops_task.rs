//! EtcdOpsTasks against a real kube-apiserver and the real `druid` binary:
//! admission and its rejections, the CRD's rules, the answers of the
//! sidecar, one task per Etcd, timeouts, the TTL and the finalizer.
//!
//! No kubelet runs here, so no sidecar either: the operator reaches "the
//! sidecar" at `http://127.0.0.1:{port}` (`--sidecar-url-template`), where
//! the execution test listens with a fake of the sidecar's HTTP API (named
//! as such) to inject what a real sidecar rarely does: its rate limit, a
//! failed snapshot, a hang past the timeout, a refused defragmentation.
//! The members' leases are renewed by the test, as their sidecars would,
//! so the Etcd is Ready. The successes through real pods and a real
//! sidecar are in `tests/e2e/tests/node.rs`.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::sync::{Arc, Mutex};

use common::members::lease_role;
use common::{
    apply_seed, client, kubectl, kubectl_stdin, namespace, ok, operator_with, wait_for,
    wait_for_event,
};
use druid_api::EtcdOpsTask;
use kube::{Api, ResourceExt as _};

fn operator() -> &'static common::Operator {
    operator_with(&["--sidecar-url-template", "{scheme}://127.0.0.1:{port}"])
}

/// An EtcdOpsTask `name` of Etcd `etcd` with `config` (YAML flow style)
/// and `ttl`.
fn task(name: &str, etcd: &str, config: &str, ttl: u32) -> String {
    format!(
        "apiVersion: druid.gardener.cloud/v1alpha1\nkind: EtcdOpsTask\nmetadata:\n  name: {name}\nspec:\n  etcdName: {etcd}\n  ttlSecondsAfterFinished: {ttl}\n  config: {config}\n"
    )
}

fn create(ns: &str, manifest: &str) {
    ok(&kubectl_stdin(
        &["-n", ns, "apply", "--validate=strict", "-f", "-"],
        manifest,
    ));
}

async fn get(ns: &str, name: &str) -> Option<EtcdOpsTask> {
    Api::<EtcdOpsTask>::namespaced(client().await, ns)
        .get_opt(name)
        .await
        .unwrap()
}

/// Waits until task `name` reached a final state: the task.
async fn finished(ns: &str, name: &str) -> EtcdOpsTask {
    wait_for(&format!("EtcdOpsTask {ns}/{name} finished"), || async {
        get(ns, name).await.filter(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.state.as_deref())
                .is_some_and(druid_api::tasks::task_state::is_final)
        })
    })
    .await
}

/// (state, lastOperation type and state, last error code, last error).
fn summary(task: &EtcdOpsTask) -> (String, String, String, String, String) {
    let status = task.status.clone().unwrap();
    let op = status.last_operation.unwrap();
    let last = status.last_errors.last().cloned().unwrap_or_default();
    (
        status.state.unwrap(),
        op.type_,
        op.state,
        last.code,
        last.description,
    )
}

/// Waits until task `name` finished, checks its state and last error
/// code, and returns its last error.
async fn ended(ns: &str, name: &str, state: &str, code: &str) -> String {
    let (got_state, _, _, got_code, last) = summary(&finished(ns, name).await);
    assert_eq!(
        (got_state.as_str(), got_code.as_str()),
        (state, code),
        "{name}: {last}"
    );
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn each_reason_to_reject_a_task_is_reported_and_finished_tasks_go_after_their_ttl() {
    operator();
    let ns = "ops-rejected";
    apply_seed(ns, &[]);
    let edits = |name: &str, edits: &[(&str, &str)]| {
        create(ns, &common::seed_etcd(ns, name, edits));
    };
    edits("asleep", &[("  replicas: 1\n", "  replicas: 0\n")]);
    edits(
        "nostore",
        &[(
            "  store:\n    storageContainer: test\n    storageProvider: S3\n    storePrefix: etcd-test\n    storeSecret: etcd-backup\n",
            "",
        )],
    );
    let cases = [
        (
            "absent",
            "absent",
            "ERR_ETCD_NOT_FOUND",
            "no Etcd ops-rejected/absent exists",
        ),
        (
            "asleep",
            "asleep",
            "ERR_ETCD_HIBERNATED",
            "is hibernated (spec.replicas: 0)",
        ),
        (
            "nostore",
            "nostore",
            "ERR_BACKUP_NOT_ENABLED",
            "has no backup store",
        ),
        // No member renews its lease here: not Ready.
        ("notready", "test", "ERR_ETCD_NOT_READY", "is not ready"),
    ];
    for (name, etcd, ..) in cases {
        create(
            ns,
            &task(name, etcd, "{onDemandSnapshot: {type: full}}", 3600),
        );
    }
    for (name, _, code, message) in cases {
        let t = finished(ns, name).await;
        let (state, op_type, op_state, last_code, last) = summary(&t);
        assert_eq!(
            (state.as_str(), op_type.as_str(), op_state.as_str()),
            ("Rejected", "Admit", "Failed"),
            "{name}"
        );
        assert_eq!(last_code, code, "{name}: {last}");
        assert!(last.contains(message), "{name}: {last}");
        assert!(
            t.finalizers()
                .iter()
                .any(|f| f == "druid.gardener.cloud/etcd-ops-task"),
            "{name}"
        );
    }
    wait_for_event(ns, "the Rejected event of task absent", |e| {
        e.involved_object.name.as_deref() == Some("absent")
            && e.reason.as_deref() == Some("Rejected")
            && e.type_.as_deref() == Some("Warning")
            && e.message
                .as_deref()
                .is_some_and(|n| n.contains("spec.etcdName"))
    })
    .await;
    // `kubectl get -o wide` shows upstream's columns.
    let out = kubectl(&["-n", ns, "get", "etcdopstask", "absent", "-o", "wide"]);
    ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATE", "ETCD", "AGE", "PHASE", "TTL"],
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap().contains("Rejected   absent"),
        "{table}"
    );

    // A finished task goes once its TTL has passed, finalizer and all.
    create(
        ns,
        &task("short", "absent", "{onDemandSnapshot: {type: delta}}", 2),
    );
    wait_for("task short deleted after its TTL", || async {
        get(ns, "short").await.is_none().then_some(())
    })
    .await;
    // A user's deletion is not held up by the finalizer.
    ok(&kubectl(&[
        "-n",
        ns,
        "delete",
        "etcdopstask",
        "absent",
        "--wait=true",
        "--timeout=60s",
    ]));
    assert!(get(ns, "absent").await.is_none());
    // The operator's RBAC (deploy/operator) lets it delete tasks, and no
    // Etcd.
    let rbac = druid_test_support::repo_root().join("deploy/operator/druid.yaml");
    ok(&kubectl(&["apply", "-f", rbac.to_str().unwrap()]));
    assert!(common::operator_can(
        "delete",
        "etcdopstasks.druid.gardener.cloud"
    ));
    assert!(!common::operator_can(
        "delete",
        "etcds.druid.gardener.cloud"
    ));
}

#[test]
fn the_crd_refuses_tasks_that_cannot_run() {
    operator();
    let ns = "ops-invalid";
    namespace(ns, false);
    let refused = |config: &str, expected: &str| {
        let out = kubectl_stdin(
            &["-n", ns, "apply", "-f", "-"],
            &task("bad", "test", config, 60),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{config}: {err}"
        );
    };
    refused("{}", "must name exactly one operation");
    refused(
        "{onDemandSnapshot: {type: full}, onDemandDefragmentation: {}}",
        "must name exactly one operation",
    );
    refused(
        "{onDemandSnapshot: {type: delta, isFinal: true}}",
        "isFinal is only allowed for type full",
    );
    refused(
        "{onDemandSnapshot: {type: full, timeoutSecondsFull: 10}}",
        "at least 120",
    );
    refused(
        "{onDemandSnapshot: {type: delta, timeoutSecondsDelta: 5}}",
        "at least 10",
    );
    refused(
        "{onDemandDefragmentation: {timeoutSeconds: 5}}",
        "at least 60",
    );
    refused("{onDemandSnapshot: {type: weekly}}", "Unsupported value");
    // The target and the operation cannot change once created.
    create(
        ns,
        &task("fixed", "absent", "{onDemandSnapshot: {type: full}}", 3600),
    );
    let refused_patch = |patch: &str, expected: &str| {
        let out = kubectl(&[
            "-n",
            ns,
            "patch",
            "etcdopstask",
            "fixed",
            "--type=merge",
            "-p",
            patch,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{patch}: {err}"
        );
    };
    refused_patch(
        r#"{"spec":{"etcdName":"other"}}"#,
        "spec.etcdName is immutable",
    );
    refused_patch(
        r#"{"spec":{"config":{"onDemandSnapshot":{"type":"delta"}}}}"#,
        "spec.config is immutable",
    );
}

/// A fake of the sidecar's snapshot and defragmentation endpoints (see
/// the module's comment): the first full snapshot is refused with the
/// sidecar's rate limit, the next succeeds; a delta hangs for a minute; a
/// defragmentation is refused with a report. Each request is recorded
/// (method and path with query).
async fn fake_sidecar() -> (u16, Arc<Mutex<Vec<String>>>) {
    use axum::extract::State;
    use axum::http::{Method, StatusCode, Uri};
    use axum::routing::any;
    type Asked = Arc<Mutex<Vec<String>>>;
    let asked: Asked = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let record = |asked: &Asked, method: &Method, uri: &Uri| {
        let mut asked = asked.lock().unwrap();
        asked.push(format!("{method} {uri}"));
        asked.len()
    };
    let app = axum::Router::new()
        .route(
            "/snapshot/full",
            any(move |State(asked): State<Asked>, method: Method, uri: Uri| async move {
                let full_asks = {
                    record(&asked, &method, &uri);
                    asked.lock().unwrap().iter().filter(|a| a.contains("/snapshot/full")).count()
                };
                if full_asks == 1 {
                    return (StatusCode::TOO_MANY_REQUESTS, "an on-demand full snapshot was taken 3s ago; try again in 27s".to_string());
                }
                (StatusCode::OK, r#"{"kind":"Full","startRevision":0,"lastRevision":77,"snapName":"Full-00000000-00000077-1765000000.gz","prefix":"etcd-test/v2","isFinal":false}"#.to_string())
            }),
        )
        .route(
            "/snapshot/delta",
            any(move |State(asked): State<Asked>, method: Method, uri: Uri| async move {
                record(&asked, &method, &uri);
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                "null"
            }),
        )
        .route(
            "/defragment",
            any(move |State(asked): State<Asked>, method: Method, uri: Uri| async move {
                record(&asked, &method, &uri);
                (StatusCode::CONFLICT, r#"{"outcome":"Refused","reason":"member test-0 is not healthy: its lease is stale","members":[],"nospaceDisarmed":false,"durationSeconds":0.0}"#)
            }),
        )
        .with_state(asked.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, asked)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_asks_the_sidecar_once_admitted_and_reports_its_answer() {
    operator();
    let ns = "ops-run";
    let (port, asked) = fake_sidecar().await;
    apply_seed(ns, &[("    port: 8080\n", &format!("    port: {port}\n"))]);
    // The member's sidecar renews its lease: the Etcd becomes Ready.
    wait_for("the member lease test-0", || async {
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client().await, ns)
            .get_opt("test-0")
            .await
            .unwrap()
    })
    .await;
    let renew = tokio::spawn(async move {
        loop {
            lease_role(ns, 0, "Leader").await;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    });
    common::members::wait_condition(ns, "Ready", "True", "Quorate").await;

    // A full snapshot: refused once by the sidecar's rate limit (retried),
    // then taken; the task names the snapshot.
    create(
        ns,
        &task(
            "full",
            "test",
            "{onDemandSnapshot: {type: full, timeoutSecondsFull: 120}}",
            3600,
        ),
    );
    let t = finished(ns, "full").await;
    let (state, op_type, op_state, code, last) = summary(&t);
    assert_eq!(
        (state.as_str(), op_type.as_str(), op_state.as_str()),
        ("Succeeded", "Execution", "Completed"),
        "{t:?}"
    );
    assert_eq!(
        code, "ERR_SIDECAR_NOT_READY",
        "the refusal is kept in lastErrors"
    );
    assert!(last.contains("429") && last.contains("try again"), "{last}");
    let status = t.status.clone().unwrap();
    assert_eq!(
        status.last_operation.unwrap().description,
        "full snapshot etcd-test/v2/Full-00000000-00000077-1765000000.gz uploaded (up to revision 77)"
    );
    assert!(status.started_at.is_some());
    let full_asks: Vec<String> = asked
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.contains("full"))
        .cloned()
        .collect();
    assert_eq!(full_asks, ["POST /snapshot/full", "POST /snapshot/full"]);
    wait_for_event(ns, "the Succeeded event", |e| {
        e.involved_object.name.as_deref() == Some("full")
            && e.reason.as_deref() == Some("Succeeded")
    })
    .await;

    // A delta that hangs past its timeout fails; while it runs, a second
    // task of the same Etcd is rejected, naming the running one.
    create(
        ns,
        &task(
            "hangs",
            "test",
            "{onDemandSnapshot: {type: delta, timeoutSecondsDelta: 10}}",
            3600,
        ),
    );
    wait_for("task hangs in progress", || async {
        get(ns, "hangs")
            .await
            .filter(|t| t.status.as_ref().and_then(|s| s.state.as_deref()) == Some("InProgress"))
    })
    .await;
    create(
        ns,
        &task(
            "second",
            "test",
            "{onDemandSnapshot: {type: full, isFinal: true}}",
            3600,
        ),
    );
    let last = ended(ns, "second", "Rejected", "ERR_DUPLICATE_TASK").await;
    assert!(
        last.contains("the task hangs of Etcd ops-run/test has not finished"),
        "{last}"
    );
    let last = ended(ns, "hangs", "Failed", "ERR_TIMED_OUT").await;
    assert!(
        last.contains("did not take a delta snapshot within 10 s"),
        "{last}"
    );

    // A refused defragmentation fails with the sidecar's reason.
    create(
        ns,
        &task(
            "defrag",
            "test",
            "{onDemandDefragmentation: {timeoutSeconds: 600}}",
            3600,
        ),
    );
    let last = ended(ns, "defrag", "Failed", "ERR_SIDECAR_FAILED").await;
    assert!(
        last.contains("409") && last.contains("Refused: member test-0 is not healthy"),
        "{last}"
    );
    assert!(
        asked
            .lock()
            .unwrap()
            .contains(&"POST /defragment".to_string())
    );

    let metric = |state: &str, op: &str| {
        operator()
            .metric(&format!(
                "druid_ops_tasks_finished_total{{namespace=\"{ns}\",operation=\"{op}\",state=\"{state}\"}}"
            ))
            .unwrap_or(0.0)
    };
    assert_eq!(metric("Succeeded", "fullSnapshot"), 1.0);
    assert_eq!(metric("Rejected", "fullSnapshot"), 1.0);
    assert_eq!(metric("Failed", "deltaSnapshot"), 1.0);
    assert_eq!(metric("Failed", "defragmentation"), 1.0);
    renew.abort();
}
