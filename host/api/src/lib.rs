//! The `druid.gardener.cloud/v1alpha1` API: the `Etcd`, `EtcdCopyBackupsTask`
//! and `EtcdOpsTask` resources, their defaults, validation and the generated
//! CRD YAML. (The types come with the operator issue.)

/// The API group of every druid resource.
pub const GROUP: &str = "druid.gardener.cloud";

/// The API version served.
pub const VERSION: &str = "v1alpha1";

/// The `apiVersion` string of druid resources.
pub fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_version_is_group_slash_version() {
        assert_eq!(super::api_version(), "druid.gardener.cloud/v1alpha1");
    }
}
