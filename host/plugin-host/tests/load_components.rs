//! Loads the components of the real wasm build into wasmtime and calls them.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use druid_plugin_host::{Error, Limits, PluginHost};
use druid_test_support::plugin_components;

/// Loads the local plugin into `host` and checks a call succeeds.
fn assert_serves_the_local_plugin(host: &PluginHost) {
    let local = host
        .load_file(plugin_components().get("druid-plugin-local"))
        .unwrap();
    assert_eq!(host.describe(&local).unwrap().name, "local");
}

#[test]
fn every_built_plugin_describes_itself() {
    let components = plugin_components();
    let host = PluginHost::new(Limits::default()).unwrap();

    let expected = [
        ("druid-plugin-local", "local", vec!["Local"]),
        ("druid-plugin-s3", "s3", vec!["S3", "aws"]),
        ("druid-plugin-compactor", "compactor", vec![]),
    ];
    for (krate, name, providers) in expected {
        let plugin = host.load_file(components.get(krate)).unwrap();
        let info = host.describe(&plugin).unwrap();
        assert_eq!(info.name, name, "{krate}");
        assert_eq!(info.providers, providers, "{krate}");
        assert_eq!(info.api_version, "0.1.0", "{krate}");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"), "{krate}");
    }
}

#[test]
fn a_plugin_can_be_called_again_in_a_fresh_store() {
    let host = PluginHost::new(Limits::default()).unwrap();
    let plugin = host
        .load_file(plugin_components().get("druid-plugin-local"))
        .unwrap();
    let first = host.describe(&plugin).unwrap();
    let second = host.describe(&plugin).unwrap();
    assert_eq!(first, second);
}

#[test]
fn a_file_that_is_not_a_component_is_a_load_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("druid-not-a-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.wasm");
    std::fs::write(&path, b"this is not WebAssembly").unwrap();

    let host = PluginHost::new(Limits::default()).unwrap();
    let err = match host.load_file(&path) {
        Ok(_) => panic!("a text file loaded as a plugin"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Load { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.wasm"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_memory_cap_too_small_for_the_plugin_is_a_clear_error() {
    // 64 KiB is a single wasm page: too small for a std plugin's memory.
    let host = PluginHost::new(Limits {
        memory_bytes: 64 << 10,
        ..Limits::default()
    })
    .unwrap();
    let plugin = host
        .load_file(plugin_components().get("druid-plugin-local"))
        .unwrap();
    let err = host.describe(&plugin).unwrap_err();
    match &err {
        Error::MemoryLimit {
            plugin,
            requested,
            limit,
            ..
        } => {
            assert_eq!(plugin, "druid_plugin_local");
            assert_eq!(*limit, 64 << 10);
            assert!(requested > limit);
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
    assert!(err.to_string().contains("memory limit"), "{err}");

    // The failure is the limit's, not the plugin's: with the default cap
    // the same component runs.
    assert_serves_the_local_plugin(&PluginHost::new(Limits::default()).unwrap());
}

#[test]
fn an_endless_loop_is_interrupted_at_the_cpu_time_limit() {
    let limit = std::time::Duration::from_millis(300);
    let host = PluginHost::new(Limits {
        call_cpu_time: limit,
        ..Limits::default()
    })
    .unwrap();
    let components = plugin_components();
    let spinner = host
        .load_file(components.get("druid-test-plugin-endless-loop"))
        .unwrap();
    // Run the call on a thread with a watchdog, so a broken interruption
    // fails this test instead of hanging the run. (60 s is a hang guard far
    // above the 300 ms limit, not a timing assertion.)
    let (host, err) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let host_ref = &host;
        let spinner_ref = &spinner;
        scope.spawn(move || {
            let _ = tx.send(host_ref.describe(spinner_ref));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(result) => (host_ref, result.unwrap_err()),
            Err(_) => {
                eprintln!("the endless loop was not interrupted: aborting the hung test binary");
                std::process::abort()
            }
        }
    });
    match &err {
        Error::Timeout {
            plugin,
            call,
            limit: reported,
        } => {
            assert_eq!(plugin, "druid_test_plugin_endless_loop");
            assert_eq!(*call, "describe");
            assert_eq!(*reported, limit);
        }
        other => panic!("expected a CPU-time error, got {other:?}"),
    }
    assert!(err.to_string().contains("CPU-time limit"), "{err}");

    // The same host keeps serving other plugins.
    assert_serves_the_local_plugin(host);
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_cap() {
    let cap = 64 << 20;
    let host = PluginHost::new(Limits {
        memory_bytes: cap,
        ..Limits::default()
    })
    .unwrap();
    let components = plugin_components();
    let bomb = host
        .load_file(components.get("druid-test-plugin-memory-bomb"))
        .unwrap();
    let err = host.describe(&bomb).unwrap_err();
    match &err {
        Error::MemoryLimit {
            plugin,
            call,
            requested,
            limit,
        } => {
            assert_eq!(plugin, "druid_test_plugin_memory_bomb");
            assert_eq!(*call, "describe");
            assert_eq!(*limit, cap);
            assert!(requested > limit);
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }

    // The same host keeps serving other plugins.
    assert_serves_the_local_plugin(&host);
}
