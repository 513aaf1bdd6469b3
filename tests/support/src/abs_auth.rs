//! A test stand-in for Microsoft Entra ID's token endpoint, and a gate in
//! front of Azurite that lets through only requests with a token it
//! issued (a fake, named as such: Entra ID cannot run here, and Azurite
//! takes OAuth tokens only over https without checking who issued them).
//! Together they prove that the ABS plugin runs the workload identity
//! flow and sends the token it got on every request.
//!
//! `POST /<tenant>/oauth2/v2.0/token` takes the client credentials grant
//! with a client assertion, as Azure Workload Identity uses it: `client_id`
//! [`ABS_TEST_CLIENT_ID`], tenant [`ABS_TEST_TENANT_ID`], scope
//! `https://storage.azure.com/.default`, and a `client_assertion` that the
//! OIDC test issuer signed (`druid_test_support::OidcIssuer`'s key), not
//! expired, for audience `api://AzureADTokenExchange`. It answers a
//! token, or `400`/`401` with Entra ID's error fields.
//!
//! Every other request must carry `Authorization: Bearer <issued token>`
//! (else `401`, as the Blob service answers) and is passed on to Azurite
//! with a container SAS instead (the path-style URL's container).

use std::io::BufReader;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rsa::pkcs1v15::VerifyingKey;
use sha2::Sha256;

use crate::gate::{self, Head, Issued, forward, read_body, read_head, respond, verify_jwt};
use crate::{AzuriteServer, Result};

/// The workload identity's client ID the test endpoint knows.
pub const ABS_TEST_CLIENT_ID: &str = "6f1d3c2a-0000-4000-8000-00000000d1d0";

/// The tenant the test endpoint serves.
pub const ABS_TEST_TENANT_ID: &str = "72f988bf-0000-4000-8000-00000000a2a1";

/// The audience Azure Workload Identity's projected tokens carry.
pub const AZURE_TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";

#[derive(Default)]
struct State {
    issued: Issued,
    tokens: AtomicUsize,
    refused_assertions: AtomicUsize,
    passed: AtomicUsize,
    refused_requests: AtomicUsize,
}

/// The token endpoint and the gate, on one loopback port.
pub struct AbsAuthGate {
    endpoint: String,
    state: Arc<State>,
}

impl AbsAuthGate {
    /// Starts the gate in front of `azurite`.
    pub fn start(azurite: &'static AzuriteServer) -> Result<Self> {
        let issuer = Arc::new(gate::verifier(crate::OIDC_TEST_KEY, "OIDC test")?);
        let state = Arc::new(State::default());
        let endpoint = gate::start("ABS auth gate", |_| {
            let state = Arc::clone(&state);
            move |stream| {
                let _ = serve(stream, &state, &issuer, azurite);
            }
        })?;
        Ok(Self { endpoint, state })
    }

    /// The authority host (`$AZURE_AUTHORITY_HOST`).
    pub fn authority(&self) -> String {
        format!("{}/", self.endpoint)
    }

    /// The blob endpoint of Azurite's account through the gate (the store's
    /// endpoint override).
    pub fn blob_endpoint(&self, azurite: &AzuriteServer) -> String {
        format!("{}/{}", self.endpoint, azurite.account())
    }

    /// Tokens issued.
    pub fn tokens(&self) -> usize {
        self.state.tokens.load(Ordering::SeqCst)
    }

    /// Token requests refused.
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
}

fn serve(
    mut client: TcpStream,
    state: &State,
    issuer: &VerifyingKey<Sha256>,
    azurite: &AzuriteServer,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    if head.method == "POST" && head.path.ends_with("/oauth2/v2.0/token") {
        let body = read_body(&head, &mut reader)?;
        return match check_token_request(&head.path, &body, issuer) {
            Ok(()) => {
                state.tokens.fetch_add(1, Ordering::SeqCst);
                let token = state.issued.issue("entra");
                let answer = serde_json::json!({
                    "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                    "access_token": token
                });
                respond(&mut client, "200 OK", &answer.to_string())
            }
            Err((status, error, why)) => {
                state.refused_assertions.fetch_add(1, Ordering::SeqCst);
                let answer = serde_json::json!({"error": error, "error_description": why});
                respond(&mut client, status, &answer.to_string())
            }
        };
    }
    if !state.issued.carried_by(&head) {
        state.refused_requests.fetch_add(1, Ordering::SeqCst);
        return respond(&mut client, "401 Unauthorized", "{}");
    }
    state.passed.fetch_add(1, Ordering::SeqCst);
    let path = with_sas(&head, azurite).map_err(std::io::Error::other)?;
    let upstream = azurite
        .endpoint()
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_string();
    forward(client, reader, &head, &upstream, &path, &["authorization"])
}

/// The request's path and query with a SAS for its container (the second
/// segment of Azurite's path-style URL) appended.
fn with_sas(head: &Head, azurite: &AzuriteServer) -> Result<String> {
    let container = head
        .path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split('/')
        .nth(2)
        .unwrap_or_default();
    let sas = azurite.container_sas(container, "racwdl")?;
    let joiner = if head.path.contains('?') { '&' } else { '?' };
    Ok(format!("{}{joiner}{sas}", head.path))
}

/// Checks a token request as Entra ID does for a workload identity (what
/// matters here); the error is the status, Entra ID's `error` and a
/// description.
fn check_token_request(
    path: &str,
    body: &[u8],
    issuer: &VerifyingKey<Sha256>,
) -> std::result::Result<(), (&'static str, &'static str, String)> {
    let form = gate::form(body);
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let bad = |why: String| ("400 Bad Request", "invalid_request", why);
    if path != format!("/{ABS_TEST_TENANT_ID}/oauth2/v2.0/token") {
        return Err(bad(format!("AADSTS90002: Tenant of {path:?} not found.")));
    }
    if field("grant_type") != "client_credentials" {
        return Err(bad(
            "AADSTS70003: grant_type is not client_credentials".into()
        ));
    }
    if field("scope") != "https://storage.azure.com/.default" {
        return Err(bad(format!(
            "AADSTS70011: scope {:?} is not valid",
            field("scope")
        )));
    }
    if field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return Err(bad(
            "AADSTS50027: client_assertion_type is not a JWT bearer".into(),
        ));
    }
    if field("client_id") != ABS_TEST_CLIENT_ID {
        return Err((
            "400 Bad Request",
            "unauthorized_client",
            format!(
                "AADSTS700016: Application {:?} was not found.",
                field("client_id")
            ),
        ));
    }
    let unauthorized = |why: String| ("401 Unauthorized", "invalid_client", why);
    let (_, claims) = verify_jwt(
        field("client_assertion"),
        issuer,
        "AADSTS700211: No matching federated identity record found for presented assertion \
         issuer.",
    )
    .map_err(unauthorized)?;
    if claims["exp"].as_i64().unwrap_or(0) <= gate::now() {
        return Err(unauthorized(
            "AADSTS700024: Client assertion is not within its valid time range.".into(),
        ));
    }
    let audience_ok = match &claims["aud"] {
        serde_json::Value::String(a) => a == AZURE_TOKEN_AUDIENCE,
        serde_json::Value::Array(a) => a.iter().any(|v| v == AZURE_TOKEN_AUDIENCE),
        _ => false,
    };
    if !audience_ok {
        return Err(unauthorized(
            "AADSTS700212: No matching federated identity record found for presented assertion \
             audience."
                .into(),
        ));
    }
    Ok(())
}
