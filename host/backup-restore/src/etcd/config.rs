//! `/config`: this member's etcd configuration, rendered from the
//! cluster-wide configuration file the operator mounts.
//!
//! The file holds per-member maps for the advertised URLs
//! (`initial-advertise-peer-urls: {<member>: [urls]}`); this module picks
//! this member's entry, sets `name`, and adjusts `initial-cluster` and
//! `initial-cluster-state` to the live cluster, as upstream does.

use serde_yaml_ng::{Mapping, Value};

/// What the live cluster looks like, if it could be asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCluster {
    /// Names of the members in the member list.
    pub members: Vec<String>,
    /// Whether any member is a learner.
    pub has_learner: bool,
}

/// Why the configuration cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML, or not a mapping.
    #[error("the etcd configuration is not a YAML mapping: {0}")]
    Parse(String),
    /// This member has no entry in a per-member map.
    #[error("the etcd configuration's {field} has no entry for member {member:?}")]
    NoEntry {
        /// The field.
        field: &'static str,
        /// The member.
        member: String,
    },
}

fn key(k: &str) -> Value {
    Value::String(k.to_string())
}

/// Turns a per-member map (or a plain value) into this member's value.
fn pick(config: &mut Mapping, field: &'static str, member: &str) -> Result<(), ConfigError> {
    let Some(value) = config.get(key(field)).cloned() else {
        return Ok(());
    };
    let urls = match value {
        Value::Mapping(map) => {
            let entry = map.get(key(member)).ok_or_else(|| ConfigError::NoEntry {
                field,
                member: member.to_string(),
            })?;
            join(entry)
        }
        other => join(&other),
    };
    config.insert(key(field), Value::String(urls));
    Ok(())
}

fn join(v: &Value) -> String {
    match v {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(","),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// Renders the configuration of `member` from the cluster-wide `text`.
pub fn render(text: &str, member: &str, live: Option<&LiveCluster>) -> Result<String, ConfigError> {
    let mut config: Mapping =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    config.insert(key("name"), Value::String(member.to_string()));
    pick(&mut config, "initial-advertise-peer-urls", member)?;
    pick(&mut config, "advertise-client-urls", member)?;
    let cluster = config
        .get(key("initial-cluster"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let entries: Vec<&str> = cluster.split(',').filter(|s| !s.is_empty()).collect();
    if entries.len() > 1 {
        if let Some(live) = live {
            // Only members that exist (plus this one) may be named, or a
            // joining member would wait for peers that were never added.
            let kept: Vec<&str> = entries
                .iter()
                .copied()
                .filter(|e| {
                    let name = e.split('=').next().unwrap_or_default();
                    name == member || live.members.iter().any(|m| m == name)
                })
                .collect();
            config.insert(key("initial-cluster"), Value::String(kept.join(",")));
            let state = if live.has_learner { "existing" } else { "new" };
            config.insert(key("initial-cluster-state"), Value::String(state.into()));
        }
    } else {
        config.insert(key("initial-cluster-state"), Value::String("new".into()));
    }
    serde_yaml_ng::to_string(&config).map_err(|e| ConfigError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "name: etcd-config
data-dir: /var/etcd/data/new.etcd
initial-cluster-state: new
initial-cluster: test-0=http://test-0.test-peer.demo.svc:2380,test-1=http://test-1.test-peer.demo.svc:2380,test-2=http://test-2.test-peer.demo.svc:2380
initial-advertise-peer-urls:
  test-0:
  - http://test-0.test-peer.demo.svc:2380
  test-1:
  - http://test-1.test-peer.demo.svc:2380
advertise-client-urls:
  test-0:
  - http://test-0.test-peer.demo.svc:2379
  - http://other:2379
  test-1:
  - http://test-1.test-peer.demo.svc:2379
";

    fn parse(text: &str) -> Mapping {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn picks_this_members_urls_and_name() {
        let out = parse(&render(SEED, "test-0", None).unwrap());
        assert_eq!(out.get("name").unwrap().as_str(), Some("test-0"));
        assert_eq!(
            out.get("initial-advertise-peer-urls").unwrap().as_str(),
            Some("http://test-0.test-peer.demo.svc:2380")
        );
        assert_eq!(
            out.get("advertise-client-urls").unwrap().as_str(),
            Some("http://test-0.test-peer.demo.svc:2379,http://other:2379")
        );
        assert_eq!(
            out.get("data-dir").unwrap().as_str(),
            Some("/var/etcd/data/new.etcd")
        );
    }

    #[test]
    fn a_member_without_an_entry_is_an_error() {
        let err = render(SEED, "test-9", None).unwrap_err();
        assert!(err.to_string().contains("test-9"), "{err}");
        assert!(
            err.to_string().contains("initial-advertise-peer-urls"),
            "{err}"
        );
    }

    #[test]
    fn the_live_cluster_filters_initial_cluster_and_sets_the_state() {
        let live = LiveCluster {
            members: vec!["test-0".into()],
            has_learner: true,
        };
        let out = parse(&render(SEED, "test-1", Some(&live)).unwrap());
        assert_eq!(
            out.get("initial-cluster").unwrap().as_str(),
            Some(
                "test-0=http://test-0.test-peer.demo.svc:2380,test-1=http://test-1.test-peer.demo.svc:2380"
            )
        );
        assert_eq!(
            out.get("initial-cluster-state").unwrap().as_str(),
            Some("existing")
        );
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            render("- a\n- b\n", "m", None),
            Err(ConfigError::Parse(_))
        ));
    }
}

/// The member settings the initializer needs (restores, learner rejoins),
/// as this member's rendered configuration has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSettings {
    /// `name`.
    pub name: String,
    /// `initial-cluster` (`name=peerURL,…`).
    pub initial_cluster: Option<String>,
    /// `initial-cluster-token`.
    pub initial_cluster_token: Option<String>,
    /// This member's `initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
}

/// The `member-name-prefix` of the cluster-wide configuration `text`, if it
/// names one: the operator writes it there (as upstream's does) for an Etcd
/// with `spec.etcd.memberNamePrefix`, and names the members, their entries
/// in the per-member maps and their leases `<prefix>-<pod>`.
pub fn member_name_prefix(text: &str) -> Result<Option<String>, ConfigError> {
    let config: Mapping =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    Ok(config
        .get(key("member-name-prefix"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

/// Reads `member`'s settings from the cluster-wide configuration `text`.
pub fn member_settings(text: &str, member: &str) -> Result<MemberSettings, ConfigError> {
    let rendered = render(text, member, None)?;
    let config: Mapping =
        serde_yaml_ng::from_str(&rendered).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let text_of = |field: &str| {
        config
            .get(key(field))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(MemberSettings {
        name: member.to_string(),
        initial_cluster: text_of("initial-cluster"),
        initial_cluster_token: text_of("initial-cluster-token"),
        initial_advertise_peer_urls: text_of("initial-advertise-peer-urls")
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod member_settings_tests {
    use super::*;

    #[test]
    fn a_members_settings_come_from_its_entry() {
        let text = "name: x\ninitial-cluster: test-0=http://test-0.p:2380,test-1=http://test-1.p:2380\n\
                    initial-cluster-token: tok\ninitial-advertise-peer-urls:\n  test-0: [http://test-0.p:2380]\n  \
                    test-1: [http://test-1.p:2380]\n";
        let s = member_settings(text, "test-1").unwrap();
        assert_eq!(s.name, "test-1");
        assert_eq!(
            s.initial_cluster.as_deref(),
            Some("test-0=http://test-0.p:2380,test-1=http://test-1.p:2380")
        );
        assert_eq!(s.initial_cluster_token.as_deref(), Some("tok"));
        assert_eq!(s.initial_advertise_peer_urls, vec!["http://test-1.p:2380"]);
        assert!(member_settings(text, "test-9").is_err());
    }

    #[test]
    fn the_member_name_prefix_comes_from_the_configuration() {
        assert_eq!(
            member_name_prefix("member-name-prefix: main\nname: x\n").unwrap(),
            Some("main".to_string())
        );
        assert_eq!(member_name_prefix("name: x\n").unwrap(), None);
        assert_eq!(
            member_name_prefix("member-name-prefix: ''\n").unwrap(),
            None
        );
        assert!(member_name_prefix("- not a mapping").is_err());
    }
}
