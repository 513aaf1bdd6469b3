//! The etcd child process and the shutdown signals.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::Error;

/// A shutdown signal the wrapper handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM (what kubelet sends).
    Terminate,
    /// SIGINT.
    Interrupt,
}

impl Shutdown {
    /// The name Go gives the signal, which upstream writes to `exit_code`.
    pub fn name(self) -> &'static str {
        match self {
            Shutdown::Terminate => "terminated",
            Shutdown::Interrupt => "interrupt",
        }
    }

    /// The signal number.
    pub fn number(self) -> i32 {
        match self {
            Shutdown::Terminate => libc::SIGTERM,
            Shutdown::Interrupt => libc::SIGINT,
        }
    }
}

/// Receives SIGTERM and SIGINT (installed at start, so that neither kills
/// the wrapper before etcd is stopped).
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Self, Error> {
        let term = signal(SignalKind::terminate()).map_err(|source| Error::Signal {
            signal: "SIGTERM",
            source,
        })?;
        let int = signal(SignalKind::interrupt()).map_err(|source| Error::Signal {
            signal: "SIGINT",
            source,
        })?;
        Ok(Signals { term, int })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Shutdown {
        tokio::select! {
            _ = self.term.recv() => Shutdown::Terminate,
            _ = self.int.recv() => Shutdown::Interrupt,
        }
    }
}

/// The version `binary --version` prints (`etcd Version: 3.5.36` gives
/// `3.5.36`). The wrapper passes it to the sidecar, which refuses a restore
/// that would move the data to an older etcd minor version. `None` (and a
/// warning) when etcd does not tell: the sidecar then falls back to its
/// own flags.
pub async fn etcd_version(binary: &Path) -> Option<String> {
    let output = match Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(binary = %binary.display(), error = %e, "cannot run etcd --version");
            return None;
        }
    };
    let version = parse_version(&String::from_utf8_lossy(&output.stdout));
    if version.is_none() {
        tracing::warn!(binary = %binary.display(), "etcd --version printed no version");
    }
    version
}

/// The value of the `etcd Version:` line
/// ([`druid_etcd_version::version_line`]), if it looks like a version
/// (digits, letters, `.`, `-`, `+`: it goes into a URL query).
pub fn parse_version(output: &str) -> Option<String> {
    druid_etcd_version::version_line(output)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        })
        .map(str::to_string)
}

/// The running etcd.
pub struct Etcd {
    binary: PathBuf,
    child: Child,
}

impl Etcd {
    /// Starts `binary --config-file=<config>`; its output goes to the
    /// wrapper's (the container log).
    pub fn spawn(binary: &Path, config: &Path) -> Result<Self, Error> {
        let child = Command::new(binary)
            .arg(format!("--config-file={}", config.display()))
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|source| Error::Etcd {
                binary: binary.to_path_buf(),
                source,
            })?;
        tracing::info!(binary = %binary.display(), config = %config.display(), pid = child.id(), "etcd started");
        Ok(Etcd {
            binary: binary.to_path_buf(),
            child,
        })
    }

    /// Sends `signal` to etcd (nothing if it already exited).
    pub fn signal(&self, signal: i32) {
        let Some(pid) = self.child.id().and_then(|p| libc::pid_t::try_from(p).ok()) else {
            return;
        };
        send(pid, signal);
    }

    /// Waits for etcd to exit.
    pub async fn wait(&mut self) -> Result<ExitStatus, Error> {
        self.child.wait().await.map_err(|source| Error::Etcd {
            binary: self.binary.clone(),
            source,
        })
    }
}

#[allow(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
fn send(pid: libc::pid_t, signal: i32) {
    // SAFETY: kill(2) on the pid of our own, not yet reaped, child (tokio
    // reaps it only in `wait`, so the pid cannot have been reused) with a
    // valid signal number; it touches no memory.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        tracing::warn!(pid, signal, error = %std::io::Error::last_os_error(), "cannot signal etcd");
    }
}

/// The exit code for `status`: etcd's code, or 128 + the signal that
/// ended it (the shell's convention).
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// Whether etcd ended the way a requested shutdown ends it: exit code 0,
/// or killed by the signal it was sent (etcd re-raises it after its
/// graceful shutdown).
pub fn clean_after(status: ExitStatus, signal: i32) -> bool {
    status.code() == Some(0) || status.signal() == Some(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_etcd_prints() {
        let out = "etcd Version: 3.5.36\nGit SHA: Not provided\nGo Version: go1.26.8\n";
        assert_eq!(parse_version(out).as_deref(), Some("3.5.36"));
        assert_eq!(
            parse_version("etcd Version: 3.7.0-rc.1\n").as_deref(),
            Some("3.7.0-rc.1")
        );
        // Nothing that could change the sidecar's URL passes.
        assert_eq!(parse_version("etcd Version: 3.5&mode=full\n"), None);
        assert_eq!(parse_version("etcd Version: \n"), None);
        assert_eq!(parse_version("usage: etcd [flags]\n"), None);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(2 << 8)), 2);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
        assert!(clean_after(
            ExitStatus::from_raw(libc::SIGTERM),
            libc::SIGTERM
        ));
        assert!(clean_after(ExitStatus::from_raw(0), libc::SIGTERM));
        assert!(!clean_after(
            ExitStatus::from_raw(libc::SIGKILL),
            libc::SIGTERM
        ));
        assert!(!clean_after(ExitStatus::from_raw(1 << 8), libc::SIGTERM));
    }
}
