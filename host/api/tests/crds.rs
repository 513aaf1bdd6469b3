//! The CRD YAML under deploy/crds/ is generated from the types: this test
//! fails when it drifts (and rewrites it with DRUID_UPDATE_CRDS=1).
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::path::PathBuf;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
    let update = std::env::var_os("DRUID_UPDATE_CRDS").is_some();
    let mut stale = Vec::new();
    for (file, crd) in druid_api::crds() {
        let want = druid_api::crd_yaml(&crd).unwrap();
        let path = dir.join(file);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &want).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "CRD YAML differs from the types: {stale:?}; regenerate with DRUID_UPDATE_CRDS=1 cargo test -p druid-api --test crds and commit"
    );
}

#[test]
fn the_etcd_crd_has_status_scale_and_printer_columns() {
    let crd = <druid_api::Etcd as kube::CustomResourceExt>::crd_name();
    assert_eq!(crd, "etcds.druid.gardener.cloud");
    let crd = <druid_api::Etcd as kube::CustomResourceExt>::crd();
    let v = &crd.spec.versions[0];
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let cols: Vec<(&str, i32)> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.as_str(), c.priority.unwrap_or(0)))
        .collect();
    for name in ["Ready", "Quorate", "AllMembersReady", "BackupReady", "Age"] {
        assert!(cols.contains(&(name, 0)), "{name} in {cols:?}");
    }
    assert!(cols.iter().any(|(_, p)| *p == 1), "wide columns: {cols:?}");
}
