//! Joining an existing cluster (`spec.etcd.bootstrapWithExistingCluster`)
//! against the real API server and the operator: the CRD's rules refuse
//! what cannot work (added after creation, wrong schemes, duplicate or
//! colliding names, edits while the members join), and the operator wires
//! the source cluster into what the pods read (the ConfigMap's initial
//! cluster, the sidecar's flags) and says the join is in progress. The
//! join itself and the cut-over run on the real node
//! (`tests/e2e/tests/node.rs`).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs, reason = "test")]

mod common;

use common::{
    client, condition, kubectl, kubectl_stdin, namespace, ok, operator, seed_etcd, wait_for,
};
use druid_api::Etcd;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

const NS: &str = "join";

const SOURCE: &str = "    bootstrapWithExistingCluster:
      clientEndpoints: [\"http://10.0.0.1:2379\"]
      members:
      - name: vm-a
        peerUrls: [\"http://10.0.0.1:2380\"]
      - name: vm-b
        peerUrls: [\"http://10.0.0.2:2380\"]
";

/// The seed as Etcd `name`, with `source` as its `spec.etcd.bootstrapWithExistingCluster`.
fn joining(name: &str, source: &str) -> String {
    // The spec's `etcd:` is the first (the status has one too).
    let seed = seed_etcd(NS, name, &[]);
    seed.replacen("  etcd:\n", &format!("  etcd:\n{source}"), 1)
}

fn apply(manifest: &str) -> (bool, String) {
    let out = kubectl_stdin(&["apply", "--validate=strict", "-f", "-"], manifest);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_is_wired_into_the_pods_config_and_the_crd_refuses_what_cannot_work() {
    operator();
    namespace(NS, true);

    // Refused at creation, each with a message naming what is wrong.
    for (source, message) in [
        (
            SOURCE.replace("http://10.0.0.1:2379", "https://10.0.0.1:2379"),
            "clientEndpoints must use https:// when spec.etcd.clientUrlTls is set, http:// otherwise",
        ),
        (
            SOURCE.replace("http://10.0.0.2:2380", "ftp://10.0.0.2:2380"),
            "peerUrls must be http:// or https:// URLs",
        ),
        (
            SOURCE.replace("name: vm-b", "name: vm-a"),
            "members[].name must be unique",
        ),
        (
            SOURCE.replace("name: vm-b", "name: bad-0"),
            "must not start with this Etcd's member names",
        ),
    ] {
        let (accepted, err) = apply(&joining("bad", &source));
        assert!(!accepted, "accepted: {source}");
        assert!(err.contains(message), "{source}: {err}");
    }

    // Accepted at creation: the pods' configuration names the source.
    let (accepted, err) = apply(&joining("test", SOURCE));
    assert!(accepted, "{err}");
    let c = client().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(c.clone(), NS);
    let config = wait_for("the ConfigMap", || async {
        config_maps.get_opt("test-config").await.ok().flatten()
    })
    .await;
    let file = &config.data.unwrap()["etcd.conf.yaml"];
    assert!(
        file.contains(
            "initial-cluster: test-0=http://test-0.test-peer.join.svc:2380,vm-a=http://10.0.0.1:2380,vm-b=http://10.0.0.2:2380\n"
        ),
        "{file}"
    );
    let statefulsets: Api<StatefulSet> = Api::namespaced(c.clone(), NS);
    let sts = wait_for("the StatefulSet", || async {
        statefulsets.get_opt("test").await.ok().flatten()
    })
    .await;
    let sidecar = sts.spec.unwrap().template.spec.unwrap().containers[1]
        .args
        .clone()
        .unwrap();
    assert!(
        sidecar.contains(
            &"--service-endpoints=http://test-client:2379,http://10.0.0.1:2379".to_string()
        ),
        "{sidecar:?}"
    );
    assert!(sidecar.contains(&"--join-existing-cluster=true".to_string()));

    // No member joined (no pods here): in progress, and the source cannot
    // change meanwhile.
    let etcds: Api<Etcd> = Api::namespaced(c.clone(), NS);
    let (status, reason, message) = wait_for("BootstrappedWithExistingCluster", || async {
        let etcd = etcds.get("test").await.ok()?;
        condition(&etcd, "BootstrappedWithExistingCluster")
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "BootstrapInProgress")
    );
    assert!(message.starts_with("0 of 1 members joined"), "{message}");
    let out = kubectl(&[
        "-n",
        NS,
        "patch",
        "etcd",
        "test",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/etcd/bootstrapWithExistingCluster/members/1/name","value":"vm-c"}]"#,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot change while the members are joining the source cluster"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An Etcd created without a source cannot get one later.
    let (accepted, err) = apply(&seed_etcd(NS, "plain", &[]));
    assert!(accepted, "{err}");
    let (accepted, err) = apply(&joining("plain", SOURCE));
    assert!(!accepted);
    assert!(
        err.contains("can only be set when the Etcd is created"),
        "{err}"
    );
    ok(&kubectl(&[
        "-n",
        NS,
        "delete",
        "etcd",
        "plain",
        "--wait=false",
    ]));
}
