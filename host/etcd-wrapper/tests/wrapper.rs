//! The wrapper against the real sidecar and the real etcd.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use std::time::Duration;

use common::{Member, log, wait_exit, wait_until};
use druid_test_support::find_binary;

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_runs_after_initialization_and_a_sigterm_leads_to_a_sanity_validation() {
    let m = Member::new("sigterm");
    let sidecar = m.start_sidecar(&[]);
    let wrapper = m.start_wrapper("1");
    m.wait_ready(&wrapper);

    let mut client = m.client().await;
    client.put("wrapper-key", "v1", None).await.unwrap();
    let got = client.get("wrapper-key", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v1");

    // etcd runs on the configuration the sidecar rendered for this member.
    let written = std::fs::read_to_string(&m.wrapper_config).unwrap();
    assert!(written.contains("name: m0"), "{written}");
    // No record of a clean shutdown: a full validation.
    let sidecar_log = common::log(&sidecar);
    assert_eq!(count(&sidecar_log, "mode=Full"), 1, "{sidecar_log}");
    assert_eq!(count(&sidecar_log, "mode=Sanity"), 0, "{sidecar_log}");
    // The wrapper told the sidecar which etcd it runs (the sidecar refuses
    // a restore that would downgrade the data).
    let printed = std::process::Command::new(find_binary("etcd", "etcd").unwrap())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&printed.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        sidecar_log.contains(&format!("etcd_version=\"{version}\"")),
        "the sidecar learnt etcd {version} from the wrapper:\n{sidecar_log}"
    );

    // SIGTERM: forwarded to etcd, which shuts down; the signal is recorded.
    wrapper.stop();
    let status = wait_exit(&wrapper, Duration::from_secs(1));
    assert!(
        status.contains("143"),
        "exit status {status}:\n{}",
        log(&wrapper)
    );
    assert_eq!(m.exit_code().as_deref(), Some("terminated"));
    assert!(
        !m.etcd_listening(),
        "etcd still listens after the wrapper exited"
    );
    let first = log(&wrapper);
    assert!(first.contains("etcd shut down cleanly"), "{first}");

    // The next start asks for a sanity validation only, and etcd keeps its
    // data.
    drop(client);
    let again = m.start_wrapper("2");
    m.wait_ready(&again);
    let sidecar_log = common::log(&sidecar);
    assert_eq!(count(&sidecar_log, "mode=Sanity"), 1, "{sidecar_log}");
    assert_eq!(count(&sidecar_log, "mode=Full"), 1, "{sidecar_log}");
    let mut client = m.client().await;
    let got = client.get("wrapper-key", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v1");
    // Once etcd runs again the record is gone: a crash now means a full
    // validation.
    assert_eq!(m.exit_code(), None);
    again.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_initialization_keeps_etcd_stopped_says_why_and_is_retried() {
    let m = Member::new("failed");
    // The volume belongs to another namespace: the sidecar refuses it.
    std::fs::write(m.volume.join("safe_guard"), "another-namespace").unwrap();
    let sidecar = m.start_sidecar(&[("POD_NAMESPACE", "wrapper-test")]);
    let wrapper = m.start_wrapper("1");

    let line = "etcd was not started";
    wait_until(
        &wrapper,
        Duration::from_secs(60),
        "two failed initializations",
        || count(&log(&wrapper), line) >= 2,
    );
    let text = log(&wrapper);
    let failure = text.lines().find(|l| l.contains(line)).unwrap();
    assert!(failure.contains("ERROR"), "{failure}");
    assert!(
        failure.contains("initialization of the data directory"),
        "{failure}"
    );
    assert!(
        failure.contains("backup-restore container's log"),
        "{failure}"
    );
    assert!(!text.contains("etcd started"), "{text}");
    assert!(wrapper.exited().is_none(), "the wrapper gave up:\n{text}");
    assert!(!m.etcd_listening());
    assert!(!m.data_dir.exists(), "something wrote the data directory");
    assert!(m.readyz().is_err(), "/readyz answered before etcd ran");
    assert!(common::log(&sidecar).contains("wrong volume mounted"));

    // Once the volume is right, the retried initialization succeeds and
    // etcd starts without restarting the wrapper.
    std::fs::write(m.volume.join("safe_guard"), "wrapper-test").unwrap();
    m.wait_ready(&wrapper);
    let mut client = m.client().await;
    client.put("after-fix", "yes", None).await.unwrap();
    wrapper.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_stops_etcd_and_the_wrapper_exits() {
    let m = Member::new("stop");
    let _sidecar = m.start_sidecar(&[]);
    let wrapper = m.start_wrapper("1");
    m.wait_ready(&wrapper);
    let url = format!("http://127.0.0.1:{}/stop", m.wrapper_port);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();

    // Only POST stops.
    let get = agent.get(&url).call().unwrap();
    assert_eq!(get.status().as_u16(), 405);
    std::thread::sleep(Duration::from_millis(500));
    assert!(wrapper.exited().is_none());
    assert_eq!(m.readyz().unwrap(), 200);

    let post = agent.post(&url).send_empty().unwrap();
    assert_eq!(post.status().as_u16(), 200);
    let status = wait_exit(&wrapper, Duration::from_secs(30));
    assert!(
        status.contains("exit status: 0"),
        "{status}:\n{}",
        log(&wrapper)
    );
    assert!(!m.etcd_listening(), "etcd still listens");
    // Not a signal: nothing recorded, the next start validates fully.
    assert_eq!(m.exit_code(), None);
    assert!(log(&wrapper).contains("etcd stopped on request"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tls_the_wrapper_uses_https_and_client_certificates_also_to_the_sidecar() {
    let m = Member::new_tls("tls");
    let _sidecar = m.start_sidecar(&[]);
    let wrapper = m.start_wrapper("1");
    // Initialization over HTTPS to the sidecar (trusting the CA bundle),
    // and a readiness check that needs the client certificate: etcd
    // requires one (client-cert-auth).
    m.wait_ready(&wrapper);

    // The wrapper serves HTTPS, with etcd's serving certificate, which
    // verifies against etcd's CA.
    let certs = m.certs.as_ref().unwrap();
    let pem = std::fs::read(&certs.ca).unwrap();
    let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build(),
        )
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let ready = agent.get(&m.readyz_url()).call().unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let plain =
        druid_test_support::http_get(&format!("http://127.0.0.1:{}/readyz", m.wrapper_port));
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain HTTP answered: {plain:?}"
    );
    let text = log(&wrapper);
    assert!(text.contains("https=true"), "{text}");

    // The sidecar requires client certificates (mTLS): the wrapper got
    // through above with its own; without one, a caller is turned away
    // in the handshake.
    let refused = agent.get(&format!("{}/healthz", m.sidecar_url())).call();
    assert!(refused.is_err(), "no client certificate, yet: {refused:?}");
    let (status, _) = m.sidecar_get("/metrics").unwrap();
    assert_eq!(status, 200);

    let mut client = m.client().await;
    client.put("tls-key", "v", None).await.unwrap();
    wrapper.stop();
    assert_eq!(m.exit_code().as_deref(), Some("terminated"));
}
