//! The `Local` storage provider plugin: snapshots in a directory that the
//! host grants. (The object-store interface comes with the plugins issue.)

use druid_plugin_sdk::provider::{Guest, PluginInfo};

/// The plugin.
pub struct Local;

impl Guest for Local {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "local".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: druid_plugin_sdk::API_VERSION.into(),
            providers: vec!["Local".into()],
        }
    }
}

druid_plugin_sdk::provider::export_provider!(Local);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_the_local_provider() {
        let info = Local::describe();
        assert_eq!(info.name, "local");
        assert_eq!(info.providers, vec!["Local".to_string()]);
        assert_eq!(info.api_version, druid_plugin_sdk::API_VERSION);
    }
}
