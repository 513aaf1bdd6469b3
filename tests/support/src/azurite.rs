//! A real Azurite server (Azure Blob Storage) on loopback.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Result, find_binary, server_dir, shared};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Azurite's well-known development account.
const ACCOUNT: &str = "devstoreaccount1";

/// Azurite's well-known development account key (public, documented by
/// Microsoft; not a secret).
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service with the development account.
pub struct AzuriteServer {
    endpoint: String,
    process: ServerProcess,
}

impl AzuriteServer {
    /// Starts a new Azurite blob service with an empty data directory.
    pub fn start() -> Result<Self> {
        with_port_retries(Self::try_start)
    }

    /// The Azurite server shared by every test of this test binary.
    pub fn shared() -> &'static AzuriteServer {
        static CELL: OnceLock<std::result::Result<AzuriteServer, String>> = OnceLock::new();
        shared(&CELL, Self::start)
    }

    fn try_start() -> Result<Self> {
        let azurite = find_binary("azurite-blob", "azurite")?;
        let port = free_port()?;
        let dir = server_dir(&format!("azurite-{port}"))?;
        let data = server_dir(&format!("azurite-{port}/data"))?;
        let mut command = Command::new(azurite);
        command
            .args(["--blobHost", "127.0.0.1"])
            .arg("--blobPort")
            .arg(port.to_string())
            .arg("--location")
            .arg(&data)
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"])
            .current_dir(&dir);
        let base = format!("http://127.0.0.1:{port}");
        let process = ServerProcess::spawn(
            &format!("azurite-blob ({base})"),
            command,
            &dir.join("azurite.log"),
        )?;
        // Unauthenticated, the account answers 403: any HTTP answer means the
        // service is up.
        let ready = format!("{base}/{ACCOUNT}?comp=list");
        process.wait_ready(READY_TIMEOUT, || Ok(http_get(&ready).is_ok()))?;
        Ok(Self {
            endpoint: format!("{base}/{ACCOUNT}"),
            process,
        })
    }

    /// The account's blob endpoint (path style), e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The storage account name, `devstoreaccount1`.
    pub fn account(&self) -> &str {
        ACCOUNT
    }

    /// The account key (base64), Azurite's well-known development key.
    pub fn key(&self) -> &str {
        KEY
    }

    /// The process.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }
}
