//! The host's closed schema for a provider plugin's pod wiring.
//!
//! A plugin's `pod-config` answer never reaches a pod spec as it is. The
//! host reads it as a request against a fixed schema and builds the wiring
//! itself:
//!
//! - env vars only from a fixed set, each with the one value the host
//!   allows: `STORAGE_CONTAINER` (the spec's container),
//!   `LOCAL_STORE_ROOT` ([`LOCAL_MOUNT`]), `<PROVIDER>_APPLICATION_CREDENTIALS`
//!   ([`SECRET_MOUNT`]) and `<PROVIDER>_APPLICATION_CREDENTIALS_JSON` (a
//!   file directly in [`SECRET_MOUNT`]);
//! - the store's Secret only at [`SECRET_MOUNT`], under the host's volume
//!   name;
//! - a node directory only at or below the operator's Local root, mounted
//!   at [`LOCAL_MOUNT`]; the builder narrows it to the Etcd's own
//!   `<namespace>/<container>` subdirectory. [`DEFAULT_LOCAL_ROOT`] stands
//!   for the configured root, whatever it is;
//! - nothing else: no other variable, volume source or mount path, no
//!   duplicates.
//!
//! Each refusal says what the plugin asked for and what the host allows,
//! so the condition it ends up in tells the plugin's author what to fix.

use crate::Error;
use crate::config::plain_name;
use crate::contract::{StoreContract, credentials_variable_kind};

/// The sidecar wiring for a store, from the provider's plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    /// Environment variables (name, value).
    pub env: Vec<(String, String)>,
    /// Volumes and their mounts.
    pub volumes: Vec<SidecarVolume>,
}

/// A volume of the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarVolume {
    /// The volume's name.
    pub name: String,
    /// Where it comes from.
    pub source: VolumeSource,
    /// The mount path.
    pub mount_path: String,
}

/// Where a volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// The store's Secret.
    StoreSecret,
    /// A node directory.
    HostPath(String),
}

/// Why the wiring of a store was refused.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The spec is invalid for the provider.
    #[error("{0}")]
    Spec(String),
    /// The secret lacks keys or has conflicting ones (one entry each).
    #[error("{}", .0.join("; "))]
    Secret(Vec<String>),
    /// The plugin failed.
    #[error(transparent)]
    Plugin(#[from] Error),
}

/// Where the store's Secret is mounted in a container that talks to the
/// store.
pub const SECRET_MOUNT: &str = "/var/etcd-backup";
/// The name of the store Secret's volume.
pub const SECRET_VOLUME: &str = "etcd-backup-secret";
/// Where a Local store's node directory is mounted (the container is a
/// directory below it).
pub const LOCAL_MOUNT: &str = "/var/etcd-backup-local";
/// The name of the Local store's volume.
pub const LOCAL_VOLUME: &str = "local-backup";
/// The operator's default root of Local stores on the node.
pub const DEFAULT_LOCAL_ROOT: &str = "/var/lib/druid/local-backupbuckets";

/// Most env vars a plugin may ask for.
const MAX_ENV: usize = 8;
/// Most volumes a plugin may ask for (the Secret and a node directory).
const MAX_VOLUMES: usize = 2;
/// Longest env var value echoed back in a refusal.
const ECHO: usize = 120;

/// What the host allows a plugin's wiring to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiringPolicy {
    local_root: String,
}

impl Default for WiringPolicy {
    fn default() -> Self {
        Self {
            local_root: DEFAULT_LOCAL_ROOT.into(),
        }
    }
}

/// The store as the Etcd spec names it, for the checks.
#[derive(Debug, Clone, Copy)]
pub struct WiringRequest<'a> {
    /// The bucket or container.
    pub container: &'a str,
    /// Whether the spec names a Secret.
    pub has_secret: bool,
    /// The provider's store contract (its credential variables).
    pub contract: &'a StoreContract,
}

/// Wiring the host accepted: what the builders turn into env vars,
/// volumes and mounts, with the host's own names and paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedWiring {
    /// Env vars (name, value), each from the allowed set.
    pub env: Vec<(String, String)>,
    /// Mount the store's Secret at [`SECRET_MOUNT`] (volume
    /// [`SECRET_VOLUME`]).
    pub store_secret: bool,
    /// The node directory (at or below the Local root) holding the
    /// namespaces' Local stores, mounted at [`LOCAL_MOUNT`].
    pub local_dir: Option<String>,
}

impl WiringPolicy {
    /// A policy whose Local stores live at or below `local_root` (an
    /// absolute, normalized node path).
    pub fn new(local_root: &str) -> Result<Self, String> {
        if !normalized_absolute(local_root) || local_root == "/" {
            return Err(format!(
                "the Local store root {local_root:?} must be an absolute path without '.', '..' \
                 or empty components, and not '/'"
            ));
        }
        Ok(Self {
            local_root: local_root.trim_end_matches('/').to_string(),
        })
    }

    /// The node directory under which Local stores live.
    pub fn local_root(&self) -> &str {
        &self.local_root
    }

    /// Checks a plugin's wiring for `request`; the error lists one problem
    /// per refused item.
    pub fn check(
        &self,
        request: WiringRequest<'_>,
        cfg: &SidecarConfig,
    ) -> Result<CheckedWiring, Vec<String>> {
        let mut problems = Vec::new();
        let mut out = CheckedWiring::default();
        if request.contract.credentials_required && !request.has_secret {
            problems.push(format!(
                "the provider needs credentials (read from {}): set the store's secretRef",
                request.contract.credential_variables.join(" or ")
            ));
        }

        if cfg.volumes.len() > MAX_VOLUMES {
            problems.push(format!(
                "{} volumes asked for; at most {MAX_VOLUMES} (the store Secret and one node \
                 directory)",
                cfg.volumes.len()
            ));
        }
        for v in cfg.volumes.iter().take(MAX_VOLUMES + 1) {
            match &v.source {
                VolumeSource::StoreSecret => {
                    if out.store_secret {
                        problems.push("the store Secret is mounted twice".into());
                    } else if v.mount_path != SECRET_MOUNT {
                        problems.push(format!(
                            "the store Secret's mount path {:?} is not the host's: mount it at \
                             {SECRET_MOUNT:?}",
                            echo(&v.mount_path)
                        ));
                    } else if !request.has_secret {
                        problems.push(
                            "the store Secret is mounted, but the spec names none: set the \
                             store's secretRef"
                                .into(),
                        );
                    } else {
                        out.store_secret = true;
                    }
                }
                VolumeSource::HostPath(path) => {
                    // The default root stands for the operator's configured
                    // one, so that the Local plugin serves any root.
                    let path = if path == DEFAULT_LOCAL_ROOT {
                        self.local_root.as_str()
                    } else {
                        path.as_str()
                    };
                    if out.local_dir.is_some() {
                        problems.push("a second node directory is asked for; one at most".into());
                    } else if !self.under_root(path) {
                        problems.push(format!(
                            "node directory {:?} is outside the operator's Local root {:?}: \
                             only that root (or a directory below it) may be mounted",
                            echo(path),
                            self.local_root
                        ));
                    } else if v.mount_path != LOCAL_MOUNT {
                        problems.push(format!(
                            "node directory mount path {:?} is not the host's: mount it at \
                             {LOCAL_MOUNT:?}",
                            echo(&v.mount_path)
                        ));
                    } else if !plain_name(request.container) {
                        problems.push(format!(
                            "container {:?} is not a plain directory name (letters, digits, \
                             '.', '_' and '-', not starting with '.')",
                            echo(request.container)
                        ));
                    } else {
                        out.local_dir = Some(path.trim_end_matches('/').to_string());
                    }
                }
            }
        }

        if cfg.env.len() > MAX_ENV {
            problems.push(format!(
                "{} env vars asked for; at most {MAX_ENV}",
                cfg.env.len()
            ));
        }
        for (name, value) in cfg.env.iter().take(MAX_ENV + 1) {
            if out.env.iter().any(|(n, _)| n == name) {
                problems.push(format!("env var {:?} is set twice", echo(name)));
                continue;
            }
            let wanted: Result<(), String> = match name.as_str() {
                "STORAGE_CONTAINER" => expect(name, value, request.container),
                "LOCAL_STORE_ROOT" => {
                    let cfg_has_dir = cfg
                        .volumes
                        .iter()
                        .any(|v| matches!(v.source, VolumeSource::HostPath(_)));
                    if cfg_has_dir {
                        expect(name, value, LOCAL_MOUNT)
                    } else {
                        Err("LOCAL_STORE_ROOT is set without a node directory".into())
                    }
                }
                n if credentials_variable_kind(n).is_some() => {
                    let json = credentials_variable_kind(n) == Some(true);
                    if !request.contract.credential_variables.iter().any(|v| v == n) {
                        Err(format!(
                            "{n} is not a credential variable of this provider's contract ({}): \
                             the sidecar would not read it; set one of those (the plugin's \
                             `contract` and `pod-config` disagree)",
                            if request.contract.credential_variables.is_empty() {
                                "it declares none".to_string()
                            } else {
                                request.contract.credential_variables.join(", ")
                            }
                        ))
                    } else if !cfg
                        .volumes
                        .iter()
                        .any(|v| v.source == VolumeSource::StoreSecret)
                    {
                        Err(format!(
                            "{n} points at the store Secret, which is not mounted"
                        ))
                    } else if json {
                        match value
                            .strip_prefix(SECRET_MOUNT)
                            .and_then(|f| f.strip_prefix('/'))
                        {
                            Some(file) if plain_name(file) => Ok(()),
                            _ => Err(format!(
                                "{n} is {:?}: it must name a file directly in {SECRET_MOUNT:?}",
                                echo(value)
                            )),
                        }
                    } else {
                        expect(name, value, SECRET_MOUNT)
                    }
                }
                _ => Err(format!(
                    "env var {:?} is not one the host sets: allowed are STORAGE_CONTAINER, \
                     LOCAL_STORE_ROOT and <PROVIDER>_APPLICATION_CREDENTIALS[_JSON]",
                    echo(name)
                )),
            };
            match wanted {
                Ok(()) => out.env.push((name.clone(), value.clone())),
                Err(p) => problems.push(p),
            }
        }

        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    fn under_root(&self, path: &str) -> bool {
        normalized_absolute(path)
            && (path.trim_end_matches('/') == self.local_root
                || path
                    .strip_prefix(&self.local_root)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

/// `Ok` when `value` is the one value the host allows for `name`.
fn expect(name: &str, value: &str, allowed: &str) -> Result<(), String> {
    if value == allowed {
        Ok(())
    } else {
        Err(format!(
            "env var {name} is {:?}; the host allows only {:?}",
            echo(value),
            echo(allowed)
        ))
    }
}

/// An absolute path without `.`, `..` or empty components (a trailing
/// `/` is allowed).
fn normalized_absolute(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    path.len() <= 4096
        && (rest.is_empty()
            || rest
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0')))
}

/// At most [`ECHO`] characters of a plugin's string, for a message.
fn echo(s: &str) -> &str {
    match s.char_indices().nth(ECHO) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::SidecarVolume;
    use super::*;

    fn secret() -> SidecarVolume {
        SidecarVolume {
            name: "whatever".into(),
            source: VolumeSource::StoreSecret,
            mount_path: SECRET_MOUNT.into(),
        }
    }

    fn dir(path: &str) -> SidecarVolume {
        SidecarVolume {
            name: "x".into(),
            source: VolumeSource::HostPath(path.into()),
            mount_path: LOCAL_MOUNT.into(),
        }
    }

    /// A contract declaring the credential variables the cases use.
    static CONTRACT: std::sync::LazyLock<StoreContract> =
        std::sync::LazyLock::new(|| StoreContract {
            credential_variables: vec![
                "AWS_APPLICATION_CREDENTIALS".into(),
                "GOOGLE_APPLICATION_CREDENTIALS_JSON".into(),
            ],
            ..StoreContract::default()
        });
    /// The Local provider's contract: no credentials.
    static NO_CREDENTIALS: std::sync::LazyLock<StoreContract> =
        std::sync::LazyLock::new(StoreContract::default);

    fn req(container: &str) -> WiringRequest<'_> {
        WiringRequest {
            container,
            has_secret: true,
            contract: &CONTRACT,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn the_s3_and_local_plugins_answers_pass() {
        let p = WiringPolicy::default();
        let s3 = SidecarConfig {
            env: env(&[
                ("STORAGE_CONTAINER", "bucket"),
                ("AWS_APPLICATION_CREDENTIALS", SECRET_MOUNT),
            ]),
            volumes: vec![secret()],
        };
        let w = p.check(req("bucket"), &s3).unwrap();
        assert!(w.store_secret);
        assert_eq!(w.local_dir, None);
        assert_eq!(w.env, s3.env);

        let local = SidecarConfig {
            env: env(&[
                ("STORAGE_CONTAINER", "default.bkp"),
                ("LOCAL_STORE_ROOT", LOCAL_MOUNT),
            ]),
            volumes: vec![dir(DEFAULT_LOCAL_ROOT)],
        };
        let w = p
            .check(
                WiringRequest {
                    container: "default.bkp",
                    has_secret: false,
                    contract: &NO_CREDENTIALS,
                },
                &local,
            )
            .unwrap();
        assert_eq!(w.local_dir.as_deref(), Some(DEFAULT_LOCAL_ROOT));
        assert!(!w.store_secret);
    }

    #[test]
    fn node_directories_outside_the_root_are_refused() {
        let p = WiringPolicy::new("/var/lib/druid/local").unwrap();
        for path in [
            "/",
            "/etc",
            "/var/lib/druid",
            "/var/lib/druid/local-other",
            "/var/lib/druid/local/../../../etc",
            "/var/lib/druid/local/./x",
            "var/lib/druid/local",
            "/var/lib/druid//local",
        ] {
            let cfg = SidecarConfig {
                env: Vec::new(),
                volumes: vec![dir(path)],
            };
            let e = p.check(req("b"), &cfg).unwrap_err();
            assert!(
                e[0].contains("outside the operator's Local root"),
                "{path}: {e:?}"
            );
        }
        let default = SidecarConfig {
            env: Vec::new(),
            volumes: vec![dir(DEFAULT_LOCAL_ROOT)],
        };
        assert_eq!(
            p.check(req("b"), &default).unwrap().local_dir.as_deref(),
            Some("/var/lib/druid/local")
        );
        let below = SidecarConfig {
            env: Vec::new(),
            volumes: vec![dir("/var/lib/druid/local/team-a/")],
        };
        assert_eq!(
            p.check(req("b"), &below).unwrap().local_dir.as_deref(),
            Some("/var/lib/druid/local/team-a")
        );
    }

    #[test]
    fn mount_paths_env_names_and_values_are_the_hosts() {
        let p = WiringPolicy::default();
        let cases: Vec<(SidecarConfig, &str)> = vec![
            (
                SidecarConfig {
                    env: Vec::new(),
                    volumes: vec![SidecarVolume {
                        mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                        ..secret()
                    }],
                },
                "mount path",
            ),
            (
                SidecarConfig {
                    env: Vec::new(),
                    volumes: vec![SidecarVolume {
                        mount_path: "/var/etcd/data".into(),
                        ..dir(DEFAULT_LOCAL_ROOT)
                    }],
                },
                "mount path",
            ),
            (
                SidecarConfig {
                    env: env(&[("LD_PRELOAD", "/tmp/x.so")]),
                    volumes: Vec::new(),
                },
                "not one the host sets",
            ),
            (
                SidecarConfig {
                    env: env(&[(
                        "AWS_APPLICATION_CREDENTIALS",
                        "/var/run/secrets/kubernetes.io/serviceaccount",
                    )]),
                    volumes: vec![secret()],
                },
                "the host allows only",
            ),
            (
                SidecarConfig {
                    env: env(&[("AWS_APPLICATION_CREDENTIALS", SECRET_MOUNT)]),
                    volumes: Vec::new(),
                },
                "not mounted",
            ),
            (
                SidecarConfig {
                    env: env(&[(
                        "GOOGLE_APPLICATION_CREDENTIALS_JSON",
                        "/var/etcd-backup/../token",
                    )]),
                    volumes: vec![secret()],
                },
                "directly in",
            ),
            (
                SidecarConfig {
                    env: env(&[("STORAGE_CONTAINER", "other-tenant")]),
                    volumes: Vec::new(),
                },
                "the host allows only",
            ),
            (
                SidecarConfig {
                    env: env(&[("STORAGE_CONTAINER", "b"), ("STORAGE_CONTAINER", "b")]),
                    volumes: Vec::new(),
                },
                "set twice",
            ),
            (
                SidecarConfig {
                    env: Vec::new(),
                    volumes: vec![secret(), secret()],
                },
                "mounted twice",
            ),
            (
                SidecarConfig {
                    env: Vec::new(),
                    volumes: vec![secret(), dir(DEFAULT_LOCAL_ROOT), dir(DEFAULT_LOCAL_ROOT)],
                },
                "at most 2",
            ),
        ];
        for (cfg, wanted) in cases {
            let e = p.check(req("b"), &cfg).unwrap_err();
            assert!(e.iter().any(|m| m.contains(wanted)), "{cfg:?}: {e:?}");
        }
        let json = SidecarConfig {
            env: env(&[(
                "GOOGLE_APPLICATION_CREDENTIALS_JSON",
                "/var/etcd-backup/serviceaccount.json",
            )]),
            volumes: vec![secret()],
        };
        assert!(p.check(req("b"), &json).is_ok());
    }

    #[test]
    fn a_secret_volume_needs_a_secret_and_a_local_store_a_plain_container() {
        let p = WiringPolicy::default();
        let cfg = SidecarConfig {
            env: Vec::new(),
            volumes: vec![secret()],
        };
        let e = p
            .check(
                WiringRequest {
                    container: "b",
                    has_secret: false,
                    contract: &NO_CREDENTIALS,
                },
                &cfg,
            )
            .unwrap_err();
        assert!(e[0].contains("names none"), "{e:?}");
        for container in [".", "..", ".hidden", "a/b", "", "a b"] {
            let cfg = SidecarConfig {
                env: Vec::new(),
                volumes: vec![dir(DEFAULT_LOCAL_ROOT)],
            };
            let e = p.check(req(container), &cfg).unwrap_err();
            assert!(
                e[0].contains("plain directory name"),
                "{container:?}: {e:?}"
            );
        }
    }

    #[test]
    fn credential_variables_are_the_contracts() {
        let p = WiringPolicy::default();
        // A variable the contract does not declare: the sidecar would not
        // read it, and the store would open without credentials.
        let cfg = SidecarConfig {
            env: env(&[("ACME_APPLICATION_CREDENTIALS", SECRET_MOUNT)]),
            volumes: vec![secret()],
        };
        let e = p.check(req("b"), &cfg).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(
                "ACME_APPLICATION_CREDENTIALS is not a credential variable of this \
                 provider's contract (AWS_APPLICATION_CREDENTIALS, \
                 GOOGLE_APPLICATION_CREDENTIALS_JSON)"
            ),
            "{e:?}"
        );
        // Credentials required and no Secret in the spec.
        let required = StoreContract {
            credentials_required: true,
            ..CONTRACT.clone()
        };
        let cfg = SidecarConfig {
            env: env(&[("STORAGE_CONTAINER", "b")]),
            volumes: Vec::new(),
        };
        let e = p
            .check(
                WiringRequest {
                    container: "b",
                    has_secret: false,
                    contract: &required,
                },
                &cfg,
            )
            .unwrap_err();
        assert!(
            e[0].contains(
                "needs credentials (read from AWS_APPLICATION_CREDENTIALS or \
                 GOOGLE_APPLICATION_CREDENTIALS_JSON): set the store's secretRef"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn the_root_itself_must_be_sound() {
        for bad in ["/", "", "relative", "/a/../b", "/a//b"] {
            assert!(WiringPolicy::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(WiringPolicy::new("/srv/b/").unwrap().local_root(), "/srv/b");
    }
}
