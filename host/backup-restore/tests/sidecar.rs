//! The sidecar end to end: real etcd, the real `etcdbr` binary, MinIO and
//! local-directory stores.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use std::time::Duration;

use common::{EtcdClient as _, Sidecar, SidecarOptions, Store, dump};
use etcd_client::{Client, PutOptions, Txn, TxnOp};

/// Writes a mix of operations: puts, overwrites, deletes and multi-key
/// transactions, so revisions hold one or several events.
async fn write_mix(client: &mut Client, tag: &str, n: usize) {
    for i in 0..n {
        let key = format!("/registry/{tag}/{i:05}");
        client
            .put(key.clone(), format!("value-{tag}-{i}"), None)
            .await
            .unwrap();
        if i % 7 == 0 {
            client
                .put(key.clone(), format!("overwritten-{tag}-{i}"), None)
                .await
                .unwrap();
        }
        if i % 11 == 0 {
            client.delete(key, None).await.unwrap();
        }
        if i % 13 == 0 {
            let ops = vec![
                TxnOp::put(format!("/txn/{tag}/{i}/a"), "a", None),
                TxnOp::put(
                    format!("/txn/{tag}/{i}/b"),
                    vec![0u8, 255, 7],
                    Some(PutOptions::new()),
                ),
                TxnOp::delete(format!("/registry/{tag}/{:05}", i.saturating_sub(1)), None),
            ];
            client.txn(Txn::new().and_then(ops)).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_data_directory_is_restored_from_full_and_delta_snapshots() {
    let store = Store::minio("restore");
    let mut etcd = common::start_etcd("restore");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "etcd-main"));
    sidecar.wait_leading();
    let mut client = etcd.client().await;

    write_mix(&mut client, "base", 300).await;
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    let full: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(full["kind"], "Full");
    let (_, base_revision) = dump(&mut client).await;
    assert_eq!(
        full["lastRevision"].as_i64(),
        Some(base_revision),
        "named after the revision the database holds"
    );
    assert!(
        full["snapName"].as_str().unwrap().ends_with(".gz"),
        "{full}"
    );

    write_mix(&mut client, "delta1", 200).await;
    let (_, rev1) = dump(&mut client).await;
    sidecar.wait_store_revision(rev1);
    write_mix(&mut client, "delta2", 200).await;
    let (expected, revision) = dump(&mut client).await;
    sidecar.wait_store_revision(revision);

    let latest = sidecar.latest();
    let deltas = latest["deltaSnapshots"].as_array().unwrap();
    assert!(deltas.len() >= 2, "{latest}");
    // Deltas chain without gaps from the full snapshot.
    let mut prev = base_revision;
    for d in deltas {
        assert_eq!(d["startRevision"].as_i64(), Some(prev + 1), "{latest}");
        prev = d["lastRevision"].as_i64().unwrap();
    }
    assert_eq!(prev, revision);

    // The keys live where upstream puts them.
    let keys = store.keys("etcd-main/v2/");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("etcd-main/v2/Full-00000000-")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("etcd-main/v2/Incr-")),
        "{keys:?}"
    );

    drop(client);
    drop(sidecar);
    etcd.stop();
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();

    // Before etcd runs, /snapshot/latest answers from the store, with
    // upstream's fields (the store path as prefix).
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "etcd-main"));
    let before = sidecar.latest();
    assert_eq!(before["fullSnapshot"]["prefix"], "etcd-main/v2", "{before}");
    assert_eq!(
        before["deltaSnapshots"].as_array().map(Vec::len),
        latest["deltaSnapshots"].as_array().map(Vec::len),
        "{before}"
    );
    // Initialization as etcd-wrapper drives it.
    assert_eq!(
        sidecar.initialize("full"),
        "Successful",
        "{}",
        sidecar.log()
    );
    // Reading the result consumed it.
    assert_eq!(sidecar.get("/initialization/status").1, "New");
    etcd.restart().unwrap();
    let mut client = etcd.client().await;
    let (restored, restored_revision) = dump(&mut client).await;
    assert_eq!(restored_revision, revision);
    assert_eq!(restored.len(), expected.len());
    for (k, v) in &expected {
        assert_eq!(
            restored.get(k),
            Some(v),
            "key {}",
            String::from_utf8_lossy(k)
        );
    }
    etcd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_full_snapshot_is_refused_and_nothing_is_restored() {
    let store = Store::local("corrupt");
    let etcd = common::start_etcd("corrupt");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "p"));
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    write_mix(&mut client, "x", 100).await;
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    let full: serde_json::Value = serde_json::from_str(&body).unwrap();
    let key = format!("p/v2/{}", full["snapName"].as_str().unwrap());
    drop(client);
    drop(sidecar);
    etcd.stop();

    // Flip one byte of the database inside the (gzip) object.
    let object = store.read(&key);
    let mut db = druid_backup_restore::formats::compression::decompress(
        druid_backup_restore::formats::compression::Compression::Gzip,
        &object,
    )
    .unwrap();
    let middle = db.len() / 2;
    db[middle] ^= 0x55;
    let corrupted = druid_backup_restore::formats::compression::compress(
        druid_backup_restore::formats::compression::Compression::Gzip,
        &db,
    )
    .unwrap();
    store.write(&key, &corrupted);
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();

    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "p"));
    assert_eq!(sidecar.initialize("full"), "Failed");
    let log = sidecar.log();
    assert!(
        log.contains("corrupt or truncated") && log.contains(&key),
        "{log}"
    );
    assert!(
        !etcd.data_dir().exists(),
        "nothing may be restored from a corrupt snapshot"
    );

    // Truncated: the same refusal.
    store.write(&key, &object[..object.len() / 2]);
    assert_eq!(sidecar.initialize("full"), "Failed");
    assert!(!etcd.data_dir().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_down_during_deltas_is_caught_up_without_a_gap() {
    let store = Store::local("outage");
    let Store::Local { root, container } = &store else {
        unreachable!()
    };
    let etcd = common::start_etcd("outage");
    let (namespace, leases) = common::lease_namespace("outage").await;
    for name in ["o-full-snap", "o-delta-snap"] {
        common::create_lease(&leases, name).await;
    }
    let kubeconfig = druid_test_support::KubeApiServer::shared()
        .kubeconfig()
        .display()
        .to_string();
    let sidecar = Sidecar::start(&SidecarOptions {
        extra: vec![
            "--backoff-threshold-time=2s".into(),
            "--enable-snapshot-lease-renewal=true".into(),
            "--full-snapshot-lease-name=o-full-snap".into(),
            "--delta-snapshot-lease-name=o-delta-snap".into(),
        ],
        env: vec![
            ("POD_NAMESPACE".into(), namespace),
            ("KUBECONFIG".into(), kubeconfig),
        ],
        ..SidecarOptions::new(&etcd, &store, "p")
    });
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    write_mix(&mut client, "before", 50).await;
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);

    // The store goes away (its container directory disappears).
    let away = root.join("away");
    std::fs::rename(root.join(container), &away).unwrap();
    write_mix(&mut client, "during", 80).await;
    // And 6 MiB of values: the watch that catches up from the last
    // uploaded revision gets them in one response (etcd batches up to
    // 1,000 revisions), beyond tonic's 4 MiB default (found on the node
    // with 1 GiB of data: every delta failed).
    for i in 0..600 {
        client
            .put(
                format!("/registry/large/{i:05}"),
                vec![b'x'; 10 << 10],
                None,
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (code, _) = sidecar.get("/snapshot/latest");
    assert_eq!(code, 500, "listing a missing store fails");
    let log = sidecar.log();
    assert!(log.contains("delta snapshot failed"), "{log}");
    // A log line names the store and the cause.
    assert!(
        log.lines().any(|l| l.contains("the snapshotter failed")
            && l.contains(&format!("Local store {container}/p"))),
        "{log}"
    );
    // The delta lease goes stale (the operator's BackupReady turns False
    // beyond two periods; the period here is 1 s).
    assert!(common::lease_age(&leases, "o-delta-snap").await >= 3);
    // And it says why at once: the operator turns BackupReady False from
    // this, without waiting for the lease to go stale.
    let annotations = common::lease_annotations(&leases, "o-delta-snap").await;
    let why = annotations
        .get(druid_api::SNAPSHOT_FAILURE_ANNOTATION)
        .unwrap_or_else(|| panic!("no failure recorded on the delta lease: {annotations:?}"));
    assert!(why.contains(&format!("Local store {container}/p")), "{why}");
    assert!(
        annotations[druid_api::SNAPSHOT_FAILED_AT_ANNOTATION]
            .parse::<k8s_openapi::jiff::Timestamp>()
            .is_ok(),
        "{annotations:?}"
    );
    // The failure counter counts (every run that failed, from zero).
    let metrics = sidecar.get("/metrics").1;
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("etcdbr_snapshotter_failure{error=\"store\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no store failure sample:\n{metrics}"));
    assert!(failures >= 1, "{metrics}");
    // A full snapshot asked for now is answered with the store's error
    // instead of waiting behind the backoff until the store is back.
    let (code, body) = sidecar
        .get_within("/snapshot/full", 30)
        .expect("the full snapshot request was not answered while the store is down");
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("is failing") && body.contains(&format!("Local store {container}/p")),
        "{body}"
    );

    // Back: the deltas catch up from the last uploaded revision.
    std::fs::rename(&away, root.join(container)).unwrap();
    write_mix(&mut client, "after", 30).await;
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);
    let latest = sidecar.latest();
    assert_eq!(common::continuous_end(&latest), rev);
    // Fresh again, holding the last revision, and the failure is gone.
    common::wait_holder(&leases, "o-delta-snap", |h| h == rev.to_string()).await;
    assert!(common::lease_age(&leases, "o-delta-snap").await <= 2);
    let annotations = common::lease_annotations(&leases, "o-delta-snap").await;
    assert!(
        !annotations.contains_key(druid_api::SNAPSHOT_FAILURE_ANNOTATION)
            && !annotations.contains_key(druid_api::SNAPSHOT_FAILED_AT_ANNOTATION),
        "{annotations:?}"
    );
    // /snapshot/latest answers with upstream's fields: the store path as
    // prefix, and versionID.
    let d = &latest["deltaSnapshots"][0];
    assert_eq!(d["prefix"], "p/v2", "{latest}");
    assert!(
        d.get("versionID").is_some_and(serde_json::Value::is_null),
        "{latest}"
    );
    for field in [
        "createdOn",
        "immutabilityExpriyTime",
        "versionID",
        "kind",
        "snapDir",
        "snapName",
        "prefix",
        "compressionSuffix",
        "startRevision",
        "lastRevision",
        "isChunk",
        "isFinal",
    ] {
        assert!(
            latest["fullSnapshot"].get(field).is_some(),
            "{field}: {latest}"
        );
    }
    drop(sidecar);
    etcd.stop();
}

/// Copies a directory tree.
/// The sample `etcdbr_snapshot_revision_lag` of `/metrics`, once it
/// satisfies `until` (the leadership loop updates it every reelection
/// period); panics with the last scrape after 60 s.
fn revision_lag(sidecar: &Sidecar, until: impl Fn(i64) -> bool) -> i64 {
    let start = std::time::Instant::now();
    loop {
        let metrics = sidecar.get("/metrics").1;
        let lag = metrics
            .lines()
            .find_map(|l| l.strip_prefix("etcdbr_snapshot_revision_lag "))
            .and_then(|v| v.trim().parse().ok());
        if let Some(lag) = lag
            && until(lag)
        {
            return lag;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "etcdbr_snapshot_revision_lag never matched: {lag:?}\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Deltas that succeed on time but trail etcd keep every timestamp metric
/// fresh (a 1 GiB cluster's deltas ran 90,000 revisions behind after a
/// burst of writes, found on the node): `etcdbr_snapshot_revision_lag`
/// says how many revisions a restore now would lose, exactly, and falls
/// to zero when the store catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revision_lag_says_what_the_store_does_not_hold_yet() {
    let store = Store::local("lag");
    let etcd = common::start_etcd("lag");
    let mut options = SidecarOptions::new(&etcd, &store, "etcd-main");
    // No delta during the test unless asked for.
    options.delta_period = "1h";
    let sidecar = Sidecar::start(&options);
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    let full: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stored = full["lastRevision"].as_i64().unwrap();
    assert_eq!(revision_lag(&sidecar, |lag| lag == 0), 0);

    write_mix(&mut client, "lag", 40).await;
    let (_, head) = dump(&mut client).await;
    assert!(head > stored + 40, "{head} {stored}");
    // The metric is refreshed every reelection period: a sample taken
    // while the writes went on shows part of them, so wait for one taken
    // after (it must then be exact, not more).
    assert_eq!(
        revision_lag(&sidecar, |lag| lag >= head - stored),
        head - stored,
        "the lag is etcd's revision minus the full snapshot's"
    );

    let (code, body) = sidecar.get("/snapshot/delta");
    assert_eq!(code, 200, "{body}");
    let delta: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(delta["lastRevision"].as_i64(), Some(head), "{delta}");
    assert_eq!(revision_lag(&sidecar, |lag| lag < head - stored), 0);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_behind_the_store_or_corrupt_is_restored() {
    let store = Store::local("behind");
    let mut etcd = common::start_etcd("behind");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "p"));
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    write_mix(&mut client, "old", 50).await;
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    drop(client);
    drop(sidecar);
    etcd.stop();
    // An old copy of the data directory, as a stale volume would hold.
    let old = etcd.dir().join("old-data");
    copy_dir(etcd.data_dir(), &old);

    etcd.restart().unwrap();
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "p"));
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    write_mix(&mut client, "new", 60).await;
    let (expected, revision) = dump(&mut client).await;
    sidecar.wait_store_revision(revision);
    drop(client);
    drop(sidecar);
    etcd.stop();

    // Sanity mode: the stale copy is behind the store; its WAL cannot
    // bring it up to date, so it is restored.
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();
    copy_dir(&old, etcd.data_dir());
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "p"));
    assert_eq!(
        sidecar.initialize("sanity"),
        "Successful",
        "{}",
        sidecar.log()
    );
    let log = sidecar.log();
    assert!(
        log.contains("the database is behind the latest snapshot"),
        "{log}"
    );
    assert!(
        etcd.data_dir().with_extension("bak").exists() || log.contains("moved aside"),
        "{log}"
    );
    etcd.restart().unwrap();
    let mut client = etcd.client().await;
    assert_eq!(dump(&mut client).await, (expected.clone(), revision));
    drop(client);
    etcd.stop();

    // Full mode: a damaged database is detected and restored.
    let db = etcd.data_dir().join("member/snap/db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(4096).step_by(97).take(2000) {
        *b ^= 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    assert_eq!(
        sidecar.initialize("full"),
        "Successful",
        "{}",
        sidecar.log()
    );
    assert!(
        sidecar
            .log()
            .contains("the data directory is unusable: restoring"),
        "{}",
        sidecar.log()
    );
    etcd.restart().unwrap();
    let mut client = etcd.client().await;
    assert_eq!(dump(&mut client).await, (expected, revision));
    let metrics = sidecar.get("/metrics").1;
    assert!(
        metrics.contains(
            "etcdbr_restoration_duration_seconds_count{restore=\"single_node\",succeeded=\"true\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("etcdbr_validation_duration_seconds_count{succeeded=\"false\"}"),
        "{metrics}"
    );
    drop(sidecar);
    etcd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_serves_tls_and_reports_metrics() {
    let store = Store::local("tls");
    let etcd = common::start_etcd("tls");
    let certs = etcd.dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(certs.join("tls.key"))
        .arg("-out")
        .arg(certs.join("tls.crt"))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let port = druid_test_support::free_port().unwrap();
    // Plain HTTP probes fail against TLS, so start it and probe with curl.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_etcdbr"));
    c.arg("server")
        .arg(format!("--server-port={port}"))
        .arg("--server-address=127.0.0.1")
        .arg(format!("--server-cert={}", certs.join("tls.crt").display()))
        .arg(format!("--server-key={}", certs.join("tls.key").display()))
        .arg(format!("--endpoints={}", etcd.client_url()))
        .arg("--delta-snapshot-period=1s")
        .arg("--defragmentation-threshold-bytes=0")
        .arg(format!(
            "--plugins-dir={}",
            druid_test_support::plugin_components().dir().display()
        ))
        .arg(format!(
            "--snapstore-temp-directory={}",
            etcd.dir().join("tmp").display()
        ))
        .arg("--storage-provider=Local")
        .arg("--store-container=backups")
        .env(
            "LOCAL_STORE_ROOT",
            match &store {
                Store::Local { root, .. } => root.clone(),
                Store::Minio { .. } => unreachable!(),
            },
        );
    let process = druid_test_support::ServerProcess::spawn(
        "etcdbr tls",
        c,
        &etcd.dir().join("etcdbr-tls.log"),
    )
    .unwrap();
    let curl = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
            .arg(certs.join("tls.crt"))
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    process
        .wait_ready(Duration::from_secs(60), || {
            Ok(curl("/healthz").ends_with("200"))
        })
        .unwrap();
    let mut client = etcd.client().await;
    client.put("k", "v", None).await.unwrap();
    let (_, rev) = dump(&mut client).await;
    let start = std::time::Instant::now();
    loop {
        let metrics = curl("/metrics");
        if metrics.contains(&format!(
            "etcdbr_snapshot_latest_revision{{kind=\"Incr\"}} {rev}"
        )) {
            for name in [
                "etcdbr_snapshot_duration_seconds_bucket",
                "etcdbr_snapshot_latest_timestamp{kind=\"Full\"}",
                "etcdbr_snapshot_last_success_timestamp{kind=\"Incr\"}",
                "etcdbr_snapshot_latest_size_bytes{kind=\"Full\"}",
                "etcdbr_is_leader 1",
                "etcdbr_cluster_size 1",
            ] {
                assert!(metrics.contains(name), "{name} missing:\n{metrics}");
            }
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every name upstream's sidecar exports is served (the defragmentation
    // histogram once a member was defragmented), with upstream's labels
    // and the process metrics of Go's client.
    let defrag = curl("/defragment");
    assert!(defrag.ends_with("200"), "{defrag}");
    let metrics = curl("/metrics");
    let samples: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap_or(""))
        .collect();
    for name in druid_backup_restore::metrics::UPSTREAM_NAMES
        .iter()
        .chain(&[
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ])
    {
        assert!(
            samples
                .iter()
                .any(|s| *s == *name || *s == format!("{name}_count")),
            "{name} is not served:\n{metrics}"
        );
    }
    for labelled in [
        "etcdbr_snapshot_gc_total{kind=\"Full\",succeeded=\"true\"} 0",
        "etcdbr_snapshotter_failure{error=\"store\"} 0",
        "etcdbr_restoration_duration_seconds_count{restore=\"single_node\",succeeded=\"true\"} 0",
        "etcdbr_restoration_duration_seconds_count{restore=\"single_member\",succeeded=\"false\"} 0",
        "etcdbr_is_learner 0",
        "etcdbr_is_learner_count_total{succeeded=\"true\"}",
        "etcdbr_defragmentation_duration_seconds_count{succeeded=\"true\",endpoint=",
        "etcdbr_snapstore_latest_deltas_total ",
        "# TYPE etcdbr_snapshotter_failure unknown",
    ] {
        assert!(metrics.contains(labelled), "{labelled} missing:\n{metrics}");
    }
    // Slow loris: clients that connect and never start their handshake do
    // not hold up others. The request below is served while they are
    // still connected (the server drops them only at its 10 s handshake
    // timeout); before handshakes left the accept loop, it waited behind
    // each of them in turn and found them all dropped.
    let silent: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(curl("/healthz").ends_with("200"));
    for s in &silent {
        s.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let r = std::io::Read::read(&mut &*s, &mut byte);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a silent connection was already closed when the request was served: {r:?}"
        );
    }
    drop(silent);
    // Plain HTTP is refused on the TLS port.
    assert!(
        druid_test_support::http_get(&format!("http://127.0.0.1:{port}/healthz"))
            .is_err_and(|e| !e.is_empty())
            || {
                let (code, _) =
                    druid_test_support::http_get(&format!("http://127.0.0.1:{port}/healthz"))
                        .unwrap();
                code != 200
            }
    );
    drop(process);
    etcd.stop();
}

#[test]
fn initialization_never_runs_under_a_serving_etcd_and_status_polls_do_not_re_arm_it() {
    let mut etcd = common::start_etcd("init-guard");
    let store = Store::local("init-guard");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "etcd-guard"));

    // etcd serves: a start request (a stray client, or a replayed call) is
    // refused with the reason, and nothing runs.
    let (code, body) = sidecar.get("/initialization/start?mode=full");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("etcd answers"), "{body}");
    assert_eq!(sidecar.get("/initialization/status").1, "New");

    // The normal flow: etcd down, initialization (its result read once,
    // as the wrapper does), etcd up.
    etcd.stop();
    assert_eq!(
        sidecar.initialize("full"),
        "Successful",
        "{}",
        sidecar.log()
    );
    etcd.restart().unwrap();
    // Polls and start requests while etcd serves (a probe, a stray client,
    // under load) never run initialization again.
    for _ in 0..20 {
        assert_eq!(sidecar.get("/initialization/status").1, "New");
        assert_eq!(sidecar.get("/initialization/start?mode=full").0, 409);
    }
    assert_eq!(
        sidecar.log().matches("data directory validated").count(),
        1,
        "initialization ran again under a serving etcd:\n{}",
        sidecar.log()
    );
    // Once etcd is down (the wrapper restarts it), the next start runs.
    etcd.stop();
    assert_eq!(
        sidecar.initialize("sanity"),
        "Successful",
        "{}",
        sidecar.log()
    );
    assert_eq!(sidecar.log().matches("data directory validated").count(), 2);
}

#[test]
fn on_demand_snapshots_are_rate_limited_and_say_when_to_retry() {
    let etcd = common::start_etcd("rate-limit");
    let store = Store::local("rate-limit");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "etcd-rate"));
    sidecar.wait_leading();
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    // Right after, the same kind is refused with a reason and a delay;
    // the other kind is not.
    let (code, body) = sidecar.get_once("/snapshot/full");
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("retry in"), "{body}");
    let (code, body) = sidecar.get_once("/snapshot/delta");
    assert_eq!(code, 200, "{body}");
    // A burst of clients: at most one is served; all others are told to
    // come back, none waits in a queue.
    let fulls = || {
        store
            .keys("etcd-rate/v2/")
            .iter()
            .filter(|k| k.contains("Full-"))
            .count()
    };
    let before = fulls();
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| sidecar.get_once("/snapshot/full").0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        answers.iter().filter(|c| **c == 200).count() <= 1,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|c| *c == 200 || *c == 429),
        "{answers:?}"
    );
    assert!(
        fulls() <= before + 1,
        "the burst took more than one snapshot"
    );
    // Once the interval has passed, a request is served again.
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
}

/// Writes `n` values of `size` bytes under `/large/<tag>/` from eight
/// clients at once; returns etcd's revision after the last.
async fn write_large(
    etcd: &druid_test_support::EtcdMember,
    tag: &str,
    n: usize,
    size: usize,
) -> i64 {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut client = etcd.client().await;
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            // Values differ a little so that no layer can share them.
            let mut value = vec![b'v'; size];
            for i in (w..n).step_by(8) {
                value[..8].copy_from_slice(&(i as u64).to_le_bytes());
                client
                    .put(format!("/large/{tag}/{i:06}"), value.clone(), None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut client = etcd.client().await;
    client.status().await.unwrap().header().unwrap().revision()
}

/// A sample of `/metrics` by its name and labels (`name{…}` or `name`).
fn sample(sidecar: &Sidecar, name: &str) -> Option<f64> {
    let metrics = sidecar.get("/metrics").1;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits up to `seconds` for `/snapshot/latest` to satisfy `ok`.
fn wait_latest(
    sidecar: &Sidecar,
    seconds: u64,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let latest = sidecar.latest();
        if ok(&latest) {
            return latest;
        }
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "{what}: {latest}\n{}",
            sidecar.process.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A delta watch far behind etcd (here: the sidecar was away while
/// 240 MB were written) replays every event since its last delta; under a
/// CPU limit that took half an hour on the node for 1 GiB, where a full
/// snapshot took minutes. The sidecar measures the catch-up and takes a
/// full snapshot instead when that is sooner (by the measured or
/// configured rate of a full snapshot), and keeps catching up by deltas
/// when it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_far_behind_gives_way_to_a_full_snapshot_only_when_that_is_sooner() {
    let store = Store::local("catch-up");
    let etcd = common::start_etcd("catch-up");
    let first = Sidecar::start(&SidecarOptions::new(&etcd, &store, "p"));
    first.wait_leading();
    let (code, body) = first.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    let base: serde_json::Value = serde_json::from_str(&body).unwrap();
    let base = base["lastRevision"].as_i64().unwrap();
    drop(first);

    // 30,000 revisions of 8 KiB behind; a full snapshot assumed to copy
    // 1 GiB a second: sooner than any catching up of a second or more.
    let head = write_large(&etcd, "a", 30_000, 8 << 10).await;
    let sidecar = Sidecar::start(&SidecarOptions {
        extra: vec!["--full-snapshot-rate-estimate=1Gi".into()],
        ..SidecarOptions::new(&etcd, &store, "p")
    });
    sidecar.wait_leading();
    let latest = wait_latest(&sidecar, 180, "no full snapshot at the head", |l| {
        l["fullSnapshot"]["lastRevision"].as_i64() >= Some(head)
    });
    let log = sidecar.log();
    assert!(
        log.contains("catching up would take longer than a full snapshot"),
        "{log}"
    );
    assert!(sample(&sidecar, "etcdbr_snapshot_catch_up_full_total") >= Some(1.0));
    assert!(latest["fullSnapshot"]["lastRevision"].as_i64() > Some(base));
    // Later writes go on as deltas after it.
    let mut client = etcd.client().await;
    write_mix(&mut client, "after-full", 20).await;
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);
    assert!(common::continuous_end(&sidecar.latest()) >= rev);
    let full = sidecar.latest()["fullSnapshot"]["lastRevision"].as_i64();
    drop(sidecar);

    // The same distance with a full snapshot assumed to copy 1 KiB a
    // second (the 400 MB database: days): catching up wins, by deltas,
    // without a gap.
    let head = write_large(&etcd, "b", 20_000, 8 << 10).await;
    let sidecar = Sidecar::start(&SidecarOptions {
        extra: vec!["--full-snapshot-rate-estimate=1Ki".into()],
        ..SidecarOptions::new(&etcd, &store, "p")
    });
    sidecar.wait_leading();
    let latest = wait_latest(&sidecar, 300, "the deltas did not catch up", |l| {
        l["deltaSnapshots"]
            .as_array()
            .and_then(|d| d.last())
            .and_then(|d| d["lastRevision"].as_i64())
            >= Some(head)
    });
    assert_eq!(
        latest["fullSnapshot"]["lastRevision"].as_i64(),
        full,
        "{latest}"
    );
    assert!(common::continuous_end(&latest) >= head, "{latest}");
    assert_eq!(
        sample(&sidecar, "etcdbr_snapshot_catch_up_full_total"),
        Some(0.0)
    );
    assert!(!sidecar.log().contains("catching up would take longer"));
    drop(sidecar);
    etcd.stop();
}

/// A leader whose etcd misses a status check or two (busy; frozen here
/// with SIGSTOP, a fault injected because a real etcd is not made busy on
/// demand) keeps its snapshotter: stopping it there restarted it
/// mid-upload, and the new one uploaded the same revisions again under a
/// second name (seen on the node during a 1 GiB preload). Three missed
/// checks in a row stop the leader's work; it starts again when etcd
/// answers, and the deltas go on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_etcd_misses_a_status_check_keeps_its_snapshotter() {
    let store = Store::local("unknown-leader");
    let etcd = common::start_etcd("unknown-leader");
    let sidecar = Sidecar::start(&SidecarOptions {
        extra: vec!["--etcd-connection-timeout-leader-election=1s".into()],
        ..SidecarOptions::new(&etcd, &store, "p")
    });
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    let started = |log: &str| {
        log.matches("this member leads: starting the snapshotter")
            .count()
    };
    assert_eq!(started(&sidecar.log()), 1);

    // Frozen for a status timeout and a half: one missed check.
    etcd.process().pause();
    std::thread::sleep(Duration::from_millis(2500));
    etcd.process().resume();
    write_mix(&mut client, "after-a-miss", 20).await;
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);
    let log = sidecar.log();
    assert!(log.contains("etcd did not say who leads"), "{log}");
    assert!(!log.contains("no longer leads"), "{log}");
    assert_eq!(started(&log), 1, "{log}");

    // Frozen for longer (each check waits a status timeout and the member
    // list's 5 s): the leader's work stops, and starts again after.
    etcd.process().pause();
    let start = std::time::Instant::now();
    while !sidecar.log().contains("no longer leads") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    etcd.process().resume();
    write_mix(&mut client, "after-a-stop", 20).await;
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);
    assert_eq!(started(&sidecar.log()), 2, "{}", sidecar.log());
    assert!(common::continuous_end(&sidecar.latest()) >= rev);
    drop(sidecar);
    etcd.stop();
}

/// With a delta memory limit far above what a restore by compaction
/// accepts (the seed manifest's 1Gi against the compactor's 256 MiB; here
/// 1Gi against 1 MiB), the sidecar cuts deltas at half of
/// `--compaction-max-delta-size`, also inside a watch response that holds
/// many revisions (a watch catching up), never splitting a revision: once
/// it wrote one delta of more than 1 GiB that its own restore refused.
/// Every delta it writes then restores with the same flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_are_cut_at_a_size_the_restore_accepts_whatever_the_memory_limit() {
    use druid_backup_restore::formats::compression::{self, Compression};
    const CUT: usize = 512 << 10;
    let store = Store::local("delta-cut");
    let mut etcd = common::start_etcd("delta-cut");
    let options = |etcd| SidecarOptions {
        delta_period: "300s",
        extra: vec![
            "--delta-snapshot-memory-limit=1Gi".into(),
            "--compaction-max-delta-size=1Mi".into(),
            "--full-snapshot-rate-estimate=0".into(),
        ],
        ..SidecarOptions::new(etcd, &store, "p")
    };
    let first = Sidecar::start(&options(&etcd));
    first.wait_leading();
    let (code, body) = first.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    drop(first);

    // About 9 MB of JSON behind: the new watch gets responses of many
    // revisions each.
    let head = write_large(&etcd, "cut", 800, 8 << 10).await;
    let sidecar = Sidecar::start(&options(&etcd));
    sidecar.wait_leading();
    wait_latest(&sidecar, 120, "no deltas cut by size", |l| {
        l["deltaSnapshots"].as_array().map_or(0, Vec::len) >= 8
    });
    let (code, body) = sidecar.get("/snapshot/delta");
    assert_eq!(code, 200, "{body}");
    sidecar.wait_store_revision(head);
    let latest = sidecar.latest();
    assert!(common::continuous_end(&latest) >= head, "{latest}");
    assert!(sidecar.log().contains("delta size limit reached"));

    let Store::Local { root, container } = &store else {
        unreachable!()
    };
    let dir = root.join(container).join("p/v2");
    let mut sizes = Vec::new();
    for d in latest["deltaSnapshots"].as_array().unwrap() {
        let name = d["snapName"].as_str().unwrap();
        let raw = std::fs::read(dir.join(name)).unwrap();
        let c = Compression::from_suffix(name.rfind('.').map_or("", |i| &name[i..])).unwrap();
        sizes.push(compression::decompress(c, &raw).unwrap().len());
    }
    // A delta passes the cut by at most one revision (one 8 KiB value,
    // base64 in JSON) and its hash.
    assert!(sizes.len() >= 8, "{sizes:?}");
    assert!(sizes.iter().all(|&s| s < CUT + (16 << 10)), "{sizes:?}");
    drop(sidecar);

    // The data directory lost: the restore by compaction, limited to
    // deltas of 1 MiB, takes every one of them.
    let mut client = etcd.client().await;
    let (expected, revision) = dump(&mut client).await;
    drop(client);
    etcd.stop();
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();
    let sidecar = Sidecar::start(&options(&etcd));
    assert_eq!(
        sidecar.initialize("full"),
        "Successful",
        "{}",
        sidecar.log()
    );
    etcd.restart().unwrap();
    let mut client = etcd.client().await;
    let (restored, restored_revision) = dump(&mut client).await;
    assert_eq!(restored_revision, revision);
    assert!(restored == expected, "the restored keys differ");
    drop(sidecar);
    etcd.stop();
}

/// The sidecar signs in to S3 with a web identity token (upstream's
/// `roleARN` + `token` keys) at a real STS (MinIO's, checking the test
/// issuer's tokens), and follows the mounted Secret: while the token is
/// one STS refuses, snapshots fail saying so; once the `token` file is
/// rewritten with a good one (as a projected token is renewed), the
/// snapshots succeed without a restart. Without a Secret, the pod's own
/// web identity (IRSA's variables) signs. No log line shows a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_tokens_are_followed_when_the_secret_is_renewed() {
    const AUDIENCE: &str = "sts.amazonaws.com";
    let issuer = druid_test_support::OidcIssuer::start().unwrap();
    let minio = druid_test_support::MinioServer::start_with_openid(&issuer, AUDIENCE).unwrap();
    let bucket = "etcdbr-web-identity";
    minio.create_bucket(bucket).unwrap();
    let dir = druid_test_support::server_dir("web-identity").unwrap();
    let role = minio.openid_role_arn(AUDIENCE);
    let refused = issuer.token("etcd", "etcd-main", "someone-else", 3600);
    let creds = common::secret_dir(
        &dir,
        "secret",
        &[
            ("region", minio.region()),
            ("roleARN", &role),
            ("token", &refused),
            ("stsEndpoint", minio.endpoint()),
        ],
    );
    let store = Store::Minio {
        bucket: bucket.into(),
        creds: creds.clone(),
        endpoint: minio.endpoint().into(),
    };
    let etcd = common::start_etcd("web-identity");
    let sidecar = Sidecar::start(&SidecarOptions {
        extra: vec!["--backoff-threshold-time=2s".into()],
        ..SidecarOptions::new(&etcd, &store, "wi")
    });
    let start = std::time::Instant::now();
    while !sidecar.log().contains("STS refused") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no STS refusal logged:\n{}",
            sidecar.process.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(sidecar.log().contains(&role), "{}", sidecar.log());

    // The token is renewed in place.
    let good = issuer.token("etcd", "etcd-main", AUDIENCE, 3600);
    std::fs::write(creds.join("token"), &good).unwrap();
    // The store answers again once the sidecar has read the Secret anew
    // (every 10 s at most).
    let start = std::time::Instant::now();
    while sidecar.get("/snapshot/latest").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the renewed token was not taken:\n{}",
            sidecar.process.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut client = etcd.client().await;
    write_mix(&mut client, "renewed", 20).await;
    let (_, rev) = dump(&mut client).await;
    sidecar.wait_store_revision(rev);
    let log = sidecar.log();
    assert!(
        log.contains("the store credentials changed"),
        "the new token was not noticed: {log}"
    );
    assert!(
        !log.contains(&good) && !log.contains(&refused),
        "a token leaked into the log: {log}"
    );
    let listed = minio
        .mc()
        .unwrap()
        .args(["ls", "--recursive", &format!("druid/{bucket}/wi/")])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("Full-") || listed.contains("Incr-"),
        "{listed}"
    );
    drop(sidecar);

    // Without a Secret: the pod's own web identity, the variables EKS's
    // pod identity webhook injects (the token file is a projected token).
    let token_file = dir.join("projected-token");
    let projected = issuer.token("etcd", "etcd-main", AUDIENCE, 3600);
    std::fs::write(&token_file, format!("{projected}\n")).unwrap();
    let store_flags = [
        "--storage-provider=S3".to_string(),
        format!("--store-container={bucket}"),
        "--store-prefix=pod-identity".to_string(),
        format!("--store-endpoint-override={}", minio.endpoint()),
    ];
    let env = [
        ("AWS_ROLE_ARN", std::path::Path::new(&role)),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_path()),
        ("AWS_REGION", std::path::Path::new(minio.region())),
        (
            "AWS_ENDPOINT_URL_STS",
            std::path::Path::new(minio.endpoint()),
        ),
    ];
    let snapshot = [
        "snapshot".to_string(),
        format!("--endpoints={}", etcd.client_url()),
    ];
    let out = common::etcdbr_with(None, &store_flags, &env, &snapshot);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "etcdbr snapshot with the pod's identity: {log}"
    );
    assert!(!log.contains(&projected), "the token leaked: {log}");
    let listed = minio
        .mc()
        .unwrap()
        .args([
            "ls",
            "--recursive",
            &format!("druid/{bucket}/pod-identity/"),
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("Full-"), "{listed}");
    // Neither a Secret nor a pod identity: the error says what to give.
    let out = common::etcdbr_with(
        None,
        &store_flags,
        &[("AWS_REGION", std::path::Path::new(minio.region()))],
        &snapshot,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("no credentials") && log.contains("$AWS_WEB_IDENTITY_TOKEN_FILE"),
        "{log}"
    );
    etcd.stop();
}

/// The keys and their values at `revision` (etcd keeps the history: the
/// test's etcd never compacts).
async fn dump_at(client: &mut Client, revision: i64) -> Vec<(Vec<u8>, Vec<u8>, i64, i64, i64)> {
    let resp = client
        .get(
            vec![0u8],
            Some(
                etcd_client::GetOptions::new()
                    .with_all_keys()
                    .with_revision(revision),
            ),
        )
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        })
        .collect()
}

/// `(start, last)` revisions of the snapshots of `kind` (`Full`, `Incr`)
/// below `prefix`, from their names.
fn stored_ranges(store: &Store, prefix: &str, kind: &str) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = store
        .keys(prefix)
        .iter()
        .filter_map(|k| {
            let name = k
                .rsplit('/')
                .next()?
                .strip_prefix(kind)?
                .strip_prefix('-')?;
            let mut parts = name.split('-');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect();
    ranges.sort_unstable();
    ranges
}

/// Point-in-time restore (`etcdbr restore --to-revision`), at three
/// cut-offs: inside the older full snapshot's history (its deltas, before
/// the newer full snapshot), in the middle of a delta after the newer full
/// snapshot (the delta is cut), and at the end. Each restored member
/// serves exactly the source's keys, values and revisions at that
/// revision; a cut-off outside what the store holds is refused with the
/// range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_in_time_restore_serves_the_sources_state_at_three_cut_offs() {
    let store = Store::local("pitr");
    let etcd = common::start_etcd("pitr");
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "pitr"));
    sidecar.wait_leading();
    let mut client = etcd.client().await;
    write_mix(&mut client, "first", 100).await;
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    write_mix(&mut client, "older", 150).await;
    let (_, older) = dump(&mut client).await;
    sidecar.wait_store_revision(older);
    let (code, body) = sidecar.get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    write_mix(&mut client, "newer", 300).await;
    let (_, newest) = dump(&mut client).await;
    sidecar.wait_store_revision(newest);
    drop(sidecar);

    // The sidecar's first full snapshot when it started, then the two
    // asked for.
    let fulls = stored_ranges(&store, "pitr/v2/", "Full");
    assert!(fulls.len() >= 2, "{fulls:?}");
    let oldest_full = fulls[0].1;
    let (first_full, second_full) = (fulls[fulls.len() - 2].1, fulls[fulls.len() - 1].1);
    let deltas = stored_ranges(&store, "pitr/v2/", "Incr");
    // The middle of the longest delta in `(after, until]`.
    let mid = |after: i64, until: i64| {
        let (start, last) = *deltas
            .iter()
            .filter(|(s, l)| *s > after && *l <= until && l - s >= 2)
            .max_by_key(|(s, l)| l - s)
            .unwrap_or_else(|| panic!("no delta of 3 revisions in ({after}, {until}]: {deltas:?}"));
        (start + last) / 2
    };
    // Inside the older full snapshot's history (a delta between the two
    // full snapshots), and in the middle of a delta after the newer one.
    let in_older = mid(first_full, second_full);
    let mid_delta = mid(second_full, newest);
    for revision in [in_older, mid_delta, newest] {
        let expected = dump_at(&mut client, revision).await;
        assert!(!expected.is_empty());
        let (restored, restored_revision) =
            common::restore_and_dump(&format!("pitr-{revision}"), |args| {
                let mut args = args.to_vec();
                args.push("--store-prefix=pitr".into());
                args.push(format!("--to-revision={revision}"));
                common::etcdbr(&store, &args)
            })
            .await;
        assert_eq!(
            restored_revision, revision,
            "the restored member's revision"
        );
        let restored: Vec<_> = restored
            .into_iter()
            .map(|(k, kv)| (k, kv.value, kv.create_revision, kv.mod_revision, kv.version))
            .collect();
        assert_eq!(
            restored.len(),
            expected.len(),
            "keys at revision {revision}"
        );
        assert!(
            restored == expected,
            "the state at revision {revision} differs"
        );
    }

    // Outside the store's range: refused, naming what it holds.
    let target = druid_test_support::EtcdMemberConfig::new("pitr-out").unwrap();
    for cut in [oldest_full - 1, newest + 1] {
        let mut args = vec!["restore".to_string()];
        args.extend(common::restore_flags(&target));
        args.push("--store-prefix=pitr".into());
        args.push(format!("--to-revision={cut}"));
        let out = common::etcdbr(&store, &args);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{log}");
        assert!(
            log.contains(&format!("revisions {oldest_full} to {newest}")),
            "{cut}: {log}"
        );
        assert!(
            !target.data_dir.exists(),
            "a refused restore wrote {}",
            target.data_dir.display()
        );
    }
    etcd.stop();
}
