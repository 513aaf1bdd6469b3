//! `etcdctl snapshot restore` (or etcdutl's): turns a checked snapshot database into a
//! data directory for this member.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::config::RestoreArgs;
use crate::formats::version::{EtcdVersion, parse_version_output};

/// Why `etcdctl snapshot restore` failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdctlError {
    /// The binary could not be started.
    #[error("cannot run {binary} (set --etcdctl-binary): {source}")]
    Spawn {
        /// The etcdctl binary.
        binary: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("{binary} snapshot restore failed ({status}): {stderr}")]
    Failed {
        /// The etcdctl binary.
        binary: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
}

/// Restores the snapshot database `db` into the new data directory `out`
/// with this member's name, cluster and peer URLs. The trailer must have
/// been checked already (or the user asked to skip it): etcdctl is told
/// not to check it again.
pub async fn snapshot_restore(
    args: &RestoreArgs,
    db: &Path,
    out: &Path,
) -> Result<(), EtcdctlError> {
    let binary = &args.etcdctl_binary;
    let output = tokio::process::Command::new(binary)
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(db)
        .arg(format!("--data-dir={}", out.display()))
        .arg(format!("--name={}", args.name))
        .arg(format!("--initial-cluster={}", args.initial_cluster))
        .arg(format!(
            "--initial-cluster-token={}",
            args.initial_cluster_token
        ))
        .arg(format!(
            "--initial-advertise-peer-urls={}",
            args.initial_advertise_peer_urls.join(",")
        ))
        .arg("--skip-hash-check=true")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| EtcdctlError::Spawn {
            binary: binary.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(EtcdctlError::Failed {
            binary: binary.clone(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Asks `binary` (etcdctl or etcdutl) for its version with `version`.
/// `None` if it cannot run or prints no version: the caller then cannot
/// check and says so.
pub async fn version(binary: &Path) -> Option<EtcdVersion> {
    let output = tokio::process::Command::new(binary)
        .env("ETCDCTL_API", "3")
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    parse_version_output(&String::from_utf8_lossy(&output.stdout))
}
