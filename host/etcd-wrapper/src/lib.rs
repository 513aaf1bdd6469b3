//! `etcd-wrapper`: the entrypoint of the etcd container, a drop-in for
//! upstream gardener/etcd-wrapper (same `start-etcd` flags, same calls to
//! the backup-restore sidecar, same `/readyz` and `/stop`).
//!
//! What it does, in order ([`app::run`]):
//!
//! 1. [`mode`]: picks the validation mode from `exit_code` (`sanity` after
//!    a clean shutdown, else `full`) and removes the legacy
//!    `validation_marker`;
//! 2. [`sidecar`]: asks the sidecar to initialize the data directory and
//!    waits until that succeeded (a failure is logged and retried; etcd is
//!    never started on a data directory that was not validated);
//! 3. fetches etcd's configuration (`/config`), writes it to a file and
//!    starts the real `etcd` binary on it ([`process`]);
//! 4. [`http`]: serves `/readyz` (the cached result of [`readiness`]'s
//!    linearizable read) and `/stop`;
//! 5. forwards SIGTERM/SIGINT to etcd and records a clean shutdown in
//!    `exit_code`.

pub mod app;
pub mod cli;
pub mod etcd_config;
pub mod http;
pub mod mode;
pub mod process;
pub mod readiness;
pub mod sidecar;
mod tls;

use std::path::PathBuf;

/// Errors of the wrapper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The flags are inconsistent.
    #[error("invalid flags: {0}")]
    Flags(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A call to the backup-restore sidecar failed.
    #[error("backup-restore sidecar {url}: {reason}")]
    Sidecar {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The configuration the sidecar served is not usable.
    #[error("the etcd configuration from the sidecar: {0}")]
    Config(String),
    /// TLS material is missing or invalid.
    #[error("TLS for {what}: {reason}")]
    Tls {
        /// Which connection or server.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// etcd could not be started or waited for.
    #[error("etcd ({binary}): {source}")]
    Etcd {
        /// The binary.
        binary: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server could not listen.
    #[error("cannot listen on port {port}: {source}")]
    Listen {
        /// The port.
        port: u16,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A signal handler could not be installed.
    #[error("cannot handle {signal}: {source}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
