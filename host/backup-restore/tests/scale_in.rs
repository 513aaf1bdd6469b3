//! The scale-in steps (`POST /members/scale-in/{prepare,remove}`) on a real
//! cluster of three etcd processes named as an Etcd's members (`test-N`),
//! through the sidecar of `test-0`: `prepare` moves leadership off the
//! leaving member and refuses while another member is down (the cluster
//! would be left without a healthy majority); `remove` takes the running
//! member out, then again from two members down to one (the step a
//! stopped member would make impossible), is idempotent, finds a member
//! that never started (no name yet) by its peer URLs, and never removes a
//! member of another cluster.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use common::{Sidecar, SidecarOptions, Store, http_post as post};
use druid_test_support::EtcdCluster;

/// The member names `endpoint` lists once they are `expected`, or what it
/// lists after 10 s: a member shows a membership change once it has
/// applied it, a moment after the change was committed (etcd 3.7's member
/// list is served from the member's own state).
async fn names_when(endpoint: &str, expected: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = names(endpoint).await;
        if got == expected || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn names(endpoint: &str) -> Vec<String> {
    let mut c = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    let mut names: Vec<String> = c
        .member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    names.sort();
    names
}

/// Moves leadership to the member named `to`.
async fn lead(all: &[String], to: &str) {
    let mut c = etcd_client::Client::connect(all, None).await.unwrap();
    let members = c.member_list().await.unwrap();
    let target = members
        .members()
        .iter()
        .find(|m| m.name() == to)
        .unwrap()
        .id();
    let leader = c.status().await.unwrap().leader();
    if leader == target {
        return;
    }
    for endpoint in all {
        let mut l = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        if l.status().await.unwrap().header().unwrap().member_id() == leader {
            l.move_leader(target).await.unwrap();
        }
    }
    assert_eq!(c.status().await.unwrap().leader(), target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaves_after_leadership_moved_and_its_process_stopped_never_costing_the_quorum() {
    let mut members = EtcdCluster::start_with("scalein", 3, |i, c| {
        c.name = format!("test-{i}");
    })
    .unwrap()
    .into_members();
    let all: Vec<String> = members.iter().map(|m| m.client_url()).collect();
    let store = Store::local("scalein");
    let sidecar = Sidecar::start(&SidecarOptions {
        service_endpoints: Some(all.join(",")),
        env: vec![("POD_NAME".into(), "test-0".into())],
        ..SidecarOptions::new(&members[0], &store, "scalein")
    });
    let step = |step: &str, member: &str| {
        post(&format!(
            "{}/members/scale-in/{step}?member={member}",
            sidecar.url
        ))
    };

    // Refused: a name that is not one of this Etcd's members, an unknown
    // step.
    let (code, body) = step("remove", "source-0");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("not a member of this Etcd"), "{body}");
    let (code, body) = step("leave", "test-2");
    assert_eq!(code, 404, "{body}");

    // While test-1 is down, test-2 may not prepare to leave: the two
    // remaining members would not both answer.
    members[1].stop();
    let (code, body) = step("prepare", "test-2");
    assert_eq!(code, 503, "{body}\n{}", sidecar.log());
    assert!(body.contains("test-1"), "{body}");
    members[1].restart().unwrap();

    // The leaving member leads: prepare moves leadership off it.
    lead(&all, "test-2").await;
    let (code, body) = step("prepare", "test-2");
    assert_eq!(code, 200, "{body}\n{}", sidecar.log());
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["outcome"], "prepared", "{report}");
    let leader = report["leader"].as_str().unwrap();
    assert!(leader == "test-0" || leader == "test-1", "{report}");
    assert_eq!(
        names_when(&all[0], &["test-0", "test-1", "test-2"]).await,
        ["test-0", "test-1", "test-2"]
    );

    // It leaves while it runs (its etcd then stops by itself), and its
    // process stops (the StatefulSet shrank).
    let mut c = etcd_client::Client::connect(&all[..2], None).await.unwrap();
    c.put("before", "scale-in", None).await.unwrap();
    let (code, body) = step("remove", "test-2");
    assert_eq!(code, 200, "{body}\n{}", sidecar.log());
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["outcome"], "removed", "{report}");
    assert_eq!(report["remaining"], serde_json::json!(["test-0", "test-1"]));
    assert_eq!(
        names_when(&all[0], &["test-0", "test-1"]).await,
        ["test-0", "test-1"]
    );
    members[2].stop();
    // Asked again once the pod is gone (or by an operator restarted
    // mid-step): nothing to do.
    let (code, body) = step("remove", "test-2");
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["outcome"], "absent", "{report}");
    // The two members serve the data and take writes.
    let got = c.get("before", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"scale-in");
    c.put("after", "scale-in", None).await.unwrap();

    // A member that was added but never started has no name: a learner
    // that re-added itself while its pod stopped. By name alone it is
    // `absent`; by its peer URLs it is found and removed. A started
    // member is matched by name only, whatever peer URLs are named.
    let unstarted = format!(
        "http://127.0.0.1:{}",
        druid_test_support::free_port().unwrap()
    );
    c.member_add(
        [unstarted.as_str()],
        Some(etcd_client::MemberAddOptions::new().with_is_learner()),
    )
    .await
    .unwrap();
    assert_eq!(
        names_when(&all[0], &["", "test-0", "test-1"]).await,
        ["", "test-0", "test-1"]
    );
    let test_1_peers = c
        .member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .find(|m| m.name() == "test-1")
        .unwrap()
        .peer_urls()
        .join(",");
    for query in [
        "member=test-3".to_string(),
        "member=test-3&peerUrls=http://127.0.0.1:1".to_string(),
        format!("member=test-3&peerUrls={test_1_peers}"),
    ] {
        let (code, body) = post(&format!("{}/members/scale-in/remove?{query}", sidecar.url));
        assert_eq!(code, 200, "{query}: {body}\n{}", sidecar.log());
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(report["outcome"], "absent", "{query}: {report}");
    }
    assert_eq!(
        names_when(&all[0], &["", "test-0", "test-1"]).await,
        ["", "test-0", "test-1"]
    );
    let (code, body) = post(&format!(
        "{}/members/scale-in/remove?member=test-3&peerUrls=http://127.0.0.1:1,{unstarted}",
        sidecar.url
    ));
    assert_eq!(code, 200, "{body}\n{}", sidecar.log());
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["outcome"], "removed", "{report}");
    assert_eq!(report["remaining"], serde_json::json!(["test-0", "test-1"]));
    assert_eq!(
        names_when(&all[0], &["test-0", "test-1"]).await,
        ["test-0", "test-1"]
    );

    // From two members to one: test-1 leaves while it runs (stopped
    // first, the two-member cluster would have no quorum to remove it).
    let (code, body) = step("prepare", "test-1");
    assert_eq!(code, 200, "{body}\n{}", sidecar.log());
    let (code, body) = step("remove", "test-1");
    assert_eq!(code, 200, "{body}\n{}", sidecar.log());
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["remaining"], serde_json::json!(["test-0"]));
    members[1].stop();
    assert_eq!(names_when(&all[0], &["test-0"]).await, ["test-0"]);
    let mut c = etcd_client::Client::connect(&all[..1], None).await.unwrap();
    let got = c.get("after", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"scale-in");
    c.put("alone", "scale-in", None).await.unwrap();

    // The last member never leaves.
    let (code, body) = step("remove", "test-0");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("only member"), "{body}");
}
