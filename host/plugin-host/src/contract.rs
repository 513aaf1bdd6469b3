//! The store contract a provider plugin declares for each of its
//! `storageProvider` values (WIT `object-store.contract`): where a store's
//! credentials come from and which hosts it may call. The host keeps no
//! table of its own for any provider; it reads the contract when the
//! plugin is loaded and checks it here, before any store is opened:
//!
//! - credential variables are `<NAME>_APPLICATION_CREDENTIALS[_JSON]`;
//! - value variables start with the `<NAME>_` of a credential variable, so
//!   a plugin reads no other part of the sidecar's environment;
//! - endpoint keys are plain key names;
//! - official endpoints are `https://` templates on port 443 with no path,
//!   whose placeholders (`{container}`, `{<credential key>}`) stand for
//!   whole DNS labels and whose last two labels are literal and not an
//!   internal domain, so no value of a store's configuration can move the
//!   destination to another domain.

use crate::config::StoreConfig;

/// Most entries in each of a contract's lists.
pub const MAX_CONTRACT_ENTRIES: usize = 32;
/// Longest string in a contract.
pub const MAX_CONTRACT_STRING: usize = 256;

/// Domains a plugin may not declare as its official endpoints: they name
/// the machine, the cluster or a private network, never a provider's
/// service.
const INTERNAL_SUFFIXES: &[&str] = &[
    "localhost",
    "local",
    "internal",
    "svc",
    "cluster.local",
    "localdomain",
    "home.arpa",
    "in-addr.arpa",
    "ip6.arpa",
];

/// A provider's store contract, as the plugin declared it and the host
/// checked it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreContract {
    /// Variables holding the credentials' path, the first one set winning.
    pub credential_variables: Vec<String>,
    /// Whether a store needs credentials.
    pub credentials_required: bool,
    /// Variables read as single credential keys: (variable, key).
    pub credential_value_variables: Vec<(String, String)>,
    /// Credential keys whose values are endpoints the user chose.
    pub endpoint_keys: Vec<String>,
    /// The provider's own endpoints, as templates.
    pub official_endpoints: Vec<EndpointTemplate>,
}

/// One official endpoint: `https://` and DNS labels, each literal or a
/// placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointTemplate {
    /// The template as declared.
    pub declared: String,
    labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    Literal(String),
    /// `{container}` or `{<credential key>}`.
    Placeholder(String),
}

/// The contract as the plugin returned it, before the host's checks.
#[derive(Debug, Clone, Default)]
pub struct DeclaredContract {
    /// See [`StoreContract::credential_variables`].
    pub credential_variables: Vec<String>,
    /// See [`StoreContract::credentials_required`].
    pub credentials_required: bool,
    /// See [`StoreContract::credential_value_variables`].
    pub credential_value_variables: Vec<(String, String)>,
    /// See [`StoreContract::endpoint_keys`].
    pub endpoint_keys: Vec<String>,
    /// The templates of [`StoreContract::official_endpoints`].
    pub official_endpoints: Vec<String>,
}

/// `Some(json)` for `<NAME>_APPLICATION_CREDENTIALS[_JSON]`, where `NAME`
/// is 1 to 32 of `A-Z`, `0-9` and `_`, starting with a letter and not
/// ending with `_`; `None` for any
/// other name.
pub fn credentials_variable_kind(name: &str) -> Option<bool> {
    let (prefix, json) = if let Some(p) = name.strip_suffix("_APPLICATION_CREDENTIALS_JSON") {
        (p, true)
    } else {
        (name.strip_suffix("_APPLICATION_CREDENTIALS")?, false)
    };
    let mut chars = prefix.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    (first_ok
        && prefix.len() <= 32
        && !prefix.ends_with('_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
    .then_some(json)
}

/// Whether `s` is a DNS label: 1 to 63 of `a-z`, `0-9`, `-`, not starting
/// or ending with `-`.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` is a plain key or variable name: 1 to
/// [`MAX_CONTRACT_STRING`] printable ASCII characters, no space, `/`, `=`
/// or braces.
fn plain_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CONTRACT_STRING
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'=' | b'{' | b'}'))
}

/// Shows a declared string in a problem, cut and with control characters
/// escaped.
fn shown(s: &str) -> String {
    format!("{:?}", crate::limits::truncate(s, 80))
}

impl EndpointTemplate {
    /// Parses and checks a declared template.
    fn parse(declared: &str) -> Result<Self, String> {
        let problem = |why: &str| {
            format!(
                "official endpoint {}: {why}; declare `https://<host>` whose labels are literal \
                 or `{{container}}`/`{{<credential key>}}`, the last two literal",
                shown(declared)
            )
        };
        if declared.len() > MAX_CONTRACT_STRING {
            return Err(problem("too long"));
        }
        let Some(rest) = declared.strip_prefix("https://") else {
            return Err(problem("not https"));
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        let host = host.strip_suffix(":443").unwrap_or(host);
        if host.contains(['/', '?', '#', '@', ':']) {
            return Err(problem(
                "only a host is allowed (no path, query, user or port other than 443)",
            ));
        }
        let labels: Vec<Label> = host
            .split('.')
            .map(
                |l| match l.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
                    Some(name) if plain_key(name) => Ok(Label::Placeholder(name.to_string())),
                    Some(_) => Err(problem("a placeholder names no valid key")),
                    None if dns_label(l) => Ok(Label::Literal(l.to_string())),
                    None => Err(problem(&format!(
                        "label {} is neither a lower-case DNS label nor a placeholder",
                        shown(l)
                    ))),
                },
            )
            .collect::<Result<_, _>>()?;
        let literal_tail: Vec<&str> = labels
            .iter()
            .rev()
            .take(2)
            .filter_map(|l| match l {
                Label::Literal(s) => Some(s.as_str()),
                Label::Placeholder(_) => None,
            })
            .collect();
        if labels.len() < 2 || literal_tail.len() < 2 {
            return Err(problem(
                "the last two labels must be literal (the provider's domain)",
            ));
        }
        let tld = literal_tail[0];
        if tld.bytes().all(|b| b.is_ascii_digit()) {
            return Err(problem("an IP address is not a provider's endpoint"));
        }
        let literal_suffix = labels
            .iter()
            .rev()
            .map_while(|l| match l {
                Label::Literal(s) => Some(s.as_str()),
                Label::Placeholder(_) => None,
            })
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(".");
        if let Some(internal) = INTERNAL_SUFFIXES
            .iter()
            .find(|s| literal_suffix == **s || literal_suffix.ends_with(&format!(".{s}")))
        {
            return Err(problem(&format!(
                "{internal} is an internal domain, not a provider's"
            )));
        }
        Ok(Self {
            declared: declared.to_string(),
            labels,
        })
    }

    /// The host this template gives for `config`, lower-cased, or why it
    /// gives none (a placeholder's value is missing or not a DNS label).
    pub fn host_for(&self, config: &StoreConfig) -> Result<String, String> {
        let mut out = Vec::with_capacity(self.labels.len());
        for label in &self.labels {
            match label {
                Label::Literal(s) => out.push(s.clone()),
                Label::Placeholder(name) => {
                    let value = if name == "container" {
                        Some(config.container.as_str())
                    } else {
                        config.credential(name)
                    };
                    let value = value.unwrap_or_default().trim().to_ascii_lowercase();
                    if !dns_label(&value) {
                        return Err(format!(
                            "{{{name}}} is {} in this store's configuration, not a DNS label",
                            if value.is_empty() {
                                "empty or missing"
                            } else {
                                "set"
                            }
                        ));
                    }
                    out.push(value);
                }
            }
        }
        Ok(out.join("."))
    }
}

impl StoreContract {
    /// Checks a declared contract; the error lists one problem per entry
    /// that breaks the rules.
    pub fn check(declared: DeclaredContract) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let too_many = |what: &str, n: usize, problems: &mut Vec<String>| {
            if n > MAX_CONTRACT_ENTRIES {
                problems.push(format!(
                    "{n} {what} declared; at most {MAX_CONTRACT_ENTRIES}"
                ));
            }
        };
        too_many(
            "credential variables",
            declared.credential_variables.len(),
            &mut problems,
        );
        too_many(
            "credential value variables",
            declared.credential_value_variables.len(),
            &mut problems,
        );
        too_many("endpoint keys", declared.endpoint_keys.len(), &mut problems);
        too_many(
            "official endpoints",
            declared.official_endpoints.len(),
            &mut problems,
        );

        for v in declared
            .credential_variables
            .iter()
            .take(MAX_CONTRACT_ENTRIES)
        {
            if credentials_variable_kind(v).is_none() {
                problems.push(format!(
                    "credential variable {} is not <NAME>_APPLICATION_CREDENTIALS[_JSON] (NAME: \
                     A-Z, 0-9 and _, starting with a letter, at most 32)",
                    shown(v)
                ));
            }
        }
        if declared.credentials_required && declared.credential_variables.is_empty() {
            problems.push("credentials are required but no credential variable is declared".into());
        }
        let prefixes: Vec<String> = declared
            .credential_variables
            .iter()
            .filter_map(|v| {
                let name = v
                    .strip_suffix("_APPLICATION_CREDENTIALS_JSON")
                    .or_else(|| v.strip_suffix("_APPLICATION_CREDENTIALS"))?;
                Some(format!("{name}_"))
            })
            .collect();
        for (var, key) in declared
            .credential_value_variables
            .iter()
            .take(MAX_CONTRACT_ENTRIES)
        {
            let var_ok = plain_key(var)
                && var
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !var_ok || !prefixes.iter().any(|p| var.starts_with(p.as_str())) {
                problems.push(format!(
                    "credential value variable {} must be upper case and start with the NAME_ of \
                     a declared credential variable ({})",
                    shown(var),
                    if prefixes.is_empty() {
                        "none is declared".to_string()
                    } else {
                        prefixes.join(", ")
                    }
                ));
            }
            if !plain_key(key) {
                problems.push(format!(
                    "credential value variable {}: key {} is not a plain key name",
                    shown(var),
                    shown(key)
                ));
            }
        }
        for k in declared.endpoint_keys.iter().take(MAX_CONTRACT_ENTRIES) {
            if !plain_key(k) {
                problems.push(format!("endpoint key {} is not a plain key name", shown(k)));
            }
        }
        let mut official = Vec::new();
        for t in declared
            .official_endpoints
            .iter()
            .take(MAX_CONTRACT_ENTRIES)
        {
            match EndpointTemplate::parse(t) {
                Ok(t) => official.push(t),
                Err(p) => problems.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            credential_variables: declared.credential_variables,
            credentials_required: declared.credentials_required,
            credential_value_variables: declared.credential_value_variables,
            endpoint_keys: declared.endpoint_keys,
            official_endpoints: official,
        })
    }

    /// The hosts of the official endpoints for `config` (each a DNS name
    /// reached with https on port 443); a template whose placeholders have
    /// no usable value is skipped, and said at debug level.
    pub fn official_hosts(&self, config: &StoreConfig) -> Vec<String> {
        self.official_endpoints
            .iter()
            .filter_map(|t| match t.host_for(config) {
                Ok(h) => Some(h),
                Err(why) => {
                    tracing::debug!(template = %t.declared, %why, "official endpoint not used for this store");
                    None
                }
            })
            .collect()
    }

    /// The contract as `druid plugin test` and logs show it.
    pub fn summary(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        format!(
            "credentials from {}{}; endpoint keys: {}; official endpoints: {}",
            list(&self.credential_variables),
            if self.credentials_required {
                " (required)"
            } else {
                ""
            },
            list(&self.endpoint_keys),
            list(
                &self
                    .official_endpoints
                    .iter()
                    .map(|t| t.declared.clone())
                    .collect::<Vec<_>>()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn declared(official: &[&str]) -> DeclaredContract {
        DeclaredContract {
            credential_variables: vec![
                "AWS_APPLICATION_CREDENTIALS_JSON".into(),
                "AWS_APPLICATION_CREDENTIALS".into(),
            ],
            credentials_required: true,
            credential_value_variables: vec![],
            endpoint_keys: vec!["endpoint".into()],
            official_endpoints: official.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    fn config(container: &str, creds: &[(&str, &str)]) -> StoreConfig {
        StoreConfig {
            provider: "S3".into(),
            container: container.into(),
            prefix: String::new(),
            endpoint: None,
            credentials: creds
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>(),
            local_root: None,
        }
    }

    #[test]
    fn placeholders_fill_whole_labels_from_the_store() {
        let c = StoreContract::check(declared(&[
            "https://{container}.s3.{region}.amazonaws.com",
            "https://s3.amazonaws.com:443",
        ]))
        .unwrap();
        let hosts = c.official_hosts(&config("Backups", &[("region", "EU-West-1")]));
        assert_eq!(
            hosts,
            vec!["backups.s3.eu-west-1.amazonaws.com", "s3.amazonaws.com"]
        );
        // A value that is not one DNS label never reaches the host name:
        // it could move the destination to another domain.
        let hosts = c.official_hosts(&config("b", &[("region", "evil.com/x")]));
        assert_eq!(hosts, vec!["s3.amazonaws.com"]);
        let hosts = c.official_hosts(&config("a.b", &[("region", "eu-west-1")]));
        assert_eq!(hosts, vec!["s3.amazonaws.com"]);
    }

    #[test]
    fn templates_that_could_leave_the_providers_domain_are_refused() {
        for (bad, why) in [
            ("http://s3.amazonaws.com", "not https"),
            ("https://s3.amazonaws.com/path", "only a host"),
            ("https://s3.amazonaws.com:8443", "only a host"),
            ("https://user@s3.amazonaws.com", "only a host"),
            ("https://{endpoint}", "last two labels"),
            ("https://s3.{domain}", "last two labels"),
            ("https://{region}.com", "last two labels"),
            ("https://x.{a}.amazonaws.com.{b}", "last two labels"),
            ("https://127.0.0.1", "IP address"),
            ("https://metadata.google.internal", "internal domain"),
            ("https://api.default.svc.cluster.local", "internal domain"),
            ("https://foo.localhost", "internal domain"),
            ("https://{a b}.example.com", "placeholder"),
            ("https://S3.example.com", "lower-case DNS label"),
        ] {
            let e = StoreContract::check(declared(&[bad])).unwrap_err();
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].contains(why), "{bad}: {e:?}");
            assert!(e[0].contains(&format!("{bad:?}")), "{bad}: {e:?}");
        }
    }

    #[test]
    fn variables_and_keys_follow_the_rules() {
        let mut d = declared(&[]);
        d.credential_variables = vec!["HOME".into(), "ECS_APPLICATION_CREDENTIALS".into()];
        d.credential_value_variables = vec![
            ("ECS_ENDPOINT".into(), "endpoint".into()),
            ("KUBERNETES_SERVICE_HOST".into(), "endpoint".into()),
            ("ECS_X".into(), "a=b".into()),
        ];
        d.endpoint_keys = vec!["".into(), "authURL".into()];
        let e = StoreContract::check(d).unwrap_err();
        assert!(
            e.iter()
                .any(|p| p.contains("\"HOME\" is not <NAME>_APPLICATION_CREDENTIALS")),
            "{e:?}"
        );
        assert!(e.iter().any(|p| p.contains("\"KUBERNETES_SERVICE_HOST\" must be upper case and start with the NAME_ of a declared credential variable (ECS_)")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("key \"a=b\"")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("endpoint key \"\"")), "{e:?}");
        assert!(!e.iter().any(|p| p.contains("ECS_ENDPOINT")), "{e:?}");
        assert_eq!(e.len(), 4, "{e:?}");

        let mut d = declared(&[]);
        d.credential_variables.clear();
        let e = StoreContract::check(d).unwrap_err();
        assert!(
            e[0].contains("required but no credential variable"),
            "{e:?}"
        );

        let mut d = declared(&[]);
        d.endpoint_keys = (0..40).map(|i| format!("k{i}")).collect();
        let e = StoreContract::check(d).unwrap_err();
        assert!(
            e[0].contains("40 endpoint keys declared; at most 32"),
            "{e:?}"
        );
    }

    #[test]
    fn credential_variable_names() {
        assert_eq!(
            credentials_variable_kind("AWS_APPLICATION_CREDENTIALS"),
            Some(false)
        );
        assert_eq!(
            credentials_variable_kind("GOOGLE_APPLICATION_CREDENTIALS_JSON"),
            Some(true)
        );
        assert_eq!(
            credentials_variable_kind("ACME2_APPLICATION_CREDENTIALS"),
            Some(false)
        );
        assert_eq!(
            credentials_variable_kind("ACME_STORE_APPLICATION_CREDENTIALS"),
            Some(false)
        );
        assert_eq!(
            credentials_variable_kind("ACME__APPLICATION_CREDENTIALS"),
            None
        );
        assert_eq!(
            credentials_variable_kind("2ACME_APPLICATION_CREDENTIALS"),
            None
        );
        assert_eq!(
            credentials_variable_kind("acme_APPLICATION_CREDENTIALS"),
            None
        );
        assert_eq!(credentials_variable_kind("_APPLICATION_CREDENTIALS"), None);
        assert_eq!(credentials_variable_kind("PATH"), None);
    }
}
