//! The `copy` scenario: `etcdbr copy` of the restore scenario's full
//! snapshot and deltas from a Local store to MinIO, against `mc mirror` of
//! the same files, then the rerun that finds everything copied.

use crate::common::*;

/// Copies the objects below MinIO's `restore/` (a full snapshot and its
/// deltas) into a Local store first (untimed), then times the copies back.
pub(crate) fn copy_scenario(b: &Bench) {
    let root = b.dir.join("copy-local");
    remove_dir(&root);
    let source = root.join("backups").join("restore");
    std::fs::create_dir_all(&source).unwrap();
    b.mc_measured(
        "mc-mirror-copy-setup",
        &[
            "mirror",
            &format!("druid/{BUCKET}/restore"),
            source.to_str().unwrap(),
        ],
    );
    let objects = b.objects("restore/");
    let bytes: u64 = objects.iter().map(|o| o.1).sum();
    eprintln!("copy: {} objects, {:.0} MiB", objects.len(), mib(bytes));

    let ours = |label: &str| {
        let mut c = b.etcdbr("copy", "copy-ours");
        c.arg("--source-storage-provider=Local")
            .arg("--source-store-container=backups")
            .arg("--source-store-prefix=restore")
            .env("SOURCE_LOCAL_STORE_ROOT", &root);
        run_measured(label, c, &b.dir.join(format!("{label}.log")))
    };
    wait_for_quiet_machine();
    eprintln!("copy: etcdbr copy Local → MinIO");
    let first = ours("etcdbr-copy");
    let copied = b.objects("copy-ours/");
    assert_eq!(copied.len(), objects.len(), "every object copied");
    assert_eq!(copied.iter().map(|o| o.1).sum::<u64>(), bytes);
    wait_for_quiet_machine();
    eprintln!("copy: etcdbr copy again (everything there: sizes and SHA-256 compared)");
    let again = ours("etcdbr-copy-again");
    wait_for_quiet_machine();
    eprintln!("copy: mc mirror Local → MinIO");
    let peer = b.mc_measured(
        "mc-mirror-copy",
        &[
            "mirror",
            source.to_str().unwrap(),
            &format!("druid/{BUCKET}/copy-peer"),
        ],
    );
    assert_eq!(b.objects("copy-peer/").len(), objects.len());

    let rate = |m: &Measured| mib(bytes) / m.elapsed.as_secs_f64();
    println!(
        "\ncopy: {} objects, {:.0} MiB, Local store → MinIO on loopback",
        objects.len(),
        mib(bytes)
    );
    println!("| copy | seconds | MiB/s | peak RSS MiB |");
    println!("|---|---|---|---|");
    for (name, m) in [
        ("etcdbr copy", &first),
        ("etcdbr copy, rerun (all skipped)", &again),
        ("mc mirror (peer)", &peer),
    ] {
        println!(
            "| {name} | {:.1} | {:.0} | {:.0} |",
            m.elapsed.as_secs_f64(),
            rate(m),
            m.peak_kib as f64 / 1024.0
        );
    }
    println!(
        "etcdbr copy / mc mirror throughput: {:.2}x",
        peer.elapsed.as_secs_f64() / first.elapsed.as_secs_f64()
    );
    remove_dir(&root);
    for prefix in ["copy-ours", "copy-peer"] {
        let _ = b
            .mc()
            .args(["rm", "--recursive", "--force"])
            .arg(format!("druid/{BUCKET}/{prefix}"))
            .output();
    }
}
