//! Store configuration: the store secret's access key, the OSS endpoint
//! and the region the requests are signed for, and how the bucket is
//! addressed. Pure logic, tested natively.

use druid_plugin_sdk::credential_value as value;
use druid_plugin_sdk::http::split_endpoint;
use druid_plugin_sdk::store::{StoreConfig, StoreContract, StoreError};

/// The `storageProvider` values this plugin serves, as upstream spells them.
pub const PROVIDERS: &[&str] = &["OSS", "alicloud"];

/// The prefix of the sidecar's `ALICLOUD_APPLICATION_CREDENTIALS[_JSON]`
/// (upstream's variable for OSS).
pub const ENV_PREFIX: &str = "ALICLOUD";

/// The secret key of the OSS endpoint (upstream's name).
pub const ENDPOINT_KEY: &str = "storageEndpoint";

/// The keys upstream requires.
pub const REQUIRED_KEYS: &[&str] = &["accessKeyID", "accessKeySecret", ENDPOINT_KEY];

/// Every key this plugin reads: upstream's, and `region` for endpoints
/// whose name does not tell it.
pub const KNOWN_KEYS: &[&str] = &["accessKeyID", "accessKeySecret", ENDPOINT_KEY, "region"];

/// The store contract: credentials from the store Secret (required), and
/// `storageEndpoint` as an endpoint the user chose (the host also allows
/// its virtual-hosted form `<bucket>.<endpoint>`). OSS has no endpoint
/// without one: upstream requires `storageEndpoint`.
pub fn contract() -> StoreContract {
    druid_plugin_sdk::secret_contract(ENV_PREFIX, true, &[ENDPOINT_KEY], &[])
}

/// An access key secret, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the endpoint came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointSource {
    /// `store.endpointOverride`.
    Override,
    /// The secret's `storageEndpoint`.
    Secret,
}

/// Where the region came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSource {
    /// The secret's `region`.
    Secret,
    /// The endpoint's name, `oss-<region>[-internal].aliyuncs.com`.
    Endpoint,
}

/// A parsed store configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `storageProvider` value.
    pub provider: String,
    /// The bucket.
    pub bucket: String,
    /// The AccessKey ID.
    pub access_key: String,
    /// The AccessKey secret.
    pub secret: Secret,
    /// The region signatures are scoped to, e.g. `cn-hangzhou`.
    pub region: String,
    /// Where `region` came from.
    pub region_source: RegionSource,
    /// `scheme://host[:port]` the bucket's requests go to: the endpoint
    /// with the bucket in front (virtual-hosted, as OSS requires), or the
    /// endpoint itself for path-style requests.
    pub origin: String,
    /// Whether object paths start with `/<bucket>` (an endpoint on an IP
    /// address or `localhost`: a gateway, never Alibaba's OSS).
    pub path_style: bool,
    /// The endpoint as configured, for messages.
    pub endpoint: String,
    /// Where `endpoint` came from.
    pub endpoint_source: EndpointSource,
    /// Things worth a warning in the log (never a credential).
    pub warnings: Vec<String>,
}

fn invalid(message: String) -> StoreError {
    StoreError::InvalidConfig(message)
}

/// Whether `name` is an OSS bucket name: 3 to 63 lower-case letters,
/// digits and hyphens, starting and ending with a letter or digit.
pub fn valid_bucket(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| alnum(b) || b == b'-')
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum)
}

/// Whether `region` looks like an Alibaba Cloud region id (`cn-hangzhou`,
/// `eu-central-1`, `ap-southeast-1`).
pub fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// The region in an OSS endpoint's host name:
/// `oss-<region>.aliyuncs.com` or `oss-<region>-internal.aliyuncs.com`
/// (with or without the bucket in front). `None` for other names
/// (`oss-accelerate.aliyuncs.com`, a custom domain, an IP address).
pub fn region_of_host(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let stem = host.strip_suffix(".aliyuncs.com")?;
    let label = stem.rsplit('.').next()?;
    let region = label.strip_prefix("oss-")?;
    let region = region.strip_suffix("-internal").unwrap_or(region);
    (valid_region(region) && !region.starts_with("accelerate") && region != "rg-china-mainland")
        .then(|| region.to_string())
}

/// Whether `host` is an IP address or `localhost`.
fn is_local(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok() || bare.eq_ignore_ascii_case("localhost")
}

/// The host of an origin `scheme://host[:port]` (an IPv6 host keeps its
/// brackets).
fn host_of(origin: &str) -> &str {
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Reads the configuration: the access key, the endpoint, the region and
/// the bucket's addressing.
pub fn parse(config: &StoreConfig) -> Result<Settings, StoreError> {
    let provider = config.provider.clone();
    let mut warnings = Vec::new();
    let access_key = value(config, "accessKeyID").ok_or_else(|| {
        invalid(format!(
            "the {provider} store secret has no `accessKeyID`: add the AccessKey ID of a RAM \
             user that may read and write the bucket"
        ))
    })?;
    let secret = value(config, "accessKeySecret").ok_or_else(|| {
        invalid(format!(
            "the {provider} store secret has no `accessKeySecret`: add the AccessKey secret of \
             `accessKeyID`"
        ))
    })?;
    let bucket = config.container.trim();
    if !valid_bucket(bucket) {
        return Err(invalid(format!(
            "store.container {bucket:?} is not an OSS bucket name (3 to 63 lower-case letters, \
             digits and hyphens, starting and ending with a letter or digit)"
        )));
    }

    let override_endpoint = config
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let secret_endpoint = value(config, ENDPOINT_KEY);
    let (endpoint, endpoint_source, setting) = match (override_endpoint, secret_endpoint) {
        (Some(e), secret) => {
            if secret.is_some() {
                warnings.push(format!(
                    "the {provider} store secret's `{ENDPOINT_KEY}` is ignored: \
                     store.endpointOverride is set"
                ));
            }
            (e, EndpointSource::Override, "store.endpointOverride")
        }
        (None, Some(e)) => (
            e,
            EndpointSource::Secret,
            "the store secret's `storageEndpoint`",
        ),
        (None, None) => {
            return Err(invalid(format!(
                "the {provider} store secret has no `{ENDPOINT_KEY}`: add the OSS endpoint of \
                 the bucket's region, e.g. oss-eu-central-1.aliyuncs.com"
            )));
        }
    };
    // Upstream's endpoints are often written without a scheme; OSS serves
    // https everywhere, so that is the default.
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let (origin, path) = split_endpoint(&with_scheme).map_err(|why| {
        invalid(format!(
            "{setting} {endpoint:?} {why}: give the OSS endpoint of the bucket's region, e.g. \
             oss-eu-central-1.aliyuncs.com or https://oss-eu-central-1.aliyuncs.com"
        ))
    })?;
    if !path.is_empty() {
        return Err(invalid(format!(
            "{setting} {endpoint:?} has a path: OSS endpoints are a host name only, e.g. \
             oss-eu-central-1.aliyuncs.com"
        )));
    }
    let host = host_of(&origin).to_string();
    let path_style = is_local(&host);
    let origin = if path_style {
        origin
    } else {
        let (scheme, authority) = origin.split_once("://").unwrap_or(("https", &origin));
        // An endpoint written with the bucket in front already.
        if authority.starts_with(&format!("{bucket}.")) {
            origin.clone()
        } else {
            format!("{scheme}://{bucket}.{authority}")
        }
    };
    if origin.starts_with("http://") && !path_style {
        warnings.push(format!(
            "{setting} {endpoint:?} is plain http: the bucket's data and the signed requests \
             cross the network unencrypted; use https"
        ));
    }

    let (region, region_source) = match value(config, "region") {
        Some(r) => {
            if !valid_region(r) {
                return Err(invalid(format!(
                    "the {provider} store secret's `region` {r:?} is not an Alibaba Cloud region \
                     id (e.g. cn-hangzhou, eu-central-1)"
                )));
            }
            if let Some(named) = region_of_host(&host).filter(|n| n != r) {
                warnings.push(format!(
                    "the {provider} store secret's `region` {r:?} differs from the region of the \
                     endpoint {host:?} ({named:?}); requests are signed for {r:?}"
                ));
            }
            (r.to_string(), RegionSource::Secret)
        }
        None => (
            region_of_host(&host).ok_or_else(|| {
                invalid(format!(
                    "the region of {setting} {endpoint:?} is unknown (OSS V4 signatures name the \
                     bucket's region): add `region` to the {provider} store secret, e.g. \
                     `region: cn-hangzhou`, or use the region's endpoint \
                     oss-<region>.aliyuncs.com"
                ))
            })?,
            RegionSource::Endpoint,
        ),
    };

    Ok(Settings {
        provider,
        bucket: bucket.to_string(),
        access_key: access_key.to_string(),
        secret: Secret(secret.to_string()),
        region,
        region_source,
        origin,
        path_style,
        endpoint: endpoint.to_string(),
        endpoint_source,
        warnings,
    })
}
