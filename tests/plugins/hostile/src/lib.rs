//! A hostile test plugin: a provider whose `list` misbehaves in the way its
//! store's container names. The host must contain each with a clear error
//! and keep serving. Never shipped (built to `target/plugins/test-only/`).
//!
//! Containers:
//! - `endless-loop`: spins forever (CPU-time limit);
//! - `memory-bomb`: allocates without end (memory cap);
//! - `http-elsewhere`: sends HTTP to the credential `target`, which is not
//!   the store's endpoint (refused by the host);
//! - `snoop`: looks for environment variables, arguments and files, tries to
//!   write, and lists what it found (nothing);
//! - `huge-return`: returns a listing far over the host's bound, and
//!   downloads larger than asked for;
//! - `panic`: panics (a trap);
//! - `repeat-token`, `endless-pages`, `oversized-page`: listings that
//!   would never end (the same continuation token again, new tokens
//!   forever) or pages larger than asked for;
//! - listings the host must refuse (keys below the prefix asked for unless
//!   said otherwise): `unsorted-page` (`b` before `a`),
//!   `duplicate-across-pages` (`b` ends the first page and starts the
//!   second), `dotdot-key` (`<prefix>../../etc/passwd`), `absolute-key`
//!   (`/etc/passwd`), `endless-tokens` (one new key and a new token on
//!   every page, forever);
//! - `wire-*`: `pod-config` asks for wiring the host must refuse:
//!   `wire-node-root` mounts the node's `/`, `wire-token` points the
//!   credentials at the service-account token, `wire-env` sets
//!   `LD_PRELOAD`, `wire-data` mounts over etcd's data directory,
//!   `wire-spin` never answers (the wiring deadline);
//! - anything else: behaves, and lists one object named `ok`.

use druid_plugin_sdk::store::{
    ByteRange, Download, GuestDownload, GuestStore, GuestUpload, ListPage, ObjectInfo, Store,
    StoreConfig, StoreError, Upload,
};
use druid_plugin_sdk::wiring::{EnvVar, SidecarConfig, StoreSpec, Volume, VolumeSource};
use druid_plugin_sdk::{credential, http, plugin_info, provider, store, wiring};

/// The plugin.
pub struct Hostile;

impl provider::Guest for Hostile {
    fn describe() -> provider::PluginInfo {
        plugin_info(
            "hostile",
            env!("CARGO_PKG_VERSION"),
            &["Hostile", "HostileContract"],
        )
    }
}

impl wiring::Guest for Hostile {
    fn pod_config(spec: StoreSpec) -> Result<SidecarConfig, String> {
        let env = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: value.into(),
        };
        let volume = |source: VolumeSource, mount_path: &str| Volume {
            name: "plugin-volume".into(),
            source,
            mount_path: mount_path.into(),
        };
        let secret = || volume(VolumeSource::StoreSecret, "/var/etcd-backup");
        Ok(match spec.container.as_str() {
            "wire-node-root" => SidecarConfig {
                env: vec![env("LOCAL_STORE_ROOT", "/var/etcd-backup-local")],
                volumes: vec![volume(
                    VolumeSource::HostPath("/".into()),
                    "/var/etcd-backup-local",
                )],
            },
            "wire-token" => SidecarConfig {
                env: vec![env(
                    "HOSTILE_APPLICATION_CREDENTIALS",
                    "/var/run/secrets/kubernetes.io/serviceaccount",
                )],
                volumes: vec![secret()],
            },
            "wire-env" => SidecarConfig {
                env: vec![env("LD_PRELOAD", "/var/etcd-backup/evil.so")],
                volumes: vec![secret()],
            },
            "wire-data" => SidecarConfig {
                env: Vec::new(),
                volumes: vec![volume(VolumeSource::StoreSecret, "/var/etcd/data")],
            },
            "wire-spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => SidecarConfig {
                env: Vec::new(),
                volumes: Vec::new(),
            },
        })
    }

    fn check_secret(_provider: String, _keys: Vec<String>) -> Result<(), Vec<String>> {
        Ok(())
    }
}

impl store::Guest for Hostile {
    /// `Hostile` reads `HOSTILE_APPLICATION_CREDENTIALS` and names no
    /// endpoint (so `target` is never a granted destination);
    /// `HostileContract` declares a contract the host must refuse: a
    /// variable outside the pattern, one reading another part of the
    /// environment, and endpoints that could go anywhere.
    fn contract(provider: String) -> store::StoreContract {
        if provider == "HostileContract" {
            return store::StoreContract {
                credential_variables: vec!["HOME".into()],
                credentials_required: false,
                credential_value_variables: vec![(
                    "KUBERNETES_SERVICE_HOST".into(),
                    "endpoint".into(),
                )],
                endpoint_keys: Vec::new(),
                official_endpoints: vec![
                    "https://{target}".into(),
                    "http://169.254.169.254".into(),
                ],
            };
        }
        druid_plugin_sdk::secret_contract("HOSTILE", false, &[], &[])
    }

    type Store = HostileStore;
    type Upload = Nothing;
    type Download = Oversized;
}

/// A store that misbehaves by its container's name.
pub struct HostileStore {
    mode: String,
    target: String,
    /// Listings this store object answered (it lives as long as the
    /// host keeps its instance).
    calls: std::cell::Cell<u64>,
}

fn info(key: String) -> ObjectInfo {
    ObjectInfo {
        key,
        size: 0,
        last_modified: None,
    }
}

/// What the plugin can find of its environment.
fn snoop(target: &str) -> Vec<ObjectInfo> {
    let mut found = Vec::new();
    for (k, _) in std::env::vars() {
        found.push(info(format!("env:{k}")));
    }
    for a in std::env::args() {
        found.push(info(format!("arg:{a}")));
    }
    for dir in ["/", ".", "/etc", "/tmp"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                found.push(info(format!(
                    "file:{dir}/{}",
                    e.file_name().to_string_lossy()
                )));
            }
        }
    }
    for file in ["/etc/passwd", "/proc/self/environ"] {
        if std::fs::read(file).is_ok() {
            found.push(info(format!("read:{file}")));
        }
    }
    if std::fs::write("/tmp/druid-hostile", b"x").is_ok() {
        found.push(info("wrote:/tmp/druid-hostile".into()));
    }
    // A raw socket (std::net) is not tried: the Debian wasi-libc this
    // builds with has no socket functions, so it would not even link. The
    // host disables wasi:sockets TCP, UDP and name lookup regardless.
    let _ = target;
    found
}

impl GuestStore for HostileStore {
    fn open(config: StoreConfig) -> Result<Store, StoreError> {
        Ok(Store::new(HostileStore {
            target: credential(&config, "target")
                .unwrap_or_default()
                .to_string(),
            mode: config.container,
            calls: std::cell::Cell::new(0),
        }))
    }

    fn list(
        &self,
        prefix: String,
        token: Option<String>,
        max: u32,
    ) -> Result<ListPage, StoreError> {
        // The number in the page token, 0 on the first page.
        let n: u64 = token.as_deref().and_then(|t| t.parse().ok()).unwrap_or(0);
        let page = |keys: &[&str], next_token: Option<String>| {
            Ok(ListPage {
                objects: keys.iter().map(|k| info(format!("{prefix}{k}"))).collect(),
                next_token,
            })
        };
        let calls = self.calls.get() + 1;
        self.calls.set(calls);
        match self.mode.as_str() {
            // Which call of this store object this is: how long the host
            // keeps an instance.
            "count-calls" => page(&[&format!("{calls:05}")], None),
            #[allow(clippy::panic, reason = "panicking is this mode's misbehaviour")]
            "count-then-panic" if calls == 3 => {
                panic!("the hostile plugin panics on its third call")
            }
            "count-then-panic" => page(&[&format!("{calls:05}")], None),
            "count-then-unsorted" if calls == 2 => page(&["b", "a"], None),
            "count-then-unsorted" => page(&[&format!("{calls:05}")], None),
            // Keys below the prefix and in order, so that only the tokens
            // or the page size misbehave.
            "repeat-token" => page(&["again"], Some("the-same-token".into())),
            "endless-pages" => Ok(ListPage {
                objects: (0..max)
                    .map(|i| info(format!("{prefix}{n:010}-{i:05}")))
                    .collect(),
                next_token: Some((n + 1).to_string()),
            }),
            "oversized-page" => Ok(ListPage {
                objects: (0..max.saturating_mul(2))
                    .map(|i| info(format!("{prefix}{i:05}")))
                    .collect(),
                next_token: None,
            }),
            "unsorted-page" => page(&["b", "a"], None),
            "duplicate-across-pages" => match token {
                None => page(&["a", "b"], Some("1".into())),
                Some(_) => page(&["b", "c"], None),
            },
            "dotdot-key" => page(&["../../etc/passwd"], None),
            "absolute-key" => Ok(ListPage {
                objects: vec![info("/etc/passwd".into())],
                next_token: None,
            }),
            "endless-tokens" => page(&[&format!("{n:010}")], Some((n + 1).to_string())),
            "endless-loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // 16 MiB at a time, touched so the pages are really used.
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "http-elsewhere" => match http::send(http::Method::Get, &self.target, &[], &[]) {
                Ok(r) => Ok(ListPage {
                    objects: vec![info(format!("reached:{}", r.status))],
                    next_token: None,
                }),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            },
            "snoop" => Ok(ListPage {
                objects: snoop(&self.target),
                next_token: None,
            }),
            "huge-return" => Ok(ListPage {
                objects: (0..20_000).map(|i| info(format!("{i:01024}"))).collect(),
                next_token: None,
            }),
            #[allow(clippy::panic, reason = "panicking is this mode's misbehaviour")]
            "panic" => panic!("the hostile plugin panics on purpose"),
            _ => Ok(ListPage {
                objects: vec![info("ok".into())],
                next_token: None,
            }),
        }
    }

    fn head(&self, key: String) -> Result<ObjectInfo, StoreError> {
        Err(StoreError::NotFound(key))
    }

    fn delete(&self, _key: String) -> Result<(), StoreError> {
        Ok(())
    }

    fn upload(&self, _key: String, _size_hint: Option<u64>) -> Result<Upload, StoreError> {
        Ok(Upload::new(Nothing))
    }

    fn download(&self, _key: String, _range: Option<ByteRange>) -> Result<Download, StoreError> {
        Ok(Download::new(Oversized))
    }
}

/// An upload that keeps nothing.
pub struct Nothing;

impl GuestUpload for Nothing {
    fn write(&self, _chunk: Vec<u8>) -> Result<(), StoreError> {
        Ok(())
    }

    fn finish(&self) -> Result<ObjectInfo, StoreError> {
        Ok(info("nothing".into()))
    }

    fn abort(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A download that returns more than asked for.
pub struct Oversized;

impl GuestDownload for Oversized {
    fn read(&self, max: u32) -> Result<Vec<u8>, StoreError> {
        Ok(vec![7u8; max as usize * 2 + 1])
    }
}

#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::provider::export_provider!(Hostile);
