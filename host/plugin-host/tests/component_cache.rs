//! The on-disk cache of precompiled components.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use druid_plugin_host::{CompiledFrom, Limits, PluginHost};
use druid_test_support::{plugin_components, server_dir};

fn host_with_cache(dir: &std::path::Path) -> PluginHost {
    PluginHost::new(Limits::default())
        .unwrap()
        .with_component_cache(dir)
}

#[tokio::test]
async fn a_plugin_is_compiled_once_then_loaded_from_the_cache() {
    let dir = server_dir("component-cache-hit").unwrap().join("cache");
    let wasm_path = plugin_components().get("druid-plugin-s3");
    let wasm = std::fs::read(wasm_path).unwrap();

    let host = host_with_cache(&dir);
    let first = host.load_file(wasm_path).unwrap();
    assert_eq!(first.compiled_from(), CompiledFrom::Compiled);
    let entry = host.cache_entry(&wasm).unwrap();
    assert!(entry.is_file(), "no cache entry at {}", entry.display());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    // A new host (a restarted process) loads the machine code from disk.
    let again = host_with_cache(&dir);
    let second = again.load_file(wasm_path).unwrap();
    assert_eq!(second.compiled_from(), CompiledFrom::Cache);
    assert_eq!(again.describe(&second).await.unwrap().name, "s3");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_compiled_again_and_replaced() {
    let dir = server_dir("component-cache-corrupt").unwrap().join("cache");
    let wasm_path = plugin_components().get("druid-plugin-local");
    let wasm = std::fs::read(wasm_path).unwrap();
    let host = host_with_cache(&dir);
    let entry = host.cache_entry(&wasm).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&entry, b"not machine code").unwrap();

    let plugin = host.load_file(wasm_path).unwrap();
    assert_eq!(plugin.compiled_from(), CompiledFrom::Recompiled);
    assert_eq!(host.describe(&plugin).await.unwrap().name, "local");
    assert_ne!(std::fs::read(&entry).unwrap(), b"not machine code");

    let reloaded = host_with_cache(&dir).load_file(wasm_path).unwrap();
    assert_eq!(reloaded.compiled_from(), CompiledFrom::Cache);
}

#[tokio::test]
async fn different_plugins_get_different_entries() {
    let host = host_with_cache(&server_dir("component-cache-keys").unwrap());
    let components = plugin_components();
    let local = std::fs::read(components.get("druid-plugin-local")).unwrap();
    let s3 = std::fs::read(components.get("druid-plugin-s3")).unwrap();
    let (a, b) = (
        host.cache_entry(&local).unwrap(),
        host.cache_entry(&s3).unwrap(),
    );
    assert_ne!(a, b);
    // The name carries the content hash and the engine's compatibility hash.
    let name = a.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".cwasm"), "{name}");
    assert_eq!(name.split('-').next().unwrap().len(), 64, "{name}");
}

#[tokio::test]
async fn without_a_cache_every_load_compiles() {
    let host = PluginHost::new(Limits::default()).unwrap();
    let wasm_path = plugin_components().get("druid-plugin-local");
    assert!(host.cache_entry(b"anything").is_none());
    let plugin = host.load_file(wasm_path).unwrap();
    assert_eq!(plugin.compiled_from(), CompiledFrom::Compiled);
}
