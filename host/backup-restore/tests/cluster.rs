//! Three members, three sidecars, a real kube-apiserver for the leases:
//! only the leader's sidecar snapshots, the others forward requests to it,
//! the leases carry what the operator reads, and a leader change continues
//! the deltas without a gap.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use std::time::{Duration, Instant};

use common::{Sidecar, SidecarOptions, Store, create_lease, dump, wait_holder};
use druid_test_support::EtcdMember;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_snapshots_and_a_new_leader_continues_without_a_gap() {
    let (namespace, leases) = common::lease_namespace("cluster").await;
    for name in ["c-full-snap", "c-delta-snap", "m0", "m1", "m2"] {
        create_lease(&leases, name).await;
    }

    let mut members = common::start_members("cluster", 3, &[]);
    let all = common::client_urls(&members);
    let store = Store::minio("cluster");
    let port = druid_test_support::free_port().unwrap();
    let kubeconfig = druid_test_support::KubeApiServer::shared()
        .kubeconfig()
        .display()
        .to_string();
    let sidecars: Vec<Sidecar> = members
        .iter()
        .map(|m| {
            Sidecar::start(&SidecarOptions {
                service_endpoints: Some(all.clone()),
                port: Some(port),
                extra: vec![
                    "--enable-snapshot-lease-renewal=true".into(),
                    "--enable-member-lease-renewal=true".into(),
                    "--k8s-heartbeat-duration=1s".into(),
                    "--full-snapshot-lease-name=c-full-snap".into(),
                    "--delta-snapshot-lease-name=c-delta-snap".into(),
                ],
                env: vec![
                    ("POD_NAMESPACE".into(), namespace.clone()),
                    ("POD_NAME".into(), m.name().to_string()),
                    ("KUBECONFIG".into(), kubeconfig.clone()),
                ],
                ..SidecarOptions::new(m, &store, "c")
            })
        })
        .collect();

    // Exactly one sidecar is healthy: the leader's.
    let mut client = etcd_client::Client::connect(
        members
            .iter()
            .map(EtcdMember::client_url)
            .collect::<Vec<_>>(),
        None,
    )
    .await
    .unwrap();
    let start = Instant::now();
    let leader = loop {
        let healthy: Vec<usize> = (0..3)
            .filter(|&i| sidecars[i].get("/healthz").0 == 200)
            .collect();
        if healthy.len() == 1 {
            break healthy[0];
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "healthy sidecars: {healthy:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        common::leader_index(&mut client, &members).await,
        leader,
        "the healthy sidecar is the etcd leader's"
    );
    let members_list = client.member_list().await.unwrap();

    for i in 0..50 {
        client.put(format!("k{i}"), "v", None).await.unwrap();
    }
    // A follower forwards the request to the leader's sidecar.
    let follower = (leader + 1) % 3;
    let (code, body) = sidecars[follower].get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    let full: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(full["kind"], "Full");
    for (i, s) in sidecars.iter().enumerate() {
        let uploads = s.log().matches("full snapshot uploaded").count();
        if i == leader {
            assert!(
                uploads >= 2,
                "the leader took the start-up and the requested full snapshot"
            );
        } else {
            assert_eq!(
                uploads,
                0,
                "sidecar of follower m{i} uploaded:\n{}",
                s.log()
            );
        }
    }

    // Leases: the full lease holds the full snapshot's revision, the delta
    // lease follows the deltas, the member leases say who leads.
    let full_rev = full["lastRevision"].as_i64().unwrap();
    wait_holder(&leases, "c-full-snap", |h| {
        h.parse::<i64>().is_ok_and(|r| r >= full_rev)
    })
    .await;
    client.put("after-full", "v", None).await.unwrap();
    let (_, rev) = dump(&mut client).await;
    wait_holder(&leases, "c-delta-snap", |h| {
        h.parse::<i64>().is_ok_and(|r| r >= rev)
    })
    .await;
    // ... and carries the stored bytes of the deltas since the full
    // snapshot, for the operator's compaction trigger.
    let latest = sidecars[leader].latest();
    let stored: u64 = latest["deltaSnapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            store
                .read(&format!("c/v2/{}", d["snapName"].as_str().unwrap()))
                .len() as u64
        })
        .sum();
    assert!(stored > 0, "{latest}");
    let lease = leases.get("c-delta-snap").await.unwrap();
    assert_eq!(
        lease.metadata.annotations.unwrap_or_default()
            [druid_api::DELTA_BYTES_SINCE_FULL_ANNOTATION],
        stored.to_string(),
        "{latest}"
    );
    for (i, m) in members.iter().enumerate() {
        let role = if i == leader { "Leader" } else { "Member" };
        let id = members_list
            .members()
            .iter()
            .find(|x| x.name() == m.name())
            .unwrap()
            .id();
        let h = wait_holder(&leases, m.name(), |h| h.ends_with(role)).await;
        assert!(h.starts_with(&format!("{id:x}:")), "{h}");
        // ... and the member's revision (after a quorum loss the operator
        // says how many revisions a restore from the store lost).
        let mut reported = 0;
        for _ in 0..100 {
            let lease = leases.get(m.name()).await.unwrap();
            reported = lease
                .metadata
                .annotations
                .unwrap_or_default()
                .get(druid_api::MEMBER_REVISION_ANNOTATION)
                .and_then(|r| r.parse::<i64>().ok())
                .unwrap_or(0);
            if reported >= rev {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            reported >= rev,
            "{} reports revision {reported}, below {rev}",
            m.name()
        );
    }
    let before = sidecars[leader].latest();

    // The leader's etcd goes away; another member leads and its sidecar
    // continues from the last uploaded revision.
    members[leader].stop();
    let start = Instant::now();
    let new_leader = loop {
        let healthy: Vec<usize> = (0..3)
            .filter(|&i| i != leader && sidecars[i].get("/healthz").0 == 200)
            .collect();
        if let [one] = healthy[..] {
            break one;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no new leader sidecar"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| members[i].client_url())
        .collect();
    let mut client = etcd_client::Client::connect(survivors, None).await.unwrap();
    for i in 0..30 {
        client
            .put(format!("after-change/{i}"), "v", None)
            .await
            .unwrap();
    }
    let (_, rev) = dump(&mut client).await;
    sidecars[new_leader].wait_store_revision(rev);
    let latest = sidecars[new_leader].latest();
    assert_eq!(
        latest["fullSnapshot"], before["fullSnapshot"],
        "no new full snapshot was needed"
    );
    assert_eq!(common::continuous_end(&latest), rev);
    drop(sidecars);
    for m in &mut members {
        m.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_corrupt_database_rejoins_as_a_learner_and_is_promoted() {
    let mut members = common::start_members("rejoin", 3, &[]);
    let all = common::client_urls(&members);
    let store = Store::local("rejoin");
    let port = druid_test_support::free_port().unwrap();
    let start_sidecar = |m: &EtcdMember| {
        Sidecar::start(&SidecarOptions {
            service_endpoints: Some(all.clone()),
            port: Some(port),
            ..SidecarOptions::new(m, &store, "r")
        })
    };
    let mut client = etcd_client::Client::connect(
        members
            .iter()
            .map(EtcdMember::client_url)
            .collect::<Vec<_>>(),
        None,
    )
    .await
    .unwrap();
    for i in 0..200 {
        client
            .put(format!("k{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    // The member to break is a follower.
    let leader_id = client.status().await.unwrap().leader();
    let list = client.member_list().await.unwrap();
    let victim = (0..3)
        .find(|&i| {
            list.members()
                .iter()
                .any(|m| m.name() == members[i].name() && m.id() != leader_id)
        })
        .unwrap();
    let old_id = list
        .members()
        .iter()
        .find(|m| m.name() == members[victim].name())
        .unwrap()
        .id();
    members[victim].stop();
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != victim)
        .map(|i| members[i].client_url())
        .collect();
    let mut client = etcd_client::Client::connect(survivors, None).await.unwrap();
    let db = members[victim].data_dir().join("member/snap/db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(8192).step_by(61).take(3000) {
        *b ^= 0x3C;
    }
    std::fs::write(&db, &bytes).unwrap();

    // Its sidecar's initialization (as etcd-wrapper drives it) removes it
    // and adds it back as a learner; etcd then joins the existing cluster.
    let sidecar = start_sidecar(&members[victim]);
    assert_eq!(
        sidecar.initialize("full"),
        "Successful",
        "{}",
        sidecar.log()
    );
    assert!(
        sidecar.log().contains("rejoining the cluster as a learner"),
        "{}",
        sidecar.log()
    );
    let list = client.member_list().await.unwrap();
    let rejoined = list
        .members()
        .iter()
        .find(|m| m.peer_urls().contains(&members[victim].peer_url()))
        .unwrap();
    assert!(rejoined.is_learner());
    assert_ne!(rejoined.id(), old_id);
    members[victim].config_mut().extra_args = vec!["--initial-cluster-state=existing".into()];
    members[victim].restart().unwrap();

    // The sidecar promotes it once it caught up; it serves every key.
    let start = Instant::now();
    loop {
        let list = client.member_list().await.unwrap();
        if list.members().iter().all(|m| !m.is_learner()) && list.members().len() == 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not promoted:\n{}",
            sidecar.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut own = etcd_client::Client::connect([members[victim].client_url()], None)
        .await
        .unwrap();
    let got = own
        .get(
            "k",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_serializable(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(got.kvs().len(), 200);
    assert!(
        members[victim].data_dir().with_extension("bak").exists(),
        "the corrupt data is kept aside"
    );
    drop(sidecar);
    for m in &mut members {
        m.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_to_the_leader_over_mutual_tls() {
    let members = common::start_members("tls-forward", 3, &[]);
    let all = common::client_urls(&members);
    // A CA, and one serving certificate it issues for the three sidecars
    // (127.0.0.1–3); the certificate file holds the chain.
    let certs = members[0].dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&certs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=etcdbr-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=etcdbr",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ]);
    std::fs::write(
        certs.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "leaf.crt",
    ]);
    let chain = [
        std::fs::read(certs.join("leaf.crt")).unwrap(),
        std::fs::read(certs.join("ca.crt")).unwrap(),
    ]
    .concat();
    std::fs::write(certs.join("tls.crt"), chain).unwrap();
    let store = Store::local("tls-forward");
    let port = druid_test_support::free_port().unwrap();
    let sidecars: Vec<Sidecar> = members
        .iter()
        .map(|m| {
            Sidecar::start(&SidecarOptions {
                service_endpoints: Some(all.clone()),
                port: Some(port),
                extra: vec![
                    format!("--server-cert={}", certs.join("tls.crt").display()),
                    format!("--server-key={}", certs.join("tls.key").display()),
                    // mTLS: callers and the forwarding sidecars present a
                    // certificate the CA issued (here the serving one).
                    format!("--client-ca-file={}", certs.join("ca.crt").display()),
                    format!("--api-client-cert={}", certs.join("tls.crt").display()),
                    format!("--api-client-key={}", certs.join("tls.key").display()),
                ],
                ..SidecarOptions::new(m, &store, "t")
            })
        })
        .collect();
    let start = Instant::now();
    let leader = loop {
        let healthy: Vec<usize> = (0..3)
            .filter(|&i| sidecars[i].get("/healthz").0 == 200)
            .collect();
        if let [one] = healthy[..] {
            break one;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "healthy: {healthy:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let follower = (leader + 1) % 3;
    let (code, body) = sidecars[follower].get("/snapshot/full");
    assert_eq!(code, 200, "{body}");
    let full: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(full["kind"], "Full");
    assert!(sidecars[leader].log().contains("full snapshot uploaded"));
    // Without a client certificate, neither the follower nor the leader
    // serves: the handshake fails.
    for s in [&sidecars[follower], &sidecars[leader]] {
        let anonymous = common::CurlTls {
            ca: certs.join("ca.crt"),
            client: None,
        };
        let refused = common::probe_get(&format!("{}/snapshot/latest", s.url), Some(&anonymous));
        assert!(
            refused.is_err(),
            "served without a client certificate: {refused:?}"
        );
    }
    drop(sidecars);
    drop(members);
}
