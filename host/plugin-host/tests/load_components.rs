//! Loads the components of the real wasm build, registers them and calls
//! their describe and pod-wiring exports.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod common;

use std::sync::Arc;

use druid_plugin_host::{
    Error, Limits, PluginHost, PluginKind, PluginSource, Registry, RegistryOptions, VolumeSource,
    WiringError,
};
use druid_test_support::{plugin_components, server_dir};

#[tokio::test]
async fn every_built_plugin_describes_itself() {
    let components = plugin_components();
    let host = PluginHost::new(Limits::default()).unwrap();
    let expected = [
        ("druid-plugin-local", "local", vec!["Local"]),
        (
            "druid-plugin-s3",
            "s3",
            vec!["S3", "aws", "ECS", "dell", "OCS", "openshift", "stackit"],
        ),
        ("druid-plugin-compactor", "compactor", vec![]),
    ];
    for (krate, name, providers) in expected {
        let plugin = host.load_file(components.get(krate)).unwrap();
        let info = host.describe(&plugin).await.unwrap();
        assert_eq!(info.name, name, "{krate}");
        assert_eq!(info.providers, providers, "{krate}");
        assert_eq!(info.api_version, druid_plugin_host::API_VERSION, "{krate}");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"), "{krate}");
        // A second call runs in a fresh store and answers the same.
        assert_eq!(host.describe(&plugin).await.unwrap(), info);
    }
}

#[test]
fn a_file_that_is_not_a_component_is_a_load_error_naming_it() {
    let dir = server_dir("not-a-plugin").unwrap();
    let path = dir.join("broken.wasm");
    std::fs::write(&path, b"this is not WebAssembly").unwrap();
    let host = PluginHost::new(Limits::default()).unwrap();
    let err = match host.load_file(&path) {
        Ok(_) => panic!("a text file loaded as a plugin"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Load { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.wasm"), "{err}");
}

#[tokio::test]
async fn the_registry_maps_providers_and_upstream_aliases() {
    let registry = common::registry(Limits::default()).await;
    for (provider, plugin) in [
        ("S3", "s3"),
        ("aws", "s3"),
        ("stackit", "s3"),
        ("OCS", "s3"),
        ("openshift", "s3"),
        ("ECS", "s3"),
        ("dell", "s3"),
        ("ABS", "abs"),
        ("azure", "abs"),
        ("GCS", "gcs"),
        ("gcp", "gcs"),
        ("Swift", "swift"),
        ("openstack", "swift"),
        ("Local", "local"),
        ("", "local"),
        ("Hostile", "hostile"),
    ] {
        assert_eq!(
            registry.plugin_for(provider).unwrap().info.name,
            plugin,
            "{provider:?}"
        );
    }
    let compactor = registry
        .plugins()
        .iter()
        .find(|p| p.info.name == "compactor")
        .unwrap();
    assert_eq!(compactor.kind, PluginKind::Compactor);
}

#[tokio::test]
async fn an_unknown_provider_is_a_clear_error() {
    let registry = common::registry(Limits::default()).await;
    let err = registry.plugin_for("hetzner").err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::UnknownProvider { .. }), "{err:?}");
    assert!(
        text.contains("\"hetzner\"")
            && text.contains("S3")
            && text.contains("ABS")
            && text.contains("GCS")
            && text.contains("Swift")
            && text.contains("OSS")
            && text.contains("Local"),
        "{text}"
    );
    assert!(text.contains("store.provider"), "says what to fix: {text}");
}

#[tokio::test]
async fn two_plugins_claiming_one_provider_is_an_error_at_load() {
    let dir = server_dir("duplicate-providers").unwrap();
    let local = plugin_components().get("druid-plugin-local");
    std::fs::copy(local, dir.join("local-a.wasm")).unwrap();
    std::fs::copy(local, dir.join("local-b.wasm")).unwrap();
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());
    let err = Registry::load(host, Some(&dir), &[]).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateProvider { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("local-a.wasm") && text.contains("local-b.wasm"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plugin_file_replaces_the_built_in_plugin_of_the_same_name() {
    let components = plugin_components();
    let dir = server_dir("builtin-replaced").unwrap();
    std::fs::copy(components.get("druid-plugin-local"), dir.join("local.wasm")).unwrap();
    let builtin = std::fs::read(components.get("druid-plugin-local")).unwrap();
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());
    let registry = Registry::load_with(
        host,
        Some(&dir),
        &[("local", &builtin)],
        &RegistryOptions {
            allow_builtin_override: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(registry.plugins().len(), 1);
    assert_eq!(
        registry.plugin_for("Local").unwrap().source,
        druid_plugin_host::PluginSource::File(dir.join("local.wasm"))
    );
}

#[tokio::test]
async fn pod_wiring_comes_from_the_provider_plugin() {
    let registry = common::registry(Limits::default()).await;
    let s3 = registry
        .pod_config("aws", "bucket", "etcd-main", Some("backup-secret"))
        .await
        .unwrap();
    assert!(
        s3.env.contains(&(
            "AWS_APPLICATION_CREDENTIALS".into(),
            "/var/etcd-backup".into()
        )),
        "{s3:?}"
    );
    assert!(
        s3.env
            .contains(&("STORAGE_CONTAINER".into(), "bucket".into())),
        "{s3:?}"
    );
    assert_eq!(s3.volumes.len(), 1);
    assert_eq!(s3.volumes[0].source, VolumeSource::StoreSecret);

    let local = registry
        .pod_config("Local", "default.bkp", "etcd-main", None)
        .await
        .unwrap();
    assert!(
        matches!(local.volumes[0].source, VolumeSource::HostPath(_)),
        "{local:?}"
    );

    // S3 without a Secret: the pod's own web identity signs; nothing is
    // mounted. A provider that needs a Secret still refuses.
    let s3 = registry
        .pod_config("S3", "bucket", "p", None)
        .await
        .unwrap();
    assert_eq!(
        s3.env,
        [("STORAGE_CONTAINER".to_string(), "bucket".to_string())]
    );
    assert!(s3.volumes.is_empty(), "{s3:?}");
    let err = registry
        .pod_config("OCS", "bucket", "p", None)
        .await
        .unwrap_err();
    assert!(matches!(err, WiringError::Spec(_)), "{err:?}");
    assert!(err.to_string().contains("secretRef"), "{err}");
}

#[tokio::test]
async fn a_secret_missing_keys_names_each_of_them() {
    let registry = common::registry(Limits::default()).await;
    let err = registry
        .check_secret("S3", &["region".to_string()])
        .await
        .unwrap_err();
    let WiringError::Secret(problems) = &err else {
        panic!("expected secret problems, got {err:?}");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("accessKeyID")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("secretAccessKey")),
        "{problems:?}"
    );
    registry
        .check_secret(
            "S3",
            &["region", "accessKeyID", "secretAccessKey"].map(String::from),
        )
        .await
        .unwrap();
    registry.check_secret("Local", &[]).await.unwrap();
}

#[tokio::test]
async fn the_sdk_template_builds_into_a_plugin_that_fits_the_contract() {
    use druid_plugin_host::SnapshotStore;
    let components = plugin_components();
    let template = std::fs::read(components.get("druid-plugin-template")).unwrap();
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());
    let registry = Registry::load(host, None, &[("template", &template)])
        .await
        .unwrap();
    assert_eq!(
        registry.plugin_for("Template").unwrap().info.name,
        "template"
    );
    let err = registry
        .check_secret("Template", &["endpoint".to_string()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`token`"), "{err}");
    let store = registry
        .store(common::config(
            "Template",
            "c",
            Some("http://127.0.0.1:1"),
            &[],
        ))
        .unwrap();
    let err = store.head("k").await.unwrap_err();
    assert!(
        err.to_string().contains("does not implement head yet"),
        "{err}"
    );
}

#[tokio::test]
async fn the_shipped_plugins_are_built_into_the_binary() {
    let components = plugin_components();
    let builtins = druid_plugin_host::builtin_plugins();
    let names: Vec<&str> = builtins.iter().map(|(n, _)| *n).collect();
    for krate in [
        "druid-plugin-local",
        "druid-plugin-s3",
        "druid-plugin-abs",
        "druid-plugin-gcs",
        "druid-plugin-swift",
        "druid-plugin-oss",
    ] {
        let stem = krate.replace('-', "_");
        let embedded = builtins
            .iter()
            .find(|(n, _)| *n == stem)
            .unwrap_or_else(|| panic!("{krate} is not built in (built in: {names:?})"));
        // The embedded component is the one the plugin build produced.
        assert_eq!(
            embedded.1,
            std::fs::read(components.get(krate)).unwrap().as_slice(),
            "{krate}: the embedded component is stale"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("hostile") || n.contains("template")),
        "a test-only plugin is built in: {names:?}"
    );
    // With no plugins directory at all, the built-in plugins serve.
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());
    let registry = Registry::load(host, None, builtins).await.unwrap();
    for (provider, plugin) in [
        ("Local", "local"),
        ("aws", "s3"),
        ("S3", "s3"),
        ("ABS", "abs"),
        ("azure", "abs"),
        ("GCS", "gcs"),
        ("gcp", "gcs"),
        ("Swift", "swift"),
        ("openstack", "swift"),
        ("OSS", "oss"),
        ("alicloud", "oss"),
    ] {
        let p = registry.plugin_for(provider).unwrap();
        assert_eq!(p.info.name, plugin, "{provider}");
        assert_eq!(p.source, druid_plugin_host::PluginSource::Builtin);
    }
}

/// `wasm` with every `druid:plugin/<interface>@<host version>` name renamed to
/// `@<version>` (five characters, so the component stays valid): the
/// plugin as if built against another version of the WIT.
fn built_for(wasm: &[u8], version: &str) -> Vec<u8> {
    assert_eq!(version.len(), 5);
    let mut out = wasm.to_vec();
    let mut renamed = 0;
    let mut i = 0;
    while let Some(at) = out[i..].windows(13).position(|w| w == b"druid:plugin/") {
        let start = i + at + 13;
        let name_end = start
            + out[start..]
                .iter()
                .position(|b| !(b.is_ascii_lowercase() || *b == b'-'))
                .unwrap();
        let host_version = format!("@{}", druid_plugin_host::API_VERSION);
        if out[name_end..].starts_with(host_version.as_bytes()) {
            out[name_end + 1..name_end + 6].copy_from_slice(version.as_bytes());
            renamed += 1;
        }
        i = name_end;
    }
    assert!(renamed > 0, "no druid:plugin names in the component");
    out
}

/// `wasm` with `from` replaced by `to` (same length) everywhere.
fn patched(wasm: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = wasm.to_vec();
    let mut count = 0;
    let mut i = 0;
    while let Some(at) = out[i..].windows(from.len()).position(|w| w == from) {
        out[i + at..i + at + to.len()].copy_from_slice(to);
        count += 1;
        i += at + to.len();
    }
    assert!(count > 0, "{:?} not found", String::from_utf8_lossy(from));
    out
}

#[tokio::test]
async fn a_plugin_built_for_another_wit_version_gets_the_version_message_not_the_linkers() {
    let local = std::fs::read(plugin_components().get("druid-plugin-local")).unwrap();
    let host = PluginHost::new(Limits::default()).unwrap();
    // Another 0.x minor version, and a newer patch version than the host's.
    for version in ["0.3.0", "0.2.9", "0.1.0"] {
        let err = match host.load_bytes("local-next", &built_for(&local, version)) {
            Ok(_) => panic!("a plugin built for {version} loaded"),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(
            matches!(&err, Error::ApiVersion { plugin_api, .. } if plugin_api == version),
            "{version}: {err:?}"
        );
        assert!(
            text.contains(&format!("built for druid:plugin@{version}"))
                && text.contains("this host serves druid:plugin@0.2.0")
                && text.contains("loads plugins built for 0.2.0 to 0.2.0")
                && text.contains("rebuild the plugin"),
            "{text}"
        );
        assert!(
            !text.contains("implementation") && !text.contains("wrong type"),
            "{text}"
        );
    }
    // The same component with the host's version loads.
    host.load_bytes("local", &built_for(&local, "0.2.0"))
        .unwrap();
}

#[tokio::test]
async fn a_broken_plugin_file_disables_only_its_own_providers() {
    let components = plugin_components();
    let local = std::fs::read(components.get("druid-plugin-local")).unwrap();
    let hostile = std::fs::read(components.get("druid-test-plugin-hostile")).unwrap();
    let dir = server_dir("broken-plugins").unwrap();
    std::fs::write(dir.join("broken.wasm"), b"this is not WebAssembly").unwrap();
    std::fs::write(dir.join("next.wasm"), built_for(&hostile, "0.3.0")).unwrap();
    // Describes itself, but claims the provider "Host~le".
    std::fs::write(
        dir.join("badname.wasm"),
        patched(&hostile, b"Hostile", b"Host~le"),
    )
    .unwrap();
    std::fs::copy(components.get("druid-plugin-s3"), dir.join("s3.wasm")).unwrap();
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());
    let registry = Registry::load(host, Some(&dir), &[("local", &local)])
        .await
        .unwrap();
    // The others serve: the built-in Local and the S3 file.
    assert_eq!(registry.plugin_for("Local").unwrap().info.name, "local");
    assert_eq!(registry.plugin_for("aws").unwrap().info.name, "s3");
    let refused: Vec<_> = registry
        .refused()
        .iter()
        .map(|r| r.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(refused, ["badname.wasm", "broken.wasm", "next.wasm"]);

    // A provider the refused file claims: the file and the reason.
    let err = registry.plugin_for("Host~le").err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::PluginRefused { .. }), "{err:?}");
    assert!(
        text.contains("badname.wasm")
            && text.contains("\"Host~le\", which holds a character other than")
            && text.contains("fix, rebuild or remove that file"),
        "{text}"
    );
    // Files that never described themselves: named with their reason
    // wherever a provider is unknown.
    let err = registry.plugin_for("Hostile").err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::UnknownProvider { .. }), "{err:?}");
    assert!(
        text.contains("broken.wasm: plugin")
            && text.contains("cannot load component")
            && text.contains("next.wasm: plugin next: built for druid:plugin@0.3.0")
            && text.contains("store.provider"),
        "{text}"
    );
    assert!(!text.contains("badname.wasm"), "{text}");
}

#[tokio::test]
async fn a_plugin_file_replaces_a_built_in_plugin_only_when_allowed() {
    let components = plugin_components();
    let local = std::fs::read(components.get("druid-plugin-local")).unwrap();
    // The same plugin, another component: a custom section added.
    let mut other = local.clone();
    other.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
    let dir = server_dir("builtin-override").unwrap();
    let file = dir.join("my-local.wasm");
    std::fs::write(&file, &other).unwrap();
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());

    let registry = Registry::load(host.clone(), Some(&dir), &[("local", &local)])
        .await
        .unwrap();
    assert_eq!(
        registry.plugin_for("Local").unwrap().source,
        PluginSource::Builtin
    );
    let [refused] = registry.refused() else {
        panic!("{:?}", registry.refused());
    };
    assert_eq!(refused.file, file);
    assert_eq!(refused.providers, ["Local"]);
    assert!(
        refused.reason.contains("my-local.wasm")
            && refused.reason.contains("built-in plugin \"local\"")
            && refused.reason.contains("--plugins-override-builtin"),
        "{}",
        refused.reason
    );

    let registry = Registry::load_with(
        host.clone(),
        Some(&dir),
        &[("local", &local)],
        &RegistryOptions {
            allow_builtin_override: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        registry.plugin_for("Local").unwrap().source,
        PluginSource::File(file.clone())
    );
    assert!(registry.refused().is_empty());

    // The very component built in is no override: skipped, not refused.
    std::fs::write(&file, &local).unwrap();
    let registry = Registry::load(host, Some(&dir), &[("local", &local)])
        .await
        .unwrap();
    assert!(registry.refused().is_empty(), "{:?}", registry.refused());
    assert_eq!(
        registry.plugin_for("Local").unwrap().source,
        PluginSource::Builtin
    );
}

#[tokio::test]
async fn each_provider_declares_its_store_contract_and_a_bad_one_disables_only_that_provider() {
    let registry = common::registry(Limits::default()).await;
    // The hostile plugin's second provider declares a contract that reads
    // HOME and KUBERNETES_SERVICE_HOST and reaches any host: refused when
    // loaded, with every problem named; its first provider still serves.
    let err = registry.plugin_for("HostileContract").err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::PluginRefused { .. }), "{err:?}");
    for wanted in [
        "built-in plugin hostile",
        "the store contract of provider \"HostileContract\" is refused",
        "credential variable \"HOME\" is not <NAME>_APPLICATION_CREDENTIALS",
        "\"KUBERNETES_SERVICE_HOST\" must be upper case and start with the NAME_ of a declared credential variable (none is declared)",
        "official endpoint \"https://{target}\": the last two labels must be literal",
        "official endpoint \"http://169.254.169.254\": not https",
    ] {
        assert!(text.contains(wanted), "{wanted:?} not in: {text}");
    }
    assert_eq!(registry.plugin_for("Hostile").unwrap().info.name, "hostile");
    assert_eq!(
        registry
            .refused()
            .iter()
            .map(|r| r.providers.clone())
            .collect::<Vec<_>>(),
        vec![vec!["HostileContract".to_string()]]
    );

    // The shipped plugins' contracts, as the host reads them: no table of
    // providers in the host.
    let s3 = registry.contract("aws").unwrap();
    assert_eq!(
        s3.credential_variables,
        [
            "AWS_APPLICATION_CREDENTIALS_JSON",
            "AWS_APPLICATION_CREDENTIALS"
        ]
    );
    // Not required: without a Secret the pod's web identity (IRSA's
    // variables, the token read from its file) signs.
    assert!(!s3.credentials_required);
    assert_eq!(
        s3.endpoint_keys,
        ["endpoint", "stsEndpoint", "AWS_ENDPOINT_URL_STS"]
    );
    assert!(s3.credential_value_variables.contains(&(
        "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
        "AWS_WEB_IDENTITY_TOKEN".to_string()
    )));
    let ecs = registry.contract("dell").unwrap();
    assert!(!ecs.credentials_required);
    assert!(
        ecs.credential_value_variables
            .contains(&("ECS_ENDPOINT".to_string(), "endpoint".to_string()))
    );
    assert_eq!(
        registry.contract("Local").unwrap(),
        &druid_plugin_host::StoreContract::default()
    );
    // Without an endpoint override an S3 store reaches the regional
    // endpoints its plugin declares, filled from its bucket and region.
    let store = registry
        .store(common::config(
            "S3",
            "Backups",
            None,
            &[("region", "eu-west-1")],
        ))
        .unwrap();
    let allowed: Vec<String> = store
        .grants()
        .http
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        allowed,
        [
            "https://backups.s3.amazonaws.com:443",
            "https://backups.s3.eu-west-1.amazonaws.com:443",
            "https://s3.amazonaws.com:443",
            "https://s3.eu-west-1.amazonaws.com:443",
            "https://sts.eu-west-1.amazonaws.com:443",
        ]
    );
    // An ABS store reaches its account's blob endpoint in Azure's clouds,
    // and with an override (Azurite) only that.
    let abs = registry.contract("azure").unwrap();
    assert_eq!(
        abs.credential_variables,
        [
            "AZURE_APPLICATION_CREDENTIALS_JSON",
            "AZURE_APPLICATION_CREDENTIALS"
        ]
    );
    // The destinations a store of `provider` may reach.
    let allowed = |provider: &str, endpoint: Option<&str>, creds: &[(&str, &str)]| -> Vec<String> {
        registry
            .store(common::config(provider, "etcd-backups", endpoint, creds))
            .unwrap()
            .grants()
            .http
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let grants = |endpoint: Option<&str>| {
        allowed(
            "ABS",
            endpoint,
            &[("storageAccount", "myaccount"), ("storageKey", "a2V5")],
        )
    };
    assert_eq!(
        grants(None),
        [
            "https://login.chinacloudapi.cn:443",
            "https://login.microsoftonline.com:443",
            "https://login.microsoftonline.us:443",
            "https://myaccount.blob.core.chinacloudapi.cn:443",
            "https://myaccount.blob.core.usgovcloudapi.net:443",
            "https://myaccount.blob.core.windows.net:443",
        ]
    );
    // With the pod's workload identity and an override: the override and
    // the authority the webhook names, nothing else.
    assert_eq!(
        allowed(
            "ABS",
            Some("http://127.0.0.1:10000/devstoreaccount1"),
            &[("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/")],
        ),
        [
            "http://127.0.0.1:10000",
            "https://etcd-backups.login.microsoftonline.com:443",
            "https://login.microsoftonline.com:443",
        ]
    );
    assert_eq!(
        grants(Some("http://127.0.0.1:10000/devstoreaccount1")),
        ["http://127.0.0.1:10000"]
    );
    // A GCS store reaches Google's storage and token hosts, or the
    // override and the service account's own token endpoint.
    let gcs = registry.contract("gcp").unwrap();
    assert_eq!(
        gcs.credential_variables,
        [
            "GOOGLE_APPLICATION_CREDENTIALS_JSON",
            "GOOGLE_APPLICATION_CREDENTIALS"
        ]
    );
    let grants = |endpoint: Option<&str>, token_uri: &str| {
        allowed(
            "GCS",
            endpoint,
            &[("client_email", "a@b"), ("token_uri", token_uri)],
        )
    };
    assert_eq!(
        grants(None, "https://oauth2.googleapis.com/token"),
        [
            "https://etcd-backups.oauth2.googleapis.com:443",
            "https://iamcredentials.googleapis.com:443",
            "https://oauth2.googleapis.com:443",
            "https://storage.googleapis.com:443",
            "https://sts.googleapis.com:443",
        ]
    );
    assert_eq!(
        grants(
            Some("http://127.0.0.1:4443/storage/v1/"),
            "http://127.0.0.1:9/token"
        ),
        ["http://127.0.0.1:9", "http://127.0.0.1:4443"]
    );
    // A Swift store reaches Keystone (the secret's `authURL`), where the
    // object store is when the catalog puts it on Keystone's origin, and
    // the override; OpenStack has no official host.
    let swift = registry.contract("openstack").unwrap();
    assert_eq!(
        swift.credential_variables,
        [
            "OPENSTACK_APPLICATION_CREDENTIALS_JSON",
            "OPENSTACK_APPLICATION_CREDENTIALS"
        ]
    );
    let grants = |endpoint: Option<&str>| {
        allowed(
            "Swift",
            endpoint,
            &[
                ("authURL", "https://keystone.example.com:5000/v3"),
                ("username", "u"),
                ("password", "p"),
            ],
        )
    };
    assert_eq!(
        grants(None),
        [
            "https://etcd-backups.keystone.example.com:5000",
            "https://keystone.example.com:5000",
        ]
    );
    assert_eq!(
        grants(Some("https://swift.example.com:8080")),
        [
            "https://etcd-backups.keystone.example.com:5000",
            "https://etcd-backups.swift.example.com:8080",
            "https://keystone.example.com:5000",
            "https://swift.example.com:8080",
        ]
    );
}
