//! Test support: starts and stops the real servers the tests run against,
//! and builds the plugin components once per test run.
//!
//! The servers are installed by the project's scripts (`tests/scripts/`,
//! run by `make test`); this crate only finds and starts them. A server that
//! is not installed is an error that names the script to run, never a
//! skipped test.
//!
//! Every server listens on loopback ports chosen free at start, keeps its
//! data and log under `target/test-servers/<test binary>-<pid>/`, and dies
//! with the test process. Logs of the latest runs are kept, so a failed
//! test's server logs can be read afterwards; a panic in any test prints
//! where they are.
#![allow(
    clippy::panic,
    reason = "the shared_* accessors fail the calling test with a clear message"
)]

mod abs_auth;
mod azurite;
mod etcd;
mod etcdbr;
mod gate;
mod gcs;
mod gcs_auth;
mod httpstore;
mod kube;
mod minio;
mod node;
mod oidc;
mod oss;
mod paths;
mod plugins;
mod process;
mod swift;

pub use abs_auth::{ABS_TEST_CLIENT_ID, ABS_TEST_TENANT_ID, AZURE_TOKEN_AUDIENCE, AbsAuthGate};
pub use azurite::{AZURE_VERSION, AzuriteServer, azure_date, shared_key_authorization};
pub use etcd::{EtcdCluster, EtcdMember, EtcdMemberConfig};
pub use etcdbr::{
    etcdbr_store_tool_flags, etcdbr_tool_flags, etcdbr_tool_flags_with_plugins, local_store_flags,
    restore_binary, workspace_binary,
};
pub use gcs::FakeGcsServer;
pub use gcs_auth::{GCS_TEST_ACCOUNT, GCS_TEST_KEY, GCS_TEST_POOL, GcsAuthGate};
pub use httpstore::{HttpStore, httpstore_example_plugin};
pub use kube::{CRD_TIMEOUT, KubeApiServer, install_crds};
pub use minio::MinioServer;
pub use node::{Node, PRODUCT_IMAGES};
pub use oidc::{OIDC_KEY_ID, OIDC_TEST_KEY, OidcIssuer};
pub use oss::OssGateway;
pub use paths::{cache_dir, etcd_binary_of, find_binary, repo_root, run_dir, server_dir};
pub use plugins::{PluginComponents, plugin_components};
pub use process::{ServerProcess, free_port, http_get};
pub use swift::SwiftServer;

/// Errors when finding, starting or building what the tests need.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary the tests need is not installed.
    #[error(
        "`{binary}` is not installed (looked in {searched}). Run `{script}` \
         (or `make test`, which installs every test server)"
    )]
    NotInstalled {
        /// The binary's name.
        binary: String,
        /// Where it was looked for.
        searched: String,
        /// The script that installs it.
        script: String,
    },
    /// A server did not start or did not become ready.
    #[error("{server} did not become ready: {reason}\n--- last lines of {log} ---\n{tail}")]
    NotReady {
        /// Which server.
        server: String,
        /// Why.
        reason: String,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// The plugin build failed.
    #[error("building the plugin components failed ({command}): {reason}")]
    PluginBuild {
        /// The command run.
        command: String,
        /// Why.
        reason: String,
    },
    /// Building a workspace binary failed.
    #[error("building {command} failed: {reason}")]
    Build {
        /// The command run.
        command: String,
        /// Why.
        reason: String,
    },
    /// A kubectl command failed or what it waited for did not happen.
    #[error("kubectl {what}: {output}")]
    Kubectl {
        /// What was run or awaited.
        what: String,
        /// Its error output, or what was last seen.
        output: String,
    },
    /// The real node did not start or is not usable.
    #[error("{0}")]
    Node(String),
    /// A file-system or process error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns a process-wide shared value, started on first use; fails the
/// calling test with the start error (the same error for every test).
pub(crate) fn shared<T>(
    cell: &'static std::sync::OnceLock<std::result::Result<T, String>>,
    start: impl FnOnce() -> Result<T>,
) -> &'static T {
    match cell.get_or_init(|| start().map_err(|e| e.to_string())) {
        Ok(value) => value,
        Err(message) => panic!("{message}"),
    }
}
