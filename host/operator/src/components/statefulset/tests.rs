//! The StatefulSet builder's tests.
#![allow(clippy::unwrap_used, reason = "tests")]

use druid_api::Etcd;
use druid_api::etcd::{CaSecretReference, SecretReference, TlsConfig};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::super::fixtures::{context, local_store, model, seed};
use super::super::pod::{BACKUP_CONTAINER, ETCD_CONTAINER, backup_image};
use super::super::{BuildContext, configmap};
use super::build;

fn sts(etcd: &Etcd, ctx: &BuildContext) -> StatefulSet {
    let m = model(etcd);
    build(
        etcd,
        &m,
        ctx,
        &configmap::pod_checksum(etcd, &m, ctx).unwrap(),
    )
    .unwrap()
}

fn pod(sts: &StatefulSet) -> &PodSpec {
    sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn container<'a>(sts: &'a StatefulSet, name: &str) -> &'a Container {
    pod(sts).containers.iter().find(|c| c.name == name).unwrap()
}

fn args(sts: &StatefulSet, name: &str) -> Vec<String> {
    container(sts, name).args.clone().unwrap()
}

fn mounts(sts: &StatefulSet, name: &str) -> Vec<String> {
    container(sts, name)
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect()
}

fn volume_secrets(sts: &StatefulSet) -> Vec<String> {
    pod(sts)
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect()
}

#[test]
fn seed_snapshot() {
    insta::assert_yaml_snapshot!(sts(&seed(), &context()));
}

#[test]
fn default_images_without_spec_images() {
    let mut etcd = seed();
    etcd.spec.etcd.image_repository = None;
    etcd.spec.etcd.image_version = None;
    etcd.spec.backup.image_repository = None;
    etcd.spec.backup.image_version = None;
    let ctx = context();
    let s = sts(&etcd, &ctx);
    assert_eq!(container(&s, ETCD_CONTAINER).image, Some(ctx.etcd_image));
    assert_eq!(
        container(&s, BACKUP_CONTAINER).image,
        Some(ctx.backup_image)
    );
}

#[test]
fn enable_tls_switches_to_https_and_mounts_the_secrets() {
    let mut etcd = seed();
    etcd.spec.etcd.enable_tls = Some(true);
    let s = sts(&etcd, &context());
    insta::assert_yaml_snapshot!(s);

    let backup = args(&s, BACKUP_CONTAINER);
    for expected in [
        "--endpoints=https://test-local:2379",
        "--service-endpoints=https://test-client:2379",
        "--cacert=/var/etcd/ssl/ca/ca.crt",
        "--cert=/var/etcd/ssl/client/tls.crt",
        "--key=/var/etcd/ssl/client/tls.key",
        "--insecure-transport=false",
    ] {
        assert!(
            backup.iter().any(|a| a == expected),
            "{expected} in {backup:?}"
        );
    }
    let wrapper = args(&s, ETCD_CONTAINER);
    assert!(wrapper.contains(&"--etcd-client-cert-path=/var/etcd/ssl/client/tls.crt".into()));
    // The wrapper serves /readyz with etcd's client certificate.
    let probe = container(&s, ETCD_CONTAINER)
        .readiness_probe
        .clone()
        .unwrap();
    assert_eq!(probe.http_get.unwrap().scheme.as_deref(), Some("HTTPS"));
    let secrets = volume_secrets(&s);
    assert!(secrets.contains(&"etcd-server-tls".into()), "{secrets:?}");
    assert!(secrets.contains(&"etcd-client-tls".into()), "{secrets:?}");
    let etcd_mounts = mounts(&s, ETCD_CONTAINER);
    for path in [
        "/var/etcd/ssl/ca",
        "/var/etcd/ssl/server",
        "/var/etcd/ssl/client",
    ] {
        assert!(
            etcd_mounts.contains(&path.into()),
            "{path} in {etcd_mounts:?}"
        );
    }

    let plain = sts(&seed(), &context());
    assert!(args(&plain, BACKUP_CONTAINER).contains(&"--endpoints=http://test-local:2379".into()));
    assert!(!volume_secrets(&plain).contains(&"etcd-server-tls".into()));
    assert!(
        !mounts(&plain, ETCD_CONTAINER)
            .iter()
            .any(|p| p.contains("ssl"))
    );
}

#[test]
fn backup_tls_switches_the_wrapper_to_https_and_leaves_the_probe_alone() {
    let mut etcd = seed();
    etcd.spec.backup.tls = Some(TlsConfig {
        tls_ca_secret_ref: CaSecretReference {
            name: "br-ca".into(),
            namespace: None,
            data_key: None,
        },
        server_tls_secret_ref: SecretReference {
            name: "br-server".into(),
            namespace: None,
        },
        client_tls_secret_ref: None,
    });
    let s = sts(&etcd, &context());
    let wrapper = args(&s, ETCD_CONTAINER);
    assert!(wrapper.contains(&"--backup-restore-tls-enabled=true".into()));
    assert!(
        wrapper.contains(&"--backup-restore-ca-cert-bundle-path=/var/etcdbr/ssl/ca/ca.crt".into())
    );
    assert!(
        args(&s, BACKUP_CONTAINER).contains(&"--server-cert=/var/etcdbr/ssl/server/tls.crt".into())
    );
    // The wrapper serves /readyz over plain HTTP while etcd's client
    // URLs do (a probe over HTTPS would never see it ready).
    let probe = container(&s, ETCD_CONTAINER)
        .readiness_probe
        .clone()
        .unwrap();
    assert_eq!(probe.http_get.unwrap().scheme.as_deref(), Some("HTTP"));
    assert!(volume_secrets(&s).contains(&"br-server".into()));
    // No client certificate named: no mTLS.
    assert!(
        !args(&s, BACKUP_CONTAINER)
            .iter()
            .any(|a| a.contains("client-ca"))
    );
    assert!(!wrapper.iter().any(|a| a.contains("client-cert")));

    // A client certificate named: the sidecar requires one, and the
    // wrapper and the sidecars present it.
    if let Some(tls) = etcd.spec.backup.tls.as_mut() {
        tls.client_tls_secret_ref = Some(SecretReference {
            name: "br-client".into(),
            namespace: None,
        });
    }
    let s = sts(&etcd, &context());
    let backup = args(&s, BACKUP_CONTAINER);
    for expected in [
        "--client-ca-file=/var/etcdbr/ssl/ca/ca.crt",
        "--api-client-cert=/var/etcdbr/ssl/client/tls.crt",
        "--api-client-key=/var/etcdbr/ssl/client/tls.key",
    ] {
        assert!(
            backup.contains(&expected.into()),
            "{expected} in {backup:?}"
        );
    }
    let wrapper = args(&s, ETCD_CONTAINER);
    for expected in [
        "--backup-restore-client-cert-path=/var/etcdbr/ssl/client/tls.crt",
        "--backup-restore-client-key-path=/var/etcdbr/ssl/client/tls.key",
    ] {
        assert!(
            wrapper.contains(&expected.into()),
            "{expected} in {wrapper:?}"
        );
    }
    assert!(volume_secrets(&s).contains(&"br-client".into()));
    for c in [ETCD_CONTAINER, BACKUP_CONTAINER] {
        assert!(
            mounts(&s, c).contains(&"/var/etcdbr/ssl/client".into()),
            "{c}"
        );
    }
    assert!(mounts(&s, BACKUP_CONTAINER).contains(&"/var/etcdbr/ssl/ca".into()));
}

#[test]
fn no_store_means_no_store_flags_volumes_or_env() {
    let mut etcd = seed();
    etcd.spec.store = None;
    let mut ctx = context();
    ctx.store_wiring = None;
    let s = sts(&etcd, &ctx);
    let backup = args(&s, BACKUP_CONTAINER);
    for flag in [
        "--storage-provider",
        "--store-",
        "--schedule",
        "--delta-snapshot",
        "--garbage-collection",
        "--full-snapshot-lease-name",
        "--enable-snapshot-lease-renewal",
    ] {
        assert!(
            !backup.iter().any(|a| a.starts_with(flag)),
            "{flag} in {backup:?}"
        );
    }
    assert!(volume_secrets(&s).is_empty());
    assert!(!mounts(&s, BACKUP_CONTAINER).contains(&"/var/etcd-backup".into()));
    let env = container(&s, BACKUP_CONTAINER).env.clone().unwrap();
    let env: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_IP"]);
    // The sidecar still maintains etcd.
    assert!(
        backup
            .iter()
            .any(|a| a.starts_with("--defragmentation-schedule="))
    );
}

#[test]
fn local_provider_mounts_a_host_path() {
    let mut etcd = seed();
    let ctx = local_store(&mut etcd);
    etcd.spec.backup.garbage_collection_policy = None;

    let s = sts(&etcd, &ctx);
    let volume = pod(&s)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "local-backup")
        .unwrap();
    let host = volume.host_path.as_ref().unwrap();
    assert_eq!(host.path, "/var/lib/druid/local-backupbuckets");
    assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
    let mount = pod(&s)
        .containers
        .iter()
        .find(|c| c.name == BACKUP_CONTAINER)
        .and_then(|c| c.volume_mounts.as_ref())
        .and_then(|m| m.iter().find(|m| m.name == "local-backup"))
        .unwrap();
    assert_eq!(mount.mount_path, "/var/etcd-backup-local/bucket");
    assert_eq!(mount.sub_path.as_deref(), Some("demo/bucket"));
    let backup = args(&s, BACKUP_CONTAINER);
    assert!(backup.contains(&"--storage-provider=Local".into()));
    assert!(backup.contains(&"--garbage-collection-policy=LimitBased".into()));
    assert!(backup.contains(&"--max-backups=7".into()));

    // The kubelet creates the directory as root: an init container
    // gives it to the sidecar's user, as root with CHOWN only.
    let init = pod(&s).init_containers.clone().unwrap();
    assert_eq!(init.len(), 1);
    let prepare = &init[0];
    assert_eq!(
        prepare.args.clone().unwrap(),
        [
            "prepare-local-store",
            "--dir=/var/etcd-backup-local/bucket",
            "--owner=65532:65532"
        ]
    );
    assert_eq!(prepare.image, Some(backup_image(&model(&etcd), &ctx)));
    assert_eq!(prepare.volume_mounts.clone().unwrap(), vec![mount.clone()]);
    let sc = prepare.security_context.clone().unwrap();
    assert_eq!(
        (
            sc.run_as_user,
            sc.run_as_non_root,
            sc.allow_privilege_escalation
        ),
        (Some(0), Some(false), Some(false))
    );
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    assert_eq!(caps.add.unwrap(), ["CHOWN", "DAC_READ_SEARCH"]);

    // Run as root, nothing to give away.
    etcd.spec.run_as_root = Some(true);
    assert_eq!(pod(&sts(&etcd, &ctx)).init_containers, None);
    // Other providers need none.
    assert_eq!(pod(&sts(&seed(), &context())).init_containers, None);
}

#[test]
fn the_provider_flag_is_upstreams_canonical_name() {
    for (written, canonical) in [("aws", "S3"), ("stackit", "S3"), ("S3", "S3")] {
        let mut etcd = seed();
        if let Some(store) = etcd.spec.store.as_mut() {
            store.storage_provider = Some(written.into());
        }
        let backup = args(&sts(&etcd, &context()), BACKUP_CONTAINER);
        let flag = format!("--storage-provider={canonical}");
        assert!(backup.contains(&flag), "{written}: {backup:?}");
    }
}

#[test]
fn store_secret_without_a_secret_is_an_error() {
    let mut etcd = seed();
    if let Some(store) = etcd.spec.store.as_mut() {
        store.store_secret = None;
    }
    let m = model(&etcd);
    assert!(build(&etcd, &m, &context(), "x").is_err());
}

#[test]
fn run_as_root_and_non_root() {
    let s = sts(&seed(), &context());
    let sc = pod(&s).security_context.clone().unwrap();
    assert_eq!(
        (sc.run_as_user, sc.fs_group, sc.run_as_non_root),
        (Some(65532), Some(65532), Some(true))
    );
    let mut etcd = seed();
    etcd.spec.run_as_root = Some(true);
    let s = sts(&etcd, &context());
    let sc = pod(&s).security_context.clone().unwrap();
    assert_eq!((sc.run_as_user, sc.run_as_non_root), (Some(0), Some(false)));
}

#[test]
fn custom_ports_reach_the_wrapper_flags() {
    let mut etcd = seed();
    etcd.spec.etcd.client_port = Some(3379);
    etcd.spec.etcd.wrapper_port = Some(9096);
    etcd.spec.backup.port = Some(8081);
    let s = sts(&etcd, &context());
    let wrapper = args(&s, ETCD_CONTAINER);
    for expected in [
        "--backup-restore-host-port=test-local:8081",
        "--etcd-client-port=3379",
        "--etcd-wrapper-port=9096",
    ] {
        assert!(
            wrapper.contains(&expected.into()),
            "{expected} in {wrapper:?}"
        );
    }
    // The seed's default ports pass no port flags (older wrappers lack them).
    assert!(
        !args(&sts(&seed(), &context()), ETCD_CONTAINER)
            .iter()
            .any(|a| a.starts_with("--etcd-client-port"))
    );
}

#[test]
fn config_checksum_is_on_the_pod_template() {
    let etcd = seed();
    let m = model(&etcd);
    let s = build(&etcd, &m, &context(), "abc").unwrap();
    let annotations = s
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(annotations[crate::names::CONFIG_CHECKSUM_ANNOTATION], "abc");
}

#[test]
fn joining_members_reach_the_source_and_never_found_a_cluster_of_their_own() {
    use druid_api::etcd::{BootstrapExistingMember, BootstrapWithExistingCluster};
    let plain = args(&sts(&seed(), &context()), BACKUP_CONTAINER);
    assert!(
        plain.contains(&"--service-endpoints=http://test-client:2379".to_string()),
        "{plain:?}"
    );
    assert!(
        !plain
            .iter()
            .any(|a| a.starts_with("--join-existing-cluster"))
    );

    let mut etcd = seed();
    etcd.spec.etcd.bootstrap_with_existing_cluster = Some(BootstrapWithExistingCluster {
        client_endpoints: vec!["http://10.0.0.1:2379".into(), "http://10.0.0.2:2379".into()],
        members: vec![BootstrapExistingMember {
            name: "vm-a".into(),
            peer_urls: vec!["http://10.0.0.1:2380".into()],
        }],
    });
    let joining = args(&sts(&etcd, &context()), BACKUP_CONTAINER);
    assert!(
        joining.contains(
            &"--service-endpoints=http://test-client:2379,http://10.0.0.1:2379,http://10.0.0.2:2379"
                .to_string()
        ),
        "{joining:?}"
    );
    assert!(joining.contains(&"--join-existing-cluster=true".to_string()));
}

#[test]
fn a_plugins_image_installs_its_plugins_before_the_sidecar_starts() {
    let mut ctx = context();
    ctx.plugins_image = Some("registry.example/acme-plugins:1.0".into());
    let s = sts(&seed(), &ctx);
    let init = pod(&s).init_containers.clone().unwrap();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].name, "install-plugins");
    assert_eq!(
        init[0].image.as_deref(),
        Some("registry.example/acme-plugins:1.0")
    );
    assert_eq!(init[0].args.clone().unwrap(), ["--to=/var/druid/plugins"]);
    let sc = init[0].security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    let volume = pod(&s)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "druid-plugins")
        .unwrap();
    assert!(volume.empty_dir.is_some());
    // The sidecar reads the plugins, read-only, from DRUID_PLUGINS_DIR.
    let sidecar = container(&s, BACKUP_CONTAINER);
    let m = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "druid-plugins")
        .unwrap();
    assert_eq!(m.mount_path, "/var/druid/plugins");
    assert_eq!(m.read_only, Some(true));
    assert!(
        sidecar
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "DRUID_PLUGINS_DIR"
                && e.value.as_deref() == Some("/var/druid/plugins"))
    );
    // etcd itself gets nothing of it.
    assert!(!mounts(&s, ETCD_CONTAINER).contains(&"/var/druid/plugins".to_string()));

    // Without the image: no init container, no volume (the seed snapshot).
    let s = sts(&seed(), &context());
    assert!(pod(&s).init_containers.is_none());
    assert!(
        !pod(&s)
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == "druid-plugins")
    );
}
