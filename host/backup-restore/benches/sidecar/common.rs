//! What every scenario shares: settings from the environment, measured child processes, the bench directory, MinIO and etcd (druid-test-support's).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use druid_backup_restore::formats::names::Snapshot;
use druid_test_support::{
    EtcdMember, EtcdMemberConfig, MinioServer, ServerProcess, cache_dir, find_binary,
    plugin_components, restore_binary, run_dir, server_dir,
};
use etcd_client::Client;

pub(crate) const BUCKET: &str = "bench-sidecar";
pub(crate) const MIB: f64 = (1u64 << 20) as f64;
/// Value size of the database fill.
pub(crate) const FILL_VALUE: usize = 64 << 10;
/// Value size of delta events and of the load generator.
pub(crate) const SMALL_VALUE: usize = 512;

// ---------------------------------------------------------------- helpers

pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

pub(crate) fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The command that reproduces a scenario with the sizes of this run.
pub(crate) fn reproduce(vars: &[(&str, String)]) -> String {
    let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} cargo bench -p druid-backup-restore --bench sidecar",
        vars.join(" ")
    )
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`).
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// CPU time (user + system) a process used so far, assuming the usual
/// 100 clock ticks per second.
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: utime and
    // stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

pub(crate) fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits while another heavy benchmark runs on this (shared) machine.
pub(crate) fn wait_for_quiet_machine() {
    let me = std::process::id();
    let busy = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| pid != me)
            })
            .any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("thousand_etcds") || c.contains("s3_throughput")
                })
            })
    };
    let mut said = false;
    while busy() {
        if !said {
            eprintln!("waiting: another heavy benchmark is running");
            said = true;
        }
        std::thread::sleep(Duration::from_secs(10));
    }
}

/// splitmix64: random-looking bytes without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// A child process that ran to completion.
pub(crate) struct Measured {
    pub(crate) elapsed: Duration,
    pub(crate) peak_kib: u64,
    pub(crate) log: PathBuf,
}

/// Runs `command` to completion (it must succeed), sampling its peak RSS
/// (VmHWM) every 5 ms; stdout and stderr go to `log`.
pub(crate) fn run_measured(name: &str, command: Command, log: &Path) -> Measured {
    let _ = std::fs::remove_file(log);
    let start = Instant::now();
    let process = ServerProcess::spawn(name, command, log).unwrap();
    let mut peak = 0;
    loop {
        if let Some(kib) = proc_status_kib(process.pid(), "VmHWM:") {
            peak = peak.max(kib);
        }
        if let Some(status) = process.exited() {
            assert!(
                status == "exit status: 0",
                "{name} failed ({status}); log {}:\n{}",
                log.display(),
                process.log_tail(30)
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Measured {
        elapsed: start.elapsed(),
        peak_kib: peak,
        log: log.to_path_buf(),
    }
}

/// Timestamps of the JSON log lines of `etcdbr --log-json` whose message
/// is `message`.
pub(crate) fn log_times(log: &Path, message: &str) -> Vec<DateTime<Utc>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .filter_map(|v| {
            DateTime::parse_from_rfc3339(v["timestamp"].as_str()?)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .collect()
}

pub(crate) fn remove_dir(path: &Path) {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------- servers

/// MinIO, the binaries and the flags every `etcdbr` run shares.
pub(crate) struct Bench {
    pub(crate) minio: MinioServer,
    pub(crate) minio_data: PathBuf,
    pub(crate) creds: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) etcd: PathBuf,
    /// etcdctl, for `snapshot save`.
    pub(crate) etcdctl: PathBuf,
    /// What restores and inspects snapshot files on the etcd version under
    /// test (`DRUID_ETCD_VERSION`): etcdutl from 3.5 on (3.6 removed
    /// `etcdctl snapshot restore` and `status`), etcdctl on 3.4.
    pub(crate) restore_tool: PathBuf,
}

impl Bench {
    pub(crate) fn start() -> Bench {
        let minio = MinioServer::start().unwrap();
        minio.create_bucket(BUCKET).unwrap();
        let port = minio.endpoint().rsplit(':').next().unwrap().to_string();
        let minio_data = run_dir().unwrap().join(format!("minio-{port}/data"));
        let creds = server_dir("creds").unwrap();
        std::fs::write(creds.join("region"), minio.region()).unwrap();
        std::fs::write(creds.join("accessKeyID"), minio.access_key()).unwrap();
        std::fs::write(creds.join("secretAccessKey"), minio.secret_key()).unwrap();
        // Built once, before anything is timed.
        let _ = plugin_components();
        Bench {
            minio,
            minio_data,
            creds,
            dir: server_dir("bench").unwrap(),
            etcd: find_binary("etcd", "etcd").unwrap(),
            etcdctl: find_binary("etcdctl", "etcd").unwrap(),
            restore_tool: restore_binary().unwrap(),
        }
    }

    /// `etcdbr <sub>` with the store and plugin flags.
    pub(crate) fn etcdbr(&self, sub: &str, prefix: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_etcdbr"));
        c.arg(sub)
            .arg("--log-json")
            .arg("--storage-provider=S3")
            .arg(format!("--store-container={BUCKET}"))
            .arg(format!("--store-prefix={prefix}"))
            .arg(format!(
                "--store-endpoint-override={}",
                self.minio.endpoint()
            ))
            .arg(format!(
                "--plugins-dir={}",
                plugin_components().dir().display()
            ))
            .arg(format!(
                "--plugin-cache-dir={}",
                cache_dir().join("plugin-cache").display()
            ))
            .env("AWS_APPLICATION_CREDENTIALS", &self.creds)
            .env("RUST_LOG", "info")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME");
        c
    }

    /// A single etcd member on loopback run by the bench's etcd binary,
    /// its data in `data_dir` if given; it may take 300 s to become healthy
    /// on a large database.
    pub(crate) fn etcd(&self, label: &str, data_dir: Option<PathBuf>) -> EtcdMemberConfig {
        let mut config = EtcdMemberConfig::new(label).unwrap();
        if let Some(data_dir) = data_dir {
            config.data_dir = data_dir;
        }
        config.binary = Some(self.etcd.clone());
        config.ready_timeout = Duration::from_secs(300);
        config
    }

    pub(crate) fn mc(&self) -> Command {
        self.minio.mc().unwrap()
    }

    /// Objects below `prefix`: (key relative to the bucket, size).
    pub(crate) fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let out = self
            .mc()
            .args(["ls", "--recursive", "--json"])
            .arg(format!("druid/{BUCKET}/{prefix}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mc ls {prefix}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "file")
            .map(|v| {
                (
                    format!("{prefix}{}", v["key"].as_str().unwrap_or_default()),
                    v["size"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The snapshots below `<prefix>/v2/`, parsed.
    pub(crate) fn snapshots(&self, prefix: &str) -> Vec<(Snapshot, u64)> {
        let base = format!("{prefix}/");
        let mut list: Vec<(Snapshot, u64)> = self
            .objects(&base)
            .into_iter()
            .map(|(k, size)| {
                let relative = k.strip_prefix(&base).unwrap();
                (Snapshot::parse(relative).unwrap(), size)
            })
            .collect();
        list.sort();
        list
    }

    /// Runs `mc` with `args` (it must succeed), measured.
    pub(crate) fn mc_measured(&self, name: &str, args: &[&str]) -> Measured {
        let mut c = self.mc();
        c.args(args);
        run_measured(name, c, &self.dir.join(format!("{name}.log")))
    }

    /// Loads (and precompiles) the plugins once, so that no timed run pays
    /// for compiling them: a restore from an empty prefix, which fails.
    pub(crate) fn warm_plugin_cache(&self) {
        let _ = self
            .etcdbr("restore", "warm-up-empty")
            .arg(format!(
                "--data-dir={}",
                self.dir.join("warm-up-data").display()
            ))
            .output()
            .unwrap();
    }
}

/// An etcd client of a member (druid-test-support, which starts the
/// members, does not depend on etcd-client).
pub(crate) trait EtcdClient {
    /// A client of this member alone.
    async fn client(&self) -> Client;
}

impl EtcdClient for EtcdMember {
    async fn client(&self) -> Client {
        Client::connect([self.client_url()], None).await.unwrap()
    }
}

/// What the filled etcd holds.
pub(crate) struct Filled {
    pub(crate) keys: u64,
    pub(crate) db_size: u64,
    pub(crate) revision: i64,
}

/// Puts `target` bytes of 64 KiB random values from 8 concurrent tasks.
pub(crate) async fn fill(etcd: &EtcdMember, target: u64) -> Filled {
    let n = target.div_ceil(FILL_VALUE as u64);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let mut kv = etcd.client().await.kv_client();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + t);
            let mut value = vec![0u8; FILL_VALUE];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                rng.fill(&mut value);
                kv.put(format!("/bench/fill/{i:08}"), value.clone(), None)
                    .await
                    .unwrap();
                if i.is_multiple_of(2048) {
                    eprintln!("  filled {} MiB", (i * FILL_VALUE as u64) >> 20);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let status = etcd.client().await.status().await.unwrap();
    Filled {
        keys: n,
        db_size: status.db_size() as u64,
        revision: status.header().unwrap().revision(),
    }
}
