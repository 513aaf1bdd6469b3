//! The operator under test: a real kube-apiserver (with its etcd), the CRDs
//! from deploy/crds, and the real `druid` binary running against it.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, reason = "test harness")]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use druid_test_support::{
    KubeApiServer, ServerProcess, find_binary, free_port, http_get, repo_root, server_dir,
};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub mod members;

/// The API server with the CRDs and a running operator.
pub struct Operator {
    pub metrics_url: String,
    process: ServerProcess,
}

/// The operator shared by the tests of one test binary.
pub fn operator() -> &'static Operator {
    operator_with(&[])
}

/// The operator shared by the tests of one test binary, started with
/// `extra` flags by the first caller (a test binary passes the same flags
/// from every test).
pub fn operator_with(extra: &[&str]) -> &'static Operator {
    operator_with_crds(&repo_root().join("deploy/crds"), extra)
}

static OPERATOR: OnceLock<Operator> = OnceLock::new();

/// As [`operator_with`], with the CRDs of `crds` (a test binary passes the
/// same directory from every test).
pub fn operator_with_crds(crds: &std::path::Path, extra: &[&str]) -> &'static Operator {
    OPERATOR.get_or_init(|| {
        let server = KubeApiServer::shared();
        server.install_crds(crds).unwrap();
        let mut args = vec!["--operator-namespace", "druid-system"];
        args.extend_from_slice(extra);
        let (process, port) = spawn_druid(
            "druid",
            "druid",
            &args,
            &[("RUST_LOG", "info,druid_operator=debug")],
        );
        let metrics_url = format!("http://127.0.0.1:{port}");
        let readyz = format!("{metrics_url}/readyz");
        process
            .wait_ready(Duration::from_secs(120), || {
                Ok(http_get(&readyz).is_ok_and(|(s, _)| s == 200)
                    && std::fs::read_to_string(process.log_path())
                        .unwrap_or_default()
                        .contains("leading: starting the controllers"))
            })
            .unwrap();
        Operator {
            metrics_url,
            process,
        }
    })
}

/// Starts another `druid` process against the test API server: metrics on
/// a free port (returned), leader election in kube-system, status synced
/// every 2 s, then `extra` flags and `env`; its log in
/// a server directory named after `label` and the port.
pub fn spawn_druid(
    name: &str,
    label: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (ServerProcess, u16) {
    let port = free_port().unwrap();
    let dir = server_dir(&format!("{label}-{port}")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_druid"));
    cmd.env("KUBECONFIG", KubeApiServer::shared().kubeconfig())
        .envs(env.iter().copied())
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--status-sync-seconds",
            "2",
            "--leader-election-namespace",
            "kube-system",
        ])
        .args(extra);
    let process = ServerProcess::spawn(name, cmd, &dir.join("druid.log")).unwrap();
    (process, port)
}

impl Operator {
    /// How the operator process ended, if it did (it must not).
    pub fn exited(&self) -> Option<String> {
        self.process.exited()
    }

    /// The operator's process ID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills the operator at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// The value of one series (`name{labels}`) on the operator's
    /// /metrics, if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, page) = http_get(&format!("{}/metrics", self.metrics_url)).unwrap();
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }
}

/// Runs kubectl against the test API server.
pub fn kubectl(args: &[&str]) -> Output {
    let server = KubeApiServer::shared();
    Command::new(find_binary("kubectl", "kube").unwrap())
        .env("KUBECONFIG", server.kubeconfig())
        .arg("--request-timeout=60s")
        .args(args)
        .output()
        .unwrap()
}

/// Runs the `druid` binary with `args` (no API server needed): whether it
/// succeeded, and its stdout and stderr.
pub fn druid<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_druid"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.success(), format!("{stdout}\n{stderr}"))
}

/// Deletes Etcd `name` in `ns` with kubectl and waits until it is gone
/// (its finalizer removed by the operator).
pub async fn delete_etcd(ns: &str, name: &str) {
    ok(&kubectl(&[
        "-n",
        ns,
        "delete",
        "etcd",
        name,
        "--wait=false",
    ]));
    wait_for("the Etcd to be gone", || async {
        kube::Api::<druid_api::Etcd>::namespaced(client().await, ns)
            .get_opt(name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

/// Fails the test unless the command succeeded.
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "command failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Annotates Etcd `test` in `ns` (`key=value`, or `key-` to remove).
pub fn annotate_etcd(ns: &str, annotation: &str) {
    ok(&kubectl(&[
        "-n", ns, "annotate", "etcd", "test", annotation,
    ]));
}

/// Merge-patches the Etcd `test` in `ns` with kubectl.
pub fn patch_etcd(ns: &str, patch: &str) {
    ok(&kubectl(&[
        "-n",
        ns,
        "patch",
        "etcd",
        "test",
        "--type=merge",
        "-p",
        patch,
    ]));
}

/// A condition of an Etcd: (status, reason, message).
pub fn condition(etcd: &druid_api::Etcd, type_: &str) -> Option<(String, String, String)> {
    etcd.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits for an event in `ns` that `matches`.
pub async fn wait_for_event(
    ns: &str,
    what: &str,
    matches: impl Fn(&k8s_openapi::api::core::v1::Event) -> bool,
) -> k8s_openapi::api::core::v1::Event {
    let matches = &matches;
    wait_for(what, || async move {
        kube::Api::<k8s_openapi::api::core::v1::Event>::namespaced(client().await, ns)
            .list(&kube::api::ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| matches(e))
    })
    .await
}

/// kubectl with a manifest on stdin.
pub fn kubectl_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let server = KubeApiServer::shared();
    let mut child = Command::new(find_binary("kubectl", "kube").unwrap())
        .env("KUBECONFIG", server.kubeconfig())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A kube client for the test API server.
pub async fn client() -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(KubeApiServer::shared().kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The founding manifest.
pub fn seed_path() -> PathBuf {
    repo_root().join("deploy/samples/seed-etcd.yaml")
}

/// The founding manifest with its namespace replaced.
pub fn seed_in(namespace: &str) -> String {
    std::fs::read_to_string(seed_path())
        .unwrap()
        .replace("namespace: demo", &format!("namespace: {namespace}"))
}

/// The founding manifest as Etcd `name` in `ns`, edited by `edits`
/// (each `from` must be in it).
pub fn seed_etcd(ns: &str, name: &str, edits: &[(&str, &str)]) -> String {
    let mut text = seed_in(ns).replace("  name: test\n", &format!("  name: {name}\n"));
    for (from, to) in edits {
        assert!(text.contains(from), "the seed has no '{from}'");
        text = text.replace(from, to);
    }
    text
}

/// Applies the founding manifest as Etcd `test` in a new namespace `ns`
/// (with the store Secret), edited by `edits` (each `from` must be in it).
pub fn apply_seed(ns: &str, edits: &[(&str, &str)]) {
    namespace(ns, true);
    ok(&kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &seed_etcd(ns, "test", edits),
    ));
}

/// Scales Etcd `name` in `ns` to `replicas` with kubectl.
pub fn scale_etcd(ns: &str, name: &str, replicas: i32) {
    ok(&kubectl(&[
        "-n",
        ns,
        "patch",
        "etcd",
        name,
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"replicas":{replicas}}}}}"#),
    ]));
}

/// Creates a namespace (and the S3 store Secret the seed names, unless
/// `with_secret` is false).
pub fn namespace(name: &str, with_secret: bool) {
    let out = kubectl(&["create", "namespace", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if with_secret {
        store_secret(name);
    }
}

/// Creates the S3 store Secret the seed names (`etcd-backup`).
pub fn store_secret(namespace: &str) {
    let out = kubectl(&[
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "etcd-backup",
        "--from-literal=accessKeyID=AKIAEXAMPLE",
        "--from-literal=secretAccessKey=example-secret",
        "--from-literal=region=eu-west-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` until it gives `Some`, failing the test (with the operator's
/// log) after `timeout`. Waits are generous: they bound a hang, they do not
/// measure speed.
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            let log = operator().log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "timed out waiting for {what}; operator log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the operator's ServiceAccount (deploy/operator) may `verb`
/// `resource` in namespace `demo` (`kubectl auth can-i`).
pub fn operator_can(verb: &str, resource: &str) -> bool {
    let out = kubectl(&[
        "auth",
        "can-i",
        verb,
        resource,
        "--as=system:serviceaccount:druid-system:druid",
        "-n",
        "demo",
    ]);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i {verb} {resource}: {answer:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer == "yes"
}

/// Drops every validation the API server would apply beyond the types.
pub fn strip_validation(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for key in [
                "x-kubernetes-validations",
                "maximum",
                "minimum",
                "pattern",
                "maxLength",
            ] {
                map.remove(key);
            }
            map.values_mut().for_each(strip_validation);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_validation),
        _ => {}
    }
}

/// deploy/crds with the Etcd CRD's validation stripped.
pub fn lax_crds() -> PathBuf {
    let dir = server_dir("lax-crds").unwrap();
    for entry in std::fs::read_dir(repo_root().join("deploy/crds")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let out = if path.ends_with("druid.gardener.cloud_etcds.yaml") {
            let mut crd: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
            strip_validation(&mut crd);
            let lax = serde_yaml_ng::to_string(&crd).unwrap();
            assert!(!lax.contains("x-kubernetes-validations"));
            lax
        } else {
            text
        };
        std::fs::write(dir.join(path.file_name().unwrap()), out).unwrap();
    }
    dir
}
