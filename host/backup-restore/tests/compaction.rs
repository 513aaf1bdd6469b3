//! Compaction and restore without replay, on real parts: a real etcd driven
//! with random operations (puts, overwrites, deletes, prefix deletes,
//! transactions, keys with leases, lease grants and revocations), the real
//! sidecar taking a full snapshot and deltas in the upstream formats, the
//! real `etcdbr restore` and `etcdbr compact` with the compactor plugin,
//! and the output checked by `etcdctl snapshot status`, `etcdctl snapshot
//! restore` (hash checked) and a real etcd serving it.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{EtcdClient as _, Kv, Sidecar, SidecarOptions, Store, dump, etcdbr};
use druid_test_support::EtcdMemberConfig;
use etcd_client::{Client, DeleteOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp};

/// A small deterministic generator (the seed is printed, so a failure can
/// be replayed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The leases the random writer made.
#[derive(Default)]
struct Leases {
    /// Granted before the full snapshot: id → TTL.
    base: BTreeMap<i64, i64>,
    /// Granted after it.
    later: BTreeMap<i64, i64>,
    /// Revoked.
    revoked: BTreeSet<i64>,
}

impl Leases {
    fn live(&self) -> Vec<i64> {
        self.base
            .keys()
            .chain(self.later.keys())
            .filter(|id| !self.revoked.contains(id))
            .copied()
            .collect()
    }
}

async fn random_ops(
    client: &mut Client,
    rng: &mut Rng,
    leases: &mut Leases,
    after_full: bool,
    n: usize,
) {
    let key = |rng: &mut Rng| format!("/registry/k{:03}", rng.below(160));
    let value = |rng: &mut Rng| {
        let len = rng.below(1500) as usize;
        (0..len)
            .map(|i| (i as u64 ^ rng.next()) as u8)
            .collect::<Vec<u8>>()
    };
    for _ in 0..n {
        let live = leases.live();
        let op = rng.below(100);
        match op {
            0..=34 => {
                client.put(key(rng), value(rng), None).await.unwrap();
            }
            35..=49 => {
                client.delete(key(rng), None).await.unwrap();
            }
            50..=59 => {
                let ops: Vec<TxnOp> = (0..2 + rng.below(4))
                    .map(|_| {
                        if rng.below(3) == 0 {
                            TxnOp::delete(key(rng), None)
                        } else {
                            TxnOp::put(key(rng), value(rng), None)
                        }
                    })
                    .collect();
                // A key twice in one txn is refused by etcd; that's fine.
                let _ = client.txn(Txn::new().and_then(ops)).await;
            }
            60..=62 => {
                let prefix = format!("/registry/k{}", rng.below(16));
                client
                    .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                    .await
                    .unwrap();
            }
            63..=69 => {
                let ttl = 600 + rng.below(1200) as i64;
                let id = client.lease_grant(ttl, None).await.unwrap().id();
                if after_full {
                    leases.later.insert(id, ttl);
                } else {
                    leases.base.insert(id, ttl);
                }
                // Every lease gets a key, so it is in the data.
                client
                    .put(
                        format!("/leased/{id:x}"),
                        value(rng),
                        Some(PutOptions::new().with_lease(id)),
                    )
                    .await
                    .unwrap();
            }
            70..=71 if live.len() > 2 => {
                let id = live[rng.below(live.len() as u64) as usize];
                client.lease_revoke(id).await.unwrap();
                leases.revoked.insert(id);
            }
            _ if !live.is_empty() => {
                let id = live[rng.below(live.len() as u64) as usize];
                client
                    .put(key(rng), value(rng), Some(PutOptions::new().with_lease(id)))
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `etcdctl` on 3.4, `etcdutl` from 3.5 (`snapshot restore` and `status`).
fn etcdctl(args: &[String]) -> String {
    let out = Command::new(druid_test_support::restore_binary().unwrap())
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    ok(&out)
}

/// Every key of the restored etcd equals the original's, and the revision
/// is the original's.
fn assert_same(
    expected: &BTreeMap<Vec<u8>, Kv>,
    revision: i64,
    got: &BTreeMap<Vec<u8>, Kv>,
    got_revision: i64,
) {
    assert_eq!(got_revision, revision, "the revision after the restore");
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (k, v) in expected {
        assert_eq!(got.get(k), Some(v), "key {}", String::from_utf8_lossy(k));
    }
}

/// The TTL etcd granted each lease that holds keys.
async fn granted_ttls(
    client: &mut Client,
    ids: impl Iterator<Item = i64>,
) -> BTreeMap<i64, (i64, usize)> {
    let mut out = BTreeMap::new();
    for id in ids {
        let r = client
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        if r.ttl() > 0 {
            out.insert(id, (r.granted_ttl(), r.keys().len()));
        }
    }
    out
}

/// An etcd member restored from a snapshot file with `etcdctl`, hash
/// checked.
fn restored_member(label: &str, snapshot: &std::path::Path) -> EtcdMemberConfig {
    let etcd = EtcdMemberConfig::new(label).unwrap();
    etcdctl(&[
        "snapshot".into(),
        "restore".into(),
        snapshot.display().to_string(),
        format!("--data-dir={}", etcd.data_dir.display()),
        format!("--name={}", etcd.name),
        format!("--initial-cluster={}", etcd.initial_cluster()),
        format!("--initial-cluster-token={}", etcd.token),
        format!("--initial-advertise-peer-urls={}", etcd.peer_url()),
    ]);
    etcd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_restore_serve_exactly_the_data_and_leases_of_the_original() {
    let seed = std::env::var("DRUID_COMPACTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15u64);
    eprintln!("random operations with seed {seed} (set DRUID_COMPACTION_SEED to replay)");
    let mut rng = Rng(seed);
    let store = Store::local("compaction");
    let etcd = common::start_etcd("compaction");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "etcd-main"));
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    let mut leases = Leases::default();

    random_ops(&mut client, &mut rng, &mut leases, false, 600).await;
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    for round in 0..3 {
        random_ops(&mut client, &mut rng, &mut leases, true, 400).await;
        let (_, rev) = dump(&mut client).await;
        sidecar.wait_store_revision(rev);
        eprintln!("round {round}: revision {rev}");
    }
    let (expected, revision) = dump(&mut client).await;
    let live = leases.live();
    let expected_leases = granted_ttls(&mut client, live.iter().copied()).await;
    assert!(
        expected_leases
            .keys()
            .any(|id| leases.later.contains_key(id)),
        "the scenario must hold keys on leases granted after the full snapshot"
    );
    assert!(expected.values().any(|kv| kv.lease != 0));
    let latest = sidecar.latest();
    let deltas = latest["deltaSnapshots"].as_array().unwrap().len();
    assert!(deltas >= 3, "{latest}");
    drop(client);
    drop(sidecar);
    etcd.stop();

    // 1. Restore without replay, recreated leases on a short TTL.
    let target = EtcdMemberConfig::new("compaction-restore").unwrap();
    let work = target.dir.join("work");
    let out = etcdbr(
        &store,
        &[
            "restore".into(),
            "--store-prefix=etcd-main".into(),
            format!("--data-dir={}", target.data_dir.display()),
            format!("--restoration-temp-snapshots-dir={}", work.display()),
            format!("--name={}", target.name),
            format!("--initial-cluster={}", target.initial_cluster()),
            format!("--initial-cluster-token={}", target.token),
            format!("--initial-advertise-peer-urls={}", target.peer_url()),
            "--unknown-lease-ttl=4s".into(),
        ],
    );
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("compacted"), "the restore compacted: {log}");
    assert!(
        !log.contains("delta applied"),
        "nothing was replayed: {log}"
    );
    let target = target.start().unwrap();
    let mut c = target.client().await;
    let (got, got_revision) = dump(&mut c).await;
    assert_same(&expected, revision, &got, got_revision);
    let got_leases = granted_ttls(&mut c, live.iter().copied()).await;
    for (id, (ttl, keys)) in &expected_leases {
        let (got_ttl, got_keys) = got_leases
            .get(id)
            .unwrap_or_else(|| panic!("lease {id:x} is missing"));
        assert_eq!(got_keys, keys, "keys on lease {id:x}");
        if leases.base.contains_key(id) {
            assert_eq!(got_ttl, ttl, "lease {id:x} keeps its TTL");
        } else {
            assert_eq!(
                *got_ttl, 4,
                "lease {id:x} was granted after the full snapshot: the TTL policy"
            );
        }
    }
    // No key that was meant to expire became permanent: the keys on
    // recreated leases go, the others stay.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (now, _) = dump(&mut c).await;
        let on_later = now
            .values()
            .filter(|kv| leases.later.contains_key(&kv.lease))
            .count();
        if on_later == 0 {
            let on_base = now
                .values()
                .filter(|kv| leases.base.contains_key(&kv.lease))
                .count();
            let expected_on_base = expected
                .values()
                .filter(|kv| leases.base.contains_key(&kv.lease))
                .count();
            assert_eq!(on_base, expected_on_base, "keys on the base's leases stay");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{on_later} keys on recreated leases did not expire"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(c);
    target.stop();

    // 2. The compaction job: a new full snapshot named with its revision.
    let job_dir = target.dir().join("compact");
    let out = etcdbr(
        &store,
        &[
            "compact".into(),
            "--store-prefix=etcd-main".into(),
            format!("--data-dir={}", job_dir.display()),
            "--enable-snapshot-lease-renewal=false".into(),
        ],
    );
    let stdout = ok(&out);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["revision"].as_i64(), Some(revision), "{report}");
    assert_eq!(report["deltas"].as_u64(), Some(deltas as u64), "{report}");
    assert!(report["leases_recreated"].as_u64().unwrap() > 0, "{report}");
    let key = report["snapshot"].as_str().unwrap().to_string();
    assert!(
        key.starts_with(&format!("etcd-main/v2/Full-00000000-{revision:08}-"))
            && key.ends_with(".gz"),
        "{key}"
    );
    assert!(!job_dir.exists(), "the work directory is cleaned up");
    let compressed = store.read(&key);
    let stream = druid_backup_restore::formats::compression::decompress(
        druid_backup_restore::formats::compression::Compression::Gzip,
        &compressed,
    )
    .unwrap();
    let file = target.dir().join("compacted.db");
    std::fs::write(&file, &stream).unwrap();
    let status: serde_json::Value = serde_json::from_str(&etcdctl(&[
        "snapshot".into(),
        "status".into(),
        file.display().to_string(),
        "--write-out=json".into(),
    ]))
    .unwrap();
    assert!(status["revision"].as_i64().unwrap() <= revision, "{status}");
    assert!(
        status["totalKey"].as_i64().unwrap() >= expected.len() as i64,
        "{status}"
    );
    let member = restored_member("compaction-job", &file).start().unwrap();
    let mut c = member.client().await;
    let (got, got_revision) = dump(&mut c).await;
    assert_same(&expected, revision, &got, got_revision);
    let longest = leases.base.values().max().copied().unwrap();
    let got_leases = granted_ttls(&mut c, live.iter().copied()).await;
    for (id, (ttl, keys)) in &expected_leases {
        let (got_ttl, got_keys) = got_leases
            .get(id)
            .unwrap_or_else(|| panic!("lease {id:x} is missing"));
        assert_eq!(got_keys, keys, "keys on lease {id:x}");
        let want = if leases.base.contains_key(id) {
            *ttl
        } else {
            longest
        };
        assert_eq!(*got_ttl, want, "lease {id:x}");
    }
    // History is gone: reading below the revision is refused.
    let err = c
        .get(
            "/registry",
            Some(etcd_client::GetOptions::new().with_revision(revision - 1)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("compacted"), "{err}");
    drop(c);
    member.stop();

    // The store's latest set is the new snapshot; a second run has nothing
    // to do.
    let out = etcdbr(
        &store,
        &[
            "compact".into(),
            "--store-prefix=etcd-main".into(),
            format!("--data-dir={}", job_dir.display()),
            "--enable-snapshot-lease-renewal=false".into(),
        ],
    );
    assert!(ok(&out).trim().is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to compact"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_missing_deltas_are_refused_and_the_store_is_unchanged() {
    let store = Store::local("compaction-bad");
    let etcd = common::start_etcd("compaction-bad");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "etcd-main"));
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    client.put("/a", "1", None).await.unwrap();
    assert_eq!(sidecar.get("/snapshot/full").0, 200);
    for i in 0..3 {
        client.put(format!("/b/{i}"), "x", None).await.unwrap();
        let (_, rev) = dump(&mut client).await;
        sidecar.wait_store_revision(rev);
    }
    // The deltas after the latest full snapshot.
    let latest = sidecar.latest();
    let deltas: Vec<String> = latest["deltaSnapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("etcd-main/v2/{}", d["snapName"].as_str().unwrap()))
        .collect();
    assert!(deltas.len() >= 3, "{latest}");
    drop(client);
    drop(sidecar);
    etcd.stop();
    let before = store.keys("etcd-main/v2/");
    let work = etcd.dir().join("job");
    let compact = || {
        etcdbr(
            &store,
            &[
                "compact".into(),
                "--store-prefix=etcd-main".into(),
                format!("--data-dir={}", work.display()),
                "--enable-snapshot-lease-renewal=false".into(),
            ],
        )
    };

    // A flipped byte in the middle delta: refused, named.
    let middle = deltas[1].clone();
    let good = store.read(&middle);
    let payload = druid_backup_restore::formats::compression::decompress(
        druid_backup_restore::formats::compression::Compression::Gzip,
        &good,
    )
    .unwrap();
    let mut bad = payload.clone();
    bad[3] ^= 0x20;
    store.write(
        &middle,
        &druid_backup_restore::formats::compression::compress(
            druid_backup_restore::formats::compression::Compression::Gzip,
            &bad,
        )
        .unwrap(),
    );
    let out = compact();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&middle) && err.contains("hash"),
        "{deltas:?}: {err}"
    );
    assert_eq!(store.keys("etcd-main/v2/"), before, "nothing was uploaded");

    // The middle delta gone: a gap naming both neighbours.
    store.write(&middle, &good);
    store.remove(&middle);
    let out = compact();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing between") && err.contains(&deltas[0]) && err.contains(&deltas[2]),
        "{err}"
    );
    assert!(
        !store
            .keys("etcd-main/v2/")
            .iter()
            .any(|k| !before.contains(k)),
        "nothing was uploaded"
    );
}
