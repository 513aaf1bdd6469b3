//! The `compact` scenario: native compaction, the compactor plugin and the host's content check, each in a child process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use druid_backup_restore::formats::compression::Compression;
use druid_backup_restore::formats::names::Snapshot;
use druid_test_support::{cache_dir, plugin_components};

use crate::common::*;

// ---------------------------------------------------------------- compact

/// Set in a child process of the bench: `native` or `wasm`.
pub(crate) const CHILD_ENV: &str = "DRUID_BENCH_COMPACT_CHILD";

/// The compaction in a child process, so that its peak RSS is its own:
/// args `<base> <out> <scratch> <plugins dir> <cache dir> <sort MiB>
/// <delta name>=<path>...`; prints one JSON line.
pub(crate) fn compact_child(mode: &str) {
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
pub(crate) fn compact_scenario(
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
            druid_backup_restore::formats::compression::decompress(Compression::Gzip, &raw)
                .unwrap();
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
        let out = Command::new(&b.restore_tool)
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

pub(crate) fn walk_files(dir: &Path) -> Vec<PathBuf> {
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
