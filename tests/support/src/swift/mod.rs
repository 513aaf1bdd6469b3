//! A real OpenStack Swift behind a real Keystone (identity v3) on loopback.
//!
//! Debian's packages (`tests/scripts/install-swift.sh`: Swift 2.30, Keystone
//! 22 "zed") run from `/usr/bin/python3` with everything in the server's
//! own directory: Keystone's configuration, SQLite database and fernet and
//! credential keys; Swift's `swift.conf`, rings, devices and server
//! configurations; every log. Nothing under `/etc` is read or written.
//!
//! Five processes: Keystone's public WSGI application on a single-threaded
//! wsgiref server, and Swift's account, container, object and proxy
//! servers (one process each, `workers = 0`). The proxy validates tokens
//! with keystonemiddleware's `authtoken` and authorizes with Swift's
//! `keystoneauth` (`admin` and `member` are operator roles). Keystone has
//! an `object-store` service with a public endpoint in `RegionOne`, a
//! project `etcd` in domain `Default` and a user `etcd-backup` with role
//! `member` on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Error, Result, server_dir, shared};

mod api;
use api::{api_error, configure_keystone, issue_token, keystone, request};

/// How long each server gets to answer its readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long Keystone's database and key set-up and start may take
/// (about 4 s).
const KEYSTONE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Timeout of each request to Keystone or Swift made here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Debian's Python, whose `dist-packages` hold Swift and Keystone (the
/// `python3` on `PATH` may be another one).
const PYTHON: &str = "/usr/bin/python3";

/// Where Debian's Python packages are.
const DIST_PACKAGES: &str = "/usr/lib/python3/dist-packages";

/// The script that installs everything this module runs.
const INSTALL_SCRIPT: &str = "tests/scripts/install-swift.sh";

const REGION: &str = "RegionOne";
const DOMAIN: &str = "Default";
const DOMAIN_ID: &str = "default";
const PROJECT: &str = "etcd";
const USERNAME: &str = "etcd-backup";
const ADMIN: &str = "admin";

/// Keystone: `keystone-manage db_sync`, `fernet_setup`, `credential_setup`
/// and `bootstrap` (in a forked child, so that Keystone is imported once:
/// about 2 s of CPU less than separate `keystone-manage` runs), then its
/// public WSGI application on a single-threaded wsgiref server.
/// (Not `keystone.py`: the script's directory comes first on `sys.path`.)
const KEYSTONE_PY: &str = include_str!("keystone_server.py");

/// The rings `swift-ring-builder <ring>.builder create 8 1 1`, `add
/// r1z1-127.0.0.1:<port>/d1 100` and `rebalance` make, built in one Python
/// process (0.5 s instead of 4 s for nine `swift-ring-builder` runs).
const SWIFT_RINGS_PY: &str = include_str!("swift_rings.py");

/// Runs a Swift server as `/usr/bin/swift-<kind>-server <conf> -v` does,
/// but with `swift.conf` from the configuration's directory: Swift 2.30's
/// servers read `/etc/swift/swift.conf` whatever their `swift_dir` says
/// (only `swift-recon` calls `set_swift_dir`). Logs go to stderr only (`-v`),
/// never to syslog.
const SWIFT_SERVER_PY: &str = include_str!("swift_server.py");

/// A running Swift (proxy, account, container and object servers) behind a
/// running Keystone, with project `etcd` and its user `etcd-backup`.
pub struct SwiftServer {
    auth_url: String,
    proxy_url: String,
    storage_url: String,
    project_id: String,
    user_id: String,
    password: String,
    admin_password: String,
    dir: PathBuf,
    keystone: ServerProcess,
    proxy: ServerProcess,
    account: ServerProcess,
    container: ServerProcess,
    object: ServerProcess,
}

/// The loopback ports of one Swift with its Keystone.
struct Ports {
    keystone: u16,
    proxy: u16,
    account: u16,
    container: u16,
    object: u16,
}

impl SwiftServer {
    /// Starts a new Keystone and Swift with empty databases and devices
    /// (4.3 to 5 s on two cores).
    pub fn start() -> Result<Self> {
        with_port_retries(Self::try_start)
    }

    /// The Swift server shared by every test of this test binary.
    pub fn shared() -> &'static SwiftServer {
        static CELL: OnceLock<std::result::Result<SwiftServer, String>> = OnceLock::new();
        shared(&CELL, Self::start)
    }

    fn try_start() -> Result<Self> {
        check_installed()?;
        let ports = Ports {
            keystone: free_port()?,
            proxy: free_port()?,
            account: free_port()?,
            container: free_port()?,
            object: free_port()?,
        };
        let dir = server_dir(&format!("swift-{}", ports.proxy))?;
        let auth_url = format!("http://127.0.0.1:{}/v3", ports.keystone);
        let proxy_url = format!("http://127.0.0.1:{}", ports.proxy);
        let admin_password = format!("druid-admin-{}", ports.keystone);
        let password = format!("druid-etcd-backup-{}", ports.keystone);
        write_files(&dir, &ports, &auth_url, &admin_password)?;

        // Keystone (its set-up, then the server) is about 4 s of one core;
        // Swift's servers start on the other meanwhile, one after the
        // other (each ~0.7 s): five Python processes starting at once on
        // two cores would slow Keystone, the longest, to 40 %.
        let (swift, keystone) = std::thread::scope(|scope| {
            let swift = scope.spawn(|| start_swift(&dir, &ports));
            let keystone = start_keystone(&dir, &ports, &admin_password, &password);
            (swift.join(), keystone)
        });
        let [account, container, object, proxy] = swift.map_err(|_| {
            Error::io("starting Swift's servers")(std::io::Error::other("the thread panicked"))
        })??;
        let (keystone, project_id, user_id) = keystone?;
        let server = Self {
            storage_url: format!("{proxy_url}/v1/AUTH_{project_id}"),
            auth_url,
            proxy_url,
            project_id,
            user_id,
            password,
            admin_password,
            dir,
            keystone,
            proxy,
            account,
            container,
            object,
        };
        // End to end: the user's token opens the project's account (created
        // on first use) through authtoken, Keystone and keystoneauth.
        server
            .probe_account()
            .map_err(|reason| not_ready(&server.proxy, reason))?;
        Ok(server)
    }

    fn probe_account(&self) -> std::result::Result<(), String> {
        let token = self.token().map_err(|e| e.to_string())?;
        let reply = request("HEAD", &self.storage_url, &[("x-auth-token", &token)], None)?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(format!(
                "HEAD {} with the user's token: HTTP {} {}",
                self.storage_url, reply.status, reply.body
            ))
        }
    }

    /// Keystone's identity v3 endpoint, e.g. `http://127.0.0.1:5000/v3`
    /// (what clients call the auth URL).
    pub fn auth_url(&self) -> &str {
        &self.auth_url
    }

    /// The proxy's base URL, e.g. `http://127.0.0.1:8080` (`/healthcheck`
    /// and `/info` are there; the API under `/v1/`).
    pub fn proxy_url(&self) -> &str {
        &self.proxy_url
    }

    /// The storage URL of project `etcd`, e.g.
    /// `http://127.0.0.1:8080/v1/AUTH_<project id>`: the public endpoint
    /// of the catalog's `object-store` service in `RegionOne` for tokens
    /// scoped to that project.
    pub fn storage_url(&self) -> &str {
        &self.storage_url
    }

    /// The region of the `object-store` endpoint, `RegionOne`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The name of the domain of the user and the project, `Default` (its
    /// id is `default`).
    pub fn domain(&self) -> &str {
        DOMAIN
    }

    /// The name of the user's project, `etcd`.
    pub fn project(&self) -> &str {
        PROJECT
    }

    /// The id of project `etcd` (the storage URL ends in `AUTH_<id>`).
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The user's name, `etcd-backup` (role `member` on project `etcd`).
    pub fn username(&self) -> &str {
        USERNAME
    }

    /// The user's id.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A Swift store secret for the user, with upstream's keys
    /// (`authURL`, `domainName`, `tenantName`, `username`, `password`,
    /// `region`) and `password` as the password.
    pub fn store_secret<'a>(&'a self, password: &'a str) -> [(&'static str, &'a str); 6] {
        [
            ("authURL", self.auth_url()),
            ("domainName", self.domain()),
            ("tenantName", self.project()),
            ("username", self.username()),
            ("password", password),
            ("region", self.region()),
        ]
    }

    /// A new token of the user scoped to project `etcd` (password
    /// authentication), for tests that talk to Swift directly in
    /// `X-Auth-Token`. Valid for an hour.
    pub fn token(&self) -> Result<String> {
        issue_token(&self.auth_url, USERNAME, &self.password, PROJECT)
    }

    /// A new token of Keystone's bootstrap admin scoped to project
    /// `admin` (role `admin`), for tests that change Keystone through its
    /// API (users, roles, credentials) in `X-Auth-Token`.
    pub fn admin_token(&self) -> Result<String> {
        issue_token(&self.auth_url, ADMIN, &self.admin_password, ADMIN)
    }

    /// Creates an application credential `name` of the user, for project
    /// `etcd` with the user's roles there, and returns its id and secret
    /// (method `application_credential` of `POST /v3/auth/tokens` takes
    /// them). Names are unique per user: a name used before on this server
    /// is an error (HTTP 409).
    pub fn create_application_credential(&self, name: &str) -> Result<(String, String)> {
        let context = format!("creating application credential {name:?}");
        let token = self.token()?;
        let body = json!({ "application_credential": { "name": name } });
        let reply = keystone(
            "POST",
            &format!(
                "{}/users/{}/application_credentials",
                self.auth_url, self.user_id
            ),
            Some(&token),
            Some(&body),
        )
        .map_err(api_error(context.clone()))?;
        if reply.status != 201 {
            return Err(api_error(context)(format!(
                "HTTP {}: {}",
                reply.status, reply.body
            )));
        }
        let credential = &reply.json["application_credential"];
        match (credential["id"].as_str(), credential["secret"].as_str()) {
            (Some(id), Some(secret)) => Ok((id.to_string(), secret.to_string())),
            _ => Err(api_error(context)(format!(
                "no id and secret in {}",
                reply.body
            ))),
        }
    }

    /// Creates container `name` in project `etcd`'s account with a token
    /// of the user (an existing one is fine).
    pub fn create_container(&self, name: &str) -> Result<()> {
        let context = format!("creating container {name:?} on Swift");
        let token = self.token()?;
        let url = format!("{}/{name}", self.storage_url);
        let reply = request("PUT", &url, &[("x-auth-token", &token)], Some(Vec::new()))
            .map_err(api_error(context.clone()))?;
        match reply.status {
            201 | 202 => Ok(()),
            status => Err(api_error(context)(format!("HTTP {status}: {}", reply.body))),
        }
    }

    /// The directory with every configuration, ring, device, database, key
    /// and log of this server.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The proxy server's process (its log has one line per request).
    pub fn process(&self) -> &ServerProcess {
        &self.proxy
    }

    /// Keystone's process.
    pub fn keystone_process(&self) -> &ServerProcess {
        &self.keystone
    }

    /// Every process: Keystone, then Swift's proxy, account, container and
    /// object servers.
    pub fn processes(&self) -> [&ServerProcess; 5] {
        [
            &self.keystone,
            &self.proxy,
            &self.account,
            &self.container,
            &self.object,
        ]
    }
}

impl Drop for SwiftServer {
    fn drop(&mut self) {
        // Swift's servers take a second or two to exit on SIGTERM: all
        // five stop at once.
        std::thread::scope(|scope| {
            for process in self.processes() {
                scope.spawn(move || process.stop());
            }
        });
    }
}

/// Starts Keystone, waits until it answers and configures it (see
/// [`configure_keystone`]); returns it with the project's and the user's
/// ids.
fn start_keystone(
    dir: &Path,
    ports: &Ports,
    admin_password: &str,
    password: &str,
) -> Result<(ServerProcess, String, String)> {
    let auth_url = format!("http://127.0.0.1:{}/v3", ports.keystone);
    let mut command = python(dir);
    command
        .arg(dir.join("keystone_server.py"))
        .arg(dir.join("keystone.conf"))
        .arg(dir.join("keystone.conf.d"))
        .arg(ports.keystone.to_string())
        .arg(admin_password)
        .arg(&auth_url)
        .arg(REGION);
    let keystone = ServerProcess::spawn(
        &format!("keystone ({auth_url})"),
        command,
        &dir.join("keystone.log"),
    )?;
    keystone.wait_ready(KEYSTONE_READY_TIMEOUT, || Ok(http_get(&auth_url)?.0 == 200))?;
    let proxy_url = format!("http://127.0.0.1:{}", ports.proxy);
    let (project_id, user_id) = configure_keystone(&auth_url, admin_password, password, &proxy_url)
        .map_err(|reason| not_ready(&keystone, reason))?;
    Ok((keystone, project_id, user_id))
}

/// Builds the rings, then starts Swift's account, container, object and
/// proxy servers one after the other, each answering `/healthcheck`
/// before the next starts.
fn start_swift(dir: &Path, ports: &Ports) -> Result<[ServerProcess; 4]> {
    build_rings(dir, ports)?;
    let start = |kind: &str, port: u16| -> Result<ServerProcess> {
        let process = spawn_swift(dir, kind, port)?;
        let health = format!("http://127.0.0.1:{port}/healthcheck");
        process.wait_ready(READY_TIMEOUT, || Ok(http_get(&health)?.0 == 200))?;
        Ok(process)
    };
    Ok([
        start("account", ports.account)?,
        start("container", ports.container)?,
        start("object", ports.object)?,
        start("proxy", ports.proxy)?,
    ])
}

/// Fails with the script to run when Debian's Swift or Keystone is missing.
fn check_installed() -> Result<()> {
    let packages = Path::new(DIST_PACKAGES);
    let needed = [
        ("python3", PathBuf::from(PYTHON)),
        (
            "swift-proxy-server",
            PathBuf::from("/usr/bin/swift-proxy-server"),
        ),
        (
            "swift-account-server",
            PathBuf::from("/usr/bin/swift-account-server"),
        ),
        (
            "swift-container-server",
            PathBuf::from("/usr/bin/swift-container-server"),
        ),
        (
            "swift-object-server",
            PathBuf::from("/usr/bin/swift-object-server"),
        ),
        (
            "keystone (python3-keystone)",
            packages.join("keystone/__init__.py"),
        ),
        (
            "keystonemiddleware (python3-keystonemiddleware)",
            packages.join("keystonemiddleware/__init__.py"),
        ),
    ];
    for (name, path) in needed {
        if !path.is_file() {
            return Err(Error::NotInstalled {
                binary: name.to_string(),
                searched: path.display().to_string(),
                script: INSTALL_SCRIPT.to_string(),
            });
        }
    }
    Ok(())
}

/// `/usr/bin/python3` in the server's directory, which is also its `HOME`,
/// without user site packages or a `PYTHONPATH`.
fn python(dir: &Path) -> Command {
    let mut command = Command::new(PYTHON);
    command
        .arg("-s")
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
    command
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(Error::io(format!("cannot write {}", path.display())))
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(Error::io(format!("cannot create {}", path.display())))
}

/// Writes Keystone's and Swift's configuration and the Python launchers.
fn write_files(dir: &Path, ports: &Ports, auth_url: &str, admin_password: &str) -> Result<()> {
    let d = dir.display();
    // An empty configuration directory and policy file: oslo.config and
    // oslo.policy would otherwise look in /etc/keystone too.
    create_dir(&dir.join("keystone.conf.d"))?;
    write(
        &dir.join("keystone-policy.yaml"),
        "# No overrides: Keystone's default policies.\n",
    )?;
    write(
        &dir.join("keystone.conf"),
        &format!(
            "[DEFAULT]\n\
             use_stderr = true\n\
             logging_context_format_string = %(asctime)s.%(msecs)03d %(levelname)s %(name)s [%(request_id)s %(user_identity)s] %(message)s\n\
             logging_default_format_string = %(asctime)s.%(msecs)03d %(levelname)s %(name)s [-] %(message)s\n\
             [database]\n\
             connection = sqlite:///{d}/keystone.db\n\
             [token]\n\
             provider = fernet\n\
             [fernet_tokens]\n\
             key_repository = {d}/fernet-keys\n\
             [fernet_receipts]\n\
             key_repository = {d}/fernet-receipts\n\
             [credential]\n\
             key_repository = {d}/credential-keys\n\
             [identity]\n\
             # bcrypt's cheapest cost: every password check costs ~0.2 s of\n\
             # CPU at the default 12 rounds.\n\
             password_hash_rounds = 4\n\
             [oslo_policy]\n\
             policy_file = {d}/keystone-policy.yaml\n"
        ),
    )?;
    write(&dir.join("keystone_server.py"), KEYSTONE_PY)?;

    create_dir(&dir.join("srv/d1"))?;
    write(
        &dir.join("swift.conf"),
        "[swift-hash]\n\
         swift_hash_path_prefix = druid-test-prefix\n\
         swift_hash_path_suffix = druid-test-suffix\n\
         [storage-policy:0]\n\
         name = Policy-0\n\
         default = yes\n",
    )?;
    for (kind, port) in [
        ("account", ports.account),
        ("container", ports.container),
        ("object", ports.object),
    ] {
        let extra = if kind == "object" {
            // No free-space reserve: a nearly full test disk still works.
            "disable_fallocate = true\nfallocate_reserve = 0\n"
        } else {
            ""
        };
        write(
            &dir.join(format!("{kind}-server.conf")),
            &format!(
                "{}{extra}\
                 [pipeline:main]\n\
                 pipeline = healthcheck {kind}-server\n\
                 [app:{kind}-server]\n\
                 use = egg:swift#{kind}\n\
                 [filter:healthcheck]\n\
                 use = egg:swift#healthcheck\n",
                swift_defaults(dir, kind, port)
            ),
        )?;
    }
    write(
        &dir.join("proxy-server.conf"),
        &format!(
            "{}\
             [pipeline:main]\n\
             # Swift's sample order (auth before copy, slo and dlo, which\n\
             # 2.30 would otherwise insert itself); no memcache.\n\
             pipeline = catch_errors gatekeeper healthcheck proxy-logging listing_formats bulk authtoken keystoneauth copy slo dlo versioned_writes proxy-logging proxy-server\n\
             [app:proxy-server]\n\
             use = egg:swift#proxy\n\
             account_autocreate = true\n\
             [filter:catch_errors]\n\
             use = egg:swift#catch_errors\n\
             [filter:gatekeeper]\n\
             use = egg:swift#gatekeeper\n\
             [filter:healthcheck]\n\
             use = egg:swift#healthcheck\n\
             [filter:proxy-logging]\n\
             use = egg:swift#proxy_logging\n\
             [filter:listing_formats]\n\
             use = egg:swift#listing_formats\n\
             [filter:bulk]\n\
             use = egg:swift#bulk\n\
             [filter:copy]\n\
             use = egg:swift#copy\n\
             [filter:slo]\n\
             use = egg:swift#slo\n\
             [filter:dlo]\n\
             use = egg:swift#dlo\n\
             [filter:versioned_writes]\n\
             use = egg:swift#versioned_writes\n\
             [filter:authtoken]\n\
             paste.filter_factory = keystonemiddleware.auth_token:filter_factory\n\
             www_authenticate_uri = {auth_url}\n\
             auth_url = {auth_url}\n\
             auth_type = password\n\
             user_domain_id = {DOMAIN_ID}\n\
             project_domain_id = {DOMAIN_ID}\n\
             project_name = {ADMIN}\n\
             username = {ADMIN}\n\
             password = {admin_password}\n\
             delay_auth_decision = true\n\
             include_service_catalog = false\n\
             service_token_roles_required = true\n\
             http_connect_timeout = 5\n\
             [filter:keystoneauth]\n\
             use = egg:swift#keystoneauth\n\
             reseller_prefix = AUTH_\n\
             operator_roles = admin, member\n",
            swift_defaults(dir, "proxy", ports.proxy)
        ),
    )?;
    write(&dir.join("swift_rings.py"), SWIFT_RINGS_PY)?;
    write(&dir.join("swift_server.py"), SWIFT_SERVER_PY)
}

/// The `[DEFAULT]` section of Swift server `kind`'s configuration.
fn swift_defaults(dir: &Path, kind: &str, port: u16) -> String {
    let d = dir.display();
    format!(
        "[DEFAULT]\n\
         bind_ip = 127.0.0.1\n\
         bind_port = {port}\n\
         # A taken port fails after a second, not Swift's default 30.\n\
         bind_timeout = 1\n\
         # One process in the foreground, logging to its stderr (-v).\n\
         workers = 0\n\
         swift_dir = {d}\n\
         devices = {d}/srv\n\
         mount_check = false\n\
         log_name = {kind}-server\n\
         log_level = INFO\n"
    )
}

/// Builds the account, container and object rings (one device each, on
/// the server's port) into the server's directory.
fn build_rings(dir: &Path, ports: &Ports) -> Result<()> {
    let output = python(dir)
        .arg(dir.join("swift_rings.py"))
        .arg(dir)
        .arg(format!("account={}", ports.account))
        .arg(format!("container={}", ports.container))
        .arg(format!("object={}", ports.object))
        .output()
        .map_err(Error::io("running swift_rings.py"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Io {
        context: format!("building Swift's rings in {}", dir.display()),
        source: std::io::Error::other(format!(
            "{}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
    })
}

/// Starts Swift server `kind` (`account`, `container`, `object`, `proxy`).
fn spawn_swift(dir: &Path, kind: &str, port: u16) -> Result<ServerProcess> {
    let mut command = python(dir);
    command
        .arg(dir.join("swift_server.py"))
        .arg(kind)
        .arg(dir.join(format!("{kind}-server.conf")));
    ServerProcess::spawn(
        &format!("swift-{kind}-server (http://127.0.0.1:{port})"),
        command,
        &dir.join(format!("swift-{kind}-server.log")),
    )
}

fn not_ready(process: &ServerProcess, reason: String) -> Error {
    Error::NotReady {
        server: process.name().to_string(),
        reason,
        log: process.log_path().display().to_string(),
        tail: process.log_tail(40),
    }
}
