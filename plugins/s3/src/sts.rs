//! Web identity credentials: the store secret's `roleARN` and `token` (a
//! service-account token projected by Kubernetes, or written there by a
//! token requestor) exchanged for temporary credentials through STS
//! `AssumeRoleWithWebIdentity`, as upstream's AWS SDK does with its
//! `TokenPath`. The request carries no signature (the token is the proof);
//! the answer is an access key, a secret and a session token that expire.
//! Pure logic (request body, answer, errors), tested natively; the client
//! sends the request and keeps the credentials until shortly before they
//! expire.

use druid_plugin_sdk::http::encode;
use druid_plugin_sdk::retry::Attempt;
use druid_plugin_sdk::store::StoreError;
use druid_plugin_sdk::time::parse_iso8601;
use rusty_s3::Credentials;

use crate::errors::element;

/// The STS API version of the request.
const VERSION: &str = "2011-06-15";

/// The session name sent with every exchange (STS wants one; it shows up in
/// the role session's ARN and in CloudTrail).
pub const SESSION_NAME: &str = "druid-etcd-backup";

/// A role to assume with a web identity token.
#[derive(Clone, PartialEq, Eq)]
pub struct WebIdentity {
    /// The role's ARN (secret key `roleARN`).
    pub role_arn: String,
    /// The token (secret key `token`): a credential, never logged.
    pub token: String,
    /// The STS endpoint (`scheme://host[:port]`).
    pub sts_endpoint: String,
}

impl std::fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebIdentity")
            .field("role_arn", &self.role_arn)
            .field("token", &"<redacted>")
            .field("sts_endpoint", &self.sts_endpoint)
            .finish()
    }
}

impl WebIdentity {
    /// The URL the exchange is posted to.
    pub fn url(&self) -> String {
        format!("{}/", self.sts_endpoint.trim_end_matches('/'))
    }

    /// The form body of `AssumeRoleWithWebIdentity` (no `DurationSeconds`:
    /// the service's default, an hour on AWS).
    pub fn request_body(&self) -> String {
        format!(
            "Action=AssumeRoleWithWebIdentity&Version={VERSION}&RoleArn={}&RoleSessionName={}\
             &WebIdentityToken={}",
            encode(&self.role_arn, false),
            encode(SESSION_NAME, false),
            encode(self.token.trim(), false),
        )
    }
}

/// Temporary credentials from STS.
#[derive(Clone)]
pub struct Temporary {
    /// The access key, secret and session token.
    pub credentials: Credentials,
    /// When they expire (Unix seconds).
    pub expires: i64,
}

impl Temporary {
    /// Whether they have more than `margin` seconds left at `now`.
    pub fn fresh(&self, now: i64, margin: i64) -> bool {
        self.expires - margin > now
    }
}

/// Reads the credentials of an `AssumeRoleWithWebIdentityResponse`. The
/// error never quotes the answer (it holds secrets).
pub fn parse_response(xml: &str) -> Result<Temporary, String> {
    if !xml.contains("<Credentials>") {
        return Err(
            "the answer has no <Credentials> element (is the endpoint an STS service?)".into(),
        );
    }
    // The fields' names occur once in the answer, inside <Credentials>.
    let field = |name: &str| {
        element(xml, name).ok_or_else(|| format!("the answer's <Credentials> have no <{name}>"))
    };
    let key = field("AccessKeyId")?;
    let secret = field("SecretAccessKey")?;
    let session = field("SessionToken")?;
    let expiration = field("Expiration")?;
    let expires = parse_iso8601(&expiration)
        .ok_or_else(|| format!("the answer's <Expiration> {expiration:?} is not a UTC time"))?;
    Ok(Temporary {
        credentials: Credentials::new_with_token(key, secret, session),
        expires,
    })
}

/// Maps a refused exchange to a `store-error` that says what to fix;
/// throttling and server errors are retried.
pub fn classify(status: u16, body: &str, identity: &WebIdentity) -> Attempt<StoreError> {
    let code = element(body, "Code").unwrap_or_default();
    let message = element(body, "Message");
    let detail = match (code.as_str(), &message) {
        ("", None) => format!("HTTP {status}"),
        ("", Some(m)) => format!("HTTP {status}: {m}"),
        (c, None) => format!("HTTP {status} {c}"),
        (c, Some(m)) => format!("HTTP {status} {c}: {m}"),
    };
    let what = format!(
        "assume role {:?} with the web identity token at {}",
        identity.role_arn, identity.sts_endpoint
    );
    let hint = match code.as_str() {
        "ExpiredTokenException" | "ExpiredToken" => {
            "the token in the store secret's `token` key has expired: whoever writes it (a \
             projected service-account token, a token requestor) must renew it"
        }
        "InvalidIdentityToken" | "IDPRejectedClaim" => {
            "the identity provider or the role does not accept the token: check that the \
             token's issuer is registered as an OIDC provider, and that its audience and subject \
             match the role's trust policy"
        }
        "AccessDenied" | "AccessDeniedException" => {
            "the role's trust policy does not let this token assume it: check `roleARN` and the \
             trust policy's conditions"
        }
        "InvalidParameterValue" | "ValidationError" | "MalformedInput" => {
            "check `roleARN` (the role's full ARN) and `token` in the store secret"
        }
        "RegionDisabledException" => {
            "STS is not active in this region: activate it for the account, or set `stsEndpoint` \
             to a region where it is"
        }
        _ => "check `roleARN`, `token` and `stsEndpoint` in the store secret",
    };
    let error = format!("{what}: STS refused it ({detail}): {hint}");
    match (status, code.as_str()) {
        (429 | 500..=599, _) | (_, "Throttling" | "IDPCommunicationError") => {
            Attempt::Retry(StoreError::Unavailable(error))
        }
        (404, _) => Attempt::Fail(StoreError::InvalidConfig(format!(
            "{what}: the endpoint answered HTTP 404, it is not an STS service: set `stsEndpoint` \
             in the store secret to the STS endpoint"
        ))),
        _ => Attempt::Fail(StoreError::AccessDenied(error)),
    }
}

/// Whether an S3 error code says the temporary credentials are no longer
/// taken (expired or revoked), so that new ones may help.
pub fn renew_on(code: &str) -> bool {
    matches!(
        code,
        "ExpiredToken" | "InvalidToken" | "InvalidTokenId" | "TokenRefreshRequired"
    )
}
