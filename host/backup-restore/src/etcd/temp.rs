//! A temporary etcd on loopback: for replaying deltas into a restored data
//! directory, or letting a stale member's data directory replay its WAL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_client::Client;

use crate::config::RestoreArgs;

/// How long a temporary etcd may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a temporary etcd did not start.
#[derive(Debug, thiserror::Error)]
pub enum TempEtcdError {
    /// No loopback port was free.
    #[error("temporary etcd: no free port: {0}")]
    NoFreePort(#[source] std::io::Error),
    /// Its log file could not be created.
    #[error("temporary etcd: cannot create {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The binary could not be started.
    #[error("temporary etcd: cannot start {binary} (set --etcd-binary): {source}")]
    Spawn {
        /// The etcd binary.
        binary: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// It exited before serving.
    #[error("temporary etcd: etcd exited ({status}) before serving: {log_tail}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last lines of its log.
        log_tail: String,
    },
    /// It did not serve in time.
    #[error("temporary etcd: etcd did not serve within {}s; see {}", START_TIMEOUT.as_secs(), log.display())]
    NotServing {
        /// Its log file.
        log: PathBuf,
    },
}

/// A temporary etcd on loopback, killed when dropped.
pub struct TempEtcd {
    child: tokio::process::Child,
    /// A client connected to it.
    pub client: Client,
}

fn free_port() -> Result<u16, TempEtcdError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(TempEtcdError::NoFreePort)
}

/// `path` with `suffix` appended to its last component.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl TempEtcd {
    /// Starts etcd on `data_dir` (its log next to it, `<data_dir>.etcd.log`)
    /// and waits until it answers.
    pub async fn start(args: &RestoreArgs, data_dir: &Path) -> Result<Self, TempEtcdError> {
        let client_url = format!("http://127.0.0.1:{}", free_port()?);
        let peer_url = format!("http://127.0.0.1:{}", free_port()?);
        let log = suffixed(data_dir, ".etcd.log");
        let log_file = std::fs::File::create(&log).map_err(|source| TempEtcdError::Log {
            path: log.clone(),
            source,
        })?;
        let child = tokio::process::Command::new(&args.etcd_binary)
            .arg(format!("--name={}", args.name))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!(
                "--quota-backend-bytes={}",
                args.embedded_etcd_quota_bytes
            ))
            .arg(format!("--max-request-bytes={}", args.max_request_bytes))
            .arg(format!("--max-txn-ops={}", args.max_txn_ops))
            .arg(format!(
                "--auto-compaction-mode={}",
                args.auto_compaction_mode
            ))
            .arg(format!(
                "--auto-compaction-retention={}",
                args.auto_compaction_retention
            ))
            .env_remove("ETCD_CONF")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TempEtcdError::Spawn {
                binary: args.etcd_binary.clone(),
                source,
            })?;
        // `kill_on_drop`: an early return below leaves no process behind.
        let mut child = child;
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(300));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = log_text.lines().rev().take(10).collect();
                return Err(TempEtcdError::Exited {
                    status,
                    log_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
            if let Ok(mut client) =
                Client::connect([client_url.as_str()], Some(options.clone())).await
                && client.status().await.is_ok()
            {
                return Ok(TempEtcd { child, client });
            }
            if Instant::now() > deadline {
                return Err(TempEtcdError::NotServing { log });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops etcd (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
