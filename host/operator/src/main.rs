//! `druid`: the operator binary.
//!
//! `druid` runs the controllers (after winning the leader lease when
//! leader election is on); `druid crds` prints the CustomResourceDefinitions
//! for `kubectl apply -f -`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod plugin_cli;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use druid_operator::components::network_policy::OperatorPods;
use druid_operator::controller::compaction::{self, CompactionSettings};
use druid_operator::controller::{self, Context, Settings};
use druid_operator::kube_client::{self, RateLimit};
use druid_operator::metrics::{self, Health, Metrics};
use druid_plugin_host::{Limits, PluginHost, Registry, WiringPolicy};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "druid",
    version,
    about = "Runs etcd clusters from Etcd resources"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log in JSON instead of plain text.
    #[arg(long, env = "DRUID_LOG_JSON")]
    log_json: bool,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "DRUID_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// A directory of provider plugins (`*.wasm`) besides the built-in ones.
    #[arg(long, env = "DRUID_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// Lets a plugin file replace the built-in plugin of the same name
    /// (such a file is refused otherwise).
    #[arg(long, env = "DRUID_PLUGINS_OVERRIDE_BUILTIN")]
    plugins_override_builtin: bool,
    /// A plugins image (provider plugins in `/plugins`, with
    /// `druid-install-plugins`; scripts/build-images.sh --plugins-image
    /// builds one): each etcd pod and compaction Job gets an init container
    /// of it that copies the plugins into the sidecar's plugins directory.
    /// Give the operator the same plugins (`--plugins-dir`, filled by the
    /// same image in its own pod) so it validates and wires their
    /// providers. Setting or changing it rolls the etcd pods once.
    #[arg(long, env = "DRUID_PLUGINS_IMAGE")]
    plugins_image: Option<String>,
    /// Where precompiled plugin components are cached (default: a
    /// directory in the system's temporary directory).
    #[arg(long, env = "DRUID_PLUGIN_CACHE_DIR")]
    plugin_cache_dir: Option<PathBuf>,
    /// The etcd (wrapper) image of Etcds whose spec names none.
    #[arg(long, env = "DRUID_ETCD_IMAGE", default_value_t = Settings::default().etcd_image)]
    etcd_image: String,
    /// The backup-restore sidecar image of Etcds whose spec names none.
    #[arg(long, env = "DRUID_BACKUP_RESTORE_IMAGE", default_value_t = Settings::default().backup_image)]
    backup_restore_image: String,
    /// Seconds between status refreshes of each Etcd.
    #[arg(long, default_value_t = 15)]
    status_sync_seconds: u64,
    /// Reconcile an Etcd's spec only when it carries the annotation
    /// `druid.gardener.cloud/operation: reconcile` (or was never reconciled).
    #[arg(long)]
    manual_reconcile: bool,
    /// Etcds reconciled at once.
    #[arg(long, default_value_t = 16)]
    workers: u16,
    /// Requests per second to the API server, on average, from all
    /// controllers together (client-side rate limit; 0 turns it off).
    #[arg(long, env = "DRUID_KUBE_API_QPS", default_value_t = RateLimit::default().qps)]
    kube_api_qps: u32,
    /// Requests that may go at once above `--kube-api-qps` after a quiet
    /// spell.
    #[arg(long, env = "DRUID_KUBE_API_BURST", default_value_t = RateLimit::default().burst)]
    kube_api_burst: u32,
    /// The longest retry delay of an Etcd that keeps failing, in seconds
    /// (its delay doubles from one second up to this).
    #[arg(long, default_value_t = Settings::default().retry_backoff_max.as_secs())]
    retry_backoff_max_seconds: u64,
    /// Seconds a member replaced by a rolling update may take to become
    /// ready before the roll is reported stopped (`AllMembersUpdated`
    /// False, `UpdateStalled`; no other member is replaced meanwhile).
    #[arg(long, default_value_t = Settings::default().update_stall_after.as_secs())]
    update_stall_seconds: u64,
    /// Seconds without a lease renewal after which a member is Unknown.
    #[arg(long, default_value_t = Settings::default().member_unknown_after.as_secs())]
    member_unknown_seconds: u64,
    /// Seconds more after which an Unknown member is NotReady (the `Ready`
    /// condition counts the members that are not NotReady).
    #[arg(long, default_value_t = Settings::default().member_not_ready_after.as_secs())]
    member_not_ready_seconds: u64,
    /// Seconds a quorum loss must last (the `Ready` condition says
    /// `QuorumLost` and fewer than a majority of the pods are Ready) before
    /// druid restores the cluster from its backup; an Etcd annotated
    /// `druid.gardener.cloud/disable-auto-recovery` is left to people.
    #[arg(long, default_value_t = Settings::default().quorum_loss_recovery_after.as_secs())]
    quorum_loss_recovery_seconds: u64,
    /// Elect one active replica through a Lease (run several for failover).
    #[arg(long, env = "DRUID_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// The namespace of the leader Lease.
    #[arg(
        long,
        env = "DRUID_LEADER_ELECTION_NAMESPACE",
        default_value = "default"
    )]
    leader_election_namespace: String,
    /// The name of the leader Lease.
    #[arg(long, default_value = "druid-leader-election")]
    leader_election_lease: String,
    /// Run the snapshot compaction controller.
    #[arg(long, env = "DRUID_COMPACTION_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    compaction_enabled: bool,
    /// Delta events since the last full snapshot that start a compaction
    /// job, for Etcds whose spec sets no
    /// `backup.snapshotCompaction.eventsThreshold`.
    #[arg(long, env = "DRUID_COMPACTION_EVENTS_THRESHOLD", default_value_t = CompactionSettings::default().events_threshold)]
    compaction_events_threshold: i64,
    /// Delta events since the last full snapshot that ask the sidecar for a
    /// full snapshot instead, for Etcds whose spec sets no
    /// `backup.snapshotCompaction.triggerFullSnapshotThreshold`.
    #[arg(long, env = "DRUID_COMPACTION_FULL_SNAPSHOT_THRESHOLD", default_value_t = CompactionSettings::default().trigger_full_snapshot_threshold)]
    compaction_full_snapshot_threshold: i64,
    /// Bytes of delta snapshots since the last full snapshot (the delta
    /// lease's `druid.gardener.cloud/delta-bytes-since-full`) that start a
    /// compaction job whatever the number of events; a quantity (`1Gi`,
    /// `500M`, `1073741824`).
    #[arg(long, env = "DRUID_COMPACTION_BYTES_THRESHOLD", default_value = "1Gi")]
    compaction_bytes_threshold: String,
    /// How long one compaction job may run (`3h`, `90m`, ...).
    #[arg(long, env = "DRUID_COMPACTION_ACTIVE_DEADLINE", default_value = "3h")]
    compaction_active_deadline: String,
    /// Etcds whose compaction is handled at once.
    #[arg(long, default_value_t = CompactionSettings::default().workers)]
    compaction_workers: u16,
    /// Where the operator reaches an Etcd's backup-restore sidecar for a
    /// full snapshot: `{scheme}` (http, or https with backup TLS), `{etcd}`,
    /// `{namespace}` and `{port}` (the backup port) are replaced.
    #[arg(long, env = "DRUID_SIDECAR_URL_TEMPLATE", default_value = compaction::DEFAULT_SIDECAR_URL_TEMPLATE)]
    sidecar_url_template: String,
    /// The node directory under which Local stores live. A Local Etcd's
    /// pods mount only `<root>/<namespace>/<container>`; a provider plugin
    /// asking for any other node path is refused.
    #[arg(long, env = "DRUID_LOCAL_STORE_ROOT", default_value = druid_plugin_host::wiring::DEFAULT_LOCAL_ROOT)]
    local_store_root: String,
    /// Put a NetworkPolicy around each Etcd's sidecar API that admits only
    /// the Etcd's pods, the operator's pods and namespaces labelled
    /// `druid.gardener.cloud/sidecar-api=allowed`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sidecar_network_policy: bool,
    /// The operator's namespace (for the NetworkPolicy); in a pod, from
    /// the downward API.
    #[arg(long, env = "POD_NAMESPACE")]
    operator_namespace: Option<String>,
    /// Labels of the operator's pods (for the NetworkPolicy),
    /// `key=value,...`.
    #[arg(long, default_value = "app.kubernetes.io/name=druid")]
    operator_pod_labels: String,
}

/// Where the operator's pods are, for the sidecar NetworkPolicy.
fn operator_pods(args: &Args) -> anyhow::Result<Option<OperatorPods>> {
    if !args.sidecar_network_policy {
        return Ok(None);
    }
    let Some(namespace) = args.operator_namespace.clone().filter(|n| !n.is_empty()) else {
        tracing::warn!(
            "no --operator-namespace (POD_NAMESPACE): no NetworkPolicy is put around the sidecars' API"
        );
        return Ok(None);
    };
    let mut labels = std::collections::BTreeMap::new();
    for pair in args
        .operator_pod_labels
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--operator-pod-labels: {pair:?} is not key=value"))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    if labels.is_empty() {
        anyhow::bail!("--operator-pod-labels: name at least one label of the operator's pods");
    }
    Ok(Some(OperatorPods { namespace, labels }))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Provider plugins: `druid plugin test PLUGIN.wasm` checks one.
    #[command(subcommand)]
    Plugin(plugin_cli::PluginCommand),
}

/// How long in-flight reconciles may take to finish after a stop signal
/// before the operator stops anyway (they are idempotent and run again on
/// the next leader).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long releasing the leader lease may take at exit.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run());
    // A blocking call still in flight (an HTTP request to a sidecar) does
    // not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Resolves `grace` after `stopping` turned non-empty (the stop reason).
async fn grace_after_stop(
    mut stopping: tokio::sync::watch::Receiver<&'static str>,
    grace: Duration,
) {
    if stopping.wait_for(|why| !why.is_empty()).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}

async fn run() -> anyhow::Result<()> {
    let mut args = Args::parse();
    match args.command.take() {
        Some(Command::Crds) => {
            let yaml = druid_api::crds_yaml().context("cannot render the CRDs")?;
            std::io::Write::write_all(&mut std::io::stdout(), yaml.as_bytes())?;
            return Ok(());
        }
        Some(Command::Plugin(command)) => {
            init_tracing(args.log_json);
            if plugin_cli::run(command).await? {
                return Ok(());
            }
            std::process::exit(1);
        }
        None => {}
    }
    init_tracing(args.log_json);
    let compaction = compaction_settings(&args)?;
    let wiring = WiringPolicy::new(&args.local_store_root)
        .map_err(|e| anyhow::anyhow!("--local-store-root: {e}"))?;
    let operator_pods = operator_pods(&args)?;

    let config = kube::Config::infer()
        .await
        .context("cannot build a Kubernetes client: set KUBECONFIG or run in a cluster")?;
    let metrics = Arc::new(Metrics::new());
    // The controllers share one rate-limited client; leader election has
    // its own, so that a burst of reconciles never delays its renewals.
    let limit = RateLimit {
        qps: args.kube_api_qps,
        burst: args.kube_api_burst,
    };
    let client = kube_client::client(config.clone(), limit, metrics.client.clone())
        .context("cannot build a Kubernetes client")?;
    let election_client =
        kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
    let version = election_client
        .apiserver_version()
        .await
        .context("cannot reach the Kubernetes API server")?;
    tracing::info!(
        qps = limit.qps,
        burst = limit.burst,
        "client-side rate limit of API requests"
    );
    let health = Arc::new(Health::default());
    {
        let (m, h, addr) = (metrics.clone(), health.clone(), args.metrics_addr);
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, m, h).await {
                tracing::error!(%addr, error = %e, "cannot serve metrics and health endpoints");
            }
        });
    }

    let host =
        Arc::new(PluginHost::new(Limits::default()).context("cannot start the plugin host")?);
    let registry = Registry::load_with(
        host,
        args.plugins_dir.as_deref(),
        druid_plugin_host::builtin_plugins(),
        &druid_plugin_host::RegistryOptions {
            allow_builtin_override: args.plugins_override_builtin,
        },
    )
    .await
    .context("cannot load the provider plugins")?;
    tracing::info!(
        server_version = %version.git_version,
        api = %druid_api::api_version(),
        providers = ?registry.providers(),
        "druid started"
    );

    let identity = format!(
        "{}-{}",
        std::env::var("POD_NAME").unwrap_or_else(|_| "druid".into()),
        std::process::id()
    );
    let settings = Settings {
        etcd_image: args.etcd_image,
        backup_image: args.backup_restore_image,
        status_sync_period: Duration::from_secs(args.status_sync_seconds.max(1)),
        manual_reconcile: args.manual_reconcile,
        workers: args.workers.max(1),
        retry_backoff_max: Duration::from_secs(args.retry_backoff_max_seconds.max(1)),
        update_stall_after: Duration::from_secs(args.update_stall_seconds.max(1)),
        member_unknown_after: Duration::from_secs(args.member_unknown_seconds.max(1)),
        member_not_ready_after: Duration::from_secs(args.member_not_ready_seconds),
        quorum_loss_recovery_after: Duration::from_secs(args.quorum_loss_recovery_seconds),
        compaction,
        wiring,
        operator_pods,
        plugins_image: args.plugins_image.filter(|i| !i.trim().is_empty()),
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(registry),
        settings,
        metrics.clone(),
        Some(identity.clone()),
    ));

    if !args.leader_elect {
        health.ready.store(true, Ordering::Relaxed);
        metrics.leader.set(1);
        let (why_tx, why_rx) = tokio::sync::watch::channel("");
        let controllers = controller::run(ctx, async move {
            let _ = why_tx.send(stop_signal().await.unwrap_or("signal"));
        });
        stop_controllers(controllers, why_rx).await;
        tracing::info!("druid stopped");
        return Ok(());
    }

    // Leader election: standby replicas are ready (they can take over) but
    // run no controller; losing the lease ends the process, so that a
    // restarted replica never acts on a stale view.
    let manager = LeaseManagerBuilder::new(election_client, &args.leader_election_lease)
        .with_namespace(&args.leader_election_namespace)
        .with_parameters(
            LeaseParams::new(identity.clone(), 15, 5).with_field_manager("druid-leader-election"),
        )
        .build()
        .await
        .context("cannot set up leader election")?;
    let (mut leading, lease_task) = manager.watch().await;
    health.ready.store(true, Ordering::Relaxed);
    tracing::info!(%identity, lease = %args.leader_election_lease, namespace = %args.leader_election_namespace, "waiting for the leader lease");
    let signal = tokio::select! {
        s = stop_signal() => Some(s?),
        _ = async { while !*leading.borrow_and_update() { if leading.changed().await.is_err() { break; } } } => None,
    };
    if let Some(signal) = signal {
        tracing::info!(signal, "druid stopping (standby)");
        return Ok(());
    }
    tracing::info!(%identity, "leading: starting the controllers");
    metrics.leader.set(1);
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let lease_keeper = tokio::spawn(async move {
        let lost = async {
            while *leading.borrow_and_update() {
                if leading.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            () = lost => {
                let _ = lost_tx.send("lost the leader lease");
            }
            _ = release_rx => {}
        }
        // Without a receiver the lease manager releases the lease, so a
        // standby or the next start leads at once instead of waiting for
        // it to expire.
        drop(leading);
        match tokio::time::timeout(RELEASE_TIMEOUT, lease_task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "cannot release the leader lease; it expires by itself")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "the leader lease task failed"),
            Err(_) => tracing::warn!("releasing the leader lease timed out; it expires by itself"),
        }
    });
    let (why_tx, why_rx) = tokio::sync::watch::channel("");
    let controllers = controller::run(ctx, async move {
        let why = tokio::select! {
            s = stop_signal() => s.unwrap_or("signal"),
            l = lost_rx => l.unwrap_or("lost the leader lease"),
        };
        let _ = why_tx.send(why);
    });
    stop_controllers(controllers, why_rx.clone()).await;
    let why = *why_rx.borrow();
    metrics.leader.set(0);
    let _ = release_tx.send(());
    let _ = lease_keeper.await;
    if why == "lost the leader lease" {
        anyhow::bail!("druid stopped: it lost the leader lease (another replica leads now)");
    }
    tracing::info!(reason = why, "druid stopped");
    Ok(())
}

/// Runs the controllers until they stop after a stop reason was sent on
/// `why`, waiting at most [`SHUTDOWN_GRACE`] for in-flight reconciles.
async fn stop_controllers(
    controllers: impl std::future::Future<Output = ()>,
    why: tokio::sync::watch::Receiver<&'static str>,
) {
    tokio::select! {
        () = controllers => {}
        () = grace_after_stop(why, SHUTDOWN_GRACE) => {
            tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "reconciles still running after the shutdown grace period: stopping without them (they run again on the next start)");
        }
    }
}

/// The compaction controller's settings from the flags, checked.
fn compaction_settings(args: &Args) -> anyhow::Result<CompactionSettings> {
    let bytes = druid_api::quantity::parse_quantity(&args.compaction_bytes_threshold)
        .map_err(anyhow::Error::from)
        .and_then(|b| u64::try_from(b).map_err(|_| anyhow::anyhow!("it is negative")))
        .with_context(|| {
            format!(
                "--compaction-bytes-threshold={}: expected a byte quantity such as 1Gi",
                args.compaction_bytes_threshold
            )
        })?;
    let deadline = druid_api::model::parse_duration(&args.compaction_active_deadline)
        .map_err(anyhow::Error::msg)
        .with_context(|| {
            format!(
                "--compaction-active-deadline={}: expected a duration such as 3h",
                args.compaction_active_deadline
            )
        })?;
    let settings = CompactionSettings {
        enabled: args.compaction_enabled,
        events_threshold: args.compaction_events_threshold,
        trigger_full_snapshot_threshold: args.compaction_full_snapshot_threshold,
        bytes_threshold: bytes,
        active_deadline: deadline,
        sidecar_url_template: args.sidecar_url_template.clone(),
        workers: args.compaction_workers.max(1),
    };
    settings
        .check()
        .map_err(anyhow::Error::msg)
        .context("invalid compaction settings")?;
    Ok(settings)
}

/// Waits for SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C) and names it.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: logs in files and pods stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
