//! The `upload` scenario: `etcdbr snapshot` against `etcdctl snapshot save` plus `mc cp`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use druid_test_support::EtcdMember;

use crate::common::*;

// ---------------------------------------------------------------- upload

pub(crate) fn upload_scenario(
    b: &Bench,
    etcd: &EtcdMember,
    filled: &Filled,
    db_mib: u64,
) -> PathBuf {
    wait_for_quiet_machine();
    b.warm_plugin_cache();
    let tmp = b.dir.join("snapstore-tmp");
    let snapshot = |prefix: &str, compress: bool| {
        let mut c = b.etcdbr("snapshot", prefix);
        c.arg(format!("--endpoints={}", etcd.client_url()))
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
        .arg(format!("--endpoints={}", etcd.client_url()))
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
