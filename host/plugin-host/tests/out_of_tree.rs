//! Plugins as an author outside this repository builds them: the SDK's
//! template instantiated out of tree (`scripts/new-plugin.sh`, built with
//! `scripts/build-plugin.sh`) loads, registers and answers like a shipped
//! plugin, and a plugin's panic reaches the host's log with its message.
//!
//! `DRUID_EXTRA_PLUGIN=/path/x.wasm` names the out-of-tree component
//! (`scripts/test.sh` sets it) and `DRUID_EXTRA_PLUGIN_PROVIDER` the
//! `storageProvider` it should serve; without them the in-tree template
//! (`plugins/sdk/template`) is checked the same way.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use druid_plugin_host::{Limits, PluginHost, Registry, SnapshotStore, WiringError};
use druid_test_support::{plugin_components, server_dir};

/// The component to check and the provider it serves.
fn extra_plugin() -> (PathBuf, String) {
    match std::env::var_os("DRUID_EXTRA_PLUGIN") {
        Some(path) => (
            PathBuf::from(path),
            std::env::var("DRUID_EXTRA_PLUGIN_PROVIDER").unwrap_or_else(|_| {
                panic!("set DRUID_EXTRA_PLUGIN_PROVIDER with DRUID_EXTRA_PLUGIN")
            }),
        ),
        None => (
            plugin_components()
                .get("druid-plugin-template")
                .to_path_buf(),
            "Template".into(),
        ),
    }
}

#[tokio::test]
async fn a_plugin_built_out_of_tree_registers_beside_the_shipped_ones() {
    let (path, provider) = extra_plugin();
    eprintln!("checking {} (provider {provider})", path.display());
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());

    let plugin = host.load_file(&path).unwrap();
    let info = host.describe(&plugin).await.unwrap();
    assert_eq!(info.api_version, druid_plugin_host::API_VERSION, "{info:?}");
    assert_eq!(info.providers, vec![provider.clone()], "{info:?}");

    // Dropped into a plugins directory with the shipped plugins, it is
    // served under its provider, and its wiring answers.
    let dir = server_dir("out-of-tree-plugins").unwrap();
    let shipped = plugin_components();
    for krate in [
        "druid-plugin-local",
        "druid-plugin-s3",
        "druid-plugin-compactor",
    ] {
        let from = shipped.get(krate);
        std::fs::copy(from, dir.join(from.file_name().unwrap())).unwrap();
    }
    std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    let registry = Registry::load(host, Some(&dir), &[]).await.unwrap();
    assert_eq!(registry.plugin_for(&provider).unwrap().info.name, info.name);
    registry
        .pod_config(&provider, "bucket", "etcd-main", Some("store-secret"))
        .await
        .unwrap();
    match registry.check_secret(&provider, &[]).await {
        Err(WiringError::Secret(problems)) => assert!(!problems.is_empty()),
        other => panic!("a secret without keys passed the template's check: {other:?}"),
    }
}

/// Log events of the plugin host, as (level, plugin, message).
type Events = Arc<Mutex<Vec<(tracing::Level, String, String)>>>;

struct Capture(Events);

#[derive(Default)]
struct Fields {
    plugin: String,
    message: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = value.into(),
            "message" => self.message = value.into(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "plugin" => self.plugin = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Ok(mut events) = self.0.lock() {
            events.push((*event.metadata().level(), fields.plugin, fields.message));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Every event of this test binary from now on (a global subscriber: the
/// plugin runs on whichever thread the runtime picks).
fn captured() -> &'static Events {
    static EVENTS: OnceLock<Events> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let events = Events::default();
        tracing::subscriber::set_global_default(Capture(Arc::clone(&events))).unwrap();
        events
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_an_sdk_plugin_is_logged_once_with_its_message() {
    let events = captured();
    let registry = common::registry(Limits::default()).await;
    let store = registry
        .store(common::config("Hostile", "panic", None, &[("target", "")]))
        .unwrap();
    let err = store.list("").await.unwrap_err();

    let logged: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, plugin, message)| plugin == "hostile" && message.contains("panicked"))
        .cloned()
        .collect();
    // What a user sees: the plugin's line, then the error the caller gets.
    for (level, _, message) in &logged {
        eprintln!("log {level} hostile: {message}");
    }
    eprintln!("error: {err}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }

    assert_eq!(logged.len(), 1, "{logged:?}");
    let (level, _, message) = &logged[0];
    assert_eq!(*level, tracing::Level::ERROR);
    assert!(
        message.starts_with("plugin panicked at ")
            && message.contains("src/lib.rs:")
            && message.ends_with(": the hostile plugin panics on purpose"),
        "{message}"
    );
}
