//! Real etcd processes: one member, restartable on its data directory, or a
//! cluster of several, on loopback.
//!
//! [`EtcdMemberConfig`] says how to run a member (its name, address, ports,
//! directories, binary, cluster and flags); [`EtcdMemberConfig::start`]
//! runs it as an [`EtcdMember`], which can be stopped and started again on
//! the same data directory. [`EtcdCluster`] starts several members that
//! form one cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Result, find_binary, server_dir, shared};

/// How long a start waits for `/health` unless the configuration says
/// otherwise.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run one etcd member. [`EtcdMemberConfig::new`] chooses free ports
/// and a fresh directory and makes a single-member cluster on 127.0.0.1;
/// change the fields before starting it.
#[derive(Debug, Clone)]
pub struct EtcdMemberConfig {
    /// The member's name (`--name`); `m0` by default.
    pub name: String,
    /// The address the member listens on and advertises, for clients and
    /// peers; `127.0.0.1` by default. Tests put the members of a cluster on
    /// 127.0.0.1, 127.0.0.2, … so that their sidecars can share one port.
    pub ip: String,
    /// The client port, free when the configuration was made.
    pub client_port: u16,
    /// The peer port, free when the configuration was made.
    pub peer_port: u16,
    /// The member's own directory under this run's directory: its log
    /// (`etcd.log`, appended to by every start) and, by default, its data.
    pub dir: PathBuf,
    /// The data directory (`--data-dir`); `<dir>/data` by default. Every
    /// start runs on whatever it holds.
    pub data_dir: PathBuf,
    /// The etcd binary to run; the installed one ([`find_binary`]) when
    /// `None`.
    pub binary: Option<PathBuf>,
    /// `--initial-cluster`; this member alone (`<name>=<peer URL>`) when
    /// `None`.
    pub initial_cluster: Option<String>,
    /// `--initial-cluster-token`.
    pub token: String,
    /// More flags, given after the others: etcd takes the last of a repeated
    /// flag, so `--initial-cluster-state=existing` here overrides the
    /// default `new`.
    pub extra_args: Vec<String>,
    /// How long a start waits for the member to report itself healthy;
    /// 60 s by default.
    pub ready_timeout: Duration,
}

impl EtcdMemberConfig {
    /// A single member named `m0` on 127.0.0.1 with two free ports and a
    /// fresh directory named after `label`.
    pub fn new(label: &str) -> Result<Self> {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let dir = server_dir(&format!("etcd-{label}-{client_port}"))?;
        Ok(Self {
            name: "m0".into(),
            ip: "127.0.0.1".into(),
            client_port,
            peer_port,
            data_dir: dir.join("data"),
            dir,
            binary: None,
            initial_cluster: None,
            token: format!("{label}-{client_port}"),
            extra_args: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        })
    }

    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }

    /// The peer URL.
    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.peer_port)
    }

    /// The `--initial-cluster` the member starts with.
    pub fn initial_cluster(&self) -> String {
        self.initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, self.peer_url()))
    }

    /// Starts the member and waits until it reports itself healthy. The
    /// ports are not changed if they were taken meanwhile: the error says
    /// so (the members of an [`EtcdCluster`] are retried with new ports).
    pub fn start(self) -> Result<EtcdMember> {
        let member = self.spawn()?;
        member.wait_ready()?;
        Ok(member)
    }

    /// Starts the member without waiting for it, as the members of a new
    /// cluster must be: none is healthy before a quorum runs. Wait with
    /// [`EtcdMember::wait_ready`].
    pub fn spawn(self) -> Result<EtcdMember> {
        let process = self.spawn_process()?;
        Ok(EtcdMember {
            config: self,
            process,
        })
    }

    fn spawn_process(&self) -> Result<ServerProcess> {
        let binary = match &self.binary {
            Some(binary) => binary.clone(),
            None => find_binary("etcd", "etcd")?,
        };
        let client_url = self.client_url();
        let peer_url = self.peer_url();
        let mut command = Command::new(binary);
        command
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster()))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--initial-cluster-state=new")
            .args(&self.extra_args)
            // Only the flags above configure the member.
            .env_remove("ETCDCTL_API")
            .env_remove("ETCD_CONF");
        ServerProcess::spawn(
            &format!("etcd {} ({client_url})", self.name),
            command,
            &self.dir.join("etcd.log"),
        )
    }
}

/// One etcd member, started from an [`EtcdMemberConfig`]. It can be stopped
/// (or killed through its process) and started again on the same data
/// directory; it is stopped when dropped.
pub struct EtcdMember {
    config: EtcdMemberConfig,
    process: ServerProcess,
}

impl EtcdMember {
    /// How the member runs.
    pub fn config(&self) -> &EtcdMemberConfig {
        &self.config
    }

    /// How the member runs the next time it is [restarted](Self::restart),
    /// e.g. with more flags.
    pub fn config_mut(&mut self) -> &mut EtcdMemberConfig {
        &mut self.config
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The address the member listens on.
    pub fn ip(&self) -> &str {
        &self.config.ip
    }

    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub fn client_url(&self) -> String {
        self.config.client_url()
    }

    /// The peer URL.
    pub fn peer_url(&self) -> String {
        self.config.peer_url()
    }

    /// The member's own directory (log, and data unless placed elsewhere).
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The process of the latest start, running or not.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }

    /// Waits until the member reports itself healthy (`/health`), at most
    /// the configuration's ready timeout.
    pub fn wait_ready(&self) -> Result<()> {
        let url = format!("{}/health", self.client_url());
        self.process.wait_ready(self.config.ready_timeout, || {
            let (status, body) = http_get(&url)?;
            Ok(status == 200 && body.contains("\"health\":\"true\""))
        })
    }

    /// Stops the member (SIGTERM, then SIGKILL after a grace period); its
    /// data directory stays.
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Stops the member if it runs, starts it again on the same data
    /// directory with the current configuration, and waits until it reports
    /// itself healthy.
    pub fn restart(&mut self) -> Result<()> {
        self.process.stop();
        self.process = self.config.spawn_process()?;
        self.wait_ready()
    }
}

/// A running etcd cluster of one or more members.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
}

impl EtcdCluster {
    /// Starts a new cluster of `size` members on 127.0.0.1 and waits until
    /// every member reports itself healthy.
    pub fn start(size: usize) -> Result<Self> {
        Self::start_with("cluster", size, |_, _| {})
    }

    /// The single-member etcd shared by every test of this test binary.
    pub fn shared() -> &'static EtcdCluster {
        static CELL: OnceLock<std::result::Result<EtcdCluster, String>> = OnceLock::new();
        shared(&CELL, || Self::start(1))
    }

    /// Starts a new cluster of `size` members named `m0`, `m1`, …, their
    /// directories named after `label`, and waits until every member
    /// reports itself healthy. `configure(i, config)` adjusts member `i`
    /// first (address, flags, binary, token, …); the initial cluster is then
    /// set to all members. If a port was taken meanwhile, the cluster is
    /// started again on new ports.
    pub fn start_with(
        label: &str,
        size: usize,
        mut configure: impl FnMut(usize, &mut EtcdMemberConfig),
    ) -> Result<Self> {
        with_port_retries(|| Self::try_start(label, size, &mut configure))
    }

    fn try_start(
        label: &str,
        size: usize,
        configure: &mut impl FnMut(usize, &mut EtcdMemberConfig),
    ) -> Result<Self> {
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let id = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let token = format!("{label}-{}-{id}", std::process::id());
        let mut configs = (0..size)
            .map(|i| {
                let name = format!("m{i}");
                let mut config = EtcdMemberConfig::new(&format!("{label}-{id}-{name}"))?;
                config.name = name;
                config.token = token.clone();
                configure(i, &mut config);
                Ok(config)
            })
            .collect::<Result<Vec<_>>>()?;
        let initial_cluster = configs
            .iter()
            .map(|c| format!("{}={}", c.name, c.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for config in &mut configs {
            config.initial_cluster = Some(initial_cluster.clone());
        }
        let members = configs
            .into_iter()
            .map(EtcdMemberConfig::spawn)
            .collect::<Result<Vec<_>>>()?;
        for member in &members {
            member.wait_ready()?;
        }
        Ok(Self { members })
    }

    /// The members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// The members, each on its own from now on.
    pub fn into_members(self) -> Vec<EtcdMember> {
        self.members
    }

    /// Every member's client URL.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// The client URLs joined with commas, as `--endpoints` and
    /// `--etcd-servers` take them.
    pub fn endpoints(&self) -> String {
        self.client_urls().join(",")
    }
}
