//! A real Kubernetes API server, backed by its own real etcd.
//!
//! The server is started by `tests/scripts/kube-apiserver.sh`, the same
//! script the local demo uses, so tests and demo run one configuration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Error, EtcdCluster, Result, find_binary, repo_root, server_dir, shared};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long [`KubeApiServer::install_crds`] waits for a CRD to be served.
pub const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// A running kube-apiserver with its etcd and an admin kubeconfig.
pub struct KubeApiServer {
    url: String,
    kubeconfig: PathBuf,
    process: ServerProcess,
    // Dropped after the API server (fields drop in order).
    etcd: EtcdCluster,
}

impl KubeApiServer {
    /// Starts a new API server with a fresh etcd of its own.
    pub fn start() -> Result<Self> {
        let etcd = EtcdCluster::start(1)?;
        let (url, kubeconfig, process) = with_port_retries(|| Self::try_start(&etcd))?;
        Ok(Self {
            url,
            kubeconfig,
            process,
            etcd,
        })
    }

    /// The API server shared by every test of this test binary.
    pub fn shared() -> &'static KubeApiServer {
        static CELL: OnceLock<std::result::Result<KubeApiServer, String>> = OnceLock::new();
        shared(&CELL, Self::start)
    }

    fn try_start(etcd: &EtcdCluster) -> Result<(String, PathBuf, ServerProcess)> {
        // Fail early, naming the install script, when the binary is missing.
        find_binary("kube-apiserver", "kube")?;
        let port = free_port()?;
        let dir = server_dir(&format!("kube-apiserver-{port}"))?;
        let mut command = Command::new("bash");
        command
            .arg(repo_root().join("tests/scripts/kube-apiserver.sh"))
            .arg(&dir)
            .arg(port.to_string())
            .arg(etcd.endpoints());
        let url = format!("https://127.0.0.1:{port}");
        let process = ServerProcess::spawn(
            &format!("kube-apiserver ({url})"),
            command,
            &dir.join("kube-apiserver.log"),
        )?;
        let readyz = format!("{url}/readyz");
        process.wait_ready(READY_TIMEOUT, || {
            let (status, body) = http_get(&readyz)?;
            Ok(status == 200 && body.trim() == "ok")
        })?;
        Ok((url, dir.join("kubeconfig"), process))
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// An admin kubeconfig for kubectl and kube-rs.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The etcd that backs the API server.
    pub fn etcd(&self) -> &EtcdCluster {
        &self.etcd
    }

    /// The process.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }

    /// A kubectl command against this server.
    pub fn kubectl(&self) -> Result<Command> {
        kubectl(&self.kubeconfig)
    }

    /// Applies every CRD manifest in `dir` (server-side) and waits until
    /// each CRD reports `Established=True` (see [`install_crds`]).
    pub fn install_crds(&self, dir: &Path) -> Result<()> {
        install_crds(&self.kubeconfig, dir)
    }
}

/// A kubectl command against the API server of `kubeconfig`.
pub(crate) fn kubectl(kubeconfig: &Path) -> Result<Command> {
    let mut command = Command::new(find_binary("kubectl", "kube")?);
    // A hung request must not stall a test's wait loop past its deadline.
    command
        .env("KUBECONFIG", kubeconfig)
        .arg("--request-timeout=60s");
    Ok(command)
}

/// Applies every CRD manifest in `dir` (server-side) and waits until
/// each CRD reports `Established=True`.
///
/// `kubectl wait --for=condition=Established` fails at once when the
/// API server has not yet written the new CRD's status ("conditions
/// accessor error: <nil>"): this polls the condition itself instead,
/// until [`CRD_TIMEOUT`] passes, and the error names the CRD and what
/// it last showed.
pub fn install_crds(kubeconfig: &Path, dir: &Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(format!("reading {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut names = Vec::new();
    for file in &files {
        let out = kubectl(kubeconfig)?
            .args(["apply", "--server-side", "-o", "name", "-f"])
            .arg(file)
            .output()
            .map_err(Error::io("running kubectl apply"))?;
        if !out.status.success() {
            return Err(Error::Kubectl {
                what: format!("apply {}", file.display()),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        names.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    for name in &names {
        wait_established(kubeconfig, name)?;
    }
    Ok(())
}

fn wait_established(kubeconfig: &Path, crd: &str) -> Result<()> {
    let start = Instant::now();
    let jsonpath = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
    loop {
        let out = kubectl(kubeconfig)?
            .args(["get", crd, "-o", jsonpath])
            .output()
            .map_err(Error::io("running kubectl get"))?;
        let seen = if out.status.success() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        };
        if out.status.success() && seen == "True" {
            return Ok(());
        }
        if start.elapsed() > CRD_TIMEOUT {
            return Err(Error::Kubectl {
                what: format!("waiting {CRD_TIMEOUT:?} for {crd} to be Established"),
                output: format!("last seen: {seen:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
