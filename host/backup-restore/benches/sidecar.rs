//! Figures of the backup-restore sidecar against real etcd and MinIO on
//! loopback, with the upstream-style peer side by side where there is one.
//!
//! Run: `cargo bench -p druid-backup-restore --bench sidecar`.
//! `DRUID_BENCH=upload,restore,rss` (the default) selects the scenarios:
//!
//! - `upload`: etcd filled with `DRUID_BENCH_DB_MIB` (1024) MiB of 64 KiB
//!   random (incompressible) values; `etcdbr snapshot` to MinIO with gzip
//!   and with `--compress-snapshots=false`, against `etcdctl snapshot save`
//!   to a file plus `mc cp` of that file;
//! - `restore`: a full snapshot of that etcd (taken by `etcdbr snapshot`)
//!   plus `DRUID_BENCH_DELTAS` (100) synthetic deltas of
//!   `DRUID_BENCH_DELTA_EVENTS` (10000) PUTs each (one per revision,
//!   512-byte random values, upstream's format, uploaded with `mc mirror`);
//!   `etcdbr restore` into a data directory, then etcd started on it until
//!   it serves the last key. `DRUID_BENCH_RESTORE_ON=disk,tmpfs` (default
//!   `disk`) chooses where the data directory and the restore's temporary
//!   files live (`tmpfs` is `/dev/shm`);
//!   `DRUID_BENCH_RESTORE_METHODS=compaction,replay` (the default) runs
//!   the restore with the compactor plugin (no replay) and, as the peer,
//!   by replaying every delta through a temporary etcd as upstream does;
//! - `compact`: the same full snapshot (a local `etcdctl snapshot save`
//!   file) and deltas (decompressed to local files) compacted into one
//!   database by `druid_etcd_db::compact` natively and by the compactor
//!   plugin under wasmtime, each in its own process (time of the
//!   compaction itself and peak RSS); `DRUID_BENCH_SORT_MIB` (64) is the
//!   sort budget;
//! - `rss`: etcd plus `etcdbr server` taking deltas every 10 s into MinIO
//!   while a load generator puts 512-byte values at `DRUID_BENCH_LOAD_RATE`
//!   (10000) per second from `DRUID_BENCH_LOAD_TASKS` (64) tasks for
//!   `DRUID_BENCH_LOAD_SECS` (60) seconds; the sidecar's RSS is sampled
//!   every 100 ms, and the store must catch up with etcd's revision.
//!   `DRUID_BENCH_SIDECAR_ARGS` adds flags to `etcdbr server` (experiments).
//!
//! Every child process is started through `druid_test_support`, so it dies
//! with this process; data and logs live under
//! `target/test-servers/sidecar-<pid>/`, and the large files are deleted
//! when a scenario ends (logs are kept).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a bench binary that prints its figures"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use druid_backup_restore::compression::Compression;
use druid_backup_restore::delta::{DeltaBuilder, DeltaEvent, Event, EventType, KeyValue};
use druid_backup_restore::snapshot_name::{Snapshot, SnapshotKind};
use druid_test_support::{
    MinioServer, ServerProcess, cache_dir, find_binary, free_port, http_get, plugin_components,
    run_dir, server_dir,
};
use etcd_client::Client;

const BUCKET: &str = "bench-sidecar";
const MIB: f64 = (1u64 << 20) as f64;
/// Value size of the database fill.
const FILL_VALUE: usize = 64 << 10;
/// Value size of delta events and of the load generator.
const SMALL_VALUE: usize = 512;

// ---------------------------------------------------------------- helpers

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The command that reproduces a scenario with the sizes of this run.
fn reproduce(vars: &[(&str, String)]) -> String {
    let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} cargo bench -p druid-backup-restore --bench sidecar",
        vars.join(" ")
    )
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`).
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// CPU time (user + system) a process used so far, assuming the usual
/// 100 clock ticks per second.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: utime and
    // stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits while another heavy benchmark runs on this (shared) machine.
fn wait_for_quiet_machine() {
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
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// A child process that ran to completion.
struct Measured {
    elapsed: Duration,
    peak_kib: u64,
    log: PathBuf,
}

/// Runs `command` to completion (it must succeed), sampling its peak RSS
/// (VmHWM) every 5 ms; stdout and stderr go to `log`.
fn run_measured(name: &str, command: Command, log: &Path) -> Measured {
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
fn log_times(log: &Path, message: &str) -> Vec<DateTime<Utc>> {
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

fn remove_dir(path: &Path) {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------- servers

/// MinIO, the binaries and the flags every `etcdbr` run shares.
struct Bench {
    minio: MinioServer,
    minio_data: PathBuf,
    creds: PathBuf,
    dir: PathBuf,
    etcd: PathBuf,
    etcdctl: PathBuf,
}

impl Bench {
    fn start() -> Bench {
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
        }
    }

    /// `etcdbr <sub>` with the store and plugin flags.
    fn etcdbr(&self, sub: &str, prefix: &str) -> Command {
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

    fn mc(&self) -> Command {
        self.minio.mc().unwrap()
    }

    /// Objects below `prefix`: (key relative to the bucket, size).
    fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
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
    fn snapshots(&self, prefix: &str) -> Vec<(Snapshot, u64)> {
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
    fn mc_measured(&self, name: &str, args: &[&str]) -> Measured {
        let mut c = self.mc();
        c.args(args);
        run_measured(name, c, &self.dir.join(format!("{name}.log")))
    }

    /// Loads (and precompiles) the plugins once, so that no timed run pays
    /// for compiling them: a restore from an empty prefix, which fails.
    fn warm_plugin_cache(&self) {
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

/// One etcd member on loopback.
struct Etcd {
    name: String,
    client_url: String,
    peer_url: String,
    token: String,
    data_dir: PathBuf,
    dir: PathBuf,
    process: Option<ServerProcess>,
}

impl Etcd {
    fn new(label: &str, data_dir: Option<PathBuf>) -> Etcd {
        let client_port = free_port().unwrap();
        let peer_port = free_port().unwrap();
        let dir = server_dir(&format!("etcd-{label}-{client_port}")).unwrap();
        Etcd {
            name: "m0".into(),
            client_url: format!("http://127.0.0.1:{client_port}"),
            peer_url: format!("http://127.0.0.1:{peer_port}"),
            token: format!("bench-{label}"),
            data_dir: data_dir.unwrap_or_else(|| dir.join("data")),
            dir,
            process: None,
        }
    }

    fn initial_cluster(&self) -> String {
        format!("{}={}", self.name, self.peer_url)
    }

    fn spawn(&mut self, bin: &Path, extra: &[String]) {
        let mut c = Command::new(bin);
        c.arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.client_url))
            .arg(format!("--advertise-client-urls={}", self.client_url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster={}", self.initial_cluster()))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--initial-cluster-state=new")
            .args(extra)
            .env_remove("ETCDCTL_API")
            .env_remove("ETCD_CONF");
        self.process = Some(
            ServerProcess::spawn(
                &format!("etcd {}", self.client_url),
                c,
                &self.dir.join("etcd.log"),
            )
            .unwrap(),
        );
    }

    fn wait_healthy(&self) {
        let url = format!("{}/health", self.client_url);
        self.process
            .as_ref()
            .unwrap()
            .wait_ready(Duration::from_secs(300), || {
                let (status, body) = http_get(&url)?;
                Ok(status == 200 && body.contains("true"))
            })
            .unwrap();
    }

    fn start(&mut self, bin: &Path, extra: &[String]) {
        self.spawn(bin, extra);
        self.wait_healthy();
    }

    fn stop(&mut self) {
        if let Some(p) = self.process.take() {
            p.stop();
        }
    }

    async fn client(&self) -> Client {
        Client::connect([self.client_url.as_str()], None)
            .await
            .unwrap()
    }
}

/// What the filled etcd holds.
struct Filled {
    keys: u64,
    db_size: u64,
    revision: i64,
}

/// Puts `target` bytes of 64 KiB random values from 8 concurrent tasks.
async fn fill(etcd: &Etcd, target: u64) -> Filled {
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

// ---------------------------------------------------------------- upload

fn upload_scenario(b: &Bench, etcd: &Etcd, filled: &Filled, db_mib: u64) -> PathBuf {
    wait_for_quiet_machine();
    b.warm_plugin_cache();
    let tmp = b.dir.join("snapstore-tmp");
    let snapshot = |prefix: &str, compress: bool| {
        let mut c = b.etcdbr("snapshot", prefix);
        c.arg(format!("--endpoints={}", etcd.client_url))
            .arg(format!("--snapstore-temp-directory={}", tmp.display()))
            .arg(format!("--compress-snapshots={compress}"));
        let m = run_measured(
            &format!("etcdbr-snapshot-{prefix}"),
            c,
            &b.dir.join(format!("etcdbr-snapshot-{prefix}.log")),
        );
        let stored: u64 = b.objects(&format!("{prefix}/")).iter().map(|o| o.1).sum();
        (m, stored)
    };
    eprintln!("upload: etcdbr snapshot (gzip)");
    let (gz, gz_stored) = snapshot("upload-gzip", true);
    eprintln!("upload: etcdbr snapshot (--compress-snapshots=false)");
    let (raw, raw_stored) = snapshot("upload-raw", false);

    eprintln!("upload: etcdctl snapshot save + mc cp");
    let file = b.dir.join("etcdctl-snapshot.db");
    let _ = std::fs::remove_file(&file);
    let mut save = Command::new(&b.etcdctl);
    save.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.client_url))
        .args(["snapshot", "save"])
        .arg(&file);
    let save = run_measured("etcdctl-save", save, &b.dir.join("etcdctl-save.log"));
    let cp = b.mc_measured(
        "mc-cp-upload",
        &[
            "cp",
            file.to_str().unwrap(),
            &format!("druid/{BUCKET}/upload-peer/snapshot.db"),
        ],
    );
    let peer_stored: u64 = b.objects("upload-peer/").iter().map(|o| o.1).sum();

    let db = filled.db_size;
    let rate = |d: Duration| mib(db) / d.as_secs_f64();
    println!();
    println!(
        "== upload: one full snapshot of a {:.0} MiB etcd database ({} keys of 64 KiB random values) to MinIO",
        mib(db),
        filled.keys
    );
    println!(
        "   reproduce: {}",
        reproduce(&[
            ("DRUID_BENCH", "upload".into()),
            ("DRUID_BENCH_DB_MIB", db_mib.to_string())
        ])
    );
    println!(
        "{:<44} {:>8} {:>10} {:>11} {:>13}",
        "", "time s", "DB MiB/s", "stored MiB", "peak RSS MiB"
    );
    let row = |name: &str, d: Duration, stored: u64, rss: u64| {
        println!(
            "{:<44} {:>8.1} {:>10.1} {:>11.0} {:>13.1}",
            name,
            d.as_secs_f64(),
            rate(d),
            mib(stored),
            kib_to_mib(rss)
        );
    };
    row(
        "etcdbr snapshot (gzip, default)",
        gz.elapsed,
        gz_stored,
        gz.peak_kib,
    );
    row(
        "etcdbr snapshot --compress-snapshots=false",
        raw.elapsed,
        raw_stored,
        raw.peak_kib,
    );
    row(
        "peer: etcdctl snapshot save (to a file)",
        save.elapsed,
        std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0),
        save.peak_kib,
    );
    row(
        "peer: mc cp (the file)",
        cp.elapsed,
        peer_stored,
        cp.peak_kib,
    );
    row(
        "peer: save + cp (sum; RSS = max)",
        save.elapsed + cp.elapsed,
        peer_stored,
        save.peak_kib.max(cp.peak_kib),
    );
    // Where etcdbr's time goes, from its log (start, staged, uploaded).
    for (name, m) in [("gzip", &gz), ("no compression", &raw)] {
        let staged = log_times(&m.log, "uploading full snapshot");
        let uploaded = log_times(&m.log, "full snapshot uploaded");
        let started = log_times(&m.log, "plugin registered");
        if let (Some(s), Some(st), Some(up)) = (started.first(), staged.first(), uploaded.first()) {
            println!(
                "   etcdbr ({name}): plugins loaded, then {:.1} s streaming the snapshot from etcd to a staged file (+ fsync, SHA-256 and revision check), then {:.1} s compressing and uploading",
                (*st - *s).as_seconds_f64(),
                (*up - *st).as_seconds_f64()
            );
        }
    }
    println!(
        "   etcdbr logs: {} / {}",
        gz.log.display(),
        raw.log.display()
    );
    // The objects are not needed any more.
    for p in ["upload-gzip/", "upload-raw/", "upload-peer/"] {
        let _ = b
            .mc()
            .args(["rm", "--recursive", "--force"])
            .arg(format!("druid/{BUCKET}/{p}"))
            .output();
    }
    file
}

// ---------------------------------------------------------------- restore

/// Writes `deltas` delta objects of `events` PUTs each below `out`, keyed
/// as `Snapshot::key(prefix)`, continuing after `base`. Event `g` (0-based)
/// is revision `base + 1 + g` on key `g % events`, so every key is created
/// in the first delta and modified once per later delta. Returns the last
/// key and value.
fn build_deltas(
    out: &Path,
    prefix: &str,
    base: i64,
    deltas: u64,
    events: u64,
) -> (String, Vec<u8>, u64) {
    let key_of = |g: u64| format!("/bench/delta/{:06}", g % events);
    let value_of = |g: u64| Rng::new((1 << 40) | g).bytes(SMALL_VALUE);
    let created = Utc::now().timestamp();
    let total_bytes = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let total_bytes = &total_bytes;
            s.spawn(move || {
                for d in (0..deltas).filter(|d| d % 2 == t) {
                    let mut builder = DeltaBuilder::new();
                    let now = Utc::now();
                    for e in 0..events {
                        let g = d * events + e;
                        let revision = base + 1 + g as i64;
                        let kv = KeyValue {
                            key: key_of(g).into_bytes(),
                            create_revision: base + 1 + (g % events) as i64,
                            mod_revision: revision,
                            version: (g / events) as i64 + 1,
                            value: value_of(g),
                            lease: 0,
                        };
                        let event = Event {
                            kind: EventType::Put,
                            kv,
                            prev_kv: None,
                        };
                        builder.push(&DeltaEvent::new(event, now)).unwrap();
                    }
                    let start = base + 1 + (d * events) as i64;
                    let last = start + events as i64 - 1;
                    assert_eq!(builder.last_mod_revision(), Some(last));
                    let object = builder.finish_compressed(Compression::Gzip).unwrap();
                    total_bytes.fetch_add(object.len() as u64, Ordering::Relaxed);
                    let snapshot =
                        Snapshot::delta(start, last, created + d as i64, Compression::Gzip);
                    let path = out.join(snapshot.key(prefix));
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, object).unwrap();
                }
            });
        }
    });
    let last = deltas * events - 1;
    (
        key_of(last),
        value_of(last),
        total_bytes.load(Ordering::Relaxed),
    )
}

struct RestoreRun {
    place: String,
    method: String,
    base_only: Measured,
    full: Measured,
    replay_steady: Option<(f64, u64)>,
    serving: Duration,
    etcdctl_only: Measured,
}

#[allow(clippy::too_many_arguments, reason = "a bench step")]
fn restore_once(
    b: &Bench,
    rt: &tokio::runtime::Runtime,
    method: &str,
    place: &str,
    root: &Path,
    expected_revision: i64,
    last_key: &str,
    last_value: &[u8],
    events: u64,
    local_db: &Path,
) -> RestoreRun {
    remove_dir(root);
    std::fs::create_dir_all(root).unwrap();
    let restore = |prefix: &str, etcd: &Etcd| {
        let mut c = b.etcdbr("restore", prefix);
        c.arg(format!("--data-dir={}", etcd.data_dir.display()))
            .arg(format!(
                "--restoration-temp-snapshots-dir={}",
                root.join("restore-tmp").display()
            ))
            .arg(format!("--name={}", etcd.name))
            .arg(format!("--initial-cluster={}", etcd.initial_cluster()))
            .arg(format!("--initial-cluster-token={}", etcd.token))
            .arg(format!("--initial-advertise-peer-urls={}", etcd.peer_url))
            .arg(format!("--etcd-binary={}", b.etcd.display()))
            .arg(format!("--etcdctl-binary={}", b.etcdctl.display()))
            .arg(format!("--restore-method={method}"));
        let name = format!("etcdbr-restore-{prefix}-{method}-{place}");
        run_measured(&name, c, &b.dir.join(format!("{name}.log")))
    };

    // The full snapshot alone: download, check, etcdctl snapshot restore.
    eprintln!("restore ({place}): base only");
    let base_etcd = Etcd::new(&format!("base-{place}"), Some(root.join("base-data")));
    let base_only = restore("restore-base", &base_etcd);
    remove_dir(&base_etcd.data_dir);
    remove_dir(&base_etcd.dir);

    // The lower bound: etcdctl snapshot restore of a local file.
    eprintln!("restore ({place}): etcdctl snapshot restore alone");
    let mut c = Command::new(&b.etcdctl);
    let out = root.join("etcdctl-data");
    c.env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(local_db)
        .arg(format!("--data-dir={}", out.display()))
        .arg("--skip-hash-check=true");
    let etcdctl_only = run_measured(
        "etcdctl-restore",
        c,
        &b.dir.join(format!("etcdctl-restore-{place}.log")),
    );
    remove_dir(&out);

    // Full snapshot and deltas.
    eprintln!("restore ({place}): full snapshot + deltas");
    let mut etcd = Etcd::new(&format!("restored-{place}"), Some(root.join("data")));
    let full = restore("restore", &etcd);
    let applied = log_times(&full.log, "delta applied");
    let replay_steady = (applied.len() >= 2).then(|| {
        let secs = (applied[applied.len() - 1] - applied[0]).as_seconds_f64();
        let n = (applied.len() as u64 - 1) * events;
        (n as f64 / secs, n)
    });

    // etcd on the restored data until it serves the last key.
    eprintln!("restore ({place}): etcd on the restored data");
    let started = Instant::now();
    etcd.spawn(&b.etcd, &[]);
    etcd.wait_healthy();
    let (got, revision) = rt.block_on(async {
        let mut client = etcd.client().await;
        loop {
            if let Ok(r) = client.get(last_key, None).await {
                let kv = r.kvs().first().map(|kv| kv.value().to_vec());
                break (kv, r.header().unwrap().revision());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let serving = started.elapsed();
    assert_eq!(
        got.as_deref(),
        Some(last_value),
        "the last key was restored"
    );
    assert_eq!(revision, expected_revision, "the restored revision");
    etcd.stop();
    remove_dir(root);
    remove_dir(&etcd.dir);
    RestoreRun {
        place: place.into(),
        method: method.into(),
        base_only,
        full,
        replay_steady,
        serving,
        etcdctl_only,
    }
}

#[allow(clippy::too_many_arguments, reason = "a bench step")]
fn restore_scenario(
    b: &Bench,
    rt: &tokio::runtime::Runtime,
    mut etcd: Etcd,
    filled: &Filled,
    db_mib: u64,
    local_db: Option<PathBuf>,
    run_restore: bool,
    run_compact: bool,
) {
    wait_for_quiet_machine();
    b.warm_plugin_cache();
    let deltas = env_u64("DRUID_BENCH_DELTAS", 100);
    let events = env_u64("DRUID_BENCH_DELTA_EVENTS", 10_000);
    let places = env_list("DRUID_BENCH_RESTORE_ON", "disk");
    let methods = env_list("DRUID_BENCH_RESTORE_METHODS", "compaction,replay");

    eprintln!("restore: full snapshot with etcdbr snapshot");
    let mut c = b.etcdbr("snapshot", "restore");
    c.arg(format!("--endpoints={}", etcd.client_url))
        .arg(format!(
            "--snapstore-temp-directory={}",
            b.dir.join("snapstore-tmp").display()
        ));
    run_measured(
        "etcdbr-snapshot-restore",
        c,
        &b.dir.join("etcdbr-snapshot-restore.log"),
    );
    let full = b.snapshots("restore");
    assert_eq!(full.len(), 1, "{full:?}");
    let (full, full_size) = full.into_iter().next().unwrap();
    assert_eq!(full.kind, SnapshotKind::Full);
    assert_eq!(full.last_revision, filled.revision);
    // The same object alone under another prefix (server-side copy).
    let out = b
        .mc()
        .arg("cp")
        .arg(format!("druid/{BUCKET}/{}", full.key("restore")))
        .arg(format!("druid/{BUCKET}/{}", full.key("restore-base")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let local_db = local_db.unwrap_or_else(|| {
        let file = b.dir.join("etcdctl-snapshot.db");
        let out = Command::new(&b.etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.client_url))
            .args(["snapshot", "save"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        file
    });
    etcd.stop();
    remove_dir(&etcd.data_dir);

    eprintln!("restore: building {deltas} deltas of {events} events");
    let t = Instant::now();
    let staging = b.dir.join("deltas");
    remove_dir(&staging);
    let (last_key, last_value, delta_bytes) =
        build_deltas(&staging, "restore", full.last_revision, deltas, events);
    let built = t.elapsed();
    let t = Instant::now();
    let out = b
        .mc()
        .arg("mirror")
        .arg(&staging)
        .arg(format!("druid/{BUCKET}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uploaded = t.elapsed();
    if run_compact {
        compact_scenario(b, &staging, &local_db, &full, deltas, events, delta_bytes);
    }
    remove_dir(&staging);
    let listed = b.snapshots("restore");
    assert_eq!(
        listed.len() as u64,
        deltas + 1,
        "every delta is in the store"
    );
    eprintln!(
        "restore: deltas built in {:.1} s, uploaded in {:.1} s",
        built.as_secs_f64(),
        uploaded.as_secs_f64()
    );
    let expected = full.last_revision + (deltas * events) as i64;

    let mut runs = Vec::new();
    for (method, place) in methods
        .iter()
        .flat_map(|m| places.iter().map(move |p| (m, p)))
        .filter(|_| run_restore)
    {
        let root = match place.as_str() {
            "disk" => b.dir.join("restore-disk"),
            "tmpfs" => PathBuf::from(format!(
                "/dev/shm/druid-bench-sidecar-{}",
                std::process::id()
            )),
            other => panic!("DRUID_BENCH_RESTORE_ON: unknown place {other} (disk, tmpfs)"),
        };
        wait_for_quiet_machine();
        runs.push(restore_once(
            b,
            rt,
            method,
            place,
            &root,
            expected,
            &last_key,
            &last_value,
            events,
            &local_db,
        ));
    }
    let _ = std::fs::remove_file(&local_db);
    if !run_restore {
        return;
    }

    let total_events = deltas * events;
    println!();
    println!(
        "== restore: full snapshot of {:.0} MiB (gzip {:.0} MiB in MinIO, revision {}) + {deltas} deltas x {events} PUTs (one per revision, 512-byte random values, {:.0} MiB gzip) -> etcdbr restore -> etcd serving",
        mib(filled.db_size),
        mib(full_size),
        full.last_revision,
        mib(delta_bytes)
    );
    println!(
        "   reproduce: {}",
        reproduce(&[
            ("DRUID_BENCH", "restore".into()),
            ("DRUID_BENCH_DB_MIB", db_mib.to_string()),
            ("DRUID_BENCH_DELTAS", deltas.to_string()),
            ("DRUID_BENCH_DELTA_EVENTS", events.to_string()),
            ("DRUID_BENCH_RESTORE_ON", places.join(",")),
            ("DRUID_BENCH_RESTORE_METHODS", methods.join(",")),
        ])
    );
    println!(
        "{:<11} {:<7} {:>11} {:>12} {:>11} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "method",
        "data on",
        "base s",
        "base+delta s",
        "serving s",
        "total s",
        "replay ev/s",
        "steady ev/s",
        "RSS base",
        "RSS full"
    );
    for r in &runs {
        let replay = r.full.elapsed.saturating_sub(r.base_only.elapsed);
        println!(
            "{:<11} {:<7} {:>11.1} {:>12.1} {:>11.2} {:>12.1} {:>12.0} {:>12.0} {:>10.1} {:>10.1}",
            r.method,
            r.place,
            r.base_only.elapsed.as_secs_f64(),
            r.full.elapsed.as_secs_f64(),
            r.serving.as_secs_f64(),
            (r.full.elapsed + r.serving).as_secs_f64(),
            total_events as f64 / replay.as_secs_f64(),
            r.replay_steady.map_or(0.0, |s| s.0),
            kib_to_mib(r.base_only.peak_kib),
            kib_to_mib(r.full.peak_kib),
        );
    }
    println!(
        "   base s: etcdbr restore of the full snapshot alone (download + gunzip + SHA-256 check + etcdctl snapshot restore)"
    );
    println!(
        "   base+delta s: etcdbr restore of the full snapshot and the deltas; serving s: etcd started on the result until /health and a get of the last key"
    );
    println!(
        "   replay ev/s: events / (base+delta - base), i.e. events merged (compaction) or replayed (replay) per second; steady ev/s: between the first and the last 'delta applied' log line (replay only); RSS: etcdbr's VmHWM in MiB (its etcdctl and temporary etcd children not counted; the compactor plugin runs inside etcdbr and is counted)"
    );
    let total = |m: &str| {
        runs.iter()
            .find(|r| r.method == m)
            .map(|r| (r.full.elapsed + r.serving).as_secs_f64())
    };
    if let (Some(c), Some(r)) = (total("compaction"), total("replay")) {
        println!(
            "   restore by compaction vs by replay (total s, first place): {c:.1} s vs {r:.1} s: {:.1}x faster (goal: at least 10x)",
            r / c
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in runs.iter().filter(|r| seen.insert(r.place.clone())) {
        println!(
            "   peer ({}): etcdctl snapshot restore alone of the same database from a local file: {:.1} s ({:.1} MiB RSS) -- a lower bound for any restore of the base; upstream replays the deltas the same way (one txn per revision through an embedded etcd), no upstream binary here to time",
            r.place,
            r.etcdctl_only.elapsed.as_secs_f64(),
            kib_to_mib(r.etcdctl_only.peak_kib)
        );
    }
    for p in ["restore/", "restore-base/"] {
        let _ = b
            .mc()
            .args(["rm", "--recursive", "--force"])
            .arg(format!("druid/{BUCKET}/{p}"))
            .output();
    }
}

// ---------------------------------------------------------------- compact

/// Set in a child process of the bench: `native` or `wasm`.
const CHILD_ENV: &str = "DRUID_BENCH_COMPACT_CHILD";

/// The compaction in a child process, so that its peak RSS is its own:
/// args `<base> <out> <scratch> <plugins dir> <cache dir> <sort MiB>
/// <delta name>=<path>...`; prints one JSON line.
fn compact_child(mode: &str) {
    use druid_etcd_db::{CompactOptions, DeltaInput, SnapshotInfo};
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (base, out, scratch, plugins, cache, sort_mib) =
        (&args[0], &args[1], &args[2], &args[3], &args[4], &args[5]);
    let deltas: Vec<(SnapshotInfo, PathBuf)> = args[6..]
        .iter()
        .map(|a| {
            let (name, path) = a.split_once('=').unwrap();
            let snap = Snapshot::parse(&format!("v2/{name}")).unwrap();
            (
                SnapshotInfo {
                    name: name.into(),
                    start_revision: snap.start_revision,
                    last_revision: snap.last_revision,
                },
                PathBuf::from(path),
            )
        })
        .collect();
    let base_info = SnapshotInfo {
        name: "base".into(),
        start_revision: 0,
        last_revision: 0,
    };
    let options = CompactOptions {
        sort_memory_bytes: sort_mib.parse::<usize>().unwrap() << 20,
        ..CompactOptions::default()
    };
    let started = Instant::now();
    if mode == "check" {
        // The host's content check of a compactor's output: the inputs
        // merged natively into a digest, no database written.
        let open = |p: &Path| std::fs::File::open(p).unwrap();
        let inputs: Vec<DeltaInput<std::fs::File>> = deltas
            .iter()
            .map(|(info, path)| DeltaInput {
                info: info.clone(),
                data: open(path),
            })
            .collect();
        let scratch = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(scratch)
            .unwrap();
        let digest = druid_etcd_db::expected_content(
            &base_info,
            open(Path::new(base)),
            &inputs,
            scratch,
            &options,
        )
        .unwrap();
        println!(
            "{}",
            serde_json::json!({
                "seconds": started.elapsed().as_secs_f64(),
                "keys": digest.keys,
            })
        );
        return;
    }
    let (report, load) = match mode {
        "native" => {
            let open = |p: &Path| std::fs::File::open(p).unwrap();
            let create = |p: &str| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)
                    .unwrap()
            };
            let inputs: Vec<DeltaInput<std::fs::File>> = deltas
                .iter()
                .map(|(info, path)| DeltaInput {
                    info: info.clone(),
                    data: open(path),
                })
                .collect();
            let report = druid_etcd_db::compact(
                &base_info,
                open(Path::new(base)),
                &inputs,
                create(out),
                create(scratch),
                &options,
            )
            .unwrap();
            (report, 0.0)
        }
        "wasm" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let host = druid_plugin_host::PluginHost::new(druid_plugin_host::Limits::default())
                    .unwrap()
                    .with_component_cache(cache);
                let registry = druid_plugin_host::Registry::load(
                    Arc::new(host),
                    Some(Path::new(plugins)),
                    &[],
                )
                .await
                .unwrap();
                let load = started.elapsed().as_secs_f64();
                // The plugin's limits as `etcdbr compact` sets them by default.
                let cli = <druid_backup_restore::cli::Cli as clap::Parser>::try_parse_from([
                    "etcdbr", "compact",
                ])
                .unwrap();
                let druid_backup_restore::cli::Command::Compact(compact) = cli.command else {
                    panic!("not the compact command")
                };
                let (limits, _) =
                    druid_backup_restore::compaction::job_settings(&compact.restore.compaction);
                let job = druid_plugin_host::CompactJob {
                    base: base_info.clone(),
                    base_file: base.into(),
                    deltas: deltas.clone(),
                    output: out.into(),
                    scratch: scratch.into(),
                    options: options.clone(),
                    limits,
                    max_output_bytes: u64::MAX,
                };
                (registry.compact(&job).await.unwrap(), load)
            })
        }
        other => panic!("{CHILD_ENV}: unknown mode {other}"),
    };
    let seconds = started.elapsed().as_secs_f64() - load;
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds,
            "load_seconds": load,
            "revision": report.revision,
            "keys": report.keys,
            "events": report.events,
            "db_bytes": report.db_bytes,
            "spilled_bytes": report.spilled_bytes,
            "sort_peak_bytes": report.sort_peak_bytes,
        })
    );
}

/// Compacts the local base and the deltas natively and as the plugin.
fn compact_scenario(
    b: &Bench,
    staging: &Path,
    local_db: &Path,
    full: &Snapshot,
    deltas: u64,
    events: u64,
    delta_bytes: u64,
) {
    let dir = b.dir.join("compact");
    remove_dir(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The deltas decompressed, as the sidecar hands them to the compactor.
    let mut inputs = Vec::new();
    let mut payload_bytes = 0u64;
    let mut objects: Vec<PathBuf> = walk_files(staging);
    objects.sort();
    for obj in objects {
        let name = obj.file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(&obj).unwrap();
        let payload =
            druid_backup_restore::compression::decompress(Compression::Gzip, &raw).unwrap();
        payload_bytes += payload.len() as u64;
        let path = dir.join(&name);
        std::fs::write(&path, payload).unwrap();
        inputs.push(format!("{name}={}", path.display()));
    }
    assert_eq!(inputs.len() as u64, deltas);
    let sort_mib = env_u64("DRUID_BENCH_SORT_MIB", 64);
    let expected = full.last_revision + (deltas * events) as i64;
    let mut results: Vec<(&str, Measured, serde_json::Value)> = Vec::new();
    for mode in ["native", "wasm", "check"] {
        wait_for_quiet_machine();
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.env(CHILD_ENV, mode)
            .arg(local_db)
            .arg(dir.join("out.db"))
            .arg(dir.join("scratch"))
            .arg(plugin_components().dir())
            .arg(cache_dir().join("plugin-cache"))
            .arg(sort_mib.to_string())
            .args(&inputs);
        let name = format!("compact-{mode}");
        let m = run_measured(&name, c, &b.dir.join(format!("{name}.log")));
        let log = std::fs::read_to_string(&m.log).unwrap();
        let line = log.lines().rev().find(|l| l.starts_with('{')).unwrap();
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        if mode == "check" {
            assert_eq!(r["keys"], results[0].2["keys"], "the check's keys: {r}");
            results.push((mode, m, r));
            continue;
        }
        assert_eq!(r["revision"].as_i64(), Some(expected), "{mode}: {r}");
        // The output is a database etcdctl accepts.
        let out = Command::new(&b.etcdctl)
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "--write-out=json"])
            .arg(dir.join("out.db"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        results.push((mode, m, r));
    }
    println!();
    println!(
        "== compact: a {:.0} MiB full snapshot (revision {}) + {deltas} deltas x {events} PUTs ({:.0} MiB of delta JSON, {:.0} MiB gzip) -> one database",
        mib(std::fs::metadata(local_db).unwrap().len()),
        full.last_revision,
        mib(payload_bytes),
        mib(delta_bytes)
    );
    println!(
        "   reproduce: {}",
        reproduce(&[
            ("DRUID_BENCH", "compact".into()),
            ("DRUID_BENCH_DELTAS", deltas.to_string()),
            ("DRUID_BENCH_DELTA_EVENTS", events.to_string()),
            ("DRUID_BENCH_SORT_MIB", sort_mib.to_string()),
        ])
    );
    println!(
        "{:<8} {:>10} {:>12} {:>12} {:>13} {:>12} {:>14}",
        "run", "seconds", "events/s", "out MiB", "peak RSS MiB", "spilled MiB", "sort peak MiB"
    );
    for (mode, m, r) in &results {
        let secs = r["seconds"].as_f64().unwrap();
        if *mode == "check" {
            println!(
                "{:<8} {:>10.1} {:>12.0} {:>12} {:>13.1} {:>12} {:>14}",
                mode,
                secs,
                (deltas * events) as f64 / secs,
                "-",
                kib_to_mib(m.peak_kib),
                "-",
                "-",
            );
            continue;
        }
        println!(
            "{:<8} {:>10.1} {:>12.0} {:>12.0} {:>13.1} {:>12.1} {:>14.1}",
            mode,
            secs,
            (deltas * events) as f64 / secs,
            mib(r["db_bytes"].as_u64().unwrap()),
            kib_to_mib(m.peak_kib),
            mib(r["spilled_bytes"].as_u64().unwrap()),
            mib(r["sort_peak_bytes"].as_u64().unwrap()),
        );
    }
    let secs = |i: usize| results[i].2["seconds"].as_f64().unwrap();
    println!(
        "   wasm / native: {:.2}x (goal: at most 2x); the plugin was loaded from the compiled-component cache in {:.2} s (not counted)",
        secs(1) / secs(0),
        results[1].2["load_seconds"].as_f64().unwrap()
    );
    println!(
        "   peak RSS: the whole process (for wasm: wasmtime, the plugin's linear memory and the host's buffers)"
    );
    println!(
        "   check: the host's content check of the plugin's output alone (a native merge of the inputs into a digest); the wasm row includes it"
    );
    remove_dir(&dir);
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------- rss

fn rss_scenario(b: &Bench, rt: &tokio::runtime::Runtime) {
    wait_for_quiet_machine();
    b.warm_plugin_cache();
    let secs = env_u64("DRUID_BENCH_LOAD_SECS", 60);
    let rate = env_u64("DRUID_BENCH_LOAD_RATE", 10_000);
    let tasks = env_u64("DRUID_BENCH_LOAD_TASKS", 64);
    let prefix = "rss";

    let mut etcd = Etcd::new("rss", None);
    etcd.start(&b.etcd, &[]);
    let port = free_port().unwrap();
    let sidecar_dir = server_dir(&format!("etcdbr-sidecar-{port}")).unwrap();
    // Extra flags for experiments; the delta period defaults to 10 s.
    let mut extra: Vec<String> = std::env::var("DRUID_BENCH_SIDECAR_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    if !extra
        .iter()
        .any(|a| a.starts_with("--delta-snapshot-period"))
    {
        extra.push("--delta-snapshot-period=10s".into());
    }
    let mut c = b.etcdbr("server", prefix);
    c.arg(format!("--server-port={port}"))
        .arg("--server-address=127.0.0.1")
        .arg(format!("--endpoints={}", etcd.client_url))
        .arg("--schedule=0 0 1 1 *")
        .args(&extra)
        .arg(format!("--data-dir={}", etcd.data_dir.display()))
        .arg(format!("--name={}", etcd.name))
        .arg(format!("--initial-cluster={}", etcd.initial_cluster()))
        .arg(format!("--initial-cluster-token={}", etcd.token))
        .arg(format!("--initial-advertise-peer-urls={}", etcd.peer_url))
        .arg(format!(
            "--snapstore-temp-directory={}",
            sidecar_dir.join("tmp").display()
        ))
        .arg(format!(
            "--restoration-temp-snapshots-dir={}",
            sidecar_dir.join("restore").display()
        ))
        .arg(format!("--etcd-binary={}", b.etcd.display()))
        .arg(format!("--etcdctl-binary={}", b.etcdctl.display()));
    let sidecar =
        ServerProcess::spawn("etcdbr server", c, &sidecar_dir.join("etcdbr.log")).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    sidecar
        .wait_ready(Duration::from_secs(120), || {
            Ok(http_get(&format!("{url}/healthz"))?.0 == 200)
        })
        .unwrap();
    let store_revision = || -> i64 {
        let Ok((200, body)) = http_get(&format!("{url}/snapshot/latest")) else {
            return 0;
        };
        let latest: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        latest["deltaSnapshots"]
            .as_array()
            .and_then(|d| d.last())
            .or(latest.get("fullSnapshot"))
            .and_then(|s| s["lastRevision"].as_i64())
            .unwrap_or(0)
    };
    // The initial full snapshot of the empty etcd is in the store.
    let t = Instant::now();
    while !b
        .snapshots(prefix)
        .iter()
        .any(|s| s.0.kind == SnapshotKind::Full)
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no initial full snapshot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // RSS sampler.
    let pid = sidecar.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = proc_status_kib(pid, "VmRSS:") {
                    samples.push(kib);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };

    eprintln!("rss: {rate} puts/s for {secs} s from {tasks} tasks");
    let start_rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let etcd_pid = etcd.process.as_ref().unwrap().pid();
    let cpu_before = (
        cpu_secs(pid).unwrap_or(0.0),
        cpu_secs(etcd_pid).unwrap_or(0.0),
    );
    let (done, elapsed, etcd_revision) = rt.block_on(async {
        let values: Arc<Vec<Vec<u8>>> = Arc::new({
            let mut rng = Rng::new(7);
            (0..1024).map(|_| rng.bytes(SMALL_VALUE)).collect()
        });
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(etcd.client().await);
        }
        let next = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let max_rev = Arc::new(AtomicI64::new(0));
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let mut handles = Vec::new();
        for t in 0..tasks {
            let mut kv = clients[t as usize % clients.len()].kv_client();
            let (next, done, max_rev, values) =
                (next.clone(), done.clone(), max_rev.clone(), values.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let r = kv
                        .put(
                            format!("/bench/load/{:06}", i % 100_000),
                            values[i as usize % values.len()].clone(),
                            None,
                        )
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                    max_rev.fetch_max(r.header().unwrap().revision(), Ordering::Relaxed);
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        (
            done.load(Ordering::Relaxed),
            start.elapsed(),
            max_rev.load(Ordering::Relaxed),
        )
    });
    let revision = rt.block_on(async {
        etcd.client()
            .await
            .status()
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision()
    });
    assert!(revision >= etcd_revision);
    let behind = revision - store_revision();
    eprintln!(
        "rss: {done} puts in {:.1} s; waiting for the store to reach revision {revision}",
        elapsed.as_secs_f64()
    );
    let t = Instant::now();
    let mut caught_up = None;
    while t.elapsed() < Duration::from_secs(120) {
        if store_revision() >= revision {
            caught_up = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let cpu = (
        cpu_secs(pid).unwrap_or(0.0) - cpu_before.0,
        cpu_secs(etcd_pid).unwrap_or(0.0) - cpu_before.1,
    );
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let final_store_revision = store_revision();
    let (_, latest) = http_get(&format!("{url}/snapshot/latest")).unwrap();
    let latest: serde_json::Value = serde_json::from_str(&latest).unwrap();
    let latest_deltas = latest["deltaSnapshots"].as_array().map_or(0, Vec::len);
    let listed = b.snapshots(prefix);
    let incr: Vec<&(Snapshot, u64)> = listed
        .iter()
        .filter(|s| s.0.kind == SnapshotKind::Incr)
        .collect();
    let incr_bytes: u64 = incr.iter().map(|s| s.1).sum();
    let early = std::fs::read_to_string(sidecar.log_path())
        .unwrap_or_default()
        .matches("delta memory limit reached")
        .count();
    sidecar.stop();
    drop(sidecar);
    etcd.stop();
    remove_dir(&etcd.data_dir);

    let max = samples.iter().copied().max().unwrap_or(0);
    let mean = samples.iter().sum::<u64>() / samples.len().max(1) as u64;
    let mut sorted = samples.clone();
    sorted.sort_unstable();
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    println!();
    println!(
        "== rss: etcdbr server ({}, MinIO) while {tasks} tasks put 512-byte random values at a target of {rate}/s for {secs} s",
        extra.join(" ")
    );
    let mut vars = vec![
        ("DRUID_BENCH", "rss".to_string()),
        ("DRUID_BENCH_LOAD_SECS", secs.to_string()),
        ("DRUID_BENCH_LOAD_RATE", rate.to_string()),
        ("DRUID_BENCH_LOAD_TASKS", tasks.to_string()),
    ];
    if let Ok(args) = std::env::var("DRUID_BENCH_SIDECAR_ARGS") {
        vars.push(("DRUID_BENCH_SIDECAR_ARGS", format!("'{args}'")));
    }
    println!("   reproduce: {}", reproduce(&vars));
    let kv = |k: &str, v: String| println!("{k:<50} {v}");
    kv("puts done", done.to_string());
    kv(
        "achieved puts/s",
        format!("{:.0}", done as f64 / elapsed.as_secs_f64()),
    );
    kv(
        "deltas uploaded (Incr- objects / latest set)",
        format!(
            "{} / {latest_deltas} ({early} cut early at the memory limit)",
            incr.len()
        ),
    );
    kv(
        "delta bytes stored (gzip)",
        format!(
            "{:.1} MiB ({:.0} KiB per delta)",
            mib(incr_bytes),
            incr_bytes as f64 / 1024.0 / incr.len().max(1) as f64
        ),
    );
    kv(
        "sidecar RSS before load",
        format!("{:.1} MiB", kib_to_mib(start_rss)),
    );
    kv(
        "sidecar RSS sampled every 100 ms",
        format!(
            "max {:.1} MiB, median {:.1} MiB, mean {:.1} MiB ({} samples)",
            kib_to_mib(max),
            kib_to_mib(p50),
            kib_to_mib(mean),
            samples.len()
        ),
    );
    kv(
        "sidecar peak RSS (VmHWM)",
        format!(
            "{:.1} MiB (goal < 100 MiB: {})",
            kib_to_mib(hwm),
            if hwm < 100 * 1024 { "met" } else { "MISSED" }
        ),
    );
    kv(
        "etcd revision at the end / store's last revision",
        format!("{revision} / {final_store_revision}"),
    );
    kv(
        "revisions not yet in the store when the load ended",
        behind.to_string(),
    );
    kv(
        "CPU during load + catch-up: sidecar / etcd",
        format!(
            "{:.1} s / {:.1} s (sidecar: {:.0} µs per revision)",
            cpu.0,
            cpu.1,
            cpu.0 * 1e6 / done.max(1) as f64
        ),
    );
    kv(
        "store caught up after the load ended",
        match caught_up {
            Some(d) => format!("yes, after {:.1} s", d.as_secs_f64()),
            None => "NO (not within 120 s)".into(),
        },
    );
    let _ = b
        .mc()
        .args(["rm", "--recursive", "--force"])
        .arg(format!("druid/{BUCKET}/{prefix}/"))
        .output();
}

// ---------------------------------------------------------------- main

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        compact_child(&mode);
        return;
    }
    let scenarios = env_list("DRUID_BENCH", "upload,restore,compact,rss");
    for s in &scenarios {
        assert!(
            ["upload", "restore", "compact", "rss"].contains(&s.as_str()),
            "DRUID_BENCH: unknown scenario {s} (upload, restore, compact, rss)"
        );
    }
    let on = |s: &str| scenarios.iter().any(|x| x == s);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bench = Bench::start();
    println!(
        "etcdbr bench: {} (etcd {}, MinIO and everything on loopback, 2 cores)",
        scenarios.join(","),
        bench.etcd.display()
    );

    if on("upload") || on("restore") || on("compact") {
        let db_mib = env_u64("DRUID_BENCH_DB_MIB", 1024);
        wait_for_quiet_machine();
        let mut etcd = Etcd::new("filled", None);
        let quota = (db_mib << 20).saturating_mul(3).max(8 << 30);
        etcd.start(&bench.etcd, &[format!("--quota-backend-bytes={quota}")]);
        eprintln!("filling etcd with {db_mib} MiB");
        let t = Instant::now();
        let filled = rt.block_on(fill(&etcd, db_mib << 20));
        eprintln!(
            "filled: {} keys, db size {:.0} MiB, revision {}, in {:.1} s",
            filled.keys,
            mib(filled.db_size),
            filled.revision,
            t.elapsed().as_secs_f64()
        );
        let local_db = on("upload").then(|| upload_scenario(&bench, &etcd, &filled, db_mib));
        if on("restore") || on("compact") {
            restore_scenario(
                &bench,
                &rt,
                etcd,
                &filled,
                db_mib,
                local_db,
                on("restore"),
                on("compact"),
            );
        } else {
            if let Some(f) = local_db {
                let _ = std::fs::remove_file(f);
            }
            etcd.stop();
            remove_dir(&etcd.data_dir);
        }
    }
    if on("rss") {
        rss_scenario(&bench, &rt);
    }

    let minio_data = bench.minio_data.clone();
    drop(bench);
    remove_dir(&minio_data);
}
