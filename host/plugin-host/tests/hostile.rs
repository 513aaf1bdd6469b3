//! The hostile test plugin, one misbehaviour per store: each is contained
//! with a clear error, and the host keeps serving other calls.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::time::Duration;

use common::{config, registry};
use druid_plugin_host::{Error, Limits, Registry, SnapshotStore, StoreError};

fn hostile(registry: &Registry, mode: &str, target: &str) -> druid_plugin_host::PluginStore {
    registry
        .store(config("Hostile", mode, None, &[("target", target)]))
        .unwrap()
}

/// The host still serves: a well-behaved call on the same registry works.
async fn assert_still_serving(registry: &Registry) {
    let page = hostile(registry, "behave", "")
        .list_page("", None, 10)
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.objects[0].key, "ok");
}

/// Runs `fut` under a watchdog: a broken limit fails the test instead of
/// hanging it. Not a timing assertion.
async fn watchdog<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(120), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} was not contained within 120 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_interrupted_at_the_cpu_time_limit() {
    let limits = Limits {
        call_cpu_time: Duration::from_millis(300),
        ..Limits::default()
    };
    let registry = registry(limits).await;
    let err = watchdog(
        "the endless loop",
        hostile(&registry, "endless-loop", "").list(""),
    )
    .await;
    match err {
        Err(StoreError::Plugin(Error::Timeout {
            plugin,
            call,
            limit,
        })) => {
            assert_eq!(plugin, "hostile");
            assert_eq!(call, "store.list");
            assert_eq!(limit, Duration::from_millis(300));
        }
        other => panic!("expected a CPU-time timeout, got {other:?}"),
    }
    assert_still_serving(&registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_capped() {
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let registry = registry(limits).await;
    let err = watchdog(
        "the memory bomb",
        hostile(&registry, "memory-bomb", "").list(""),
    )
    .await;
    match err {
        Err(StoreError::Plugin(e @ Error::MemoryLimit { .. })) => {
            let Error::MemoryLimit {
                requested, limit, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(*limit, 64 << 20);
            assert!(*requested > 64 << 20, "{e}");
            assert!(e.to_string().contains("hostile"), "{e}");
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert_still_serving(&registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_host_that_is_not_the_store_is_refused_before_connecting() {
    // A listener the plugin is not allowed to reach; the test checks that
    // no connection ever arrives.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = format!("http://{}/steal", listener.local_addr().unwrap());
    let registry = registry(Limits::default()).await;
    let err = hostile(&registry, "http-elsewhere", &target)
        .list("")
        .await
        .unwrap_err();
    match &err {
        StoreError::DestinationRefused { destinations, .. } => {
            let port = listener.local_addr().unwrap().port();
            assert_eq!(destinations, &vec![format!("http://127.0.0.1:{port}")]);
        }
        other => panic!("expected a refused destination, got {other:?}"),
    }
    assert!(
        err.to_string().contains("only the store's endpoint"),
        "{err}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the plugin's request reached the listener"
    );
    assert_still_serving(&registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_finds_no_environment_arguments_or_files() {
    // SAFETY of the test: set before any thread reads the environment.
    let registry = registry(Limits::default()).await;
    assert!(
        std::env::vars().count() > 0,
        "the host itself has an environment"
    );
    let found = hostile(&registry, "snoop", "").list("").await.unwrap();
    let keys: Vec<&str> = found.iter().map(|o| o.key.as_str()).collect();
    assert!(keys.is_empty(), "the plugin found: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_return_value_is_refused() {
    let registry = registry(Limits::default()).await;
    let err = hostile(&registry, "huge-return", "")
        .list_page("", None, 10)
        .await
        .unwrap_err();
    match &err {
        StoreError::Plugin(Error::ReturnTooLarge { plugin, call, .. }) => {
            assert_eq!(plugin, "hostile");
            assert_eq!(*call, "store.list");
        }
        other => panic!("expected ReturnTooLarge, got {other:?}"),
    }
    // A download chunk longer than asked for is refused too.
    let mut down = hostile(&registry, "huge-return", "")
        .download("k", None)
        .await
        .unwrap();
    let err = down.read(1024).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Plugin(Error::ReturnTooLarge { .. })),
        "{err:?}"
    );
    assert_still_serving(&registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap_for_that_call_only() {
    let registry = registry(Limits::default()).await;
    let err = hostile(&registry, "panic", "").list("").await.unwrap_err();
    assert!(
        matches!(err, StoreError::Plugin(Error::Trap { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("hostile"), "{err}");
    // The trap is named once; its wasm backtrace is only in the source.
    let text = err.to_string();
    assert!(text.contains("wasm trap"), "{text}");
    assert!(!text.contains("wasm backtrace"), "{text}");
    assert_still_serving(&registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_that_would_never_end_are_stopped() {
    let registry = registry(Limits::default()).await;
    let cases = [
        ("repeat-token", "repeats a continuation token"),
        ("endless-pages", "more than 1000000 objects"),
        ("oversized-page", "2000 objects, 1000 were asked for"),
    ];
    for (mode, says) in cases {
        let err = watchdog(mode, hostile(&registry, mode, "").list("v2/"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Other { .. }) && err.to_string().contains(says),
            "{mode}: {err}"
        );
        assert!(
            err.to_string().contains("Hostile"),
            "{mode}: the store is not named: {err}"
        );
    }
    assert_still_serving(&registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_that_break_the_contract_are_refused_naming_the_plugin() {
    let registry = registry(Limits::default()).await;
    let cases = [
        ("unsorted-page", "unsorted page: \"v2/a\" after \"v2/b\""),
        (
            "duplicate-across-pages",
            "returned the key \"v2/b\" again on the next page",
        ),
        ("dotdot-key", "which is holding a `..` segment"),
        ("absolute-key", "which is absolute"),
        ("endless-tokens", "more than 2000 pages"),
    ];
    for (mode, says) in cases {
        let started = std::time::Instant::now();
        let err = watchdog(mode, hostile(&registry, mode, "").list("v2/"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::Other { .. }) && text.contains(says),
            "{mode}: {text}"
        );
        for names in ["plugin hostile", "`store.list`", "the plugin must be fixed"] {
            assert!(text.contains(names), "{mode}: no {names:?} in {text}");
        }
        // Quickly: refused at the first bad page, or at the page cap.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{mode}: refused only after {:?}",
            started.elapsed()
        );
        assert_still_serving(&registry).await;
    }
    // One page alone is checked too, for callers that page themselves.
    let err = hostile(&registry, "dotdot-key", "")
        .list_page("v2/", None, 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`..` segment"), "{err}");
    let err = hostile(&registry, "repeat-token", "")
        .list_page("v2/", Some("the-same-token".into()), 10)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("returned the token it was given"),
        "{err}"
    );
}

/// The keys of one listing of `store`.
async fn keys(store: &druid_plugin_host::PluginStore) -> Vec<String> {
    store
        .list_page("", None, 10)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// A store's instance serves its next calls (what the plugin holds, such
/// as a token, is reused), but never another store's, and an instance
/// that trapped or answered against the contract is dropped: the next
/// call starts afresh.
#[tokio::test]
async fn an_instance_serves_its_stores_next_calls_until_it_misbehaves() {
    let registry = registry(Limits::default()).await;
    let store = hostile(&registry, "count-calls", "");
    for expected in ["00001", "00002", "00003"] {
        assert_eq!(keys(&store).await, [expected]);
    }
    // A clone is the same store; another store of the same config is not.
    assert_eq!(keys(&store.clone()).await, ["00004"]);
    assert_eq!(
        keys(&hostile(&registry, "count-calls", "")).await,
        ["00001"]
    );

    let store = hostile(&registry, "count-then-panic", "");
    assert_eq!(keys(&store).await, ["00001"]);
    assert_eq!(keys(&store).await, ["00002"]);
    let err = store.list_page("", None, 10).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Plugin(Error::Trap { .. })),
        "{err:?}"
    );
    // The trapped instance is gone: a new one counts from one again.
    assert_eq!(keys(&store).await, ["00001"]);

    // A page against the listing contract (unsorted) drops the instance
    // too, though the plugin did not trap.
    let store = hostile(&registry, "count-then-unsorted", "");
    assert_eq!(keys(&store).await, ["00001"]);
    let err = store.list_page("", None, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Other { .. }), "{err:?}");
    assert_eq!(keys(&store).await, ["00001"]);
}
