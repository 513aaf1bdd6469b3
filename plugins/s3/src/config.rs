//! Store configuration: which provider family a `storageProvider` value
//! belongs to, and how the secret's keys become an endpoint, an addressing
//! style, a region and an access key. Pure logic, tested natively.

use druid_plugin_sdk::store::{StoreConfig, StoreError};
use rusty_s3::{Bucket, UrlStyle};

/// The region ECS (Dell) stores use: ECS has no regions.
pub const ECS_REGION: &str = "US-Standard";

/// The provider families this plugin serves; each has its own secret keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// AWS S3 and S3-compatible stores configured like it (`S3`, `aws`,
    /// `stackit`).
    Aws,
    /// OpenShift Container Storage (`OCS`, `openshift`).
    Openshift,
    /// Dell ECS (`ECS`, `dell`).
    Ecs,
}

/// The `storageProvider` values this plugin serves, as upstream spells them.
pub const PROVIDERS: &[&str] = &["S3", "aws", "ECS", "dell", "OCS", "openshift", "stackit"];

impl Family {
    /// The family of a `storageProvider` value (case-sensitive, as upstream).
    pub fn of(provider: &str) -> Option<Family> {
        match provider {
            "S3" | "aws" | "stackit" => Some(Family::Aws),
            "OCS" | "openshift" => Some(Family::Openshift),
            "ECS" | "dell" => Some(Family::Ecs),
            _ => None,
        }
    }

    /// Like [`Family::of`], with an `invalid-config`-style message for
    /// providers this plugin does not serve.
    pub fn require(provider: &str) -> Result<Family, String> {
        Family::of(provider).ok_or_else(|| {
            format!(
                "storage provider {provider:?} is not served by the s3 plugin \
                 (it serves {}; names are case-sensitive)",
                PROVIDERS.join(", ")
            )
        })
    }

    /// The prefix of the sidecar's `<P>_APPLICATION_CREDENTIALS` variable.
    pub fn env_prefix(self) -> &'static str {
        match self {
            Family::Aws => "AWS",
            Family::Openshift => "OPENSHIFT",
            Family::Ecs => "ECS",
        }
    }

    /// The family's store contract: upstream's credentials variables
    /// (`AWS_`, `OPENSHIFT_`, `ECS_APPLICATION_CREDENTIALS[_JSON]`), the
    /// secret keys naming endpoints, ECS's single-value variables, and
    /// for AWS its regional endpoints.
    pub fn contract(self) -> druid_plugin_sdk::store::StoreContract {
        match self {
            Family::Aws => druid_plugin_sdk::secret_contract(
                "AWS",
                true,
                &["endpoint"],
                &[
                    "https://s3.{region}.amazonaws.com",
                    "https://{container}.s3.{region}.amazonaws.com",
                    "https://s3.amazonaws.com",
                    "https://{container}.s3.amazonaws.com",
                ],
            ),
            Family::Openshift => {
                druid_plugin_sdk::secret_contract("OPENSHIFT", true, &["endpoint"], &[])
            }
            Family::Ecs => {
                // ECS's credentials may come from upstream's ECS_* variables
                // alone, without a Secret.
                let mut c = druid_plugin_sdk::secret_contract(
                    "ECS",
                    false,
                    &["endpoint", "ECS_ENDPOINT"],
                    &[],
                );
                c.credential_value_variables = [
                    ("ECS_ENDPOINT", "endpoint"),
                    ("ECS_ACCESS_KEY_ID", "accessKeyID"),
                    ("ECS_SECRET_ACCESS_KEY", "secretAccessKey"),
                    ("ECS_DISABLE_SSL", "disableSSL"),
                    ("ECS_INSECURE_SKIP_VERIFY", "insecureSkipVerify"),
                ]
                .iter()
                .map(|(v, k)| ((*v).to_string(), (*k).to_string()))
                .collect();
                c
            }
        }
    }

    /// The secret keys that must be present, each with the alternative
    /// names that count for it.
    pub fn required_keys(self) -> &'static [&'static [&'static str]] {
        match self {
            Family::Aws => &[&["region"], &["accessKeyID"], &["secretAccessKey"]],
            Family::Openshift => &[
                &["endpoint"],
                &["region"],
                &["accessKeyID"],
                &["secretAccessKey"],
            ],
            Family::Ecs => &[
                &["endpoint", "ECS_ENDPOINT"],
                &["accessKeyID", "ECS_ACCESS_KEY_ID"],
                &["secretAccessKey", "ECS_SECRET_ACCESS_KEY"],
            ],
        }
    }

    /// Every plain key this family reads (required or optional).
    pub fn known_keys(self) -> &'static [&'static str] {
        match self {
            Family::Aws => &[
                "region",
                "accessKeyID",
                "secretAccessKey",
                "endpoint",
                "s3ForcePathStyle",
                "disableSSL",
                "insecureSkipVerify",
                "trustedCaCert",
                "incompleteUploadExpirySeconds",
            ],
            Family::Openshift => &[
                "endpoint",
                "region",
                "accessKeyID",
                "secretAccessKey",
                "disableSSL",
                "insecureSkipVerify",
                "incompleteUploadExpirySeconds",
            ],
            Family::Ecs => &[
                "endpoint",
                "ECS_ENDPOINT",
                "accessKeyID",
                "ECS_ACCESS_KEY_ID",
                "secretAccessKey",
                "ECS_SECRET_ACCESS_KEY",
                "disableSSL",
                "ECS_DISABLE_SSL",
                "insecureSkipVerify",
                "ECS_INSECURE_SKIP_VERIFY",
                "incompleteUploadExpirySeconds",
            ],
        }
    }

    /// The key names that count for `key` in this family
    /// (ECS accepts its upstream environment variable names too).
    fn names(self, key: &'static str) -> &'static [&'static str] {
        match (self, key) {
            (Family::Ecs, "endpoint") => &["endpoint", "ECS_ENDPOINT"],
            (Family::Ecs, "accessKeyID") => &["accessKeyID", "ECS_ACCESS_KEY_ID"],
            (Family::Ecs, "secretAccessKey") => &["secretAccessKey", "ECS_SECRET_ACCESS_KEY"],
            (Family::Ecs, "disableSSL") => &["disableSSL", "ECS_DISABLE_SSL"],
            (Family::Ecs, "insecureSkipVerify") => {
                &["insecureSkipVerify", "ECS_INSECURE_SKIP_VERIFY"]
            }
            (_, "endpoint") => &["endpoint"],
            (_, "accessKeyID") => &["accessKeyID"],
            (_, "secretAccessKey") => &["secretAccessKey"],
            (_, "disableSSL") => &["disableSSL"],
            (_, "insecureSkipVerify") => &["insecureSkipVerify"],
            (_, "region") => &["region"],
            (_, "s3ForcePathStyle") => &["s3ForcePathStyle"],
            _ => &[],
        }
    }
}

/// Secret keys that ask for features this plugin does not have yet. Each
/// entry: the keys, and why they are refused.
pub const UNSUPPORTED_KEYS: &[(&[&str], &str)] = &[
    (
        &["roleARN"],
        "web identity credentials (`roleARN` + `token`) are not supported by the s3 plugin yet: \
         use `accessKeyID` and `secretAccessKey` instead",
    ),
    (
        &["sseCustomerKey", "sseCustomerAlgorithm"],
        "server-side encryption with customer keys (`sseCustomerKey`, `sseCustomerAlgorithm`) is \
         not supported by the s3 plugin yet, and backups are not written unencrypted when it is \
         asked for: remove both keys to store without SSE-C, or use another provider",
    ),
];

/// Where the endpoint came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// The store's endpoint override in the Etcd spec.
    Spec,
    /// A key of the store secret.
    Secret(&'static str),
    /// AWS's official regional endpoint.
    Official,
}

impl std::fmt::Display for EndpointSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointSource::Spec => write!(f, "the store's endpoint override"),
            EndpointSource::Secret(key) => write!(f, "secret key `{key}`"),
            EndpointSource::Official => write!(f, "the official AWS endpoint"),
        }
    }
}

/// A store configuration, checked and resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The provider family.
    pub family: Family,
    /// The `storageProvider` value, as written.
    pub provider: String,
    /// The bucket.
    pub bucket: String,
    /// The signing region.
    pub region: String,
    /// The endpoint URL (`scheme://host[:port][/path]`).
    pub endpoint: String,
    /// Where the endpoint came from.
    pub endpoint_source: EndpointSource,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-hosted
    /// (`bucket.endpoint/key`) addressing.
    pub path_style: bool,
    /// The access key ID.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// Settings that are accepted but have no effect here; logged by `open`.
    pub warnings: Vec<String>,
    /// How old an unfinished multipart upload may get before a later upload
    /// aborts it (`incompleteUploadExpirySeconds`, default a day).
    pub incomplete_upload_expiry: std::time::Duration,
}

impl Settings {
    /// The rusty-s3 bucket for these settings.
    pub fn bucket(&self) -> Result<Bucket, StoreError> {
        let style = if self.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        // The endpoint's URL type is inferred from `Bucket::new` (rusty-s3
        // does not re-export `url`).
        match self.endpoint.parse() {
            Ok(url) => {
                Bucket::new(url, style, self.bucket.clone(), self.region.clone()).map_err(|e| {
                    StoreError::InvalidConfig(format!(
                        "bucket {:?} at {} ({}) cannot be addressed: {e}: check store.container{}",
                        self.bucket,
                        self.endpoint,
                        self.endpoint_source,
                        if self.path_style {
                            ""
                        } else {
                            " or set `s3ForcePathStyle` to \"true\" in the store secret"
                        }
                    ))
                })
            }
            Err(e) => Err(StoreError::InvalidConfig(format!(
                "{} {:?} is not a valid URL ({e}): use scheme://host[:port]",
                self.endpoint_source, self.endpoint
            ))),
        }
    }
}

/// A credential's value under the first of `names` that is set, trimmed
/// (secret files often end with a newline); empty values count as absent.
fn value<'a>(
    config: &'a StoreConfig,
    names: &'static [&'static str],
) -> Option<(&'static str, &'a str)> {
    names.iter().find_map(|name| {
        let v = druid_plugin_sdk::credential(config, name)?.trim();
        (!v.is_empty()).then_some((*name, v))
    })
}

/// Parses a boolean like Go's `strconv.ParseBool` (upstream's parser).
pub fn parse_bool(key: &str, v: &str) -> Result<bool, StoreError> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(StoreError::InvalidConfig(format!(
            "secret key `{key}` is {other:?}, not a boolean: set it to \"true\" or \"false\""
        ))),
    }
}

fn optional_bool(
    config: &StoreConfig,
    family: Family,
    key: &'static str,
) -> Result<bool, StoreError> {
    match value(config, family.names(key)) {
        Some((name, v)) => parse_bool(name, v),
        None => Ok(false),
    }
}

fn missing(config: &StoreConfig, family: Family, key: &'static str, what: &str) -> StoreError {
    let names = family.names(key);
    let keys = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" or ");
    StoreError::InvalidConfig(format!(
        "the {} store secret has no {keys} ({what}): add it to the secret",
        config.provider
    ))
}

/// The host part of an endpoint URL (without port or brackets), and
/// whether its scheme is https. Errors say what is wrong.
pub fn endpoint_host(endpoint: &str) -> Result<(String, bool), String> {
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| "it has no scheme".to_string())?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        other => return Err(format!("its scheme is {other:?}, not http or https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']')
            .map(|(h, _)| h)
            .ok_or_else(|| "its IPv6 address has no closing ']'".to_string())?
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("it has no host".to_string());
    }
    Ok((host.to_ascii_lowercase(), https))
}

/// Whether a host is an IP address or `localhost` (such endpoints cannot
/// carry the bucket in the host name).
pub fn is_ip_or_localhost(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
}

/// Whether `bucket` can be the first label of a host name (virtual-hosted
/// addressing). Over https a dot would break the certificate match, as
/// the AWS SDKs assume, so such names go path-style too.
pub fn dns_compatible(bucket: &str, https: bool) -> bool {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let edges = bucket
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    (3..=63).contains(&bucket.len())
        && ok_chars
        && edges
        && !bucket.contains("..")
        && bucket.parse::<std::net::Ipv4Addr>().is_err()
        && !(https && bucket.contains('.'))
}

/// Chooses the addressing style: path-style when forced, when the endpoint
/// host is an IP address or `localhost`, or when the bucket name cannot be
/// a host label; virtual-hosted otherwise.
pub fn choose_path_style(
    force_path_style: bool,
    endpoint_host: &str,
    https: bool,
    bucket: &str,
) -> bool {
    force_path_style || is_ip_or_localhost(endpoint_host) || !dns_compatible(bucket, https)
}

/// The official AWS endpoint of `region`.
pub fn official_endpoint(region: &str) -> String {
    format!("https://s3.{region}.amazonaws.com")
}

/// Checks and resolves a store configuration. No request is made.
pub fn parse(config: &StoreConfig) -> Result<Settings, StoreError> {
    let family = Family::require(&config.provider).map_err(StoreError::InvalidConfig)?;
    let bucket = config.container.trim().to_string();
    if bucket.is_empty() {
        return Err(StoreError::InvalidConfig(
            "store.container is empty: set it to the name of the bucket".into(),
        ));
    }
    if bucket.contains('/') {
        return Err(StoreError::InvalidConfig(format!(
            "store.container {bucket:?} contains '/': set it to the bucket name alone \
             (put the path into store.prefix)"
        )));
    }

    for (keys, why) in UNSUPPORTED_KEYS {
        let present: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| {
                druid_plugin_sdk::credential(config, k).is_some_and(|v| !v.trim().is_empty())
            })
            .collect();
        if !present.is_empty() {
            let named = present
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(StoreError::InvalidConfig(format!(
                "the {} store secret sets {named}: {why}",
                config.provider
            )));
        }
    }

    let access_key = match value(config, family.names("accessKeyID")) {
        Some((_, v)) => v.to_string(),
        None => return Err(missing(config, family, "accessKeyID", "the access key ID")),
    };
    let secret_key = match value(config, family.names("secretAccessKey")) {
        Some((_, v)) => v.to_string(),
        None => {
            return Err(missing(
                config,
                family,
                "secretAccessKey",
                "the secret access key",
            ));
        }
    };

    let region = match family {
        Family::Ecs => ECS_REGION.to_string(),
        Family::Aws | Family::Openshift => match value(config, family.names("region")) {
            Some((_, v)) => v.to_string(),
            None => return Err(missing(config, family, "region", "the bucket's region")),
        },
    };
    if !region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(StoreError::InvalidConfig(format!(
            "secret key `region` is {region:?}, which is not a region name: \
             set it to the bucket's region, e.g. \"eu-west-1\""
        )));
    }

    let disable_ssl = optional_bool(config, family, "disableSSL")?;
    let mut warnings = Vec::new();
    if optional_bool(config, family, "insecureSkipVerify")? {
        warnings.push(format!(
            "the {} store secret sets `insecureSkipVerify`: the plugin host always verifies TLS \
             certificates, so the setting has no effect",
            config.provider
        ));
    }
    if value(config, &["trustedCaCert"]).is_some() {
        warnings.push(format!(
            "the {} store secret sets `trustedCaCert`: the plugin host verifies TLS with its own \
             trust store, so the certificate is not used",
            config.provider
        ));
    }

    let spec_endpoint = config
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let (raw_endpoint, endpoint_source) =
        match (spec_endpoint, value(config, family.names("endpoint"))) {
            (Some(e), _) => (Some(e.to_string()), EndpointSource::Spec),
            (None, Some((name, e))) => (Some(e.to_string()), EndpointSource::Secret(name)),
            (None, None) => (None, EndpointSource::Official),
        };
    let endpoint = match raw_endpoint {
        Some(e) if e.contains("://") => e,
        // Like the AWS SDK's DisableSSL: a scheme-less endpoint is https
        // unless SSL is disabled.
        Some(e) => format!("{}://{e}", if disable_ssl { "http" } else { "https" }),
        None => match family {
            Family::Aws => official_endpoint(&region),
            Family::Openshift | Family::Ecs => {
                return Err(missing(config, family, "endpoint", "the store's URL"));
            }
        },
    };
    let (host, https) = endpoint_host(&endpoint).map_err(|why| {
        StoreError::InvalidConfig(format!(
            "{endpoint_source} {endpoint:?} is not a usable endpoint: {why}: \
             use scheme://host[:port], e.g. https://s3.example.com"
        ))
    })?;

    let force_path_style = match family {
        Family::Aws => optional_bool(config, family, "s3ForcePathStyle")?,
        Family::Openshift | Family::Ecs => true,
    };
    let path_style = choose_path_style(force_path_style, &host, https, &bucket);
    let incomplete_upload_expiry = match value(config, &["incompleteUploadExpirySeconds"]) {
        None => crate::incomplete::DEFAULT_EXPIRY,
        Some((key, v)) => v.parse::<u64>().map(std::time::Duration::from_secs).map_err(|_| {
            StoreError::InvalidConfig(format!(
                "secret key `{key}` is {v:?}, not a number of seconds: set it to e.g. \"86400\" \
                 (a day), or remove it"
            ))
        })?,
    };

    let settings = Settings {
        family,
        provider: config.provider.clone(),
        bucket,
        region,
        endpoint,
        endpoint_source,
        path_style,
        access_key,
        secret_key,
        warnings,
        incomplete_upload_expiry,
    };
    // Fail now, not on the first request, if the URL cannot be built.
    settings.bucket()?;
    Ok(settings)
}
