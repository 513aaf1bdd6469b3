//! A store written by the Go sidecar (gardener/etcd-backup-restore,
//! v0.44.0-dev, from etcd 3.4.23, gzip; `tests/data/upstream-local-store`,
//! whose README says what the source held) is restored by the real
//! `etcdbr restore`, by both restore methods, and every key, value
//! (length and SHA-256), create and mod revision, version and lease is
//! compared with what the source etcd held.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{EtcdClient as _, Kv, Store, dump, etcdbr};
use druid_test_support::{EtcdMemberConfig, server_dir};
use etcd_client::LeaseTimeToLiveOptions;
use sha2::{Digest as _, Sha256};

/// The revision of the full snapshot in the fixture (`Full-…-00000302`).
const FULL_REVISION: i64 = 302;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/upstream-local-store")
}

/// A key as `expected-keys.txt` and `expected-key-leases.txt` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    create: i64,
    modified: i64,
    version: i64,
    len: usize,
    sha16: String,
    lease: i64,
}

/// `name=value` fields of a fixture line after its JSON-quoted key.
fn fields(line: &str) -> (Vec<u8>, BTreeMap<String, String>) {
    let end = line[1..].find("\" ").unwrap() + 2;
    let key: String = serde_json::from_str(&line[..end]).unwrap();
    let fields = line[end..]
        .split_whitespace()
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    (key.into_bytes(), fields)
}

fn expected_keys() -> BTreeMap<Vec<u8>, Expected> {
    let dir = fixture();
    let leases: BTreeMap<Vec<u8>, i64> =
        std::fs::read_to_string(dir.join("expected-key-leases.txt"))
            .unwrap()
            .lines()
            .map(|l| {
                let (key, f) = fields(l);
                (key, i64::from_str_radix(&f["lease"], 16).unwrap())
            })
            .collect();
    std::fs::read_to_string(dir.join("expected-keys.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (key, f) = fields(l);
            let lease = leases[&key];
            (
                key,
                Expected {
                    create: f["create"].parse().unwrap(),
                    modified: f["mod"].parse().unwrap(),
                    version: f["ver"].parse().unwrap(),
                    len: f["len"].parse().unwrap(),
                    sha16: f["sha"].clone(),
                    lease,
                },
            )
        })
        .collect()
}

/// The leases alive in the source: ID → (granted TTL, keys).
fn expected_leases() -> BTreeMap<i64, (i64, usize)> {
    std::fs::read_to_string(fixture().join("expected-leases.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let id = i64::from_str_radix(parts.next().unwrap(), 16).unwrap();
            let f: BTreeMap<&str, &str> = parts.map(|p| p.split_once('=').unwrap()).collect();
            (
                id,
                (f["granted"].parse().unwrap(), f["keys"].parse().unwrap()),
            )
        })
        .collect()
}

fn sha16(value: &[u8]) -> String {
    Sha256::digest(value)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

struct Restored {
    keys: BTreeMap<Vec<u8>, Kv>,
    revision: i64,
    /// Lease ID → (granted TTL, keys), for the source's leases still alive.
    leases: BTreeMap<i64, (i64, usize)>,
    log: String,
}

/// The fixture's store in a new directory (`label`): a Local store of
/// prefix "".
fn fixture_store(label: &str) -> Store {
    let root = server_dir(&format!("upstream-store-{label}")).unwrap();
    copy_dir(&fixture().join("store"), &root.join("store"));
    Store::Local {
        root,
        container: "store".into(),
    }
}

/// Restores the fixture's store with `--restore-method=<method>` into a
/// new member, starts it and reads everything back.
async fn restore(method: &str) -> Restored {
    restore_from(&fixture_store(method), "", method).await
}

/// Restores `store` (below `prefix`) with `--restore-method=<method>` into
/// a new member, starts it and reads everything back.
async fn restore_from(store: &Store, prefix: &str, method: &str) -> Restored {
    let target = EtcdMemberConfig::new(&format!("upstream-{method}")).unwrap();
    let mut args = vec![
        "restore".into(),
        format!("--restore-method={method}"),
        format!("--store-prefix={prefix}"),
    ];
    args.extend(common::restore_flags(&target));
    let out = etcdbr(store, &args);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "etcdbr restore ({method}): {log}");
    let member = target.start().unwrap();
    let mut client = member.client().await;
    let (keys, revision) = dump(&mut client).await;
    let mut leases = BTreeMap::new();
    for id in expected_leases().into_keys() {
        let r = client
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        if r.ttl() > 0 {
            leases.insert(id, (r.granted_ttl(), r.keys().len()));
        }
    }
    Restored {
        keys,
        revision,
        leases,
        log,
    }
}

/// Every key is there with its value and revisions, and nothing else;
/// `lease` says which lease each key must carry.
fn assert_keys(got: &Restored, lease: impl Fn(&Expected) -> i64) {
    let expected = expected_keys();
    assert_eq!(expected.len(), 3075, "the fixture's keys");
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.keys.contains_key(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let extra: Vec<_> = got
        .keys
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (key, want) in &expected {
        let kv = &got.keys[key];
        let name = String::from_utf8_lossy(key);
        let found = Expected {
            create: kv.create_revision,
            modified: kv.mod_revision,
            version: kv.version,
            len: kv.value.len(),
            sha16: sha16(&kv.value),
            lease: kv.lease,
        };
        let want = Expected {
            lease: lease(want),
            ..want.clone()
        };
        assert_eq!(found, want, "key {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_sidecar_store_restores_by_compaction_with_every_key_revision_and_lease() {
    let got = restore("compaction").await;
    assert!(got.log.contains("compacted"), "{}", got.log);
    assert_eq!(got.revision, 1945, "the source's revision");
    // Better than the Go sidecar: the lease granted after the full
    // snapshot survives with its keys.
    assert_keys(&got, |want| want.lease);
    // Its TTL is in no snapshot (a delta's events name the lease, not its
    // TTL), so it is granted `--unknown-lease-ttl`, by default the longest
    // TTL of the full snapshot's leases (here 7200 s; the source granted
    // 5400 s). Every other lease is exactly the source's.
    let mut want = expected_leases();
    let longest_in_full = 7200;
    for (granted, _) in want.values_mut() {
        if *granted == 5400 {
            *granted = longest_in_full;
        }
    }
    assert_eq!(got.leases, want, "granted TTLs and keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_sidecar_store_restores_by_replay_as_the_go_sidecar_does() {
    let got = restore("replay").await;
    assert!(got.log.contains("delta applied"), "{}", got.log);
    assert_eq!(got.revision, 1945, "the source's revision");
    // As upstream: a replayed put carries no lease, so a key keeps its
    // lease only if its last write is in the full snapshot.
    assert_keys(&got, |want| {
        if want.modified <= FULL_REVISION {
            want.lease
        } else {
            0
        }
    });
    let leases = expected_leases();
    let (id, (granted, _)) = leases
        .iter()
        .find(|(_, (granted, _))| *granted == 7200)
        .unwrap();
    assert_eq!(
        got.leases.get(id).map(|(g, _)| *g),
        Some(*granted),
        "the lease of the full snapshot is alive: {:?}",
        got.leases
    );
}

/// `etcdbr copy` from `source` (below `from`) to `target` (below `to`)
/// with `extra` flags: its JSON report, or its log on failure.
fn copy(
    source: &Store,
    from: &str,
    target: &Store,
    to: &str,
    extra: &[&str],
) -> Result<serde_json::Value, String> {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_etcdbr"));
    c.args([
        "copy",
        &format!("--store-prefix={to}"),
        &format!("--source-store-prefix={from}"),
    ])
    .args(extra);
    druid_test_support::etcdbr_store_tool_flags(
        &mut c,
        druid_test_support::plugin_components().dir(),
    );
    target.args(&mut c);
    source.source_args(&mut c);
    let out = common::output_within(c, std::time::Duration::from_secs(300), "etcdbr copy");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(log);
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {log}")))
}

/// The object keys of `store` below `prefix` with their sizes.
fn sizes(store: &Store, prefix: &str) -> BTreeMap<String, usize> {
    store
        .keys(prefix)
        .into_iter()
        .map(|k| {
            let name = k.rsplit('/').next().unwrap().to_string();
            let len = store.read(&k).len();
            (name, len)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_sidecar_store_copied_to_minio_and_back_restores_every_key() {
    let go = fixture_store("copy");
    let minio = Store::minio("copy");
    let back = Store::local("copy-back");
    // Waiting for a final snapshot the source does not have fails after
    // the timeout, naming what to do, and copies nothing.
    let err = copy(
        &go,
        "",
        &minio,
        "moved",
        &[
            "--wait-for-final-snapshot=true",
            "--wait-for-final-snapshot-timeout=2s",
            "--wait-for-final-snapshot-poll=1s",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("no final full snapshot appeared") && err.contains("isFinal: true"),
        "{err}"
    );
    assert!(minio.keys("moved/").is_empty());

    // Local (the Go sidecar's own output) → MinIO: every object, same bytes.
    let report = copy(&go, "", &minio, "moved", &[]).unwrap();
    assert_eq!(report["copied"], 4, "{report}");
    let source = sizes(&go, "v2/");
    assert_eq!(source.len(), 4);
    assert_eq!(sizes(&minio, "moved/v2/"), source);
    for name in source.keys() {
        assert_eq!(
            minio.read(&format!("moved/v2/{name}")),
            go.read(&format!("v2/{name}")),
            "{name}"
        );
    }
    // Rerun: nothing copied again.
    let report = copy(&go, "", &minio, "moved", &[]).unwrap();
    assert_eq!(
        (report["copied"].as_u64(), report["skipped"].as_u64()),
        (Some(0), Some(4)),
        "{report}"
    );

    // MinIO → Local; a copy whose content differs at the same size is
    // copied again, the others are skipped.
    copy(&minio, "moved", &back, "home", &[]).unwrap();
    let Store::Local { root, container } = &back else {
        unreachable!()
    };
    let tampered = root
        .join(container)
        .join("home/v2/Incr-00000865-00001414-1796388486.gz");
    let mut bytes = std::fs::read(&tampered).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&tampered, &bytes).unwrap();
    let report = copy(&minio, "moved", &back, "home", &[]).unwrap();
    assert_eq!(
        (report["copied"].as_u64(), report["skipped"].as_u64()),
        (Some(1), Some(3)),
        "{report}"
    );
    // Only the newest full snapshot and its deltas: here the only one.
    let newest = copy(
        &minio,
        "moved",
        &Store::local("copy-newest"),
        "",
        &["--max-backups-to-copy=1"],
    )
    .unwrap();
    assert_eq!(newest["copied"], 4, "{newest}");

    // The copy of the copy restores every key, revision and lease.
    let got = restore_from(&back, "home", "compaction").await;
    assert_eq!(got.revision, 1945, "the source's revision");
    assert_keys(&got, |want| want.lease);
}
