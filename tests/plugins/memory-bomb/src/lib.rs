//! A hostile test plugin: `describe` allocates without end. The host must
//! stop it at its memory cap and keep serving.

use druid_plugin_sdk::provider::{Guest, PluginInfo};

/// The plugin.
pub struct MemoryBomb;

impl Guest for MemoryBomb {
    fn describe() -> PluginInfo {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // 16 MiB at a time, touched so the pages are really used.
            hoard.push(vec![1u8; 16 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

druid_plugin_sdk::provider::export_provider!(MemoryBomb);
