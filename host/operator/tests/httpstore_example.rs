//! The worked example of a third-party provider (`examples/httpstore-plugin`,
//! made with `scripts/new-plugin.sh`), followed as plugins/sdk/README.md
//! says: built with `scripts/build-plugin.sh`, then `druid plugin test`
//! against the small HTTP object store of the test support
//! (`druid_test_support::HttpStore`), with its secret as a directory of
//! files (its own keys, `storeURL` and `token`). The same plugin backing up
//! and restoring etcd through `etcdbr` is
//! host/backup-restore/tests/third_party_plugin.rs.
#![allow(clippy::unwrap_used, reason = "a test fails on error")]

use std::ffi::OsString;
use std::path::PathBuf;

use druid_test_support::{HttpStore, httpstore_example_plugin, server_dir};

mod common;

const TOKEN: &str = "s3cr3t-example-token";

/// The example built with the documented command, once per test process.
fn example_plugin() -> PathBuf {
    httpstore_example_plugin().unwrap()
}

/// Runs `druid plugin test` on the example against a fresh store whose
/// secret holds `token`; (success, stdout and stderr).
fn plugin_test(name: &str, token: &str) -> (bool, String) {
    let plugin = example_plugin();
    let dir = server_dir(&format!("httpstore-{name}")).unwrap();
    let store_root = dir.join("store");
    std::fs::create_dir_all(store_root.join("backups")).unwrap();
    let store = HttpStore::start(&store_root, TOKEN).unwrap();
    let secret = dir.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    // The example's own keys: its store contract names `storeURL` as the
    // key holding its endpoint, which the host then lets it reach.
    std::fs::write(secret.join("storeURL"), format!("{}\n", store.url())).unwrap();
    std::fs::write(secret.join("token"), format!("{token}\n")).unwrap();
    let args: [OsString; 9] = [
        "plugin".into(),
        "test".into(),
        plugin.into(),
        "--provider".into(),
        "HttpStore".into(),
        "--container".into(),
        "backups".into(),
        "--secret".into(),
        secret.into(),
    ];
    common::druid(&args)
}

#[test]
fn the_httpstore_example_passes_druid_plugin_test() {
    let (ok, out) = plugin_test("pass", TOKEN);
    assert!(ok, "{out}");
    assert!(out.contains("plugin httpstore 0.1.0"), "{out}");
    assert!(out.contains("providers: HttpStore"), "{out}");
    assert!(
        out.contains(
            "store contract of HttpStore: credentials from HTTPSTORE_APPLICATION_CREDENTIALS_JSON, \
             HTTPSTORE_APPLICATION_CREDENTIALS (required); endpoint keys: storeURL; official \
             endpoints: none"
        ),
        "{out}"
    );
    assert!(out.contains("pass  the secret's keys accepted"), "{out}");
    assert!(out.contains("pass  round trip of 100 MiB"), "{out}");
    assert!(
        out.contains("pass  an aborted upload leaves nothing"),
        "{out}"
    );
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn the_httpstore_example_with_a_wrong_token_fails_with_access_denied() {
    let (ok, out) = plugin_test("wrong-token", "not-the-token");
    assert!(!ok, "{out}");
    // The wiring and the secret's keys are fine; every store check is
    // refused by the store, and says so.
    assert!(out.contains("pass  the secret's keys accepted"), "{out}");
    let round_trip = out
        .lines()
        .find(|l| l.contains("round trip of 0 B"))
        .unwrap_or_else(|| panic!("no round trip line in:\n{out}"));
    assert!(round_trip.starts_with("FAIL"), "{out}");
    assert!(round_trip.contains("access denied"), "{out}");
    assert!(round_trip.contains("HTTP 401"), "{out}");
    assert!(!out.contains(", 0 failed"), "{out}");
}

/// One raw HTTP/1.1 exchange with the store: `head` (request line and
/// headers, without the blank line) then `body` as sent; when `cut` the
/// connection is closed after the body without waiting for an answer.
/// The answer's status line and body, when one was read.
fn raw(store: &HttpStore, head: &str, body: &[u8], cut: bool) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let addr = store.url().trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let request = format!("{head}\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    if cut {
        conn.shutdown(std::net::Shutdown::Both).unwrap();
        return None;
    }
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (status, rest) = answer.split_once("\r\n").unwrap();
    let body = rest.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status.to_string(), body.to_string()))
}

/// What the example relies on for `abort` to leave nothing: an upload is
/// staged, then committed with the size the client sent, and one cut off
/// mid-chunk (which the HTTP library reads as a complete, shorter body) is
/// refused at the commit and dropped. Plain requests, no plugin.
#[test]
fn the_test_store_commits_a_staged_upload_only_when_every_byte_arrived() {
    let dir = server_dir("httpstore-stage-commit").unwrap();
    let root = dir.join("store");
    std::fs::create_dir_all(root.join("backups")).unwrap();
    let store = HttpStore::start(&root, TOKEN).unwrap();
    let object = root.join("backups/v2/Full-1");
    let chunked = "Transfer-Encoding: chunked\r\nConnection: close";

    // Whole: staged (not yet visible), then committed.
    let (status, body) = raw(
        &store,
        &format!("PUT /backups/v2/Full-1?stage HTTP/1.1\r\n{chunked}"),
        b"5\r\nhello\r\n0\r\n\r\n",
        false,
    )
    .unwrap();
    assert!(status.contains(" 202"), "{status} {body}");
    let staged: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(staged["size"], 5, "{body}");
    let id = staged["upload"].as_str().unwrap().to_string();
    assert!(!object.exists(), "a staged upload is not an object yet");
    let commit = |id: &str, size: u64| {
        raw(
            &store,
            &format!(
                "POST /backups/v2/Full-1?commit={id}&size={size} HTTP/1.1\r\nContent-Length: 0\r\nConnection: close"
            ),
            b"",
            false,
        )
        .unwrap()
    };
    let (status, body) = commit(&id, 5);
    assert!(status.contains(" 201"), "{status} {body}");
    assert_eq!(std::fs::read(&object).unwrap(), b"hello");
    // Committed once: the upload is gone.
    let (status, _) = commit(&id, 5);
    assert!(status.contains(" 404"), "{status}");

    // Cut off mid-chunk: 16 bytes announced, 3 sent, then the connection
    // closes. Whatever the store staged holds 3 bytes, so the commit of
    // the 16 the client meant to send is refused and nothing is replaced.
    raw(
        &store,
        &format!("PUT /backups/v2/Full-1?stage HTTP/1.1\r\n{chunked}"),
        b"10\r\nabc",
        true,
    );
    let uploads = root.join(".uploads");
    let mut cut = None;
    for _ in 0..100 {
        cut = std::fs::read_dir(&uploads)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next();
        if cut.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, body) = match cut {
        // The library saw the cut as an end: staged short.
        Some(id) => commit(&id, 16),
        // The library saw it as an error: nothing staged at all.
        None => commit("0-0", 16),
    };
    assert!(
        status.contains(" 409") || status.contains(" 404"),
        "{status} {body}"
    );
    assert_eq!(std::fs::read(&object).unwrap(), b"hello");
}
