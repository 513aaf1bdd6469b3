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
//! - `copy`: that full snapshot and those deltas in a Local store, copied
//!   to MinIO by `etcdbr copy` against `mc mirror` of the same files, and
//!   `etcdbr copy` again when everything is there (sizes and SHA-256
//!   compared);
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

mod common;
mod compact;
mod copy;
mod restore;
mod rss;
mod upload;

use std::time::Instant;

use common::*;
use compact::{CHILD_ENV, compact_child};
use restore::{Runs, restore_scenario};
use rss::rss_scenario;
use upload::upload_scenario;

// ---------------------------------------------------------------- main

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        compact_child(&mode);
        return;
    }
    let scenarios = env_list("DRUID_BENCH", "upload,restore,compact,copy,rss");
    for s in &scenarios {
        assert!(
            ["upload", "restore", "compact", "copy", "rss"].contains(&s.as_str()),
            "DRUID_BENCH: unknown scenario {s} (upload, restore, compact, copy, rss)"
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

    if on("upload") || on("restore") || on("compact") || on("copy") {
        let db_mib = env_u64("DRUID_BENCH_DB_MIB", 1024);
        wait_for_quiet_machine();
        let mut config = bench.etcd("filled", None);
        let quota = (db_mib << 20).saturating_mul(3).max(8 << 30);
        config.extra_args = vec![format!("--quota-backend-bytes={quota}")];
        let etcd = config.start().unwrap();
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
        if on("restore") || on("compact") || on("copy") {
            restore_scenario(
                &bench,
                &rt,
                etcd,
                &filled,
                db_mib,
                local_db,
                Runs {
                    restore: on("restore"),
                    compact: on("compact"),
                    copy: on("copy"),
                },
            );
        } else {
            if let Some(f) = local_db {
                let _ = std::fs::remove_file(f);
            }
            etcd.stop();
            remove_dir(etcd.data_dir());
        }
    }
    if on("rss") {
        rss_scenario(&bench, &rt);
    }

    let minio_data = bench.minio_data.clone();
    drop(bench);
    remove_dir(&minio_data);
}
