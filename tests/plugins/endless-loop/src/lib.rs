//! A hostile test plugin: `describe` never returns. The host must interrupt
//! it at its CPU-time limit and keep serving.

use druid_plugin_sdk::provider::{Guest, PluginInfo};

/// The plugin.
pub struct EndlessLoop;

impl Guest for EndlessLoop {
    fn describe() -> PluginInfo {
        let mut n: u64 = 0;
        loop {
            // black_box keeps the loop from being optimised into a trap.
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

druid_plugin_sdk::provider::export_provider!(EndlessLoop);
