//! One Etcd never stops the operator: specs that once panicked it or made
//! it render without bound (a duration past Go's range, two billion
//! replicas, quantities at the top of the range) are applied next to a
//! healthy Etcd, which keeps being reconciled, while each bad one is told
//! what is wrong.
//!
//! The API server here has the Etcd CRD without its validation rules
//! (no CEL, no maxima, no patterns), as an older CRD or the Go operator's
//! has: the operator must not rely on the CRD to stay up.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs, reason = "test")]

mod common;

use std::path::PathBuf;

use common::{
    client, condition, kubectl_stdin, lax_crds, ok, operator_with_crds, seed_etcd, wait_for,
};
use druid_api::Etcd;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;

/// The operator, with the lax CRDs and the test-only plugins (the hostile
/// provider) beside the built-in ones.
fn operator() -> &'static common::Operator {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    static PLUGINS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let plugins = PLUGINS.get_or_init(|| {
        druid_test_support::plugin_components()
            .dir()
            .join("test-only")
            .display()
            .to_string()
    });
    operator_with_crds(
        DIR.get_or_init(lax_crds).as_path(),
        &["--plugins-dir", plugins],
    )
}

/// An Etcd that must be refused: name, edits of the seed, the field the
/// condition names, and what it says.
type BadSpec = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

async fn get_etcd(ns: &str, name: &str) -> Option<Etcd> {
    Api::<Etcd>::namespaced(client().await, ns)
        .get_opt(name)
        .await
        .unwrap()
}

async fn get_statefulset(ns: &str, name: &str) -> Option<StatefulSet> {
    Api::<StatefulSet>::namespaced(client().await, ns)
        .get_opt(name)
        .await
        .unwrap()
}

/// Waits for `SpecValid=False` on Etcd `name`; its message must name
/// `field` and say `says`, and no StatefulSet may exist for it.
async fn assert_refused(ns: &str, name: &str, field: &str, says: &str) {
    let e = wait_for(&format!("SpecValid=False on {name}"), || async {
        get_etcd(ns, name)
            .await
            .filter(|e| condition(e, "SpecValid").is_some_and(|c| c.0 == "False"))
    })
    .await;
    let (_, reason, message) = condition(&e, "SpecValid").unwrap();
    assert!(
        message.contains(field) && message.contains(says),
        "{name}: the condition does not say what is wrong ({reason}): {message}"
    );
    assert!(
        get_statefulset(ns, name).await.is_none(),
        "{name}: a StatefulSet was built for a refused spec"
    );
}

/// Applies the seed as Etcd `name` in `ns` and waits for its StatefulSet.
async fn apply_healthy(ns: &str, name: &str) {
    ok(&kubectl_stdin(
        &["apply", "-f", "-"],
        &seed_etcd(ns, name, &[]),
    ));
    wait_for("the healthy Etcd's StatefulSet", || async {
        get_statefulset(ns, name).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_specs_next_to_a_healthy_etcd_never_stop_the_operator() {
    let op = operator();
    let ns = "hostile";
    common::namespace(ns, true);
    apply_healthy(ns, "good").await;

    let bad: [BadSpec; 4] = [
        (
            "huge-period",
            vec![(
                "deltaSnapshotPeriod: 300s",
                "deltaSnapshotPeriod: 99999999999999999999h",
            )],
            "spec.backup.deltaSnapshotPeriod",
            "too long",
        ),
        (
            "huge-timeout",
            vec![(
                "  backup:\n",
                "  backup:\n    etcdSnapshotTimeout: 9223372036854775808ns\n",
            )],
            "spec.backup.etcdSnapshotTimeout",
            "too long",
        ),
        (
            "two-billion",
            vec![("replicas: 1", "replicas: 2000000000")],
            "spec.replicas",
            "at most 9",
        ),
        (
            "huge-quota",
            vec![("Quota: 8Gi", "Quota: \"9223372036854775808\"")],
            "spec.etcd.Quota",
            "too large",
        ),
    ];
    for (name, edits, _, _) in &bad {
        ok(&kubectl_stdin(
            &["apply", "-f", "-"],
            &seed_etcd(ns, name, edits),
        ));
    }
    for (name, _, field, says) in &bad {
        assert_refused(ns, name, field, says).await;
    }

    // The healthy Etcd is still served: a change to it is applied.
    common::scale_etcd(ns, "good", 3);
    wait_for("the healthy Etcd's change applied", || async {
        Api::<StatefulSet>::namespaced(client().await, ns)
            .get_opt("good")
            .await
            .unwrap()
            .filter(|s| s.spec.as_ref().and_then(|s| s.replicas) == Some(3))
    })
    .await;
    assert_eq!(op.exited(), None, "the operator exited:\n{}", op.log());
    let log = op.log();
    assert!(!log.contains("panicked"), "the operator panicked:\n{log}");
}

/// A provider plugin's pod wiring never reaches a pod as it is: the hostile
/// plugin asks to mount the node's `/`, to point its credentials at the
/// service-account token, for `LD_PRELOAD`, to mount over etcd's data
/// directory, and never answers at all. Each is refused with a condition
/// naming what was asked, no StatefulSet is built, and a healthy Etcd is
/// still served.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugins_hostile_pod_wiring_is_refused_with_a_condition() {
    let op = operator();
    let ns = "hostile-wiring";
    common::namespace(ns, true);
    let cases: [(&str, &str); 5] = [
        ("wire-node-root", "outside the operator's Local root"),
        ("wire-token", "the host allows only"),
        ("wire-env", "LD_PRELOAD"),
        ("wire-data", "mount path \"/var/etcd/data\""),
        ("wire-spin", "provider plugin failed"),
    ];
    for (container, _) in &cases {
        ok(&kubectl_stdin(
            &["apply", "-f", "-"],
            &seed_etcd(
                ns,
                container,
                &[
                    ("storageProvider: S3", "storageProvider: Hostile"),
                    (
                        "storageContainer: test",
                        &format!("storageContainer: {container}"),
                    ),
                ],
            ),
        ));
    }
    for (name, says) in &cases {
        assert_refused(ns, name, "spec.store.storageProvider", says).await;
    }
    apply_healthy(ns, "fine").await;
    // No credential of the store Secret in any condition or event.
    let mut said: Vec<String> = Api::<Etcd>::namespaced(client().await, ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .flat_map(|e| e.status.map(|s| s.conditions).unwrap_or_default())
        .map(|c| c.message)
        .collect();
    said.extend(
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(client().await, ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.message),
    );
    assert!(
        said.len() > cases.len(),
        "too few messages to scan: {said:?}"
    );
    for secret in ["AKIAEXAMPLE", "example-secret"] {
        assert!(
            said.iter().all(|m| !m.contains(secret)),
            "a credential in a condition or event: {said:?}"
        );
    }
    assert_eq!(op.exited(), None, "the operator exited:\n{}", op.log());
}
