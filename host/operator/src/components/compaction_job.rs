//! The snapshot compaction Job (`<etcd>-compactor`): one run of the
//! backup-restore binary's `compact` command, which merges the latest full
//! snapshot and the deltas after it into a new full snapshot in the store
//! and records it in the snapshot leases, so that a restore no longer
//! replays every delta.
//!
//! The compaction controller creates it when the deltas since the last full
//! snapshot pass a threshold; nothing of it lives on the etcd pods' volumes:
//! the workspace is an emptyDir.

use std::collections::BTreeMap;
use std::time::Duration;

use druid_api::model::go_duration;
use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pod::{self, paths};
use super::store::{self, StoreWiring};
use super::{BuildContext, BuildError, metadata};
use crate::names;

/// The container's name.
pub const CONTAINER: &str = "compactor";
/// The workspace volume (an emptyDir at [`paths::DATA`]).
const WORKSPACE_VOLUME: &str = "compaction-workspace";
/// The embedded etcd's data directory, in the workspace.
pub const DATA_DIR: &str = "/var/etcd/data/compaction.etcd";
/// Where snapshots are downloaded to, in the workspace.
pub const RESTORATION_TEMP_DIR: &str = "/var/etcd/data/compaction.restoration.temp";
/// Scratch space for snapshots being uploaded, in the workspace.
pub const SNAPSTORE_TEMP_DIR: &str = "/var/etcd/data/tmp";
/// Seconds the pod gets to stop after a deletion.
const TERMINATION_GRACE_SECONDS: i64 = 60;
/// The annotation that would let the cluster autoscaler evict the pod: never
/// copied from the spec (the compaction pod is short-lived, and an eviction
/// midway only wastes the run).
pub const SAFE_TO_EVICT_ANNOTATION: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";

/// The Gardener network-policy labels the pod needs: DNS, and the store
/// (private or public networks).
pub const NETWORK_LABELS: [(&str, &str); 3] = [
    ("networking.gardener.cloud/to-dns", "allowed"),
    ("networking.gardener.cloud/to-private-networks", "allowed"),
    ("networking.gardener.cloud/to-public-networks", "allowed"),
];

/// Resources when `spec.backup.snapshotCompaction.resources` gives none:
/// the embedded etcd holds the whole database while it compacts.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("600m".into())),
            ("memory".to_string(), Quantity("3Gi".into())),
        ])),
        ..ResourceRequirements::default()
    }
}

/// The `compact` command's arguments: the store and lease flags the
/// sidecar gets (shared with the StatefulSet builder), then the workspace
/// and the embedded etcd's settings.
pub fn args(model: &EtcdModel) -> Result<Vec<String>, BuildError> {
    let store = model.store.as_ref().ok_or(BuildError::Render {
        what: "the compaction job",
        reason: format!(
            "Etcd {}/{} has no backup store: there is nothing to compact",
            model.namespace, model.name
        ),
    })?;
    let b = &model.backup;
    let mut args = vec!["compact".to_string()];
    args.extend(store::store_flags(model, store));
    args.extend(store::compression_flags(b));
    args.push(store::snapshot_timeout_flag(b));
    args.extend([
        format!("--data-dir={DATA_DIR}"),
        format!("--restoration-temp-snapshots-dir={RESTORATION_TEMP_DIR}"),
        format!("--snapstore-temp-directory={SNAPSTORE_TEMP_DIR}"),
        format!("--embedded-etcd-quota-bytes={}", model.etcd.quota_bytes),
        format!(
            "--etcd-defrag-timeout={}",
            go_duration(model.etcd.defrag_timeout)
        ),
        format!(
            "--auto-compaction-mode={}",
            model.auto_compaction_mode.as_str()
        ),
        format!(
            "--auto-compaction-retention={}",
            model.auto_compaction_retention
        ),
    ]);
    Ok(args)
}

/// The labels of the Job's pod: the spec's labels, the operator's
/// `managed-by`, `component` and `name` labels and the network-policy
/// labels. Deliberately **not** `app.kubernetes.io/part-of`: together with
/// `managed-by` it is the selector of the Etcd's PodDisruptionBudget, of
/// its StatefulSet and of `status.selector` (the scale subresource), and a
/// running compaction pod must neither count as a healthy etcd member for
/// the PodDisruptionBudget nor be seen as one of the cluster's pods by an
/// autoscaler.
pub fn pod_labels(model: &EtcdModel) -> BTreeMap<String, String> {
    let mut labels = model.labels.clone();
    let own = names::component_labels(
        &model.name,
        names::component::COMPACTION_JOB,
        &names::compaction_job(&model.name),
    );
    labels.extend(own);
    labels.extend(
        NETWORK_LABELS
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
    );
    labels.remove(names::label::PART_OF);
    labels
}

/// Builds the compaction Job. `active_deadline` bounds a run (the operator
/// setting `--compaction-active-deadline`); a run that passes it fails with
/// `DeadlineExceeded`, and the next trigger asks the sidecar for a full
/// snapshot instead.
pub fn build(
    etcd: &Etcd,
    model: &EtcdModel,
    ctx: &BuildContext,
    active_deadline: Duration,
) -> Result<Job, BuildError> {
    let name = names::compaction_job(&model.name);
    let args = args(model)?;
    let store = StoreWiring::new(model, ctx)?;
    let init_containers = store.init_containers(model, ctx);

    let mut env = vec![
        // The lease updates need the namespace.
        pod::field_env("POD_NAME", "metadata.name"),
        pod::field_env("POD_NAMESPACE", "metadata.namespace"),
    ];
    env.extend(store.env.into_iter().map(|(name, value)| EnvVar {
        name,
        value: Some(value),
        ..EnvVar::default()
    }));
    let mut mounts = vec![pod::mount(WORKSPACE_VOLUME, paths::DATA)];
    mounts.extend(store.mounts);
    let mut volumes = vec![Volume {
        name: WORKSPACE_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    volumes.extend(store.volumes);

    let container = Container {
        name: CONTAINER.into(),
        image: Some(pod::backup_image(model, ctx)),
        image_pull_policy: Some(pod::pull_policy(model)),
        args: Some(args),
        env: Some(env),
        resources: Some(
            model
                .backup
                .compaction
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        volume_mounts: Some(mounts),
        security_context: pod::no_privilege_escalation(),
        ..Container::default()
    };

    let mut annotations = model.annotations.clone();
    annotations.remove(SAFE_TO_EVICT_ANNOTATION);

    let mut meta = metadata(etcd, name, names::component::COMPACTION_JOB)?;
    // The Job object itself carries every label of its pod plus
    // `part-of` (it is no pod: no selector picks it up by mistake).
    let mut job_labels = pod_labels(model);
    job_labels.extend(meta.labels.take().unwrap_or_default());
    meta.labels = Some(job_labels);

    let deadline = i64::try_from(active_deadline.as_secs())
        .unwrap_or(i64::MAX)
        .max(1);
    Ok(Job {
        metadata: meta,
        spec: Some(JobSpec {
            active_deadline_seconds: Some(deadline),
            // One attempt: a failure is reported and the next trigger
            // decides what to do (a retry, or a full snapshot instead).
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(model)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    service_account_name: Some(names::service_account(&model.name)),
                    // The ServiceAccount does not mount its token by
                    // default; the job renews the snapshot leases.
                    automount_service_account_token: Some(true),
                    security_context: Some(pod::pod_security_context(model)),
                    init_containers: (!init_containers.is_empty()).then_some(init_containers),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::time::Duration;

    use druid_api::Etcd;
    use druid_api::etcd::SnapshotCompactionSpec;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::super::fixtures::{context, local_store, model, seed};
    use super::super::{BuildContext, configmap, pod, statefulset};
    use super::*;

    const THREE_HOURS: Duration = Duration::from_secs(3 * 3600);

    fn job(etcd: &Etcd, ctx: &BuildContext) -> Job {
        build(etcd, &model(etcd), ctx, THREE_HOURS).unwrap()
    }

    fn pod(job: &Job) -> &PodSpec {
        job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn container(job: &Job) -> &Container {
        &pod(job).containers[0]
    }

    fn job_args(job: &Job) -> Vec<String> {
        container(job).args.clone().unwrap()
    }

    fn sidecar_args(etcd: &Etcd, ctx: &BuildContext) -> Vec<String> {
        let m = model(etcd);
        let sts = statefulset::build(
            etcd,
            &m,
            ctx,
            &configmap::pod_checksum(etcd, &m, ctx).unwrap(),
        )
        .unwrap();
        sts.spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers
            .into_iter()
            .find(|c| c.name == pod::BACKUP_CONTAINER)
            .unwrap()
            .args
            .unwrap()
    }

    #[test]
    fn seed_snapshot() {
        insta::assert_yaml_snapshot!(job(&seed(), &context()));
    }

    #[test]
    fn the_job_gets_the_sidecars_store_flags_image_and_wiring() {
        let etcd = seed();
        let ctx = context();
        let j = job(&etcd, &ctx);
        let args = job_args(&j);
        assert_eq!(args[0], "compact");
        let sidecar = sidecar_args(&etcd, &ctx);
        // Every store, lease and compression flag the sidecar gets.
        for flag in sidecar.iter().filter(|a| {
            [
                "--storage-provider=",
                "--store-",
                "--enable-snapshot-lease-renewal=",
                "--full-snapshot-lease-name=",
                "--delta-snapshot-lease-name=",
                "--compress-snapshots=",
                "--compression-policy=",
                "--etcd-snapshot-timeout=",
                "--embedded-etcd-quota-bytes=",
            ]
            .iter()
            .any(|p| a.starts_with(p))
        }) {
            assert!(args.contains(flag), "{flag} missing in {args:?}");
        }
        for expected in [
            "--full-snapshot-lease-name=test-full-snap",
            "--delta-snapshot-lease-name=test-delta-snap",
            "--snapstore-temp-directory=/var/etcd/data/tmp",
            "--data-dir=/var/etcd/data/compaction.etcd",
            "--embedded-etcd-quota-bytes=8589934592",
        ] {
            assert!(args.contains(&expected.into()), "{expected} in {args:?}");
        }
        // Never the sidecar's own data directory or its server flags.
        assert!(!args.contains(&"--data-dir=/var/etcd/data/new.etcd".into()));
        assert!(!args.iter().any(|a| a.starts_with("--server-port")));

        let c = container(&j);
        assert_eq!(
            c.image.as_deref(),
            Some("eu.gcr.io/gardener-project/gardener/etcdbrctl:v0.25.0")
        );
        let env: Vec<(&str, Option<&str>)> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref()))
            .collect();
        assert!(
            env.contains(&("STORAGE_CONTAINER", Some("test"))),
            "{env:?}"
        );
        assert!(env.contains(&("POD_NAMESPACE", None)), "{env:?}");
        let secret = pod(&j)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "etcd-backup-secret")
            .unwrap();
        assert_eq!(
            secret.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("etcd-backup")
        );
        let mounts: Vec<&str> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/var/etcd/data", "/var/etcd-backup"]);
        let workspace = &pod(&j).volumes.as_ref().unwrap()[0];
        assert!(workspace.empty_dir.is_some());
    }

    #[test]
    fn without_a_spec_image_the_operators_backup_image_is_used() {
        let mut etcd = seed();
        etcd.spec.backup.image_repository = None;
        etcd.spec.backup.image_version = None;
        let ctx = context();
        assert_eq!(container(&job(&etcd, &ctx)).image, Some(ctx.backup_image));
    }

    #[test]
    fn run_settings_owner_and_service_account() {
        let etcd = seed();
        let j = job(&etcd, &context());
        let spec = j.spec.as_ref().unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(10800));
        assert_eq!(spec.backoff_limit, Some(0));
        let p = pod(&j);
        assert_eq!(p.restart_policy.as_deref(), Some("Never"));
        assert_eq!(p.termination_grace_period_seconds, Some(60));
        assert_eq!(p.service_account_name.as_deref(), Some("test"));
        assert_eq!(p.automount_service_account_token, Some(true));
        assert_eq!(j.metadata.name.as_deref(), Some("test-compactor"));
        let owner = &j.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Etcd", "test", Some(true))
        );
        assert_eq!(Some(&owner.uid), etcd.metadata.uid.as_ref());
        let short = build(&etcd, &model(&etcd), &context(), Duration::from_secs(90)).unwrap();
        assert_eq!(short.spec.unwrap().active_deadline_seconds, Some(90));
    }

    #[test]
    fn resources_come_from_the_spec_else_the_defaults() {
        let etcd = seed();
        let r = container(&job(&etcd, &context()))
            .resources
            .clone()
            .unwrap();
        let requests = r.requests.unwrap();
        assert_eq!(requests["cpu"], Quantity("600m".into()));
        assert_eq!(requests["memory"], Quantity("3Gi".into()));

        let mut etcd = seed();
        let wanted = ResourceRequirements {
            requests: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("12Gi".into()),
            )])),
            ..ResourceRequirements::default()
        };
        etcd.spec.backup.snapshot_compaction = Some(SnapshotCompactionSpec {
            resources: Some(wanted.clone()),
            ..SnapshotCompactionSpec::default()
        });
        assert_eq!(
            container(&job(&etcd, &context())).resources.clone(),
            Some(wanted)
        );
    }

    #[test]
    fn labels_and_annotations() {
        let mut etcd = seed();
        etcd.spec.annotations = Some(BTreeMap::from([
            ("team".to_string(), "storage".to_string()),
            (SAFE_TO_EVICT_ANNOTATION.to_string(), "true".to_string()),
        ]));
        let j = job(&etcd, &context());
        let template = j.spec.as_ref().unwrap().template.metadata.clone().unwrap();
        let labels = template.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], "compactor");
        assert_eq!(labels["role"], "test", "the spec's labels");
        for (k, v) in NETWORK_LABELS {
            assert_eq!(labels[k], v);
        }
        let annotations = template.annotations.unwrap();
        assert_eq!(annotations["team"], "storage");
        assert!(!annotations.contains_key(SAFE_TO_EVICT_ANNOTATION));
        let job_labels = j.metadata.labels.unwrap();
        assert_eq!(job_labels["app.kubernetes.io/part-of"], "test");
        assert_eq!(job_labels["app.kubernetes.io/component"], "compactor");
    }

    #[test]
    fn the_pod_is_not_selected_as_an_etcd_member() {
        // The PodDisruptionBudget, the StatefulSet and status.selector pick
        // pods by the default labels; the Services by the StatefulSet's pod
        // selector. The compaction pod matches none of them.
        let labels = pod_labels(&model(&seed()));
        let matches = |selector: &BTreeMap<String, String>| {
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        assert!(!matches(&names::default_labels("test")));
        assert!(!matches(
            &names::selector(Some("test"), Some(names::component::STATEFULSET)).into_labels()
        ));
    }

    #[test]
    fn a_local_store_mounts_its_host_path() {
        let mut etcd = seed();
        let ctx = local_store(&mut etcd);

        let j = job(&etcd, &ctx);
        let volume = pod(&j)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "local-backup")
            .unwrap();
        assert_eq!(
            volume.host_path.as_ref().unwrap().path,
            "/var/lib/druid/local-backupbuckets"
        );
        // Only the Etcd's own namespace and container are visible.
        let m = pod(&j).containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "local-backup")
            .unwrap();
        assert_eq!(m.mount_path, "/var/etcd-backup-local/bucket");
        assert_eq!(m.sub_path.as_deref(), Some("demo/bucket"));
        assert!(job_args(&j).contains(&"--storage-provider=Local".into()));
        assert!(job_args(&j).contains(&"--store-container=bucket".into()));
        // The job's pod may be the first on its node to use the directory.
        let init = pod(&j).init_containers.clone().unwrap();
        assert_eq!(init[0].name, "prepare-local-store");
        assert_eq!(init[0].volume_mounts.clone().unwrap(), vec![m.clone()]);
    }

    #[test]
    fn a_plugins_image_gives_the_job_its_plugins_too() {
        let mut etcd = seed();
        let mut ctx = local_store(&mut etcd);
        ctx.plugins_image = Some("registry.example/acme-plugins:1.0".into());
        let j = job(&etcd, &ctx);
        let init = pod(&j).init_containers.clone().unwrap();
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["install-plugins", "prepare-local-store"]);
        let c = &pod(&j).containers[0];
        assert!(
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "druid-plugins"
                    && m.mount_path == "/var/druid/plugins"
                    && m.read_only == Some(true))
        );
        assert!(
            c.env
                .iter()
                .flatten()
                .any(|e| e.name == "DRUID_PLUGINS_DIR")
        );
    }

    #[test]
    fn no_store_is_an_error() {
        let mut etcd = seed();
        etcd.spec.store = None;
        let mut ctx = context();
        ctx.store_wiring = None;
        let e = build(&etcd, &model(&etcd), &ctx, THREE_HOURS).unwrap_err();
        assert!(e.to_string().contains("no backup store"), "{e}");
    }
}
