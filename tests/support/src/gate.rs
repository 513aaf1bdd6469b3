//! The plumbing of the test auth gates (`GcsAuthGate`, `AbsAuthGate`):
//! one HTTP/1.1 request per connection read by hand, small JSON answers,
//! RS256 JWT checks, and forwarding a request to the real server behind
//! the gate byte for byte (its request line possibly rewritten).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::Verifier as _;
use sha2::Sha256;

use crate::{Error, Result};

/// Listens on a free loopback port and hands each connection, on a
/// thread of its own, to the handler `make` builds for the gate's
/// endpoint; returns that endpoint, `http://127.0.0.1:<port>`.
pub(crate) fn start<F>(what: &str, make: impl FnOnce(&str) -> F) -> Result<String>
where
    F: Fn(TcpStream) + Clone + Send + 'static,
{
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(Error::io(format!("cannot bind the {what}")))?;
    let port = listener
        .local_addr()
        .map_err(Error::io(format!("the {what}'s address")))?
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let serve = make(&endpoint);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    Ok(endpoint)
}

/// The tokens a gate issued.
#[derive(Default)]
pub(crate) struct Issued {
    tokens: Mutex<HashSet<String>>,
    minted: AtomicUsize,
}

impl Issued {
    /// A new token (`kind` names it, for logs).
    pub fn issue(&self, kind: &str) -> String {
        let n = self.minted.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("test-{kind}-{n}-{}", std::process::id());
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(token.clone());
        }
        token
    }

    /// Whether the request carries a token issued here.
    pub fn carried_by(&self, head: &Head) -> bool {
        head.bearer()
            .is_some_and(|t| self.tokens.lock().is_ok_and(|i| i.contains(t)))
    }

    /// Forgets every token (as if they had expired).
    pub fn forget_all(&self) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.clear();
        }
    }
}

/// The request line and headers, as read.
pub(crate) struct Head {
    pub raw: Vec<String>,
    pub method: String,
    pub path: String,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    /// The bearer token of the `Authorization` header.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

pub(crate) fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
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

/// Reads a request body framed by `content-length` (at most 1 MiB).
pub(crate) fn read_body(head: &Head, reader: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let length: usize = head
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// Answers `body` (JSON) with `status` and closes.
pub(crate) fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Passes the request on to `upstream` (`host:port`) with `path` in its
/// request line and without the headers named in `drop`; the body goes on
/// as it comes, the answer comes back until the server closes.
pub(crate) fn forward(
    mut client: TcpStream,
    mut reader: BufReader<TcpStream>,
    head: &Head,
    upstream: &str,
    path: &str,
    drop: &[&str],
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    let version = head.raw[0].rsplit(' ').next().unwrap_or("HTTP/1.1");
    let mut out = format!(
        "{} {path} {version}\r\nhost: {upstream}\r\nconnection: close\r\n",
        head.method
    );
    for line in head.raw.iter().skip(1) {
        let name = line.split(':').next().unwrap_or_default().trim();
        if ["connection", "host"]
            .iter()
            .chain(drop)
            .any(|d| name.eq_ignore_ascii_case(d))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    server.write_all(out.as_bytes())?;
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

/// The public half of a PEM (PKCS#8) test key, to check RS256 signatures.
pub(crate) fn verifier(pem: &str, what: &str) -> Result<VerifyingKey<Sha256>> {
    let key = rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|e| Error::Io {
        context: format!("the {what} key"),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(VerifyingKey::<Sha256>::new(key.as_ref().clone()))
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Checks an RS256 JWT's signature with `key` (the error says
/// `signature_error`) and returns its header's `alg` and its claims.
pub(crate) fn verify_jwt(
    jwt: &str,
    key: &VerifyingKey<Sha256>,
    signature_error: &str,
) -> std::result::Result<(String, serde_json::Value), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("the token is not a JWT".into());
    };
    let decode = |p: &str| B64URL.decode(p).map_err(|e| format!("bad base64url: {e}"));
    let signature =
        Signature::try_from(decode(signature)?.as_slice()).map_err(|e| e.to_string())?;
    key.verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| signature_error.to_string())?;
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
    Ok((
        header["alg"].as_str().unwrap_or_default().to_string(),
        claims,
    ))
}

/// A form body's fields.
pub(crate) fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}
