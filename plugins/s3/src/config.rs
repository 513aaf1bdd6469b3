//! Store configuration: which provider family a `storageProvider` value
//! belongs to, and how the secret's keys become an endpoint, an addressing
//! style, a region and an access key. Pure logic, tested natively.

use druid_plugin_sdk::store::{StoreConfig, StoreError};
use rusty_s3::{Bucket, UrlStyle};

use crate::sts::WebIdentity;

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
            Family::Aws => {
                // Credentials are optional: without a Secret, the pod's
                // own web identity (IRSA's variables) is used.
                let mut c = druid_plugin_sdk::secret_contract(
                    "AWS",
                    false,
                    &["endpoint", "stsEndpoint", "AWS_ENDPOINT_URL_STS"],
                    &[
                        "https://s3.{region}.amazonaws.com",
                        "https://sts.{region}.amazonaws.com",
                        "https://{container}.s3.{region}.amazonaws.com",
                        "https://s3.amazonaws.com",
                        "https://{container}.s3.amazonaws.com",
                        // The pod's region, when the Secret names none.
                        "https://s3.{AWS_REGION}.amazonaws.com",
                        "https://sts.{AWS_REGION}.amazonaws.com",
                        "https://{container}.s3.{AWS_REGION}.amazonaws.com",
                    ],
                );
                c.credential_value_variables = POD_IDENTITY_VARIABLES
                    .iter()
                    .map(|(v, k)| ((*v).to_string(), (*k).to_string()))
                    .collect();
                c
            }
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
                "roleARN",
                "token",
                "stsEndpoint",
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
            (Family::Aws, "region") => &["region", "AWS_REGION"],
            (_, "region") => &["region"],
            (_, "s3ForcePathStyle") => &["s3ForcePathStyle"],
            (_, "roleARN") => &["roleARN"],
            (_, "token") => &["token"],
            _ => &[],
        }
    }
}

/// Secret keys that ask for features this plugin does not have yet. Each
/// entry: the keys, and why they are refused.
pub const UNSUPPORTED_KEYS: &[(&[&str], &str)] = &[(
    &["sseCustomerKey", "sseCustomerAlgorithm"],
    "server-side encryption with customer keys (`sseCustomerKey`, `sseCustomerAlgorithm`) is \
         not supported by the s3 plugin yet, and backups are not written unencrypted when it is \
         asked for: remove both keys to store without SSE-C, or use another provider",
)];

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
    /// How requests are signed.
    pub auth: Auth,
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

/// How a store's requests are signed.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// A long-lived access key (`accessKeyID`, `secretAccessKey`).
    Keys {
        /// The access key ID.
        access_key: String,
        /// The secret access key.
        secret_key: String,
    },
    /// Temporary credentials for a role, got with a web identity token
    /// (`roleARN`, `token`).
    WebIdentity(WebIdentity),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Keys { access_key, .. } => f
                .debug_struct("Keys")
                .field("access_key", access_key)
                .field("secret_key", &"<redacted>")
                .finish(),
            Auth::WebIdentity(identity) => identity.fmt(f),
        }
    }
}

impl Auth {
    /// The role assumed, for messages (none for an access key).
    pub fn role(&self) -> Option<&str> {
        match self {
            Auth::Keys { .. } => None,
            Auth::WebIdentity(identity) => Some(&identity.role_arn),
        }
    }
}

/// The official STS endpoint of `region`.
pub fn official_sts_endpoint(region: &str) -> String {
    format!("https://sts.{region}.amazonaws.com")
}

/// The pod's own web identity, as EKS's pod identity webhook (IRSA)
/// injects it: the role's ARN, the token file (read by the host, see the
/// contract), the region and an STS endpoint override. Each is a
/// credential key named after its variable.
pub const POD_IDENTITY_VARIABLES: &[(&str, &str)] = &[
    ("AWS_ROLE_ARN", "AWS_ROLE_ARN"),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN"),
    ("AWS_REGION", "AWS_REGION"),
    ("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_STS"),
];

/// Where web identity settings came from, for messages.
#[derive(Clone, Copy)]
enum IdentitySource {
    Secret,
    Pod,
}

impl IdentitySource {
    fn role(self) -> &'static str {
        match self {
            IdentitySource::Secret => "secret key `roleARN`",
            IdentitySource::Pod => "$AWS_ROLE_ARN",
        }
    }

    fn token(self) -> &'static str {
        match self {
            IdentitySource::Secret => "secret key `token`",
            IdentitySource::Pod => "the file $AWS_WEB_IDENTITY_TOKEN_FILE names",
        }
    }
}

/// An AWS store without any credentials: no Secret key (only the pod's
/// variables, if any) and no pod identity either.
fn no_credentials(config: &StoreConfig, family: Family) -> Option<StoreError> {
    let pod_identity = value(config, &["AWS_ROLE_ARN"]).is_some()
        || value(config, &["AWS_WEB_IDENTITY_TOKEN"]).is_some();
    let only_pod_variables = config
        .credentials
        .iter()
        .all(|(k, _)| k.starts_with("AWS_"));
    (family == Family::Aws && only_pod_variables && !pod_identity).then(|| {
        StoreError::InvalidConfig(format!(
            "the {} store has no credentials: reference a Secret (store.secretRef) with \
             `region` and `accessKeyID` + `secretAccessKey` or `roleARN` + `token`, or give \
             the pod a web identity ($AWS_ROLE_ARN and $AWS_WEB_IDENTITY_TOKEN_FILE, as EKS's \
             pod identity webhook sets them for a ServiceAccount annotated with \
             eks.amazonaws.com/role-arn)",
            config.provider
        ))
    })
}

/// Reads the credentials, in this order: the store secret's web identity
/// (`roleARN` + `token`, upstream's keys, AWS family only) or access key;
/// without either, the pod's web identity ([`POD_IDENTITY_VARIABLES`]).
fn parse_auth(
    config: &StoreConfig,
    family: Family,
    region: &str,
    warnings: &mut Vec<String>,
) -> Result<Auth, StoreError> {
    let provider = &config.provider;
    let role = value(config, &["roleARN"]);
    let token = value(config, &["token"]);
    let token_path = value(config, &["tokenPath"]);
    let has_key = value(config, family.names("accessKeyID")).is_some()
        || value(config, family.names("secretAccessKey")).is_some();
    let pod_role = value(config, &["AWS_ROLE_ARN"]);
    let pod_token = value(config, &["AWS_WEB_IDENTITY_TOKEN"]);
    let secret_identity = role.is_some() || token.is_some() || token_path.is_some();
    let (source, role, token) = if secret_identity {
        (IdentitySource::Secret, role, token)
    } else if has_key || family != Family::Aws {
        return access_key(config, family);
    } else if pod_role.is_some() || pod_token.is_some() {
        (IdentitySource::Pod, pod_role, pod_token)
    } else {
        return access_key(config, family);
    };
    if family != Family::Aws {
        return Err(StoreError::InvalidConfig(format!(
            "the {provider} store secret sets `roleARN`/`token`: web identity credentials are \
             served for providers S3, aws and stackit only; use `accessKeyID` and \
             `secretAccessKey`"
        )));
    }
    let Some((_, role_arn)) = role else {
        return Err(match source {
            IdentitySource::Secret => missing(
                config,
                family,
                "roleARN",
                "the role to assume with the token",
            ),
            IdentitySource::Pod => StoreError::InvalidConfig(
                "the pod has $AWS_WEB_IDENTITY_TOKEN_FILE but no $AWS_ROLE_ARN: set both (EKS's \
                 pod identity webhook does for a ServiceAccount annotated with \
                 eks.amazonaws.com/role-arn)"
                    .into(),
            ),
        });
    };
    if !role_arn.starts_with("arn:") || role_arn.split(':').count() < 6 {
        return Err(StoreError::InvalidConfig(format!(
            "{} is {role_arn:?}, which is not a role ARN: set it to the role's full ARN, e.g. \
             \"arn:aws:iam::123456789012:role/etcd-backup\"",
            source.role()
        )));
    }
    let Some((_, token)) = token else {
        return Err(StoreError::InvalidConfig(match (source, token_path) {
            (IdentitySource::Secret, Some(_)) => format!(
                "the {provider} store secret names the token by `tokenPath` (upstream's JSON \
                 form): this plugin reads no file outside the store secret; put the token into \
                 the secret as key `token` and mount the secret as a directory"
            ),
            (IdentitySource::Secret, None) => format!(
                "the {provider} store secret has `roleARN` but no `token` (the web identity \
                 token): add it to the secret"
            ),
            (IdentitySource::Pod, _) => "the pod has $AWS_ROLE_ARN but no \
                 $AWS_WEB_IDENTITY_TOKEN_FILE (or the file is empty): mount the service account \
                 token and name its file there"
                .into(),
        }));
    };
    if token.contains(char::is_whitespace) || token.split('.').count() != 3 {
        return Err(StoreError::InvalidConfig(format!(
            "{} is not a JSON web token (three base64url parts joined by '.'): it must hold the \
             service-account token itself",
            source.token()
        )));
    }
    if has_key {
        warnings.push(format!(
            "the {provider} store secret has both `roleARN` + `token` and an access key: the role \
             is assumed with the token, the access key is not used"
        ));
    }
    let endpoint_configured = config
        .endpoint
        .as_deref()
        .is_some_and(|e| !e.trim().is_empty())
        || value(config, family.names("endpoint")).is_some();
    let sts_endpoint = match value(config, &["stsEndpoint", "AWS_ENDPOINT_URL_STS"]) {
        Some((_, e)) if e.contains("://") => e.trim_end_matches('/').to_string(),
        Some((_, e)) => format!("https://{}", e.trim_end_matches('/')),
        // The host lets the plugin reach AWS's endpoints only when the
        // store has no endpoint of its own.
        None if endpoint_configured => {
            return Err(StoreError::InvalidConfig(format!(
                "the {provider} store has its own endpoint and a web identity, but no STS \
                 endpoint: set `stsEndpoint` in the store secret (or $AWS_ENDPOINT_URL_STS in \
                 the pod) to the STS that takes the token (e.g. \
                 \"https://sts.{region}.amazonaws.com\" for AWS, or the store's own endpoint for \
                 MinIO); the plugin reaches only endpoints the configuration names"
            )));
        }
        None => official_sts_endpoint(region),
    };
    if let Err(why) = endpoint_host(&sts_endpoint) {
        return Err(StoreError::InvalidConfig(format!(
            "the STS endpoint {sts_endpoint:?} (`stsEndpoint` or $AWS_ENDPOINT_URL_STS) is not a \
             usable endpoint: {why}: use scheme://host[:port], e.g. \
             https://sts.eu-west-1.amazonaws.com"
        )));
    }
    Ok(Auth::WebIdentity(WebIdentity {
        role_arn: role_arn.to_string(),
        token: token.to_string(),
        sts_endpoint,
    }))
}

/// An access key (`accessKeyID`, `secretAccessKey`, or ECS's variables).
fn access_key(config: &StoreConfig, family: Family) -> Result<Auth, StoreError> {
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

    Ok(Auth::Keys {
        access_key,
        secret_key,
    })
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

    if let Some(e) = no_credentials(config, family) {
        return Err(e);
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
    let auth = parse_auth(config, family, &region, &mut warnings)?;
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
        auth,
        warnings,
        incomplete_upload_expiry,
    };
    // Fail now, not on the first request, if the URL cannot be built.
    settings.bucket()?;
    Ok(settings)
}
