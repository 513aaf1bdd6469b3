//! The command line: upstream etcd-wrapper's `start-etcd` subcommand with
//! every flag it has (same names, same defaults), plus a few of our own for
//! what upstream hard-codes (where etcd is, where files go).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

use crate::Error;

/// Command-line options of `etcd-wrapper`.
#[derive(Debug, Parser)]
#[command(
    name = "etcd-wrapper",
    version,
    about = "The etcd container's entrypoint: waits for the backup-restore sidecar, then runs etcd"
)]
// As with Go flags, a repeated flag takes its last value.
#[command(args_override_self = true)]
pub struct Cli {
    /// Log as JSON lines (ours; upstream always logs JSON through zap).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Waits for the backup-restore sidecar to validate (and if needed
    /// restore) the data directory, fetches etcd's configuration from it
    /// and runs etcd.
    StartEtcd(StartEtcdArgs),
}

/// Flags of `start-etcd`. The first nine are upstream's, with upstream's
/// defaults; bool flags take Go's syntax (`--flag`, `--flag=true`,
/// `--flag=false`).
#[derive(Debug, Clone, clap::Args)]
pub struct StartEtcdArgs {
    /// Port of the wrapper's HTTP(S) server (`/readyz`, `/stop`).
    #[arg(long, default_value_t = 9095)]
    pub etcd_wrapper_port: u16,

    /// Talk HTTPS to the backup-restore sidecar, trusting
    /// `--backup-restore-ca-cert-bundle-path`.
    #[arg(
        long,
        default_value_t = false,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub backup_restore_tls_enabled: bool,

    /// `<host>:<port>` of the backup-restore sidecar, without a scheme; an
    /// empty host means `localhost`.
    #[arg(long, default_value = ":8080")]
    pub backup_restore_host_port: String,

    /// CA bundle (PEM) the sidecar's serving certificate is checked
    /// against; required when `--backup-restore-tls-enabled=true`.
    #[arg(long, default_value = "")]
    pub backup_restore_ca_cert_bundle_path: String,

    /// Client certificate (PEM) presented to the sidecar when it requires
    /// client certificates (mTLS); with `--backup-restore-client-key-path`.
    /// Not an upstream flag.
    #[arg(long, default_value = "")]
    pub backup_restore_client_cert_path: String,

    /// Key of `--backup-restore-client-cert-path`.
    #[arg(long, default_value = "")]
    pub backup_restore_client_key_path: String,

    /// Host name of the local etcd member, for the readiness check's
    /// connection and as the name its TLS certificate must carry (an empty
    /// name means `localhost`).
    #[arg(long, default_value = "")]
    pub etcd_server_name: String,

    /// etcd's client port on `--etcd-server-name`, for the readiness check.
    #[arg(long, default_value_t = 2379)]
    pub etcd_client_port: u16,

    /// Client certificate (PEM) the readiness check presents to etcd when
    /// etcd's configuration enables client TLS.
    #[arg(long, default_value = "")]
    pub etcd_client_cert_path: String,

    /// The key of `--etcd-client-cert-path`.
    #[arg(long, default_value = "")]
    pub etcd_client_key_path: String,

    /// How long etcd may take to answer its first readiness check before
    /// an error is logged (Go duration, e.g. `5m`; `0` waits forever).
    /// Like upstream, it only logs: etcd is not stopped.
    #[arg(long, default_value = "0", value_parser = go_duration)]
    pub etcd_ready_timeout: Duration,

    /// The etcd binary to run (ours; upstream embeds etcd). A bare name is
    /// looked up on `PATH`.
    #[arg(long, default_value = "etcd")]
    pub etcd_binary: PathBuf,

    /// Where the configuration fetched from the sidecar is written and
    /// what etcd gets as `--config-file` (ours; upstream always uses
    /// `$HOME/etcd.conf.yaml`, which is the default).
    #[arg(long)]
    pub etcd_config_file: Option<PathBuf>,

    /// The data volume's mount point, which holds `exit_code` and the
    /// legacy `validation_marker` (ours; upstream hard-codes the default).
    #[arg(long, default_value = "/var/etcd/data")]
    pub data_volume_dir: PathBuf,
}

impl StartEtcdArgs {
    /// Checks the flags as upstream does (host and port present, no
    /// scheme, a CA bundle when TLS is on), plus that a client certificate
    /// comes with its key.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        if !self.backup_restore_host_port.contains(':') {
            problems.push(
                "--backup-restore-host-port needs both host and port (<host>:<port>)".to_string(),
            );
        }
        if self.backup_restore_host_port.starts_with("http:")
            || self.backup_restore_host_port.starts_with("https:")
        {
            problems.push("--backup-restore-host-port must not contain a scheme".to_string());
        }
        if self.backup_restore_client_cert_path.trim().is_empty()
            != self.backup_restore_client_key_path.trim().is_empty()
        {
            problems.push(
                "--backup-restore-client-cert-path and --backup-restore-client-key-path go together"
                    .to_string(),
            );
        }
        if !self.backup_restore_client_cert_path.trim().is_empty()
            && !self.backup_restore_tls_enabled
        {
            problems.push(
                "--backup-restore-client-cert-path needs --backup-restore-tls-enabled=true"
                    .to_string(),
            );
        }
        if self.backup_restore_tls_enabled
            && self.backup_restore_ca_cert_bundle_path.trim().is_empty()
        {
            problems.push(
                "--backup-restore-ca-cert-bundle-path is required with --backup-restore-tls-enabled=true"
                    .to_string(),
            );
        }
        if self.etcd_client_cert_path.trim().is_empty()
            != self.etcd_client_key_path.trim().is_empty()
        {
            problems
                .push("--etcd-client-cert-path and --etcd-client-key-path go together".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Flags(problems.join("; ")))
        }
    }

    /// The sidecar's base URL: `http(s)://<host>:<port>`.
    pub fn sidecar_url(&self) -> String {
        let scheme = if self.backup_restore_tls_enabled {
            "https"
        } else {
            "http"
        };
        let host_port = &self.backup_restore_host_port;
        if host_port.starts_with(':') {
            format!("{scheme}://localhost{host_port}")
        } else {
            format!("{scheme}://{host_port}")
        }
    }

    /// `--etcd-config-file`, else `$HOME/etcd.conf.yaml`.
    pub fn config_file(&self) -> Result<PathBuf, Error> {
        if let Some(path) = &self.etcd_config_file {
            return Ok(path.clone());
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join("etcd.conf.yaml"))
            .ok_or_else(|| Error::Flags("$HOME is not set: pass --etcd-config-file".to_string()))
    }

    /// The host the readiness check connects to.
    pub fn etcd_host(&self) -> &str {
        if self.etcd_server_name.is_empty() {
            "localhost"
        } else {
            &self.etcd_server_name
        }
    }

    /// The client certificate and key, when both are given.
    pub fn client_identity(&self) -> Option<(PathBuf, PathBuf)> {
        let (cert, key) = (
            self.etcd_client_cert_path.trim(),
            self.etcd_client_key_path.trim(),
        );
        (!cert.is_empty() && !key.is_empty()).then(|| (PathBuf::from(cert), PathBuf::from(key)))
    }
}

/// Parses a Go duration (`0`, `300ms`, `1.5s`, `2m30s`, `1h`).
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit"))?;
        if number_len == 0 {
            return Err(format!("{text:?}: expected a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("{text:?}: bad number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("{text:?}: unknown unit {unit:?}")),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> StartEtcdArgs {
        let mut argv = vec!["etcd-wrapper", "start-etcd"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::StartEtcd(a) => a,
        }
    }

    #[test]
    fn defaults_are_upstreams() {
        let a = parse(&[]);
        assert_eq!(a.etcd_wrapper_port, 9095);
        assert!(!a.backup_restore_tls_enabled);
        assert_eq!(a.backup_restore_host_port, ":8080");
        assert_eq!(a.etcd_client_port, 2379);
        assert_eq!(a.etcd_ready_timeout, Duration::ZERO);
        assert_eq!(a.data_volume_dir, PathBuf::from("/var/etcd/data"));
        assert_eq!(a.sidecar_url(), "http://localhost:8080");
        assert_eq!(a.etcd_host(), "localhost");
        a.validate().unwrap();
    }

    #[test]
    fn the_operators_arguments_parse() {
        let a = parse(&[
            "--backup-restore-host-port=test-local:8080",
            "--etcd-server-name=test-local",
            "--backup-restore-tls-enabled=true",
            "--backup-restore-ca-cert-bundle-path=/var/etcdbr/ssl/ca/ca.crt",
            "--etcd-client-cert-path=/var/etcd/ssl/client/tls.crt",
            "--etcd-client-key-path=/var/etcd/ssl/client/tls.key",
            "--etcd-client-port=2479",
            "--etcd-wrapper-port=9096",
        ]);
        a.validate().unwrap();
        assert!(a.backup_restore_tls_enabled);
        assert_eq!(a.sidecar_url(), "https://test-local:8080");
        assert_eq!(a.etcd_client_port, 2479);
        assert_eq!(a.etcd_wrapper_port, 9096);
        assert!(a.client_identity().is_some());
        let off = parse(&["--backup-restore-tls-enabled=false"]);
        assert!(!off.backup_restore_tls_enabled);
        let bare = parse(&[
            "--backup-restore-tls-enabled",
            "--backup-restore-ca-cert-bundle-path=/ca",
        ]);
        assert!(bare.backup_restore_tls_enabled);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(
            parse(&["--backup-restore-host-port=http://x:1"])
                .validate()
                .is_err()
        );
        assert!(parse(&["--backup-restore-host-port=x"]).validate().is_err());
        assert!(
            parse(&["--backup-restore-tls-enabled=true"])
                .validate()
                .is_err()
        );
        assert!(parse(&["--etcd-client-cert-path=/c"]).validate().is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(go_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(go_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(go_duration("5").is_err());
        assert!(go_duration("5x").is_err());
    }
}
