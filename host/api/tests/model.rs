//! Validation of the founding manifest's fields that the sidecar acts on.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use druid_api::{Etcd, EtcdModel};

fn seed() -> Etcd {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/samples/seed-etcd.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_seed_defragmentation_window_is_accepted() {
    let model = EtcdModel::from_etcd(&seed()).unwrap();
    assert_eq!(model.etcd.defrag_schedule.as_deref(), Some("0 */24 * * *"));
    assert_eq!(model.etcd.defrag_timeout.as_secs(), 900);
}

#[test]
fn an_invalid_defragmentation_schedule_is_rejected_with_the_field_named() {
    for bad in ["0 25 * * *", "every night", "* * * *"] {
        let mut etcd = seed();
        etcd.spec.etcd.defragmentation_schedule = Some(bad.into());
        let err = EtcdModel::from_etcd(&etcd).unwrap_err();
        let e = err
            .0
            .iter()
            .find(|e| e.field == "spec.etcd.defragmentationSchedule")
            .unwrap_or_else(|| panic!("{bad}: {err:?}"));
        assert!(
            e.message.contains("is not a valid cron schedule") && e.message.contains(bad),
            "{}",
            e.message
        );
    }
}
