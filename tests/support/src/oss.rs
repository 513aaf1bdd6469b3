//! The OSS plugin's test gateway: `oss-peer gateway` (tests/peers/oss), a
//! FAKE OSS named as such, in front of the shared MinIO. No OSS emulator
//! exists; the gateway checks each request's OSS V4 signature with
//! Alibaba Cloud's official Go SDK and forwards what passes to MinIO,
//! signed with MinIO's key, whose S3 API OSS's mirrors (paths, queries,
//! XML, multipart uploads, error documents).

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Error, MinioServer, Result, find_binary, server_dir, shared};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running OSS gateway in front of MinIO.
pub struct OssGateway {
    endpoint: String,
    secret: String,
    process: ServerProcess,
}

impl OssGateway {
    /// The AccessKey ID the gateway accepts.
    pub const ACCESS_KEY: &'static str = "LTAI5tDruidTestKey";
    /// The region the gateway's buckets are in (signatures must name it).
    pub const REGION: &'static str = "cn-hangzhou";

    /// Starts a gateway in front of the shared MinIO.
    pub fn start() -> Result<Self> {
        with_port_retries(Self::try_start)
    }

    /// The gateway shared by every test of this test binary.
    pub fn shared() -> &'static OssGateway {
        static CELL: OnceLock<std::result::Result<OssGateway, String>> = OnceLock::new();
        shared(&CELL, Self::start)
    }

    fn try_start() -> Result<Self> {
        let peer = find_binary("oss-peer", "oss-gateway")?;
        let minio = MinioServer::shared();
        let port = free_port()?;
        let dir = server_dir(&format!("oss-gateway-{port}"))?;
        let secret = format!("druid-oss-test-secret-{port}");
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(peer);
        command
            .arg("gateway")
            .arg(format!("127.0.0.1:{port}"))
            .arg(minio.endpoint())
            .arg(minio.access_key())
            .arg(minio.secret_key())
            .arg(Self::ACCESS_KEY)
            .arg(&secret)
            .arg(Self::REGION);
        let process = ServerProcess::spawn(
            &format!("oss gateway ({endpoint})"),
            command,
            &dir.join("oss-gateway.log"),
        )?;
        let probe = format!("{endpoint}/.oss-gateway/verified");
        process.wait_ready(READY_TIMEOUT, || Ok(http_get(&probe)?.0 == 200))?;
        Ok(Self {
            endpoint,
            secret,
            process,
        })
    }

    /// The gateway's endpoint, e.g. `http://127.0.0.1:9100`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The AccessKey secret the gateway checks signatures with.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The process.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }

    /// The store secret's keys (upstream's) for this gateway, with
    /// `secret` as the AccessKey secret and `region` since the gateway's
    /// endpoint (an IP address) does not name one.
    pub fn store_secret<'a>(&'a self, secret: &'a str) -> [(&'static str, &'a str); 4] {
        [
            ("accessKeyID", Self::ACCESS_KEY),
            ("accessKeySecret", secret),
            ("storageEndpoint", &self.endpoint),
            ("region", Self::REGION),
        ]
    }

    /// Creates bucket `name` in MinIO (an existing one is fine).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        MinioServer::shared().create_bucket(name)
    }

    /// How many requests passed the gateway's signature check so far.
    pub fn verified(&self) -> Result<u64> {
        let (status, body) = http_get(&format!("{}/.oss-gateway/verified", self.endpoint))
            .map_err(|e| Error::Io {
                context: "reading the OSS gateway's count".into(),
                source: std::io::Error::other(e),
            })?;
        body.trim()
            .parse()
            .ok()
            .filter(|_| status == 200)
            .ok_or_else(|| Error::Io {
                context: "reading the OSS gateway's count".into(),
                source: std::io::Error::other(format!("HTTP {status}: {body}")),
            })
    }
}
