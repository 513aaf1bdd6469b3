//! Faults and formats: a sidecar killed during an upload, names that are
//! not snapshots, deltas in upstream's format, garbage collection.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{EtcdClient as _, Sidecar, SidecarOptions, Store, dump};
use druid_backup_restore::formats::compression::{self, Compression};
use sha2::{Digest as _, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_killed_during_an_upload_leaves_no_partial_snapshot() {
    let store = Store::minio("kill");
    let etcd = common::start_etcd("kill");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "k"));
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    client.put("first", "1", None).await.unwrap();
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    let good: serde_json::Value = serde_json::from_str(&body).unwrap();

    // About 120 MiB of incompressible values: the upload takes a while.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..120 {
        let value: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        client
            .put(format!("big/{i:03}"), value, None)
            .await
            .unwrap();
    }
    let url = format!("{}/snapshot/full", sidecar.url);
    let request = std::thread::spawn(move || common::http_get_long(&url));
    let start = Instant::now();
    while !sidecar.log().contains("uploading full snapshot") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    sidecar.process.kill();
    let _ = request.join();

    // Every full snapshot the store shows is whole: the interrupted one is
    // either absent or (had it finished) complete; never partial.
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "k"));
    let keys = store.keys("k/v2/");
    let fulls: Vec<&String> = keys.iter().filter(|k| k.contains("/Full-")).collect();
    assert!(
        fulls
            .iter()
            .any(|k| k.ends_with(good["snapName"].as_str().unwrap())),
        "{keys:?}"
    );
    for key in &fulls {
        let db = compression::decompress(Compression::Gzip, &store.read(key)).unwrap();
        let (payload, trailer) = db.split_at(db.len() - 32);
        assert_eq!(
            Sha256::digest(payload).as_slice(),
            trailer,
            "{key} is not whole"
        );
    }
    let latest = sidecar.latest();
    let latest_full = latest["fullSnapshot"]["snapName"].as_str().unwrap();
    assert!(fulls.iter().any(|k| k.ends_with(latest_full)), "{latest}");
    drop(sidecar);
    etcd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_snapshots_are_ignored_with_a_log_line() {
    let store = Store::local("names");
    let etcd = common::start_etcd("names");
    // The cluster-wide etcd configuration the operator mounts.
    let conf = etcd.dir().join("etcd.conf.yaml");
    std::fs::write(
        &conf,
        format!(
            "name: etcd-config\ndata-dir: /var/etcd/data/new.etcd\ninitial-cluster: m0={peer}\ninitial-cluster-state: new\n\
             initial-advertise-peer-urls:\n  m0:\n  - {peer}\nadvertise-client-urls:\n  m0:\n  - {client}\n",
            peer = etcd.peer_url(),
            client = etcd.client_url()
        ),
    )
    .unwrap();
    store.write("p/v2/not-a-snapshot", b"x");
    store.write("p/v2/Full-abc-00000010-1700000000.gz", b"x");
    store.write("p/v2/Incr-00000020-00000010-1700000000.gz", b"x");
    let sidecar = Sidecar::start(&SidecarOptions {
        extra: vec![format!("--etcd-config={}", conf.display())],
        ..SidecarOptions::new(&etcd, &store, "p")
    });
    sidecar.wait_leading();
    // `/config` renders this member's configuration.
    let (code, rendered) = sidecar.get("/config");
    assert_eq!(code, 200, "{rendered}");
    let rendered: serde_json::Value = serde_yaml_ng::from_str(&rendered).unwrap();
    assert_eq!(rendered["name"], "m0");
    assert_eq!(rendered["initial-advertise-peer-urls"], etcd.peer_url());
    assert_eq!(rendered["advertise-client-urls"], etcd.client_url());
    assert_eq!(rendered["initial-cluster-state"], "new");
    assert_eq!(rendered["data-dir"], "/var/etcd/data/new.etcd");
    let mut client = etcd.client().await;
    client.put("k", "v", None).await.unwrap();
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);
    let latest = sidecar.latest();
    assert!(
        latest["fullSnapshot"]["snapName"]
            .as_str()
            .unwrap()
            .starts_with("Full-00000000-")
    );
    let log = sidecar.log();
    for bad in [
        "p/v2/not-a-snapshot",
        "p/v2/Full-abc-00000010-1700000000.gz",
        "p/v2/Incr-00000020-00000010-1700000000.gz",
    ] {
        assert!(
            log.contains("ignoring an object that is not a snapshot") && log.contains(bad),
            "{bad}:\n{log}"
        );
    }
    // The objects are left alone.
    assert!(
        store
            .keys("p/v2/")
            .iter()
            .any(|k| k == "p/v2/not-a-snapshot")
    );

    // A final full snapshot is marked in its name; a bad flag is refused.
    let (code, body) = sidecar.get("/snapshot/full?final=true");
    assert_eq!(code, 200, "{body}");
    let full: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        full["snapName"].as_str().unwrap().ends_with(".gz.final"),
        "{full}"
    );
    assert_eq!(full["isFinal"], true);
    let (code, body) = sidecar.get("/snapshot/full?final=maybe");
    assert_eq!(code, 400, "{body}");
    // With nothing new since, another final request returns the same one.
    let (_, again) = sidecar.get("/snapshot/full?final=true");
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["snapName"], full["snapName"]);
    drop(sidecar);
    etcd.stop();
}

/// The base64 Go's encoding/json writes for []byte.
fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_are_written_and_read_in_upstreams_format() {
    let store = Store::local("format");
    let mut etcd = common::start_etcd("format");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "p"));
    sidecar.wait_leading();
    // The writes must come after the first full snapshot to be in a delta
    // (CI at 6ef124a: they were in the full, and no delta was written).
    sidecar.wait_full_snapshot();
    let mut client = etcd.client().await;
    client.put("/a", "one", None).await.unwrap();
    client.delete("/a", None).await.unwrap();
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);

    // Ours, decoded by hand as the notes specify: gzip, JSON array, raw
    // SHA-256 of the JSON appended.
    let latest = sidecar.latest();
    let delta = latest["deltaSnapshots"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let object = store.read(&format!("p/v2/{}", delta["snapName"].as_str().unwrap()));
    let raw = compression::decompress(Compression::Gzip, &object).unwrap();
    let (json, hash) = raw.split_at(raw.len() - 32);
    assert_eq!(Sha256::digest(json).as_slice(), hash);
    let events: serde_json::Value = serde_json::from_slice(json).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let put = &events[0]["etcdEvent"];
    assert!(put.get("type").is_none(), "PUT has no type field: {put}");
    assert_eq!(put["kv"]["key"], b64(b"/a"));
    assert_eq!(put["kv"]["value"], b64(b"one"));
    assert_eq!(put["kv"]["version"], 1);
    assert!(events[0]["time"].as_str().unwrap().contains('T'));
    let del = &events[1]["etcdEvent"];
    assert_eq!(del["type"], 1);
    assert_eq!(del["kv"]["mod_revision"], rev);
    assert!(del["kv"].get("value").is_none(), "{del}");
    drop(sidecar);

    // A delta written by hand in upstream's shape (issue #287's example)
    // after the last revision, then a restore applies it.
    let first = rev + 1;
    let json = format!(
        r#"[{{"etcdEvent":{{"kv":{{"key":"{k}","create_revision":{first},"mod_revision":{first},"version":1,"value":"{v}"}}}},"time":"2026-11-30T08:00:00.123456789+01:00"}},{{"etcdEvent":{{"kv":{{"key":"{k2}","create_revision":{first2},"mod_revision":{first2},"version":1,"value":"{v2}"}}}},"time":"2026-11-30T08:00:01+01:00"}},{{"etcdEvent":{{"type":1,"kv":{{"key":"{k}","mod_revision":{third}}}}},"time":"2026-11-30T08:00:02+01:00"}}]"#,
        k = b64(b"/upstream/gone"),
        v = b64(b"x"),
        k2 = b64(b"/upstream/kept"),
        v2 = b64(b"from upstream"),
        first2 = first + 1,
        third = first + 2,
    );
    let mut payload = json.into_bytes();
    let digest = Sha256::digest(&payload);
    payload.extend_from_slice(&digest);
    let name = format!("Incr-{first:08}-{:08}-1796020000.gz", first + 2);
    store.write(
        &format!("p/v2/{name}"),
        &compression::compress(Compression::Gzip, &payload).unwrap(),
    );

    drop(client);
    etcd.stop();
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "p"));
    assert_eq!(
        sidecar.initialize("sanity"),
        "Successful",
        "{}",
        sidecar.log()
    );
    drop(sidecar);
    etcd.restart().unwrap();
    let mut client = etcd.client().await;
    let (kvs, revision) = dump(&mut client).await;
    assert_eq!(revision, first + 2);
    assert!(!kvs.contains_key(b"/upstream/gone".as_slice()));
    let kept = &kvs[b"/upstream/kept".as_slice()];
    assert_eq!(kept.value, b"from upstream");
    assert_eq!(kept.mod_revision, first + 1);
    etcd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_keeps_the_newest_full_snapshots_and_their_deltas() {
    let store = Store::minio("gc");
    let etcd = common::start_etcd("gc");
    let sidecar = Sidecar::start(&SidecarOptions {
        extra: vec![
            "--garbage-collection-policy=LimitBased".into(),
            "--max-backups=2".into(),
        ],
        ..SidecarOptions::new(&etcd, &store, "gc")
    });
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    let mut fulls = Vec::new();
    for round in 0..4 {
        client.put(format!("k{round}"), "v", None).await.unwrap();
        let (_, rev) = dump(&mut client).await;
        sidecar.wait_store_revision(rev);
        let (code, body) = sidecar.get("/snapshot/full");
        assert_eq!(code, 200, "{body}");
        let full: serde_json::Value = serde_json::from_str(&body).unwrap();
        fulls.push(full["snapName"].as_str().unwrap().to_string());
        std::thread::sleep(Duration::from_millis(1100));
    }
    client.put("after", "v", None).await.unwrap();
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);
    drop(sidecar);

    // A sidecar with a 1 s GC period collects.
    let sidecar = Sidecar::start(&SidecarOptions {
        extra: vec![
            "--garbage-collection-policy=LimitBased".into(),
            "--max-backups=2".into(),
            "--garbage-collection-period=1s".into(),
        ],
        ..SidecarOptions::new(&etcd, &store, "gc")
    });
    sidecar.wait_leading();
    let start = Instant::now();
    loop {
        let keys = store.keys("gc/v2/");
        let full_count = keys.iter().filter(|k| k.contains("/Full-")).count();
        if full_count == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "GC did not run: {keys:?}\n{}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let keys = store.keys("gc/v2/");
    // The two newest full snapshots stay; the newest's deltas too.
    for kept in &fulls[2..] {
        assert!(
            keys.iter().any(|k| k.ends_with(kept.as_str())),
            "{kept} deleted: {keys:?}"
        );
    }
    let latest = sidecar.latest();
    assert_eq!(
        latest["fullSnapshot"]["snapName"].as_str(),
        Some(fulls[3].as_str())
    );
    let newest_deltas = latest["deltaSnapshots"].as_array().unwrap();
    assert!(!newest_deltas.is_empty());
    for d in newest_deltas {
        assert!(
            keys.iter()
                .any(|k| k.ends_with(d["snapName"].as_str().unwrap()))
        );
    }
    let metrics = sidecar.get("/metrics").1;
    assert!(
        metrics.contains("etcdbr_snapshot_gc_total{kind=\"Full\",succeeded=\"true\"}"),
        "{metrics}"
    );
    drop(sidecar);
    etcd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_store_directory_that_does_not_exist_yet_is_created() {
    let etcd = common::start_etcd("local-missing");
    let root = druid_test_support::server_dir("local-missing-root").unwrap();
    let store = Store::Local {
        root: root.clone(),
        container: "new.bkp".into(),
    };
    assert!(!root.join("new.bkp").exists());
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "etcd-main"));
    sidecar.wait_leading();
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}\n{}", sidecar.log());
    assert!(
        sidecar.log().contains("created the Local store directory"),
        "{}",
        sidecar.log()
    );
    let keys = store.keys("etcd-main/v2/");
    assert!(keys.iter().any(|k| k.contains("/Full-")), "{keys:?}");
}
