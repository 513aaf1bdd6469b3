//! The cut-over endpoint (`POST /members/cut-over`) on a real cluster of
//! five etcd processes: three named as an Etcd's members (`test-N`), two
//! as the source cluster's. The sidecar of `test-0` moves leadership off a
//! source member that leads, removes the source members one at a time,
//! and refuses to remove a member of its own Etcd or to leave a member
//! behind that is neither.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use common::{Sidecar, SidecarOptions, Store, http_post as post};
use druid_test_support::EtcdCluster;

const NAMES: [&str; 5] = ["test-0", "test-1", "test-2", "source-0", "source-1"];

async fn members(endpoint: &str) -> Vec<(String, u64)> {
    let mut c = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    c.member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .map(|m| (m.name().to_string(), m.id()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_members_leave_one_at_a_time_after_leadership_moved_to_a_member_of_the_etcd() {
    let cluster = EtcdCluster::start_with("cutover", NAMES.len(), |i, c| {
        c.name = NAMES[i].to_string();
    })
    .unwrap();
    let all = cluster.client_urls();
    let store = Store::local("cutover");
    let test0 = &cluster.members()[0];
    let sidecar = Sidecar::start(&SidecarOptions {
        service_endpoints: Some(all.join(",")),
        env: vec![("POD_NAME".into(), "test-0".into())],
        ..SidecarOptions::new(test0, &store, "cutover")
    });

    // Leadership on a source member, so that it has to move.
    let ids = members(&all[0]).await;
    let source0 = ids.iter().find(|(n, _)| n == "source-0").unwrap().1;
    let mut c = etcd_client::Client::connect(&all, None).await.unwrap();
    let leader = c.status().await.unwrap().leader();
    if leader != source0 {
        // Only the leader moves leadership.
        for endpoint in &all {
            let mut l = etcd_client::Client::connect([endpoint], None)
                .await
                .unwrap();
            let status = l.status().await.unwrap();
            if status.header().unwrap().member_id() == leader {
                l.move_leader(source0).await.unwrap();
            }
        }
    }
    assert_eq!(c.status().await.unwrap().leader(), source0);
    c.put("before", "cut-over", None).await.unwrap();

    // Refused: a member of this Etcd, and a source member left behind.
    let (code, body) = post(&format!(
        "{}/members/cut-over?remove=source-0,test-1",
        sidecar.url
    ));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("test-1 is a member of this Etcd"), "{body}");
    let (code, body) = post(&format!("{}/members/cut-over?remove=source-0", sidecar.url));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("source-1"), "{body}");
    assert_eq!(
        members(&all[0]).await.len(),
        5,
        "a refused request removed a member"
    );

    let (code, body) = post(&format!(
        "{}/members/cut-over?remove=source-0,source-1",
        sidecar.url
    ));
    assert_eq!(code, 200, "{body}\n{}", sidecar.log());
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        report["removed"],
        serde_json::json!(["source-0", "source-1"])
    );
    assert!(
        report["leader"].as_str().unwrap().starts_with("test-"),
        "{report}"
    );
    let mut left: Vec<String> = members(&all[0]).await.into_iter().map(|(n, _)| n).collect();
    left.sort();
    assert_eq!(left, ["test-0", "test-1", "test-2"]);
    // The data is there, and the cluster takes writes.
    let mut c = etcd_client::Client::connect(&all[..3], None).await.unwrap();
    let got = c.get("before", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"cut-over");
    c.put("after", "cut-over", None).await.unwrap();

    // Asked again (the operator repeats until it sees the answer): nothing
    // left to do.
    let (code, body) = post(&format!(
        "{}/members/cut-over?remove=source-0,source-1",
        sidecar.url
    ));
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["removed"], serde_json::json!([]));
    assert_eq!(
        report["absent"],
        serde_json::json!(["source-0", "source-1"])
    );
}
