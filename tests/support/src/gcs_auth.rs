//! A test stand-in for Google's OAuth2 token endpoint, and a gate in front
//! of fake-gcs-server that lets through only requests with a token it
//! issued. (Google's token endpoint cannot run here and fake-gcs-server
//! takes any request: together they prove that the GCS plugin runs the
//! JWT bearer flow and sends the token it got on every request.)
//!
//! `POST /token` takes `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//! and an `assertion` (RFC 7523): a JWT signed RS256 with the test service
//! account's key, naming the account (`iss`), the storage scope, this
//! endpoint (`aud`), and a current `iat`/`exp`. It answers a fresh token,
//! or `400 invalid_grant` saying what is wrong.
//!
//! `POST /v1/token` stands in for Google's STS (workload identity
//! federation): a token exchange (RFC 8693) of a subject token that the
//! OIDC test issuer signed (`druid_test_support::OidcIssuer`'s key), not
//! expired, for the pool provider [`GCS_TEST_POOL`]; it answers a
//! federated token, or `400 invalid_grant`. `POST
//! /v1/projects/-/serviceAccounts/<account>:generateAccessToken` with a
//! federated token answers the account's token (impersonation).
//!
//! Every other request must carry `Authorization: Bearer <issued token>`
//! (else `401`) and is passed on to the upstream server byte for byte, one
//! request per connection.

use std::io::BufReader;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rsa::pkcs1v15::VerifyingKey;
use sha2::Sha256;

use crate::Result;
use crate::gate::{self, Issued, form, forward, now, read_body, read_head, respond, verify_jwt};

/// The test service account's key (tests/support/testdata/README.md).
pub const GCS_TEST_KEY: &str = include_str!("../testdata/gcs-test-key.pem");

/// The test service account's e-mail.
pub const GCS_TEST_ACCOUNT: &str = "etcd-backup@druid-tests.iam.gserviceaccount.com";

/// The workload identity pool provider the test STS serves (the
/// `audience` of an `external_account`).
pub const GCS_TEST_POOL: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/druid/providers/test";

/// The scope the gate wants in an assertion.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

#[derive(Default)]
struct State {
    issued: Issued,
    token_requests: AtomicUsize,
    refused_assertions: AtomicUsize,
    passed: AtomicUsize,
    refused_requests: AtomicUsize,
    exchanges: AtomicUsize,
    refused_exchanges: AtomicUsize,
    impersonations: AtomicUsize,
}

/// The token endpoint and the gate, on one loopback port.
pub struct GcsAuthGate {
    endpoint: String,
    state: Arc<State>,
}

impl GcsAuthGate {
    /// Starts the gate in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Result<Self> {
        let upstream = upstream
            .strip_prefix("http://")
            .unwrap_or(upstream)
            .trim_end_matches('/')
            .to_string();
        let keys = Arc::new(Keys {
            account: gate::verifier(GCS_TEST_KEY, "GCS test")?,
            issuer: gate::verifier(crate::OIDC_TEST_KEY, "OIDC test")?,
        });
        let state = Arc::new(State::default());
        let endpoint = gate::start("GCS auth gate", |endpoint| {
            let (state, token_uri) = (Arc::clone(&state), Arc::new(format!("{endpoint}/token")));
            move |stream| {
                let _ = serve(stream, &state, &keys, &token_uri, &upstream);
            }
        })?;
        Ok(Self { endpoint, state })
    }

    /// The gate's endpoint, to use as the store's endpoint override.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The token endpoint, the service account's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.endpoint)
    }

    /// The test service account's key file fields for this gate, as the
    /// plugin gets them from a `serviceaccount.json`.
    pub fn service_account(&self) -> Vec<(String, String)> {
        vec![
            ("type".into(), "service_account".into()),
            ("project_id".into(), "druid-tests".into()),
            ("private_key_id".into(), "test-key-1".into()),
            ("private_key".into(), GCS_TEST_KEY.into()),
            ("client_email".into(), GCS_TEST_ACCOUNT.into()),
            ("token_uri".into(), self.token_uri()),
        ]
    }

    /// Token requests received.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Assertions refused (bad signature, wrong account, ...).
    pub fn refused_assertions(&self) -> usize {
        self.state.refused_assertions.load(Ordering::SeqCst)
    }

    /// Requests passed on with a valid token.
    pub fn passed(&self) -> usize {
        self.state.passed.load(Ordering::SeqCst)
    }

    /// Requests refused for want of a valid token.
    pub fn refused_requests(&self) -> usize {
        self.state.refused_requests.load(Ordering::SeqCst)
    }

    /// The token URL of the test STS (an `external_account`'s `token_url`).
    pub fn sts_token_url(&self) -> String {
        format!("{}/v1/token", self.endpoint)
    }

    /// The `generateAccessToken` URL of the test service account.
    pub fn impersonation_url(&self) -> String {
        format!(
            "{}/v1/projects/-/serviceAccounts/{GCS_TEST_ACCOUNT}:generateAccessToken",
            self.endpoint
        )
    }

    /// Token exchanges granted.
    pub fn exchanges(&self) -> usize {
        self.state.exchanges.load(Ordering::SeqCst)
    }

    /// Token exchanges refused.
    pub fn refused_exchanges(&self) -> usize {
        self.state.refused_exchanges.load(Ordering::SeqCst)
    }

    /// Service account tokens issued for a federated token.
    pub fn impersonations(&self) -> usize {
        self.state.impersonations.load(Ordering::SeqCst)
    }

    /// Forgets every token issued (as if they had expired).
    pub fn revoke_all(&self) {
        self.state.issued.forget_all();
    }
}

/// The keys the gate checks signatures with.
struct Keys {
    /// The test service account's (JWT bearer assertions).
    account: VerifyingKey<Sha256>,
    /// The OIDC test issuer's (subject tokens of a token exchange).
    issuer: VerifyingKey<Sha256>,
}

fn serve(
    mut client: TcpStream,
    state: &State,
    keys: &Keys,
    token_uri: &str,
    upstream: &str,
) -> std::io::Result<()> {
    let verifier = &keys.account;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    if head.method == "POST" && head.path == "/v1/token" {
        let body = read_body(&head, &mut reader)?;
        return match check_exchange(&body, &keys.issuer) {
            Ok(()) => {
                state.exchanges.fetch_add(1, Ordering::SeqCst);
                let answer = serde_json::json!({
                    "access_token": state.issued.issue("federated"),
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "token_type": "Bearer", "expires_in": 3600
                });
                respond(&mut client, "200 OK", &answer.to_string())
            }
            Err(why) => {
                state.refused_exchanges.fetch_add(1, Ordering::SeqCst);
                let answer = serde_json::json!({
                    "error": "invalid_grant", "error_description": why
                });
                respond(&mut client, "400 Bad Request", &answer.to_string())
            }
        };
    }
    if head.method == "POST" && head.path.ends_with(":generateAccessToken") {
        let _ = read_body(&head, &mut reader)?;
        let account =
            format!("/v1/projects/-/serviceAccounts/{GCS_TEST_ACCOUNT}:generateAccessToken");
        if head.path != account || !state.issued.carried_by(&head) {
            let answer = r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#;
            return respond(&mut client, "403 Forbidden", answer);
        }
        state.impersonations.fetch_add(1, Ordering::SeqCst);
        let answer = serde_json::json!({
            "accessToken": state.issued.issue("impersonated"),
            "expireTime": "2099-01-01T00:00:00Z"
        });
        return respond(&mut client, "200 OK", &answer.to_string());
    }
    if head.method == "POST" && head.path == "/token" {
        state.token_requests.fetch_add(1, Ordering::SeqCst);
        let body = read_body(&head, &mut reader)?;
        return match check_token_request(&body, verifier, token_uri) {
            Ok(()) => {
                let answer = serde_json::json!({
                    "access_token": state.issued.issue("token"), "expires_in": 3599,
                    "token_type": "Bearer"
                });
                respond(&mut client, "200 OK", &answer.to_string())
            }
            Err(why) => {
                state.refused_assertions.fetch_add(1, Ordering::SeqCst);
                let answer = serde_json::json!({
                    "error": "invalid_grant", "error_description": why
                });
                respond(&mut client, "400 Bad Request", &answer.to_string())
            }
        };
    }
    if !state.issued.carried_by(&head) {
        state.refused_requests.fetch_add(1, Ordering::SeqCst);
        let answer = r#"{"error":{"code":401,"message":"Invalid Credentials","errors":[{"reason":"authError"}]}}"#;
        return respond(&mut client, "401 Unauthorized", answer);
    }
    state.passed.fetch_add(1, Ordering::SeqCst);
    let path = head.path.clone();
    forward(client, reader, &head, upstream, &path, &[])
}

/// Checks a token exchange as Google's STS does (for what matters here):
/// the grant and token types, the pool provider, and a subject token
/// signed RS256 by the OIDC test issuer that has not expired.
fn check_exchange(body: &[u8], issuer: &VerifyingKey<Sha256>) -> std::result::Result<(), String> {
    let form = form(body);
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
        return Err("grant_type is not the token exchange grant".into());
    }
    if field("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" {
        return Err("subject_token_type is not a JWT".into());
    }
    if field("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token" {
        return Err("requested_token_type is not an access token".into());
    }
    if field("audience") != GCS_TEST_POOL {
        return Err(format!(
            "audience {:?} is not a known pool provider",
            field("audience")
        ));
    }
    let (_, claims) = verify_jwt(
        field("subject_token"),
        issuer,
        "The subject token's signature is not the issuer's.",
    )?;
    let now = now();
    if claims["exp"].as_i64().unwrap_or(0) <= now {
        return Err("The subject token has expired.".into());
    }
    Ok(())
}

/// Checks a token request as Google's endpoint does (for what matters
/// here): the grant type, the RS256 signature with the test key, and the
/// claims.
fn check_token_request(
    body: &[u8],
    verifier: &VerifyingKey<Sha256>,
    token_uri: &str,
) -> std::result::Result<(), String> {
    let form = form(body);
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return Err("grant_type is not the JWT bearer grant".into());
    }
    let jwt = form.get("assertion").ok_or("no assertion")?;
    let (alg, claims) = verify_jwt(jwt, verifier, "Invalid JWT Signature.")?;
    if alg != "RS256" {
        return Err(format!("alg is {alg}"));
    }
    let now = now();
    let iat = claims["iat"].as_i64().unwrap_or(0);
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if claims["iss"] != GCS_TEST_ACCOUNT {
        return Err(format!("iss is {}", claims["iss"]));
    }
    if claims["aud"] != token_uri {
        return Err(format!("aud is {}, not {token_uri}", claims["aud"]));
    }
    if claims["scope"] != SCOPE {
        return Err(format!("scope is {}", claims["scope"]));
    }
    if iat > now + 60 || exp <= now || exp - iat > 3600 {
        return Err(format!("iat {iat} and exp {exp} do not hold {now}"));
    }
    Ok(())
}
