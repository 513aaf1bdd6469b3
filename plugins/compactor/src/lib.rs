//! The compaction plugin: turns a full snapshot plus its deltas into one
//! compact etcd database. (The compaction interface comes with the
//! compaction issue; it will use `druid-etcd-db`.)

use druid_plugin_sdk::compactor::{Guest, PluginInfo};

/// The plugin.
pub struct Compactor;

impl Guest for Compactor {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "compactor".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: druid_plugin_sdk::API_VERSION.into(),
            providers: Vec::new(),
        }
    }
}

druid_plugin_sdk::compactor::export_compactor!(Compactor);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_serves_no_provider() {
        let info = Compactor::describe();
        assert_eq!(info.name, "compactor");
        assert!(info.providers.is_empty());
    }
}
