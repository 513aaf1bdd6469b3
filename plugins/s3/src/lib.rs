//! The `S3` storage provider plugin: AWS S3 and S3-compatible stores.
//! (The object-store interface and SigV4 come with the plugins issue.)

use druid_plugin_sdk::provider::{Guest, PluginInfo};

/// The plugin.
pub struct S3;

impl Guest for S3 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "s3".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: druid_plugin_sdk::API_VERSION.into(),
            providers: vec!["S3".into(), "aws".into()],
        }
    }
}

druid_plugin_sdk::provider::export_provider!(S3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_serves_s3_and_its_alias() {
        let info = S3::describe();
        assert_eq!(info.name, "s3");
        assert!(info.providers.iter().any(|p| p == "S3"));
        assert!(info.providers.iter().any(|p| p == "aws"));
    }
}
