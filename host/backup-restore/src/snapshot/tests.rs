//! Unit tests of the snapshotter's pure parts: failure classes, the full
//! snapshot schedule.

use super::*;
use chrono::TimeZone;

fn cron(s: &str) -> croner::Cron {
    druid_api::model::parse_cron(s).unwrap()
}

#[test]
fn every_failure_class_is_a_known_metric_label() {
    let errors = [
        SnapshotError::WatchEnded(String::new()),
        SnapshotError::Timeout(Duration::from_secs(1)),
        SnapshotError::Integrity(String::new()),
        SnapshotError::Io(String::new()),
        SnapshotError::Compacted {
            compacted: 2,
            last: 1,
        },
        SnapshotError::Inactive,
        SnapshotError::Store(store::Error::Io {
            what: "x",
            path: PathBuf::new(),
            source: std::io::Error::other("x"),
        }),
    ];
    for e in &errors {
        assert!(
            crate::metrics::FAILURE_CLASSES.contains(&e.class()),
            "{}",
            e.class()
        );
    }
    assert!(crate::metrics::FAILURE_CLASSES.contains(&"delta"));
    assert!(crate::metrics::FAILURE_CLASSES.contains(&"etcd"));
}

#[test]
fn no_full_snapshot_means_one_is_due() {
    assert!(full_required_at_startup(
        None,
        &cron("0 */1 * * *"),
        Utc::now()
    ));
}

#[test]
fn a_missed_schedule_means_a_full_snapshot_is_due() {
    let taken = Utc.with_ymd_and_hms(2026, 11, 30, 10, 5, 0).unwrap();
    let prev = Snapshot::full(100, taken.timestamp(), Compression::Gzip);
    let hourly = cron("0 */1 * * *");
    let soon = Utc.with_ymd_and_hms(2026, 11, 30, 10, 59, 0).unwrap();
    let later = Utc.with_ymd_and_hms(2026, 11, 30, 11, 0, 1).unwrap();
    assert!(!full_required_at_startup(Some(&prev), &hourly, soon));
    assert!(full_required_at_startup(Some(&prev), &hourly, later));
}

#[test]
fn a_final_full_snapshot_is_not_a_base() {
    let now = Utc::now();
    let mut prev = Snapshot::full(100, now.timestamp(), Compression::Gzip);
    prev.is_final = true;
    assert!(full_required_at_startup(
        Some(&prev),
        &cron("0 0 * * *"),
        now
    ));
}

#[test]
fn a_delta_is_cut_at_the_memory_limit_or_half_of_what_the_compactor_accepts() {
    // The seed's 1Gi against the compactor's default 256 MiB.
    assert_eq!(super::delta_cut(1 << 30, 256 << 20), 128 << 20);
    // Upstream's chart default stays as it is.
    assert_eq!(super::delta_cut(100_000_000, 256 << 20), 100_000_000);
    assert_eq!(super::delta_cut(0, 0), 1);
}
