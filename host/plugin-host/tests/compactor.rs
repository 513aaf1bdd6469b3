//! The compactor plugin under the host: the same bytes as the native
//! compaction, its errors in host terms, and the limits always on (memory,
//! CPU time, output size).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use druid_etcd_db::{
    CompactOptions, DbWriter, DeltaInput, Event, EventType, KEY_BUCKET, KeyValue, LEASE_BUCKET,
    Lease, META_BUCKET, Revision, SnapshotInfo, encode_delta, lease_key,
};
use druid_plugin_host::{CompactJob, CompactionError, Error, Limits, PluginHost, Registry};
use druid_test_support::server_dir;
use prost::Message as _;

/// A base of `keys` keys at revisions 1..=keys (key i leased to lease 7
/// when i is even) and deltas of `per_delta` overwrites and deletes, in
/// files under a fresh directory.
struct Inputs {
    dir: PathBuf,
    base: PathBuf,
    deltas: Vec<(SnapshotInfo, PathBuf)>,
}

fn kv(i: u64, rev: i64, version: i64, value_len: usize) -> KeyValue {
    KeyValue {
        key: format!("/registry/pods/{i:06}").into_bytes(),
        create_revision: (i + 1) as i64,
        mod_revision: rev,
        version,
        value: vec![(i % 251) as u8; value_len],
        lease: if i.is_multiple_of(2) { 7 } else { 0 },
    }
}

fn inputs(label: &str, keys: u64, deltas: u64, per_delta: u64, value_len: usize) -> Inputs {
    let dir = server_dir(label).unwrap();
    let mut db = Vec::new();
    let mut w = DbWriter::new(&mut db);
    w.begin_bucket(KEY_BUCKET, 0).unwrap();
    for i in 0..keys {
        let rev = Revision {
            main: (i + 1) as i64,
            sub: 0,
        };
        w.put(
            &rev.to_key(),
            &kv(i, rev.main, 1, value_len).encode_to_vec(),
        )
        .unwrap();
    }
    w.end_bucket().unwrap();
    w.begin_bucket(LEASE_BUCKET, 0).unwrap();
    let lease = Lease {
        id: 7,
        ttl: 90,
        remaining_ttl: 0,
    };
    w.put(&lease_key(7), &lease.encode_to_vec()).unwrap();
    w.end_bucket().unwrap();
    w.begin_bucket(META_BUCKET, 0).unwrap();
    w.put(b"consistent_index", &9u64.to_be_bytes()).unwrap();
    w.end_bucket().unwrap();
    w.finish(0).unwrap();
    let base = dir.join("base.db");
    std::fs::write(&base, &db).unwrap();
    let mut out = Vec::new();
    let mut rev = keys as i64;
    for d in 0..deltas {
        let start = rev + 1;
        let events: Vec<Event> = (0..per_delta)
            .map(|e| {
                rev += 1;
                let i = (d * per_delta + e) % keys;
                if e % 5 == 4 {
                    Event {
                        kind: EventType::Delete,
                        kv: KeyValue {
                            key: kv(i, rev, 0, 0).key,
                            mod_revision: rev,
                            ..Default::default()
                        },
                    }
                } else {
                    // A lease no snapshot grants: recreated by the policy.
                    let mut k = kv(i, rev, 2, value_len);
                    k.lease = if e % 3 == 0 { 0x51 } else { k.lease };
                    k.create_revision = rev;
                    k.version = 1;
                    Event {
                        kind: EventType::Put,
                        kv: k,
                    }
                }
            })
            .collect();
        let info = SnapshotInfo {
            name: format!("Incr-{start:08}-{rev:08}-1700000000.gz"),
            start_revision: start,
            last_revision: rev,
        };
        let path = dir.join(format!("delta-{d}"));
        std::fs::write(&path, encode_delta(&events, "2024-01-01T00:00:00Z")).unwrap();
        out.push((info, path));
    }
    Inputs {
        dir,
        base,
        deltas: out,
    }
}

fn job(i: &Inputs, limits: Limits) -> CompactJob {
    CompactJob {
        base: SnapshotInfo {
            name: "Full-00000000-00000001-1700000000.gz".into(),
            start_revision: 0,
            last_revision: 1,
        },
        base_file: i.base.clone(),
        deltas: i.deltas.clone(),
        output: i.dir.join("out.db"),
        scratch: i.dir.join("scratch"),
        options: CompactOptions {
            sort_memory_bytes: 4096,
            ..CompactOptions::default()
        },
        limits,
        max_output_bytes: 1 << 30,
    }
}

fn compaction_limits() -> Limits {
    Limits {
        memory_bytes: 256 << 20,
        call_cpu_time: Duration::from_secs(600),
        call_timeout: Duration::from_secs(600),
        max_return_bytes: 16 << 20,
    }
}

async fn registry() -> Registry {
    common::registry(Limits::default()).await
}

fn native(i: &Inputs, options: &CompactOptions) -> (Vec<u8>, druid_etcd_db::CompactReport) {
    let open = |p: &Path| std::fs::read(p).unwrap();
    let deltas: Vec<DeltaInput<Vec<u8>>> = i
        .deltas
        .iter()
        .map(|(info, p)| DeltaInput {
            info: info.clone(),
            data: open(p),
        })
        .collect();
    let mut out = Vec::new();
    let base = SnapshotInfo {
        name: "Full-00000000-00000001-1700000000.gz".into(),
        start_revision: 0,
        last_revision: 1,
    };
    let report =
        druid_etcd_db::compact(&base, open(&i.base), &deltas, &mut out, Vec::new(), options)
            .unwrap();
    (out, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_writes_the_same_bytes_as_the_native_code() {
    let i = inputs("compactor-same", 3000, 4, 1500, 300);
    let registry = registry().await;
    let job = job(&i, compaction_limits());
    let report = registry.compact(&job).await.unwrap();
    let (expected, native_report) = native(&i, &job.options);
    let got = std::fs::read(&job.output).unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the plugin's database differs from the native one"
    );
    assert_eq!(report, native_report);
    assert_eq!(report.revision, 3000 + 4 * 1500);
    assert!(
        report.leases_recreated == 1 && report.recreated_lease_ttl == 90,
        "{report:?}"
    );
    assert!(
        report.spilled_bytes > 0,
        "a 4 KiB sort budget spills: {report:?}"
    );
    assert!(!job.scratch.exists(), "the scratch file is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_invalid_input_naming_the_snapshots() {
    let mut i = inputs("compactor-gap", 100, 3, 50, 10);
    i.deltas.remove(1);
    let registry = registry().await;
    let err = registry
        .compact(&job(&i, compaction_limits()))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CompactionError::InvalidInput(_)), "{err:?}");
    assert!(
        text.contains("Incr-00000101-00000150") && text.contains("Incr-00000201-00000250"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_are_always_on() {
    let i = inputs("compactor-limits", 2000, 1, 20_000, 1000);
    let registry = registry().await;

    // Memory: a 20 MiB delta does not fit in 16 MiB of linear memory.
    let small = Limits {
        memory_bytes: 16 << 20,
        ..compaction_limits()
    };
    let err = registry.compact(&job(&i, small)).await.unwrap_err();
    assert!(
        matches!(err, CompactionError::Plugin(Error::MemoryLimit { .. })),
        "{err:?}"
    );

    // CPU time.
    let quick = Limits {
        call_cpu_time: Duration::from_millis(20),
        ..compaction_limits()
    };
    let err = registry.compact(&job(&i, quick)).await.unwrap_err();
    assert!(
        matches!(err, CompactionError::Plugin(Error::Timeout { .. })),
        "{err:?}"
    );

    // The output's size.
    let mut capped = job(&i, compaction_limits());
    capped.max_output_bytes = 64 << 10;
    let err = registry.compact(&capped).await.unwrap_err();
    assert!(matches!(err, CompactionError::Io(_)), "{err:?}");
    assert!(err.to_string().contains("may hold"), "{err}");

    // And the host still serves: the same job with room succeeds.
    let report = registry
        .compact(&job(&i, compaction_limits()))
        .await
        .unwrap();
    assert_eq!(report.revision, 2000 + 20_000);
}

#[tokio::test]
async fn without_a_compactor_plugin_the_error_says_what_to_add() {
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());
    let registry = Registry::load(host, None, &[]).await.unwrap();
    let i = inputs("compactor-none", 10, 1, 5, 1);
    let err = registry
        .compact(&job(&i, compaction_limits()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CompactionError::NoCompactor { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("druid_plugin_compactor.wasm"),
        "{err}"
    );
}

/// A registry whose only plugin is the hostile test compactor
/// (`tests/plugins/hostile-compactor`), so it is the compactor.
async fn hostile_compactor() -> Registry {
    let components = druid_test_support::plugin_components();
    let hostile = std::fs::read(components.get("druid-test-plugin-hostile-compactor")).unwrap();
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());
    Registry::load(host, None, &[("hostile-compactor", &hostile)])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compactor_that_drops_a_key_is_caught_by_the_content_check() {
    let i = inputs("compactor-hostile", 400, 2, 100, 20);
    let registry = hostile_compactor().await;
    let job = job(&i, compaction_limits());
    let err = registry.compact(&job).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, CompactionError::WrongContent { .. }),
        "{err:?}"
    );
    // Its output passes every structural check: only the content differs.
    let out = std::fs::read(&job.output).unwrap();
    let db = druid_etcd_db::Db::open(out.as_slice()).unwrap();
    db.check().unwrap();
    let (_, honest) = native(&i, &job.options);
    assert!(
        text.contains("hostile-compactor")
            && text.contains(&format!(
                "{} live keys, but the snapshots give {}",
                honest.keys - 1,
                honest.keys
            )),
        "{text}"
    );
    assert!(
        !std::path::Path::new(&format!("{}.host", job.scratch.display())).exists(),
        "the host's scratch file is removed"
    );

    // The honest compactor's output of the same job passes the check.
    let report = self::registry().await.compact(&job).await.unwrap();
    assert_eq!(report.keys, honest.keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_side_hashing_is_charged_to_the_calls_cpu_budget() {
    let i = inputs("compactor-hash-forever", 400, 1, 10, 20);
    let registry = hostile_compactor().await;
    // The plugin does next to nothing itself: it asks the host to hash
    // the base over and over. Charged, that host time exhausts the CPU
    // budget; uncharged, the call would run to its wall-clock limit.
    let limits = Limits {
        call_cpu_time: Duration::from_millis(300),
        call_timeout: Duration::from_secs(300),
        ..compaction_limits()
    };
    let mut j = job(&i, limits);
    j.base.name = "hash-forever".into();
    let err = registry.compact(&j).await.unwrap_err();
    assert!(
        matches!(err, CompactionError::Plugin(Error::Timeout { .. })),
        "{err:?}"
    );
}
