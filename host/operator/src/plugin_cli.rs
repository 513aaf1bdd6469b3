//! `druid plugin test`: what a plugin author (or an operator about to drop
//! a plugin in) runs before shipping a provider plugin. It loads the one
//! `.wasm` file alone under the host's limits, asks it to describe itself,
//! checks its pod wiring against the host's policy and its secret check
//! against the given secret, then runs the conformance suite
//! (`druid_plugin_host::conformance`) against a real store. It prints a
//! pass/fail table and fails when any check fails.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use druid_plugin_host::wiring::DEFAULT_LOCAL_ROOT;
use druid_plugin_host::{
    Limits, PluginHost, Registry, StoreConfig, WiringPolicy, WiringRequest, conformance,
    credentials,
};

/// `druid plugin ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Check a provider plugin: describe, pod wiring, secret check and the
    /// conformance suite against a real store (writes below --prefix and
    /// removes what it wrote).
    Test(TestArgs),
}

/// Options of `druid plugin test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The plugin component (`*.wasm`).
    pub plugin: PathBuf,
    /// The `storageProvider` value to test (default: the first the plugin
    /// serves).
    #[arg(long)]
    pub provider: Option<String>,
    /// The bucket or container to test in (it must exist).
    #[arg(long, default_value = "druid-conformance")]
    pub container: String,
    /// The store secret as it would be mounted: a directory with one file
    /// per key, or a JSON file.
    #[arg(long)]
    pub secret: Option<PathBuf>,
    /// The store endpoint (the spec's endpoint override).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Where in the container the suite writes; it should be empty.
    #[arg(long, default_value = "druid-conformance/")]
    pub prefix: String,
    /// For a Local store: the directory holding the containers.
    #[arg(long)]
    pub local_root: Option<PathBuf>,
}

/// Runs `druid plugin ...`; `Ok(false)` when a check failed.
pub async fn run(command: PluginCommand) -> anyhow::Result<bool> {
    match command {
        PluginCommand::Test(args) => test(args).await,
    }
}

async fn test(args: TestArgs) -> anyhow::Result<bool> {
    // Not `stdout().lock()`: the store calls below log from other threads
    // (an aborted upload, for one), and a lock held across them deadlocks.
    let mut out = std::io::stdout();
    let name = args
        .plugin
        .file_name()
        .context("the plugin path names no file")?;
    // The plugin alone (it may claim a provider a built-in plugin serves),
    // loaded as a plugins directory's file is.
    let dir = std::env::temp_dir().join(format!("druid-plugin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let copy = dir.join(name);
    std::fs::copy(&args.plugin, &copy)
        .with_context(|| format!("cannot read the plugin {}", args.plugin.display()))?;
    let host = Arc::new(PluginHost::new(Limits::default())?);
    let loaded = Registry::load(host, Some(&dir), &[]).await;
    let _ = std::fs::remove_dir_all(&dir);
    let registry = loaded.with_context(|| format!("the host refuses {}", args.plugin.display()))?;
    // The whole file refused: nothing to test. (A refused store contract
    // disables only its provider, and is a failed check below.)
    if registry.plugins().is_empty()
        && let Some(refused) = registry.refused().first()
    {
        anyhow::bail!(
            "the host refuses {}: {}",
            args.plugin.display(),
            refused.reason
        );
    }
    let plugin = registry
        .plugins()
        .first()
        .context("the file registered no plugin")?;
    writeln!(
        out,
        "plugin {} {} (druid:plugin@{}), providers: {}",
        plugin.info.name,
        plugin.info.version,
        plugin.info.api_version,
        plugin.info.providers.join(", ")
    )?;
    let provider = match &args.provider {
        Some(p) => p.clone(),
        None => plugin
            .info
            .providers
            .first()
            .cloned()
            .context("the plugin serves no provider: is it a compactor?")?,
    };
    writeln!(
        out,
        "store contract of {provider}: {}",
        registry
            .contract(&provider)
            .with_context(|| format!("cannot test provider {provider}"))?
            .summary()
    )?;
    let secret: BTreeMap<String, String> = match &args.secret {
        Some(path) => credentials::read(path)?,
        None => BTreeMap::new(),
    };

    let mut report = conformance::Report::default();
    for refused in registry.refused() {
        report.checks.push(conformance::Check {
            name: format!("store contract of {}", refused.providers.join(", ")),
            outcome: Err(refused.reason.clone()),
            seconds: 0.0,
        });
    }
    let started = std::time::Instant::now();
    let wiring = registry
        .pod_config(
            &provider,
            &args.container,
            "",
            args.secret.as_ref().map(|_| "store-secret"),
        )
        .await
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            WiringPolicy::new(DEFAULT_LOCAL_ROOT)?
                .check(
                    WiringRequest {
                        container: &args.container,
                        has_secret: args.secret.is_some(),
                        contract: registry.contract(&provider).map_err(|e| e.to_string())?,
                    },
                    &cfg,
                )
                .map(|_| ())
                .map_err(|problems| format!("the host refuses it: {}", problems.join("; ")))
        });
    report.checks.push(conformance::Check {
        name: "pod wiring within the host's policy".into(),
        outcome: wiring,
        seconds: started.elapsed().as_secs_f64(),
    });
    let started = std::time::Instant::now();
    let keys: Vec<String> = secret.keys().cloned().collect();
    let secret_check = registry
        .check_secret(&provider, &keys)
        .await
        .map_err(|e| format!("the plugin refuses the secret's keys: {e}"));
    report.checks.push(conformance::Check {
        name: "the secret's keys accepted".into(),
        outcome: secret_check,
        seconds: started.elapsed().as_secs_f64(),
    });

    let store = registry.store(StoreConfig {
        provider: provider.clone(),
        container: args.container.clone(),
        prefix: String::new(),
        endpoint: args.endpoint.clone(),
        credentials: secret,
        local_root: args.local_root.clone(),
    })?;
    let suite = conformance::run(&store, &args.prefix).await;
    report.checks.extend(suite.checks);
    write!(out, "{}", report.table())?;
    Ok(report.passed())
}
