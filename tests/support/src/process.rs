//! Child processes for servers: spawned so that they die with the test
//! process, logged to a file, probed for readiness, stopped cleanly.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How long a stopped server gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Returns a loopback TCP port that was free a moment ago on 127.0.0.1,
/// 127.0.0.2 and 127.0.0.3 (multi-member tests put one member on each and
/// let their sidecars share a port), and that this process has not handed
/// out before: a server stopped and restarted by its test gets its port
/// back, not a port another test of the same binary took meanwhile.
/// Servers that still fail to bind are retried with new ports by their
/// start functions.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: OnceLock<Mutex<std::collections::HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(std::collections::HashSet::new()));
    for _ in 0..100 {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(Error::io("cannot bind a free port"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("cannot read a bound port"))?
            .port();
        let free_elsewhere = ["127.0.0.2", "127.0.0.3"]
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok());
        let mut taken = handed_out.lock().unwrap_or_else(|e| e.into_inner());
        if free_elsewhere && taken.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::io("cannot find a free port")(std::io::Error::other(
        "100 candidate ports were in use or handed out already",
    )))
}

type SpawnRequest = (Command, Sender<std::io::Result<Child>>);

/// Spawns every child from one thread that lives as long as the process.
///
/// Children ask the kernel for SIGKILL when their parent *thread* exits
/// (PR_SET_PDEATHSIG). Test threads come and go, and a shared server must
/// outlive the test that started it, so children are spawned from this
/// keeper thread instead: it ends only with the process, and then every
/// server dies too, even when the test binary is killed.
fn spawn_from_keeper(command: Command) -> std::io::Result<Child> {
    static KEEPER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnRequest>();
        let _ = std::thread::Builder::new()
            .name("test-server-keeper".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            });
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = channel();
    keeper
        .lock()
        .map_err(|_| std::io::Error::other("keeper lock poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| std::io::Error::other("keeper thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("keeper thread did not answer"))?
}

#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// How many lines of each server's log a failing test prints.
const PANIC_TAIL_LINES: usize = 15;

/// Log paths of every server started in this process, each once: when a
/// test panics, the end of each log and the paths are printed.
fn register_log(path: &Path) {
    static LOGS: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    let first = LOGS.get().is_none();
    let logs = LOGS.get_or_init(|| Mutex::new(Vec::new()));
    if let Ok(mut l) = logs.lock()
        && !l.iter().any(|p| p == path)
    {
        // A restarted server appends to the log it had.
        l.push(path.to_path_buf());
    }
    if first {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(Ok(l)) = LOGS.get().map(|m| m.lock()) {
                // The end of each log says what the servers saw; the whole
                // logs are kept at these paths.
                for path in l.iter() {
                    eprintln!(
                        "--- last {PANIC_TAIL_LINES} lines of {} ---\n{}",
                        path.display(),
                        tail(path, PANIC_TAIL_LINES)
                    );
                }
                let list: Vec<String> = l.iter().map(|p| format!("  {}", p.display())).collect();
                eprintln!("test server logs (kept):\n{}", list.join("\n"));
            }
        }));
    }
}

/// A running server process.
pub struct ServerProcess {
    name: String,
    pid: u32,
    child: Mutex<Child>,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` as server `name`, its stdout and stderr appended to
    /// `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io(format!("cannot open log {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(Error::io("cannot duplicate a log handle"))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        die_with_parent(&mut command);
        let program = format!("{:?}", command.get_program());
        let child = spawn_from_keeper(command)
            .map_err(Error::io(format!("cannot start {name} ({program})")))?;
        register_log(log);
        Ok(Self {
            name: name.to_string(),
            pid: child.id(),
            child: Mutex::new(child),
            log: log.to_path_buf(),
        })
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Whether the process has exited (and its status, if so).
    pub fn exited(&self) -> Option<String> {
        let mut child = self.child.lock().ok()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// Polls `probe` until it returns `Ok(true)`, the process exits, or
    /// `timeout` passes. The error carries the end of the log.
    pub fn wait_ready(
        &self,
        timeout: Duration,
        mut probe: impl FnMut() -> std::result::Result<bool, String>,
    ) -> Result<()> {
        let start = Instant::now();
        let mut last = String::from("not probed yet");
        loop {
            if let Some(status) = self.exited() {
                return Err(self.not_ready(format!("exited ({status}); last probe: {last}")));
            }
            match probe() {
                Ok(true) => return Ok(()),
                Ok(false) => last = "not ready".into(),
                Err(e) => last = e,
            }
            if start.elapsed() > timeout {
                return Err(
                    self.not_ready(format!("not ready after {timeout:?}; last probe: {last}"))
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn not_ready(&self, reason: String) -> Error {
        Error::NotReady {
            server: self.name.clone(),
            reason,
            log: self.log.display().to_string(),
            tail: self.log_tail(40),
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&self) {
        let Ok(mut child) = self.child.lock() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        signal(self.pid, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < STOP_GRACE {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Freezes the server (SIGSTOP): a fault no real server produces on
    /// demand, standing for one too busy to answer (a stalled disk, CPU
    /// starvation). [`ServerProcess::resume`] thaws it.
    pub fn pause(&self) {
        signal(self.pid, libc::SIGSTOP);
    }

    /// Thaws a server frozen by [`ServerProcess::pause`] (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid, libc::SIGCONT);
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The last `lines` lines of a file (reads at most its last 64 KiB).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(cannot open {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `attempt` up to three times while it fails because a port it chose
/// was taken by someone else in the meantime.
pub(crate) fn with_port_retries<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt() {
            Err(Error::NotReady { ref tail, .. })
                if tries < 3 && tail.to_lowercase().contains("address already in use") =>
            {
                continue;
            }
            other => return other,
        }
    }
}

/// A plain HTTP(S) GET on loopback (readiness probes, metrics): the status
/// code and body, within 2 s.
pub fn http_get(url: &str) -> std::result::Result<(u16, String), String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .tls_config(
            // Only loopback readiness probes use this agent: the servers'
            // certificates are made at start and checked by the real clients.
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .new_agent();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}
