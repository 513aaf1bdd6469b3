//! The `restore` scenario: a full snapshot plus synthetic deltas restored by compaction and by replay.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use druid_backup_restore::formats::compression::Compression;
use druid_backup_restore::formats::delta::{DeltaBuilder, DeltaEvent, Event, EventType, KeyValue};
use druid_backup_restore::formats::names::{Snapshot, SnapshotKind};
use druid_test_support::{EtcdMember, EtcdMemberConfig};

use crate::common::*;
use crate::compact::compact_scenario;

// ---------------------------------------------------------------- restore

/// Writes `deltas` delta objects of `events` PUTs each below `out`, keyed
/// as `Snapshot::key(prefix)`, continuing after `base`. Event `g` (0-based)
/// is revision `base + 1 + g` on key `g % events`, so every key is created
/// in the first delta and modified once per later delta. Returns the last
/// key and value.
pub(crate) fn build_deltas(
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

pub(crate) struct RestoreRun {
    pub(crate) place: String,
    pub(crate) method: String,
    pub(crate) base_only: Measured,
    pub(crate) full: Measured,
    pub(crate) replay_steady: Option<(f64, u64)>,
    pub(crate) serving: Duration,
    pub(crate) etcdctl_only: Measured,
}

#[allow(clippy::too_many_arguments, reason = "a bench step")]
pub(crate) fn restore_once(
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
    let restore = |prefix: &str, etcd: &EtcdMemberConfig| {
        let mut c = b.etcdbr("restore", prefix);
        c.arg(format!("--data-dir={}", etcd.data_dir.display()))
            .arg(format!(
                "--restoration-temp-snapshots-dir={}",
                root.join("restore-tmp").display()
            ))
            .arg(format!("--name={}", etcd.name))
            .arg(format!("--initial-cluster={}", etcd.initial_cluster()))
            .arg(format!("--initial-cluster-token={}", etcd.token))
            .arg(format!("--initial-advertise-peer-urls={}", etcd.peer_url()))
            .arg(format!("--etcd-binary={}", b.etcd.display()))
            .arg(format!("--etcdctl-binary={}", b.restore_tool.display()))
            .arg(format!("--restore-method={method}"));
        let name = format!("etcdbr-restore-{prefix}-{method}-{place}");
        run_measured(&name, c, &b.dir.join(format!("{name}.log")))
    };

    // The full snapshot alone: download, check, etcdctl snapshot restore.
    eprintln!("restore ({place}): base only");
    let base_etcd = b.etcd(&format!("base-{place}"), Some(root.join("base-data")));
    let base_only = restore("restore-base", &base_etcd);
    remove_dir(&base_etcd.data_dir);
    remove_dir(&base_etcd.dir);

    // The lower bound: etcdctl snapshot restore of a local file.
    eprintln!("restore ({place}): etcdctl snapshot restore alone");
    let mut c = Command::new(&b.restore_tool);
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
    let restored = b.etcd(&format!("restored-{place}"), Some(root.join("data")));
    let full = restore("restore", &restored);
    let applied = log_times(&full.log, "delta applied");
    let replay_steady = (applied.len() >= 2).then(|| {
        let secs = (applied[applied.len() - 1] - applied[0]).as_seconds_f64();
        let n = (applied.len() as u64 - 1) * events;
        (n as f64 / secs, n)
    });

    // etcd on the restored data until it serves the last key.
    eprintln!("restore ({place}): etcd on the restored data");
    let started = Instant::now();
    let etcd = restored.start().unwrap();
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
    remove_dir(etcd.dir());
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
/// Which parts of the restore scenario run on its full snapshot and
/// deltas.
pub(crate) struct Runs {
    /// The restores.
    pub(crate) restore: bool,
    /// The compaction (native and wasm).
    pub(crate) compact: bool,
    /// The copy (`crate::copy`).
    pub(crate) copy: bool,
}

pub(crate) fn restore_scenario(
    b: &Bench,
    rt: &tokio::runtime::Runtime,
    etcd: EtcdMember,
    filled: &Filled,
    db_mib: u64,
    local_db: Option<PathBuf>,
    runs: Runs,
) {
    let Runs {
        restore: run_restore,
        compact: run_compact,
        copy: run_copy,
    } = runs;
    wait_for_quiet_machine();
    b.warm_plugin_cache();
    let deltas = env_u64("DRUID_BENCH_DELTAS", 100);
    let events = env_u64("DRUID_BENCH_DELTA_EVENTS", 10_000);
    let places = env_list("DRUID_BENCH_RESTORE_ON", "disk");
    let methods = env_list("DRUID_BENCH_RESTORE_METHODS", "compaction,replay");

    eprintln!("restore: full snapshot with etcdbr snapshot");
    let mut c = b.etcdbr("snapshot", "restore");
    c.arg(format!("--endpoints={}", etcd.client_url()))
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
            .arg(format!("--endpoints={}", etcd.client_url()))
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
    remove_dir(etcd.data_dir());

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
    if run_copy {
        crate::copy::copy_scenario(b);
    }

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
