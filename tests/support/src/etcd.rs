//! Real etcd processes: one member or a cluster of several, on loopback.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Result, find_binary, server_dir, shared};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One etcd member.
pub struct EtcdMember {
    name: String,
    client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    process: ServerProcess,
}

impl EtcdMember {
    /// The member's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The peer URL.
    pub fn peer_url(&self) -> &str {
        &self.peer_url
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The process.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }
}

/// A running etcd cluster of one or more members.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
}

impl EtcdCluster {
    /// Starts a new cluster of `size` members and waits until every member
    /// reports itself healthy.
    pub fn start(size: usize) -> Result<Self> {
        with_port_retries(|| Self::try_start(size))
    }

    /// The single-member etcd shared by every test of this test binary.
    pub fn shared() -> &'static EtcdCluster {
        static CELL: OnceLock<std::result::Result<EtcdCluster, String>> = OnceLock::new();
        shared(&CELL, || Self::start(1))
    }

    fn try_start(size: usize) -> Result<Self> {
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let etcd = find_binary("etcd", "etcd")?;
        let id = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let token = format!("test-{}-{id}", std::process::id());
        let ports = (0..size)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<Vec<_>>>()?;
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");

        let mut members = Vec::with_capacity(size);
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let dir = server_dir(&format!("etcd-{id}-{name}-{client}"))?;
            let data_dir = dir.join("data");
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut command = Command::new(&etcd);
            command
                .arg(format!("--name={name}"))
                .arg(format!("--data-dir={}", data_dir.display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg(format!("--initial-cluster-token={token}"))
                .arg("--initial-cluster-state=new")
                .env_remove("ETCDCTL_API");
            let process = ServerProcess::spawn(
                &format!("etcd {name} ({client_url})"),
                command,
                &dir.join("etcd.log"),
            )?;
            members.push(EtcdMember {
                name,
                client_url,
                peer_url,
                data_dir,
                process,
            });
        }
        for member in &members {
            let url = format!("{}/health", member.client_url);
            member.process.wait_ready(READY_TIMEOUT, || {
                let (status, body) = http_get(&url)?;
                Ok(status == 200 && body.contains("\"health\":\"true\""))
            })?;
        }
        Ok(Self { members })
    }

    /// The members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// Every member's client URL.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The client URLs joined with commas, as `--endpoints` and
    /// `--etcd-servers` take them.
    pub fn endpoints(&self) -> String {
        self.client_urls().join(",")
    }
}
