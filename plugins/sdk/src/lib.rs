//! The plugin SDK: bindings for the `druid:plugin` WIT package and helpers
//! for plugin authors.
//!
//! A provider plugin implements [`provider::Guest`]
//! and registers itself with [`provider::export_provider!`]; a compactor plugin does the
//! same with the [`compactor`] bindings and [`compactor::export_compactor!`].

/// The version of the WIT package these bindings were generated from. A
/// plugin reports it as its `api-version`.
pub const API_VERSION: &str = "0.1.0";

/// Bindings of the `provider` world.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod provider {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "druid:plugin/provider",
        pub_export_macro: true,
        export_macro_name: "export_provider",
        default_bindings_module: "druid_plugin_sdk::provider",
    });
}

/// Bindings of the `compactor` world.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod compactor {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "druid:plugin/compactor",
        pub_export_macro: true,
        export_macro_name: "export_compactor",
        default_bindings_module: "druid_plugin_sdk::compactor",
    });
}

/// Logs through the host's `logging` import (provider world).
pub mod log {
    use crate::provider::druid::plugin::logging::{Level, log};

    /// Logs an informational line.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs a warning.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs an error.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_version_matches_the_wit_package() {
        let wit = include_str!("../../../wit/plugin.wit");
        let expected = format!("package druid:plugin@{};", super::API_VERSION);
        assert!(
            wit.lines().any(|l| l.trim() == expected),
            "wit/plugin.wit does not declare `{expected}`: update API_VERSION"
        );
    }
}
