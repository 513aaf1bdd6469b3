//! A real MinIO server (S3) on loopback.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Error, Result, find_binary, server_dir, shared};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running MinIO server with a root user.
pub struct MinioServer {
    endpoint: String,
    access_key: String,
    secret_key: String,
    process: ServerProcess,
}

impl MinioServer {
    /// Starts a new MinIO server with an empty data directory.
    pub fn start() -> Result<Self> {
        Self::start_on("127.0.0.1")
    }

    /// Starts a new MinIO server listening on `ip` (e.g. the real node's
    /// host address, so that pods reach it).
    pub fn start_on(ip: &str) -> Result<Self> {
        with_port_retries(|| Self::try_start(ip, &[]))
    }

    /// Starts a new MinIO server whose STS takes web identity tokens of
    /// `issuer` for audience (OpenID client ID) `client_id`, and gives the
    /// role [`MinioServer::openid_role_arn`] MinIO's `readwrite` policy.
    pub fn start_with_openid(issuer: &crate::OidcIssuer, client_id: &str) -> Result<Self> {
        let env = [
            ("MINIO_IDENTITY_OPENID_CONFIG_URL", issuer.config_url()),
            ("MINIO_IDENTITY_OPENID_CLIENT_ID", client_id.to_string()),
            ("MINIO_IDENTITY_OPENID_ROLE_POLICY", "readwrite".to_string()),
            ("MINIO_SITE_REGION", "us-east-1".to_string()),
        ];
        with_port_retries(|| Self::try_start("127.0.0.1", &env))
    }

    /// The role ARN MinIO gives the OpenID provider of client
    /// `client_id` (its role policy): `arn:minio:iam:<region>::role/`
    /// and the base64url SHA-1 of the client ID, as MinIO derives it.
    pub fn openid_role_arn(&self, client_id: &str) -> String {
        use base64::Engine as _;
        use sha1::Digest as _;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha1::Sha1::digest(client_id.as_bytes()));
        format!("arn:minio:iam:{}::role/{id}", self.region())
    }

    /// The MinIO server shared by every test of this test binary.
    pub fn shared() -> &'static MinioServer {
        static CELL: OnceLock<std::result::Result<MinioServer, String>> = OnceLock::new();
        shared(&CELL, Self::start)
    }

    fn try_start(ip: &str, env: &[(&str, String)]) -> Result<Self> {
        let minio = find_binary("minio", "minio")?;
        let (port, console) = (free_port()?, free_port()?);
        let dir = server_dir(&format!("minio-{port}"))?;
        let data = server_dir(&format!("minio-{port}/data"))?;
        let access_key = "druid-test".to_string();
        let secret_key = format!("druid-test-secret-{port}");
        let mut command = Command::new(minio);
        command
            .arg("server")
            .arg(&data)
            .arg(format!("--address={ip}:{port}"))
            .arg(format!("--console-address={ip}:{console}"))
            .env("MINIO_ROOT_USER", &access_key)
            .env("MINIO_ROOT_PASSWORD", &secret_key)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            .env("HOME", &dir)
            .envs(env.iter().map(|(k, v)| (k, v)));
        let endpoint = format!("http://{ip}:{port}");
        let process = ServerProcess::spawn(
            &format!("minio ({endpoint})"),
            command,
            &dir.join("minio.log"),
        )?;
        // `/minio/health/ready` answers 200 before MinIO has loaded its
        // users (IAM): until then S3 requests get 503, seen on a starved
        // machine. Ready
        // means both: healthy, and an anonymous S3 request refused with
        // 403 rather than 503.
        let ready = format!("{endpoint}/minio/health/ready");
        let s3 = format!("{endpoint}/");
        process.wait_ready(READY_TIMEOUT, || {
            Ok(http_get(&ready)?.0 == 200 && http_get(&s3)?.0 == 403)
        })?;
        Ok(Self {
            endpoint,
            access_key,
            secret_key,
            process,
        })
    }

    /// The S3 endpoint, e.g. `http://127.0.0.1:9000`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The root user's access key.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The root user's secret key.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The region MinIO serves by default.
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// The process.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }

    /// MinIO's own client (`mc`), configured through the environment so
    /// that the alias `druid` points at this server. The native peer of the
    /// S3 plugin in benchmarks, and the way tests create buckets.
    pub fn mc(&self) -> Result<Command> {
        let mc = find_binary("mc", "minio")?;
        let config = server_dir("mc-config")?;
        let url = self.endpoint.replacen(
            "://",
            &format!("://{}:{}@", self.access_key, self.secret_key),
            1,
        );
        let mut command = Command::new(mc);
        command
            .arg("--quiet")
            .arg("--config-dir")
            .arg(config)
            .env("MC_HOST_druid", url);
        Ok(command)
    }

    /// Creates bucket `name` (an existing one is fine).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let output = self
            .mc()?
            .args(["mb", "--ignore-existing", &format!("druid/{name}")])
            .output()
            .map_err(Error::io("running mc mb"))?;
        if !output.status.success() {
            return Err(Error::Io {
                context: format!("mc mb druid/{name}"),
                source: std::io::Error::other(String::from_utf8_lossy(&output.stderr).into_owned()),
            });
        }
        Ok(())
    }
}
