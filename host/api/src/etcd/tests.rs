#![allow(clippy::unwrap_used, reason = "tests")]

use super::Etcd;

#[test]
fn secret_names_are_read_from_every_spelling_valid_or_not() {
    let mut etcd: Etcd =
        serde_yaml_ng::from_str(include_str!("../../../../deploy/samples/seed-etcd.yaml")).unwrap();
    // Invalid for the model (a cron out of range): the names still count.
    etcd.spec.backup.full_snapshot_schedule = Some("61 * * * *".into());
    let names: Vec<String> = etcd.spec.secret_names().into_iter().collect();
    assert_eq!(names, ["etcd-backup", "etcd-client-tls", "etcd-server-tls"]);
}
