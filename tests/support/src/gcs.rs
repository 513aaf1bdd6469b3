//! A real fake-gcs-server (Google Cloud Storage JSON API) on loopback.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Error, Result, find_binary, server_dir, shared};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running fake-gcs-server over plain HTTP, storing objects on disk.
pub struct FakeGcsServer {
    endpoint: String,
    process: ServerProcess,
}

impl FakeGcsServer {
    /// Starts a new fake-gcs-server with an empty data directory.
    pub fn start() -> Result<Self> {
        with_port_retries(Self::try_start)
    }

    /// The fake-gcs-server shared by every test of this test binary.
    pub fn shared() -> &'static FakeGcsServer {
        static CELL: OnceLock<std::result::Result<FakeGcsServer, String>> = OnceLock::new();
        shared(&CELL, Self::start)
    }

    fn try_start() -> Result<Self> {
        let fake_gcs = find_binary("fake-gcs-server", "fake-gcs")?;
        let port = free_port()?;
        let dir = server_dir(&format!("fake-gcs-{port}"))?;
        let data = server_dir(&format!("fake-gcs-{port}/data"))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(fake_gcs);
        command
            .args(["-scheme", "http", "-host", "127.0.0.1"])
            .arg("-port")
            .arg(port.to_string())
            .args(["-backend", "filesystem"])
            .arg("-filesystem-root")
            .arg(&data)
            .arg("-public-host")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-external-url")
            .arg(&endpoint)
            .args(["-log-level", "warn"]);
        let process = ServerProcess::spawn(
            &format!("fake-gcs-server ({endpoint})"),
            command,
            &dir.join("fake-gcs-server.log"),
        )?;
        let ready = format!("{endpoint}/_internal/healthcheck");
        process.wait_ready(READY_TIMEOUT, || Ok(http_get(&ready)?.0 == 200))?;
        Ok(Self { endpoint, process })
    }

    /// The endpoint, e.g. `http://127.0.0.1:4443`: the JSON API is under
    /// `/storage/v1/`, uploads under `/upload/storage/v1/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates a bucket (an existing one is fine).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let context = format!("creating bucket {name:?} on fake-gcs-server");
        let io = |e: String| Error::io(context.clone())(std::io::Error::other(e));
        let body = format!(r#"{{"name":"{name}"}}"#);
        let mut response = agent
            .post(&format!("{}/storage/v1/b", self.endpoint))
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .map_err(|e| io(e.to_string()))?;
        let status = response.status().as_u16();
        if status == 200 || status == 409 {
            return Ok(());
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Err(io(format!("HTTP {status}: {text}")))
    }

    /// The process.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }
}
