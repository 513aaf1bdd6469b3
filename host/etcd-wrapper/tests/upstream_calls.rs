//! Upstream etcd-wrapper's exact HTTP calls against our sidecar (plain
//! GETs with Go's default headers, in upstream's order), so that the
//! upstream wrapper image keeps working with `etcdbr`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{MEMBER, Member};
use druid_test_support::{ServerProcess, find_binary, http_get};

fn go_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Upstream's request timeout.
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .header("User-Agent", "Go-http-client/1.1")
        .header("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.body_mut().read_to_string().unwrap())
}

#[test]
fn upstream_wrapper_calls_get_upstream_answers() {
    let m = Member::new("upstream");
    let sidecar = m.start_sidecar(&[]);
    let base = m.sidecar_url();

    assert_eq!(
        go_get(&format!("{base}/initialization/status")),
        (200, "New".to_string())
    );
    assert_eq!(
        go_get(&format!("{base}/initialization/start?mode=full")),
        (200, String::new())
    );
    let start = Instant::now();
    let last = loop {
        let (code, status) = go_get(&format!("{base}/initialization/status"));
        assert_eq!(code, 200, "GET /initialization/status: {status}");
        if status != "Progress" {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "initialization still in Progress after 120 s; sidecar log:\n{}",
            common::log(&sidecar)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(last, "Successful");
    // Reading the result consumed it.
    assert_eq!(
        go_get(&format!("{base}/initialization/status")),
        (200, "New".to_string())
    );
    assert!(common::log(&sidecar).contains("mode=Full"));

    let (code, config) = go_get(&format!("{base}/config"));
    assert_eq!(code, 200, "{config}");
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config).unwrap();
    let peer = format!("http://127.0.0.1:{}", m.peer_port);
    assert_eq!(yaml["name"].as_str(), Some(MEMBER));
    assert_eq!(
        yaml["initial-advertise-peer-urls"].as_str(),
        Some(peer.as_str())
    );
    assert_eq!(
        yaml["advertise-client-urls"].as_str(),
        Some(m.client_url().as_str())
    );
    assert_eq!(yaml["initial-cluster-state"].as_str(), Some("new"));

    // Upstream hands that file to etcd as it is: etcd must run on it.
    let file = m.dir.join("upstream-etcd.conf.yaml");
    std::fs::write(&file, &config).unwrap();
    let mut c = Command::new(find_binary("etcd", "etcd").unwrap());
    c.arg(format!("--config-file={}", file.display()));
    let etcd = ServerProcess::spawn("etcd", c, &m.dir.join("etcd.log")).unwrap();
    let health = format!("{}/health", m.client_url());
    etcd.wait_ready(Duration::from_secs(60), || {
        let (code, body) = http_get(&health)?;
        Ok(code == 200 && body.contains("true"))
    })
    .unwrap();
}
