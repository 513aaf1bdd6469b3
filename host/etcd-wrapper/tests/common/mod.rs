//! Harness of the wrapper tests: one pod's worth of real processes on
//! loopback. The real `etcdbr server` (built from the workspace) with a
//! Local store and the cluster-wide etcd configuration file the operator
//! would mount, and our `etcd-wrapper`, which runs the real `etcd`.
#![allow(dead_code, reason = "each test binary uses a part of the harness")]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use druid_test_support::{
    ServerProcess, etcdbr_tool_flags, find_binary, free_port, http_get, local_store_flags,
    server_dir, workspace_binary,
};

/// The member's name (what the sidecar renders into `name`).
pub const MEMBER: &str = "m0";

/// One member's directories, ports and configuration.
pub struct Member {
    /// Everything of this member.
    pub dir: PathBuf,
    /// The data volume's mount point (`exit_code`, `safe_guard`).
    pub volume: PathBuf,
    /// etcd's data directory, below the volume.
    pub data_dir: PathBuf,
    /// The cluster-wide configuration the sidecar reads (`ETCD_CONF`).
    pub cluster_config: PathBuf,
    /// Where the wrapper writes the configuration it fetched.
    pub wrapper_config: PathBuf,
    /// The Local store's root.
    pub store_root: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub sidecar_port: u16,
    pub wrapper_port: u16,
    /// TLS everywhere (sidecar API, etcd's client URLs, the wrapper).
    pub certs: Option<Certs>,
}

/// A CA and one certificate it issued for 127.0.0.1, used as the sidecar's
/// and etcd's serving certificate and as the etcd client certificate.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    /// Makes them with openssl in `dir`.
    pub fn make(dir: &std::path::Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=wrapper-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
        ]);
        std::fs::write(
            dir.join("leaf.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.cnf",
            "-out",
            "tls.crt",
        ]);
        Certs {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }
}

impl Member {
    /// Fresh directories, ports and a configuration for a single member,
    /// all in plain HTTP.
    pub fn new(label: &str) -> Member {
        Self::build(label, false)
    }

    /// The same with TLS everywhere, as with `backup.tls` and etcd's
    /// client TLS set.
    pub fn new_tls(label: &str) -> Member {
        Self::build(label, true)
    }

    fn build(label: &str, tls: bool) -> Member {
        let client_port = free_port().unwrap();
        let peer_port = free_port().unwrap();
        let sidecar_port = free_port().unwrap();
        let wrapper_port = free_port().unwrap();
        let dir = server_dir(&format!("wrapper-{label}-{client_port}")).unwrap();
        let volume = dir.join("volume");
        std::fs::create_dir_all(&volume).unwrap();
        let data_dir = volume.join("new.etcd");
        let store_root = dir.join("store");
        std::fs::create_dir_all(store_root.join("backups")).unwrap();
        let cluster_config = dir.join("etcd.conf.yaml");
        let certs = tls.then(|| Certs::make(&dir.join("certs")));
        let scheme = if tls { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let client_tls = certs
            .as_ref()
            .map(|c| {
                format!(
                    "client-transport-security:\n  cert-file: {}\n  key-file: {}\n  \
                     trusted-ca-file: {}\n  client-cert-auth: true\n",
                    c.cert.display(),
                    c.key.display(),
                    c.ca.display()
                )
            })
            .unwrap_or_default();
        std::fs::write(
            &cluster_config,
            format!(
                "name: etcd-config\n\
                 data-dir: {data}\n\
                 listen-client-urls: {client}\n\
                 advertise-client-urls:\n  {MEMBER}:\n  - {client}\n\
                 listen-peer-urls: {peer}\n\
                 initial-advertise-peer-urls:\n  {MEMBER}:\n  - {peer}\n\
                 initial-cluster: {MEMBER}={peer}\n\
                 initial-cluster-token: token-{label}\n\
                 initial-cluster-state: new\n{client_tls}",
                data = data_dir.display(),
            ),
        )
        .unwrap();
        Member {
            wrapper_config: dir.join("wrapper-home").join("etcd.conf.yaml"),
            dir,
            volume,
            data_dir,
            cluster_config,
            store_root,
            client_port,
            peer_port,
            sidecar_port,
            wrapper_port,
            certs,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.certs.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }

    pub fn sidecar_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.sidecar_port)
    }

    pub fn readyz_url(&self) -> String {
        format!("{}://127.0.0.1:{}/readyz", self.scheme(), self.wrapper_port)
    }

    /// Starts `etcdbr server` for this member (with `env` on top) and waits
    /// until its HTTP API answers.
    pub fn start_sidecar(&self, env: &[(&str, &str)]) -> ServerProcess {
        let etcdbr = workspace_binary("druid-backup-restore", "etcdbr").unwrap();
        let home = self.dir.join("sidecar-home");
        std::fs::create_dir_all(&home).unwrap();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut c = Command::new(etcdbr);
        c.arg("server")
            .arg(format!("--server-port={}", self.sidecar_port))
            .arg("--server-address=127.0.0.1")
            .arg(format!("--endpoints={}", self.client_url()))
            .arg("--store-prefix=wrapper-test")
            // Never during a test.
            .arg("--schedule=0 0 1 1 *")
            .arg("--delta-snapshot-period=1s")
            .arg("--garbage-collection-period=0s")
            .arg("--reelection-period=1s")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--name={MEMBER}"))
            .arg(format!("--initial-cluster={MEMBER}={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!(
                "--snapstore-temp-directory={}",
                self.dir.join("sidecar-tmp").display()
            ))
            .arg(format!(
                "--restoration-temp-snapshots-dir={}",
                self.dir.join("sidecar-restore").display()
            ));
        if let Some(certs) = &self.certs {
            c.arg(format!("--server-cert={}", certs.cert.display()))
                .arg(format!("--server-key={}", certs.key.display()))
                .arg(format!("--cacert={}", certs.ca.display()))
                .arg(format!("--cert={}", certs.cert.display()))
                .arg(format!("--key={}", certs.key.display()))
                .arg("--insecure-transport=false")
                // mTLS: the wrapper (and other sidecars) must present a
                // certificate the CA issued.
                .arg(format!("--client-ca-file={}", certs.ca.display()))
                .arg(format!("--api-client-cert={}", certs.cert.display()))
                .arg(format!("--api-client-key={}", certs.key.display()));
        }
        etcdbr_tool_flags(&mut c).unwrap();
        local_store_flags(&mut c, &self.store_root, "backups");
        c.env("ETCD_CONF", &self.cluster_config).env("HOME", &home);
        for (k, v) in env {
            c.env(k, v);
        }
        let p = ServerProcess::spawn("etcdbr", c, &self.dir.join("etcdbr.log")).unwrap();
        p.wait_ready(Duration::from_secs(120), || {
            Ok(self.sidecar_get("/metrics")?.0 == 200)
        })
        .unwrap();
        p
    }

    /// GET on the sidecar's API: over HTTPS with the client certificate
    /// when the member has certificates, else plain.
    pub fn sidecar_get(&self, path: &str) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.sidecar_url());
        let Some(certs) = &self.certs else {
            return http_get(&url);
        };
        let tls = druid_sidecar_tls::SidecarTls::from_files(&[&certs.ca])
            .and_then(|t| t.with_client_files(&certs.cert, &certs.key))
            .map_err(|e| e.to_string())?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.config())
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent.get(&url).call().map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    /// The wrapper's flags, as the operator renders them (plain HTTP to
    /// the sidecar, no client TLS) plus where etcd and the files are.
    pub fn wrapper_args(&self) -> Vec<String> {
        let mut args = vec![
            "start-etcd".into(),
            format!("--backup-restore-host-port=127.0.0.1:{}", self.sidecar_port),
            "--etcd-server-name=127.0.0.1".into(),
        ];
        match &self.certs {
            Some(certs) => args.extend([
                "--backup-restore-tls-enabled=true".to_string(),
                format!(
                    "--backup-restore-ca-cert-bundle-path={}",
                    certs.ca.display()
                ),
                format!("--etcd-client-cert-path={}", certs.cert.display()),
                format!("--etcd-client-key-path={}", certs.key.display()),
                format!("--backup-restore-client-cert-path={}", certs.cert.display()),
                format!("--backup-restore-client-key-path={}", certs.key.display()),
            ]),
            None => args.push("--backup-restore-tls-enabled=false".into()),
        }
        args.extend([
            format!("--etcd-client-port={}", self.client_port),
            format!("--etcd-wrapper-port={}", self.wrapper_port),
            format!(
                "--etcd-binary={}",
                find_binary("etcd", "etcd").unwrap().display()
            ),
            format!("--etcd-config-file={}", self.wrapper_config.display()),
            format!("--data-volume-dir={}", self.volume.display()),
        ]);
        args
    }

    /// Starts our wrapper; its log (and etcd's output) goes to
    /// `wrapper-<run>.log`.
    pub fn start_wrapper(&self, run: &str) -> ServerProcess {
        std::fs::create_dir_all(self.wrapper_config.parent().unwrap()).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_etcd-wrapper"));
        c.args(self.wrapper_args())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("ETCDCTL_API");
        ServerProcess::spawn(
            &format!("etcd-wrapper {run}"),
            c,
            &self.dir.join(format!("wrapper-{run}.log")),
        )
        .unwrap()
    }

    /// `/readyz`'s status code.
    pub fn readyz(&self) -> Result<u16, String> {
        http_get(&self.readyz_url()).map(|(code, _)| code)
    }

    /// Waits until `/readyz` says 200.
    pub fn wait_ready(&self, wrapper: &ServerProcess) {
        wrapper
            .wait_ready(Duration::from_secs(120), || Ok(self.readyz()? == 200))
            .unwrap();
    }

    /// Whether something listens on etcd's client port.
    pub fn etcd_listening(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.client_port)).is_ok()
    }

    /// The content of `exit_code`, if present.
    pub fn exit_code(&self) -> Option<String> {
        std::fs::read_to_string(self.volume.join("exit_code")).ok()
    }

    /// A client of the member's etcd.
    pub async fn client(&self) -> etcd_client::Client {
        let options = self.certs.as_ref().map(|c| {
            let read = |p: &PathBuf| std::fs::read(p).unwrap();
            etcd_client::ConnectOptions::new().with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(read(&c.ca)))
                    .identity(etcd_client::Identity::from_pem(read(&c.cert), read(&c.key))),
            )
        });
        etcd_client::Client::connect([self.client_url()], options)
            .await
            .unwrap()
    }
}

/// A process's whole log.
pub fn log(p: &ServerProcess) -> String {
    std::fs::read_to_string(p.log_path()).unwrap_or_default()
}

/// Waits until `ok()` holds, failing with `what` and the process's log.
pub fn wait_until(p: &ServerProcess, timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "{what} did not happen within {timeout:?}; {} log:\n{}",
            p.name(),
            p.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the process exited; returns its status text.
pub fn wait_exit(p: &ServerProcess, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some(status) = p.exited() {
            return status;
        }
        assert!(
            start.elapsed() < timeout,
            "{} did not exit within {timeout:?}:\n{}",
            p.name(),
            p.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
