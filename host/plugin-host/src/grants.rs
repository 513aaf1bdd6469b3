//! What a plugin may reach: the HTTP destinations of its store, and for a
//! `Local` store its directory. Everything else is refused.
//!
//! Destinations are compared as parsed authorities (scheme, host, port),
//! never as string prefixes, and every request is checked, so a redirect to
//! another host (which the plugin would have to follow with a new request)
//! is refused too.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::{StoreConfig, canonical_provider, plain_name};
use crate::contract::StoreContract;
use crate::redact::Redactor;

/// One allowed HTTP destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Authority {
    /// `http` or `https`.
    pub scheme: String,
    /// The host name or address, lower case.
    pub host: String,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
}

impl Authority {
    /// Parses the authority of `url` (`scheme://host[:port][/...]`).
    pub fn from_url(url: &str) -> Option<Self> {
        let uri: http::Uri = url.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        Some(Self {
            port: uri.port_u16().unwrap_or(default_port),
            scheme,
            host,
        })
    }

    fn with_host(&self, host: String) -> Self {
        Self {
            scheme: self.scheme.clone(),
            host,
            port: self.port,
        }
    }
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// What a plugin's store grants.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// HTTP destinations the plugin may reach.
    pub http: Vec<Authority>,
    /// A host directory preopened as `/` (the Local store's container).
    pub dir: Option<PathBuf>,
    /// Hides the store's credentials in what the plugin says.
    pub redactor: Redactor,
}

impl Grants {
    /// Nothing at all (used for `describe` and the pod wiring).
    pub fn none() -> Self {
        Self::default()
    }

    /// The grants for `config` under its provider's `contract`: its
    /// endpoints, and its directory for a Local store.
    pub fn for_store(config: &StoreConfig, contract: &StoreContract) -> Self {
        // Only a plain name: `..`, `/etc` or `a/../../b` would reach outside
        // the root (or another tenant's container).
        let dir = (canonical_provider(&config.provider) == "Local"
            && plain_name(&config.container))
        .then(|| {
            config
                .local_root
                .as_ref()
                .map(|root| root.join(&config.container))
        })
        .flatten()
        .filter(|d| d.is_dir());
        Self {
            http: allowed_authorities(config, contract),
            dir,
            redactor: Redactor::for_credentials(&config.credentials),
        }
    }

    pub(crate) fn describe_dir(&self) -> String {
        match &self.dir {
            Some(d) => format!("the store directory {}", d.display()),
            None => "nothing".into(),
        }
    }

    /// The WASI context: no env, args, stdio, sockets or name lookup; the
    /// store directory as `/` if granted.
    pub(crate) fn wasi_ctx(&self) -> wasmtime::Result<WasiCtx> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = &self.dir {
            builder.preopened_dir(dir, "/", FsPerms::ReadWrite)?;
        }
        Ok(builder.build())
    }

    pub(crate) fn http_gate(&self, plugin: &str) -> HttpGate {
        HttpGate {
            plugin: plugin.to_string(),
            allowed: Arc::new(self.http.clone()),
            refused: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

/// Every HTTP destination `config` allows under its provider's
/// `contract`: the endpoint override, the values of the contract's
/// endpoint keys (the user's configuration, trusted like the override),
/// and, without an override, the contract's official endpoints. For each
/// configured endpoint the virtual-hosted form `<container>.<host>` is
/// allowed too. No provider is known to the host by name.
pub fn allowed_authorities(config: &StoreConfig, contract: &StoreContract) -> Vec<Authority> {
    let mut configured: Vec<Authority> = Vec::new();
    let mut add_url = |url: &str| {
        // Endpoints are often written without a scheme (OSS's are).
        let url = url.trim();
        let url = if url.contains("://") {
            url.to_string()
        } else {
            format!("https://{url}")
        };
        if let Some(a) = Authority::from_url(&url) {
            configured.push(a);
        }
    };
    if let Some(endpoint) = &config.endpoint {
        add_url(endpoint);
    }
    for key in &contract.endpoint_keys {
        if let Some(v) = config.credential(key).filter(|v| !v.trim().is_empty()) {
            add_url(v);
        }
    }
    let mut all = Vec::new();
    let bucket = config.container.to_ascii_lowercase();
    for a in configured {
        let is_ip = a.host.parse::<std::net::IpAddr>().is_ok();
        if !bucket.is_empty() && !is_ip {
            all.push(a.with_host(format!("{bucket}.{}", a.host)));
        }
        all.push(a);
    }
    if config.endpoint.is_none() {
        all.extend(
            contract
                .official_hosts(config)
                .into_iter()
                .map(|host| Authority {
                    scheme: "https".into(),
                    host,
                    port: 443,
                }),
        );
    }
    all.sort();
    all.dedup();
    all
}

/// The `wasi:http` hooks of one store: every outgoing request is checked
/// against the allowed destinations before a connection is made.
pub(crate) struct HttpGate {
    plugin: String,
    allowed: Arc<Vec<Authority>>,
    refused: Arc<Mutex<Vec<String>>>,
}

impl HttpGate {
    pub(crate) fn refused(&self) -> Vec<String> {
        self.refused.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn allows(&self, uri: &http::Uri) -> Result<(), String> {
        let Some(target) = Authority::from_url(&uri.to_string()) else {
            return Err(format!(
                "{} (not an http(s) URL with a host)",
                crate::redact::redact_urls(&uri.to_string())
            ));
        };
        if self.allowed.contains(&target) {
            Ok(())
        } else {
            Err(target.to_string())
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> ResponseFuture {
        if let Err(target) = self.allows(request.uri()) {
            tracing::warn!(
                plugin = %self.plugin,
                destination = %target,
                allowed = ?self.allowed.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "refused a plugin's HTTP request: the destination is not the store's endpoint"
            );
            if let Ok(mut r) = self.refused.lock() {
                r.push(target);
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let hooks: &mut dyn WasiHttpHooks = Default::default();
        hooks.send_request(request, options, fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(provider: &str, endpoint: Option<&str>, creds: &[(&str, &str)]) -> StoreConfig {
        StoreConfig {
            provider: provider.into(),
            container: "backups".into(),
            prefix: "etcd-main".into(),
            endpoint: endpoint.map(Into::into),
            credentials: creds
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>(),
            local_root: None,
        }
    }

    fn strings(a: &[Authority]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    /// A contract like the S3 plugin's.
    fn s3_contract() -> StoreContract {
        StoreContract::check(crate::contract::DeclaredContract {
            credential_variables: vec!["AWS_APPLICATION_CREDENTIALS".into()],
            credentials_required: true,
            credential_value_variables: vec![],
            endpoint_keys: vec!["endpoint".into()],
            official_endpoints: vec![
                "https://s3.{region}.amazonaws.com".into(),
                "https://{container}.s3.{region}.amazonaws.com".into(),
            ],
        })
        .unwrap()
    }

    #[test]
    fn an_endpoint_override_is_the_only_destination() {
        let c = config(
            "S3",
            Some("http://127.0.0.1:9000"),
            &[("region", "eu-west-1")],
        );
        assert_eq!(
            strings(&allowed_authorities(&c, &s3_contract())),
            vec!["http://127.0.0.1:9000"]
        );
        let c = config(
            "aws",
            Some("https://minio.example.com"),
            &[("region", "eu-west-1")],
        );
        assert_eq!(
            strings(&allowed_authorities(&c, &s3_contract())),
            vec![
                "https://backups.minio.example.com:443",
                "https://minio.example.com:443"
            ]
        );
    }

    #[test]
    fn without_an_endpoint_the_contracts_official_endpoints_are_reached() {
        let c = config("aws", None, &[("region", "eu-west-1")]);
        assert_eq!(
            strings(&allowed_authorities(&c, &s3_contract())),
            vec![
                "https://backups.s3.eu-west-1.amazonaws.com:443",
                "https://s3.eu-west-1.amazonaws.com:443"
            ]
        );
    }

    #[test]
    fn only_the_contracts_endpoint_keys_count_and_no_contract_grants_nothing() {
        let c = config(
            "Acme",
            None,
            &[
                ("storeURL", "http://10.0.0.7:8080/"),
                ("endpoint", "https://elsewhere.example.com"),
            ],
        );
        let contract = StoreContract::check(crate::contract::DeclaredContract {
            endpoint_keys: vec!["storeURL".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            strings(&allowed_authorities(&c, &contract)),
            vec!["http://10.0.0.7:8080"]
        );
        assert!(allowed_authorities(&c, &StoreContract::default()).is_empty());
    }

    #[test]
    fn authorities_compare_parsed_not_as_prefixes() {
        let gate = Grants {
            http: vec![Authority::from_url("http://127.0.0.1:9000").unwrap()],
            dir: None,
            redactor: crate::redact::Redactor::default(),
        }
        .http_gate("t");
        let ok: http::Uri = "http://127.0.0.1:9000/bucket?x=1".parse().unwrap();
        assert!(gate.allows(&ok).is_ok());
        for bad in [
            "http://127.0.0.1:9001/bucket",
            "https://127.0.0.1:9000/bucket",
            "http://127.0.0.1.evil.com:9000/",
            "http://evil.com:9000/127.0.0.1:9000",
        ] {
            let uri: http::Uri = bad.parse().unwrap();
            assert!(gate.allows(&uri).is_err(), "{bad} must be refused");
        }
    }
}
