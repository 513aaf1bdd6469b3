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

#[test]
fn go_durations_parse_as_go_does() {
    use druid_api::model::parse_duration;
    use std::time::Duration;
    for (text, want) in [
        ("0", Duration::ZERO),
        ("300s", Duration::from_secs(300)),
        ("5m", Duration::from_secs(300)),
        ("1h30m", Duration::from_secs(5400)),
        ("1.5h", Duration::from_secs(5400)),
        (".5s", Duration::from_millis(500)),
        ("1.s", Duration::from_secs(1)),
        ("+2s", Duration::from_secs(2)),
        ("1ms500us", Duration::from_micros(1500)),
        ("1µs", Duration::from_micros(1)),
        ("1μs", Duration::from_micros(1)),
        ("10ns", Duration::from_nanos(10)),
        ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        // Go's limit exactly: 2^63 - 1 ns.
        ("9223372036854775807ns", druid_api::model::MAX_GO_DURATION),
        ("0.0000000000000000000001h", Duration::ZERO),
    ] {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
}

#[test]
fn huge_or_malformed_durations_are_errors_not_panics() {
    use druid_api::model::parse_duration;
    for (text, says) in [
        ("99999999999999999999h", "too long"),
        ("9223372036854775808ns", "too long"),
        ("2562048h", "too long"),
        ("2562047h48m", "too long"),
        (
            "1000000000000000000000000000000000000000000000000s",
            "too long",
        ),
        ("", "empty"),
        ("5", "unit"),
        ("s", "number"),
        (".s", "number"),
        ("5d", "unknown unit 'd'"),
        ("1e9s", "unknown unit 'e'"),
        ("-5s", "negative"),
        ("inf", "number"),
        ("NaNs", "number"),
    ] {
        let err = parse_duration(text).unwrap_err();
        assert!(err.contains(says), "{text}: {err}");
        assert!(err.contains(text), "the message quotes the text: {err}");
    }
}

#[test]
fn a_huge_duration_in_a_spec_is_a_field_error() {
    let mut etcd = seed();
    etcd.spec.backup.delta_snapshot_period = Some("99999999999999999999h".into());
    let err = EtcdModel::from_etcd(&etcd).unwrap_err();
    let e = err
        .0
        .iter()
        .find(|e| e.field == "spec.backup.deltaSnapshotPeriod")
        .unwrap_or_else(|| panic!("{err:?}"));
    assert!(e.message.contains("too long"), "{}", e.message);
}

#[test]
fn replicas_beyond_the_bound_are_a_field_error() {
    let mut etcd = seed();
    etcd.spec.replicas = 2_000_000_000;
    let err = EtcdModel::from_etcd(&etcd).unwrap_err();
    let e = err
        .0
        .iter()
        .find(|e| e.field == "spec.replicas")
        .unwrap_or_else(|| panic!("{err:?}"));
    assert!(
        e.message.contains("2000000000")
            && e.message.contains(&druid_api::MAX_REPLICAS.to_string()),
        "{}",
        e.message
    );
    etcd.spec.replicas = druid_api::MAX_REPLICAS;
    EtcdModel::from_etcd(&etcd).unwrap();
    // The CRD refuses the same.
    let crds = serde_yaml_ng::to_string(&druid_api::crds()).unwrap();
    assert!(
        crds.contains(&format!("self <= {}", druid_api::MAX_REPLICAS)),
        "the CRD's bound on spec.replicas is not MAX_REPLICAS"
    );
}

#[test]
fn quantities_at_the_top_of_the_range_are_errors_or_values_never_panics() {
    for quota in [
        "9223372036854775807",
        "9223372036854775808",
        "8Ei",
        "7.99999999999Ei",
        "1e30",
        "999999999999999999999999999999Ei",
        "0.000000000000000000000000000001n",
    ] {
        let mut etcd = seed();
        etcd.spec.etcd.quota_legacy = Some(
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(quota.into()),
        );
        etcd.spec.storage_capacity = Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
            quota.into(),
        ));
        etcd.spec.etcd.storage_capacity = None;
        // Either a model or field errors; the test fails on a panic.
        if let Err(e) = EtcdModel::from_etcd(&etcd) {
            assert!(
                e.0.iter()
                    .any(|f| f.field.contains("uota") || f.field.contains("storageCapacity")),
                "{quota}: {e:?}"
            );
        }
    }
}

#[test]
fn a_source_cluster_to_join_is_checked_field_by_field() {
    use druid_api::etcd::{BootstrapExistingMember, BootstrapWithExistingCluster};
    let member = |name: &str, url: &str| BootstrapExistingMember {
        name: name.into(),
        peer_urls: vec![url.into()],
    };
    let mut etcd = seed();
    etcd.spec.etcd.bootstrap_with_existing_cluster = Some(BootstrapWithExistingCluster {
        client_endpoints: vec!["http://10.0.0.1:2379".into()],
        members: vec![member("source-0", "http://10.0.0.1:2380")],
    });
    let model = EtcdModel::from_etcd(&etcd).unwrap();
    assert_eq!(
        model.etcd.existing_cluster.as_ref().unwrap().members[0].name,
        "source-0"
    );

    // The seed has no TLS: https URLs, a duplicate, a name of the Etcd's
    // own members (`test-N`) and an empty list are each named.
    etcd.spec.etcd.bootstrap_with_existing_cluster = Some(BootstrapWithExistingCluster {
        client_endpoints: vec!["https://10.0.0.1:2379".into()],
        members: vec![
            member("source-0", "http://10.0.0.1:2380"),
            member("source-0", "http://10.0.0.2:2380"),
            member("test-7", "http://"),
        ],
    });
    let err = EtcdModel::from_etcd(&etcd).unwrap_err();
    let at = |field: &str| {
        err.0
            .iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("{field}: {err:?}"))
            .message
            .clone()
    };
    let f = "spec.etcd.bootstrapWithExistingCluster";
    assert!(at(&format!("{f}.clientEndpoints[0]")).contains("must be a http:// URL"));
    assert!(at(&format!("{f}.members[1].name")).contains("listed twice"));
    assert!(
        at(&format!("{f}.members[2].name")).contains("collides with this Etcd's own member names")
    );
    assert!(at(&format!("{f}.members[2].peerUrls[0]")).contains("with a host"));

    etcd.spec.etcd.bootstrap_with_existing_cluster = Some(BootstrapWithExistingCluster {
        client_endpoints: Vec::new(),
        members: Vec::new(),
    });
    let err = EtcdModel::from_etcd(&etcd).unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|e| e.field == format!("{f}.clientEndpoints"))
    );
    assert!(err.0.iter().any(|e| e.field == format!("{f}.members")));
}
