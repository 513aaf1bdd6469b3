//! A real single-node Kubernetes (containerd, kubelet, kube-proxy, CNI,
//! CoreDNS, its own control plane) started by `tests/scripts/node.sh`, with
//! the product's images (`scripts/build-images.sh`) imported.
//!
//! The node lives in a network namespace of its own; the host reaches it,
//! its pods and its Services through one veth pair (see node.sh). One node
//! per machine: the first test that needs it starts it (tearing down any
//! node an earlier, killed run left), and it is torn down when the test
//! process exits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{Error, Result, repo_root, shared};

/// The images every node test needs, as `scripts/build-images.sh` writes
/// them into `target/images`.
pub const PRODUCT_IMAGES: [&str; 3] = ["druid", "etcdbr", "etcd"];

/// A running node.
pub struct Node {
    env: BTreeMap<String, String>,
    dir: PathBuf,
}

impl Node {
    /// The node shared by every test of this test binary.
    pub fn shared() -> &'static Node {
        static CELL: OnceLock<std::result::Result<Node, String>> = OnceLock::new();
        shared(&CELL, Self::start)
    }

    /// Where `scripts/build-images.sh` puts the image archives.
    pub fn images_dir() -> PathBuf {
        repo_root().join("target/images")
    }

    fn start() -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code)]
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(Error::Node(
                "the real node needs root (containerd, kubelet, network namespaces)".into(),
            ));
        }
        let images = Self::images_dir();
        let mut tars = Vec::new();
        for name in PRODUCT_IMAGES {
            let tar = images.join(format!("{name}.tar"));
            if !tar.is_file() {
                return Err(Error::NotInstalled {
                    binary: format!("image {name}"),
                    searched: tar.display().to_string(),
                    script: "scripts/build-images.sh --profile dev".into(),
                });
            }
            tars.push(tar);
        }
        let dir = repo_root().join("target/node");
        let script = repo_root().join("tests/scripts/node.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("up")
            .args(&tars)
            .env("NODE_DIR", &dir)
            .output()
            .map_err(Error::io("running tests/scripts/node.sh up"))?;
        // Torn down at exit whether or not it came up.
        register_teardown();
        if !out.status.success() {
            return Err(Error::Node(format!(
                "tests/scripts/node.sh up failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let text = std::fs::read_to_string(dir.join("env"))
            .map_err(Error::io("reading the node's env file"))?;
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Self { env, dir })
    }

    fn var(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    /// An admin kubeconfig for the node's API server.
    pub fn kubeconfig(&self) -> &Path {
        Path::new(self.var("KUBECONFIG"))
    }

    /// The node's address (its API server, CoreDNS, kubelet); the host
    /// reaches it.
    pub fn ip(&self) -> &str {
        self.var("NODE_IP")
    }

    /// The host's address on the node's network: servers the pods must
    /// reach (an object store) listen here.
    pub fn host_ip(&self) -> &str {
        self.var("NODE_HOST_IP")
    }

    /// A kubectl command against the node's API server.
    pub fn kubectl(&self) -> Result<Command> {
        crate::kube::kubectl(self.kubeconfig())
    }

    /// Installs the CRDs of `dir` and waits until they are served.
    pub fn install_crds(&self, dir: &Path) -> Result<()> {
        crate::kube::install_crds(self.kubeconfig(), dir)
    }

    /// Tags image `reference` in the node's containerd as `alias` too (for
    /// manifests that pin other image names: no registry serves them here).
    pub fn tag_image(&self, reference: &str, alias: &str) -> Result<()> {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/scripts/node.sh"))
            .args(["tag", reference, alias])
            .env("NODE_DIR", &self.dir)
            .output()
            .map_err(Error::io("running tests/scripts/node.sh tag"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Node(format!(
                "tagging {reference} as {alias}: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Imports more image archives of `scripts/build-images.sh` (each
    /// under the reference in its `.ref` file) into the node's containerd.
    pub fn import_images(&self, tars: &[PathBuf]) -> Result<()> {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/scripts/node.sh"))
            .arg("import")
            .args(tars)
            .env("NODE_DIR", &self.dir)
            .output()
            .map_err(Error::io("running tests/scripts/node.sh import"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Node(format!(
                "importing {tars:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Runs kubectl with `args`; its stdout, or an error with its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self
            .kubectl()?
            .args(args)
            .output()
            .map_err(Error::io("running kubectl"))?;
        stdout_or_error(args, &out)
    }

    /// Runs kubectl with `args` and `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        use std::io::Write as _;
        let mut child = self
            .kubectl()?
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(Error::io("running kubectl"))?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .map_err(Error::io("writing to kubectl"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(Error::io("waiting for kubectl"))?;
        stdout_or_error(args, &out)
    }

    /// The node's logs directory (kubelet, containerd, control plane).
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// What a failed test prints: the pods, the events and the container
    /// logs of `namespace`, and the end of the kubelet's and containerd's
    /// logs.
    pub fn report(&self, namespace: &str) -> String {
        let mut out = String::new();
        let mut section = |title: &str, args: &[&str]| {
            let text = self.kubectl_ok(args).unwrap_or_else(|e| format!("({e})"));
            out.push_str(&format!("--- {title} ---\n{text}\n"));
        };
        section("pods", &["get", "pods", "-A", "-o", "wide"]);
        section(
            &format!("events in {namespace}"),
            &["-n", namespace, "get", "events", "--sort-by=.lastTimestamp"],
        );
        if let Ok(pods) = self.kubectl_ok(&["-n", namespace, "get", "pods", "-o", "name"]) {
            for pod in pods.lines().filter(|p| !p.is_empty()) {
                section(
                    &format!("logs of {pod}"),
                    &[
                        "-n",
                        namespace,
                        "logs",
                        pod,
                        "--all-containers",
                        "--prefix",
                        "--tail=40",
                    ],
                );
            }
        }
        for log in ["kubelet", "containerd"] {
            let path = self.logs_dir().join(format!("{log}.log"));
            out.push_str(&format!(
                "--- last lines of {} ---\n{}\n",
                path.display(),
                crate::process::tail(&path, 30)
            ));
        }
        out
    }
}

/// A kubectl run's stdout, or an error with its stderr.
fn stdout_or_error(args: &[&str], out: &std::process::Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Kubectl {
            what: args.join(" "),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// `node.sh down` when the test process exits.
fn register_teardown() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        extern "C" fn teardown() {
            let _ = Command::new("bash")
                .arg(repo_root().join("tests/scripts/node.sh"))
                .arg("down")
                .env("NODE_DIR", repo_root().join("target/node"))
                .status();
        }
        // SAFETY: atexit only stores the function pointer; `teardown` is a
        // plain extern "C" function that does not unwind.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(teardown);
        }
    });
}
