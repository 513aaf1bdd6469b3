//! A real Kubernetes API server, backed by its own real etcd.
//!
//! The server is started by `tests/scripts/kube-apiserver.sh`, the same
//! script the local demo uses, so tests and demo run one configuration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{EtcdCluster, Result, find_binary, repo_root, server_dir, shared};

const READY_TIMEOUT: Duration = Duration::from_secs(120);

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
}
