//! Prints what loading and calling a plugin costs: compiling a component,
//! loading it from the precompiled cache, and one `describe` call (fresh
//! store, instantiation and the call, as the host does for every call).
//!
//! Run: `cargo bench -p druid-plugin-host --bench load_and_call`
//! (builds the plugins first through the test-support crate).
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a bench binary that prints its figures"
)]

use std::time::{Duration, Instant};

use druid_plugin_host::{CompiledFrom, Limits, PluginHost};
use druid_test_support::{plugin_components, server_dir};

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let min = samples[0];
    let max = samples[samples.len() - 1];
    println!(
        "{name:<38} n={:<5} median {:>9.3} ms   min {:>9.3} ms   max {:>9.3} ms",
        samples.len(),
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn main() {
    let wasm = plugin_components().get("druid-plugin-s3");
    let size = std::fs::metadata(wasm).unwrap().len();
    println!("plugin: {} ({size} bytes)", wasm.display());

    let plain = PluginHost::new(Limits::default()).unwrap();
    let compile: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let p = plain.load_file(wasm).unwrap();
            assert_eq!(p.compiled_from(), CompiledFrom::Compiled);
            t.elapsed()
        })
        .collect();
    stats("load, compiling (no cache)", compile);

    let dir = server_dir("bench-cache").unwrap().join("cache");
    let _ = std::fs::remove_dir_all(&dir);
    let cached = PluginHost::new(Limits::default())
        .unwrap()
        .with_component_cache(&dir);
    cached.load_file(wasm).unwrap();
    let from_cache: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let p = cached.load_file(wasm).unwrap();
            assert_eq!(p.compiled_from(), CompiledFrom::Cache);
            t.elapsed()
        })
        .collect();
    stats("load, from the precompiled cache", from_cache);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plugin = cached.load_file(wasm).unwrap();
    let calls: Vec<Duration> = (0..500)
        .map(|_| {
            let t = Instant::now();
            let info = rt.block_on(cached.describe(&plugin)).unwrap();
            assert_eq!(info.name, "s3");
            t.elapsed()
        })
        .collect();
    stats("describe (fresh store + instance + call)", calls);
}
