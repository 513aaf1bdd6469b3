//! No credential and no signed URL in any message: store errors are forced
//! (a wrong secret key; an endpoint where nothing listens, whose transport
//! errors once quoted whole presigned URLs) and the sidecar's log and every
//! HTTP answer are searched for the secret values and for signatures.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use std::time::{Duration, Instant};

use common::{Sidecar, SidecarOptions, Store};
use druid_test_support::{MinioServer, free_port};

/// What must never appear in a message.
fn forbidden(secret_key: &str) -> Vec<String> {
    vec![
        secret_key.to_string(),
        MinioServer::shared().access_key().to_string(),
        "X-Amz-Signature".into(),
        "X-Amz-Credential".into(),
        "X-Amz-Security-Token".into(),
    ]
}

/// Waits until the sidecar's log shows `evidence` (the store error was
/// met), then asks every API endpoint, and fails if the log or an answer
/// holds anything forbidden.
fn assert_nothing_leaks(sidecar: &Sidecar, evidence: &str, forbidden: &[String]) {
    let started = Instant::now();
    let mut answers = Vec::new();
    loop {
        for path in [
            "/snapshot/full",
            "/snapshot/delta",
            "/snapshot/latest",
            "/initialization/status",
            "/healthz",
            "/config",
            "/metrics",
        ] {
            // 5 s each: a leader whose snapshotter waits out a store error
            // holds an on-demand request until it answers.
            if let Ok((code, body)) = common::probe_get(&format!("{}{path}", sidecar.url), None) {
                answers.push(format!("{path} -> {code}: {body}"));
            }
        }
        let log = std::fs::read_to_string(sidecar.process.log_path()).unwrap();
        if log.contains(evidence) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the sidecar never reported the store error ({evidence}):\n{}",
            sidecar.process.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(sidecar.process.log_path()).unwrap();
    for bad in forbidden {
        for line in log.lines() {
            assert!(
                !line.contains(bad.as_str()),
                "the sidecar's log holds '{bad}': {line}"
            );
        }
        for answer in &answers {
            assert!(
                !answer.contains(bad.as_str()),
                "an HTTP answer holds '{bad}': {answer}"
            );
        }
    }
}

#[test]
fn a_wrong_secret_key_is_named_but_never_shown() {
    let etcd = common::start_etcd("wrong-secret");
    let secret = format!(
        "wrong-secret-{}-{}",
        std::process::id(),
        free_port().unwrap()
    );
    let store = Store::minio_with("wrong-secret", &secret, MinioServer::shared().endpoint());
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "v2"));
    assert_nothing_leaks(&sidecar, "secretAccessKey", &forbidden(&secret));
    let log = std::fs::read_to_string(sidecar.process.log_path()).unwrap();
    assert!(
        log.contains("SignatureDoesNotMatch"),
        "the error does not say what is wrong:\n{}",
        sidecar.process.log_tail(20)
    );
}

#[test]
fn transport_errors_name_the_endpoint_without_the_signed_query() {
    let etcd = common::start_etcd("closed-port");
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let minio = MinioServer::shared();
    let store = Store::minio_with("closed-port", minio.secret_key(), &closed);
    let sidecar = Sidecar::start(&SidecarOptions::new(&etcd, &store, "v2"));
    // The message names the endpoint (host and port), only without the query.
    assert_nothing_leaks(&sidecar, &closed, &forbidden(minio.secret_key()));
}
