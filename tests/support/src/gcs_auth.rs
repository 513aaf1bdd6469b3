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
//! or `400 invalid_grant` saying what is wrong. Every other request must
//! carry `Authorization: Bearer <issued token>` (else `401`) and is passed
//! on to the upstream server byte for byte, one request per connection.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::Verifier as _;
use sha2::Sha256;

use crate::{Error, Result};

/// The test service account's key (tests/support/testdata/README.md).
pub const GCS_TEST_KEY: &str = include_str!("../testdata/gcs-test-key.pem");

/// The test service account's e-mail.
pub const GCS_TEST_ACCOUNT: &str = "etcd-backup@druid-tests.iam.gserviceaccount.com";

/// The scope the gate wants in an assertion.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

#[derive(Default)]
struct State {
    issued: Mutex<HashSet<String>>,
    token_requests: AtomicUsize,
    refused_assertions: AtomicUsize,
    passed: AtomicUsize,
    refused_requests: AtomicUsize,
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
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(Error::io("cannot bind the GCS auth gate"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("the GCS auth gate's address"))?
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let key = rsa::PrivateKey::from_pkcs8_pem(GCS_TEST_KEY).map_err(|e| Error::Io {
            context: "the GCS test key".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let verifier = Arc::new(VerifyingKey::<Sha256>::new(key.as_ref().clone()));
        let state = Arc::new(State::default());
        let token_uri = format!("{endpoint}/token");
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                let verifier = Arc::clone(&verifier);
                let upstream = upstream.clone();
                let token_uri = token_uri.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, &verifier, &token_uri, &upstream);
                });
            }
        });
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

    /// Forgets every token issued (as if they had expired).
    pub fn revoke_all(&self) {
        if let Ok(mut issued) = self.state.issued.lock() {
            issued.clear();
        }
    }
}

/// The request line and headers, as read.
struct Head {
    raw: Vec<String>,
    method: String,
    path: String,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.raw.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        raw.push(line);
    }
    let mut first = raw.first().map(|l| l.split(' ')).into_iter().flatten();
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    Ok(Some(Head { raw, method, path }))
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn serve(
    mut client: TcpStream,
    state: &State,
    verifier: &VerifyingKey<Sha256>,
    token_uri: &str,
    upstream: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    if head.method == "POST" && head.path == "/token" {
        state.token_requests.fetch_add(1, Ordering::SeqCst);
        let length: usize = head
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        return match check_token_request(&body, verifier, token_uri) {
            Ok(()) => {
                let n = state.token_requests.load(Ordering::SeqCst);
                let token = format!("test-token-{n}-{}", std::process::id());
                if let Ok(mut issued) = state.issued.lock() {
                    issued.insert(token.clone());
                }
                let answer = serde_json::json!({
                    "access_token": token, "expires_in": 3599, "token_type": "Bearer"
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
    let token = head
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    let valid = token.is_some_and(|t| state.issued.lock().is_ok_and(|i| i.contains(&t)));
    if !valid {
        state.refused_requests.fetch_add(1, Ordering::SeqCst);
        let answer = r#"{"error":{"code":401,"message":"Invalid Credentials","errors":[{"reason":"authError"}]}}"#;
        return respond(&mut client, "401 Unauthorized", answer);
    }
    state.passed.fetch_add(1, Ordering::SeqCst);
    let mut server = TcpStream::connect(upstream)?;
    let mut out = String::new();
    for (i, line) in head.raw.iter().enumerate() {
        let name = line.split(':').next().unwrap_or_default().trim();
        if i > 0 && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("host")) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if i == 0 {
            out.push_str(&format!("host: {upstream}\r\nconnection: close\r\n"));
        }
    }
    out.push_str("\r\n");
    server.write_all(out.as_bytes())?;
    // The request's body (whatever its framing) goes on as it comes; the
    // answer comes back until the server closes.
    let mut to_server = server.try_clone()?;
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = pump.join();
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
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return Err("grant_type is not the JWT bearer grant".into());
    }
    let jwt = form.get("assertion").ok_or("no assertion")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("the assertion is not a JWT".into());
    };
    let decode = |p: &str| B64URL.decode(p).map_err(|e| format!("bad base64url: {e}"));
    let signature =
        Signature::try_from(decode(signature)?.as_slice()).map_err(|e| e.to_string())?;
    verifier
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.".to_string())?;
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg is {}", header["alg"]));
    }
    let claims: serde_json::Value =
        serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
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
