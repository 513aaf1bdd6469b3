//! Blocking HTTP over the `wasi:http` import, for provider plugins.
//!
//! The host lets a plugin reach only its store's endpoint; a request to any
//! other destination fails with [`Error::Denied`] before a connection is
//! made. Redirects are not followed: a 3xx is returned like any response.

use crate::provider::wasi::http::outgoing_handler;
use crate::provider::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse,
    Method as WasiMethod, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::provider::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// Timeouts the plugin asks for (the host may enforce shorter ones).
const CONNECT_TIMEOUT_NS: u64 = 10_000_000_000;
const FIRST_BYTE_TIMEOUT_NS: u64 = 120_000_000_000;
const BETWEEN_BYTES_TIMEOUT_NS: u64 = 60_000_000_000;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// PUT
    Put,
    /// POST
    Post,
    /// DELETE
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }

    fn wasi(self) -> WasiMethod {
        match self {
            Method::Get => WasiMethod::Get,
            Method::Head => WasiMethod::Head,
            Method::Put => WasiMethod::Put,
            Method::Post => WasiMethod::Post,
            Method::Delete => WasiMethod::Delete,
        }
    }
}

/// Why a request failed before a response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The URL cannot be sent (bad scheme, no host, ...).
    InvalidUrl(String),
    /// The host refused the destination: it is not the store's endpoint.
    Denied(String),
    /// The connection or the transfer failed or timed out.
    Transport(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            Error::Denied(m) => write!(f, "the host refused the request: {m}"),
            Error::Transport(m) => write!(f, "transport error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// `url` as it may appear in a message: without its query string and
/// fragment (a presigned URL's signature and credential live there) and
/// without user information. Every error of this module names URLs this
/// way, so an error a plugin passes on never carries a signed URL.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            // Both fail only for URLs that cannot have them.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => {
            let cut = url.find(['?', '#']).unwrap_or(url.len());
            let url = &url[..cut];
            match url.rfind('@') {
                Some(at) => format!("[redacted]@{}", &url[at + 1..]),
                None => url.to_string(),
            }
        }
    }
}

/// Percent-encodes `s` for a URL: unreserved characters (`A-Za-z0-9-._~`)
/// stay, and `/` too when `keep_slash` (an object key in a path); every
/// other byte becomes `%XX`.
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && keep_slash) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits an endpoint a user wrote (`store.endpointOverride`) into its
/// origin (`scheme://host[:port]`, http or https) and its path without a
/// trailing `/`; the error says what is wrong with it, for a message that
/// names the setting and an example.
pub fn split_endpoint(endpoint: &str) -> Result<(String, String), &'static str> {
    let (scheme, rest) = endpoint.split_once("://").ok_or("has no scheme")?;
    if scheme != "http" && scheme != "https" {
        return Err("is not http or https");
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || authority.contains(['@', '?', '#']) {
        return Err("has no host, or user information");
    }
    if path.contains(['?', '#']) {
        return Err("has a query or fragment");
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b))
    {
        return Err("has characters a URL path cannot carry");
    }
    Ok((
        format!("{scheme}://{authority}"),
        path.trim_end_matches('/').to_string(),
    ))
}

fn error_code(url: &str, code: &ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestDenied => Error::Denied(format!("{url}: destination not allowed")),
        other => Error::Transport(format!("{url}: {other:?}")),
    }
}

/// A URL split the way `wasi:http` wants it.
struct Target {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

fn split_url(full: &str) -> Result<Target, Error> {
    let url = display_url(full);
    let parsed = url::Url::parse(full).map_err(|e| Error::InvalidUrl(format!("{url}: {e}")))?;
    let scheme = match parsed.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(Error::InvalidUrl(format!(
                "{url}: unsupported scheme {other}"
            )));
        }
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| Error::InvalidUrl(format!("{url}: no host")))?;
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let mut path_and_query = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Ok(Target {
        scheme,
        authority,
        path_and_query,
    })
}

/// A request whose body is being written. Write the body with
/// [`RequestWriter::write_all`], then call [`RequestWriter::finish`].
pub struct RequestWriter {
    url: String,
    // Field order is drop order: the stream before its body.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
    response: FutureIncomingResponse,
    write_failed: bool,
}

/// Starts a request. Set `content-length` in `headers` when the body length
/// is known (stores such as S3 require it).
pub fn start(
    method: Method,
    url: &str,
    headers: &[(String, String)],
) -> Result<RequestWriter, Error> {
    let target = split_url(url)?;
    let shown = display_url(url);
    let url = shown.as_str();
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&entries)
        .map_err(|e| Error::InvalidUrl(format!("{url}: header rejected: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let set = |ok: Result<(), ()>, what: &str| {
        ok.map_err(|()| Error::InvalidUrl(format!("{url}: invalid {what}")))
    };
    set(request.set_method(&method.wasi()), "method")?;
    set(request.set_scheme(Some(&target.scheme)), "scheme")?;
    set(request.set_authority(Some(&target.authority)), "authority")?;
    set(
        request.set_path_with_query(Some(&target.path_and_query)),
        "path",
    )?;
    let body = request
        .body()
        .map_err(|()| Error::Transport(format!("{url}: no request body")))?;
    let stream = body
        .write()
        .map_err(|()| Error::Transport(format!("{url}: no request body stream")))?;
    let options = RequestOptions::new();
    // Setting a timeout the host does not support is not an error here.
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));
    let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_TIMEOUT_NS));
    let response =
        outgoing_handler::handle(request, Some(options)).map_err(|e| error_code(url, &e))?;
    Ok(RequestWriter {
        url: url.to_string(),
        stream: Some(stream),
        body: Some(body),
        response,
        write_failed: false,
    })
}

impl RequestWriter {
    /// Writes `data` to the request body, waiting while the host's buffer is
    /// full. A failed write (the server answered early, or the connection
    /// broke) is remembered; [`RequestWriter::finish`] then returns the
    /// server's answer if there is one.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), Error> {
        let Some(stream) = &self.stream else {
            return Err(Error::Transport(format!(
                "{}: body already closed",
                self.url
            )));
        };
        while !data.is_empty() {
            let permitted = match stream.check_write() {
                Ok(n) => n,
                Err(e) => return Err(self.failed(e)),
            };
            if permitted == 0 {
                stream.subscribe().block();
                continue;
            }
            let n = usize::try_from(permitted)
                .unwrap_or(usize::MAX)
                .min(data.len());
            if let Err(e) = stream.write(&data[..n]) {
                return Err(self.failed(e));
            }
            data = &data[n..];
        }
        Ok(())
    }

    fn failed(&mut self, e: StreamError) -> Error {
        self.write_failed = true;
        let detail = match e {
            StreamError::LastOperationFailed(err) => err.to_debug_string(),
            StreamError::Closed => "the body stream was closed".to_string(),
        };
        Error::Transport(format!("{}: writing the body: {detail}", self.url))
    }

    /// Ends the body and waits for the response.
    pub fn finish(mut self) -> Result<Response, Error> {
        if let Some(stream) = self.stream.take() {
            if !self.write_failed {
                let _ = stream.blocking_flush();
            }
            drop(stream);
        }
        if let Some(body) = self.body.take() {
            let finished = OutgoingBody::finish(body, None);
            if let Err(e) = finished
                && !self.write_failed
            {
                return Err(error_code(&self.url, &e));
            }
        }
        wait(&self.url, &self.response)
    }
}

fn wait(url: &str, future: &FutureIncomingResponse) -> Result<Response, Error> {
    loop {
        match future.get() {
            None => future.subscribe().block(),
            Some(Err(())) => return Err(Error::Transport(format!("{url}: response taken twice"))),
            Some(Ok(Err(code))) => return Err(error_code(url, &code)),
            Some(Ok(Ok(response))) => return Response::new(url, response),
        }
    }
}

/// Sends a request with a body held in memory (may be empty) and waits for
/// the response. Sets `content-length` for non-GET/HEAD methods.
pub fn send(
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response, Error> {
    let mut all = headers.to_vec();
    let has_length = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    if !has_length && !matches!(method, Method::Get | Method::Head) {
        all.push(("content-length".into(), body.len().to_string()));
    }
    let mut writer = start(method, url, &all)?;
    let written = writer.write_all(body);
    let response = writer.finish();
    match (written, response) {
        (_, Ok(r)) => Ok(r),
        (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
    }
}

/// A response whose body can be read in chunks.
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    url: String,
    // Field order is drop order: stream, body, response.
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl Response {
    fn new(url: &str, response: IncomingResponse) -> Result<Self, Error> {
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let body = response.consume().ok();
        let stream = body.as_ref().and_then(|b| b.stream().ok());
        Ok(Self {
            status,
            headers,
            url: url.to_string(),
            stream,
            _body: body,
            _response: response,
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads up to `max` bytes of the body; an empty vector means the end.
    pub fn read(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let Some(stream) = &self.stream else {
            return Ok(Vec::new());
        };
        loop {
            match stream.blocking_read(max as u64) {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Ok(bytes),
                Err(StreamError::Closed) => {
                    self.stream = None;
                    return Ok(Vec::new());
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::Transport(format!(
                        "{}: reading the body: {}",
                        self.url,
                        e.to_debug_string()
                    )));
                }
            }
        }
    }

    /// Reads the whole body, failing if it is longer than `limit` bytes.
    pub fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read(64 << 10)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            if out.len() + chunk.len() > limit {
                return Err(Error::Transport(format!(
                    "{}: response body longer than {limit} bytes",
                    self.url
                )));
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// The body as text (lossy), at most `limit` bytes; for error messages.
    pub fn text(&mut self, limit: usize) -> String {
        match self.read_to_end(limit) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_with_their_slashes_and_queries_without() {
        assert_eq!(encode("a b/c+d%", true), "a%20b/c%2Bd%25");
        assert_eq!(encode("many/0100", false), "many%2F0100");
        assert_eq!(encode("ü~", true), "%C3%BC~");
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        let t = split_url("http://127.0.0.1:9000/bucket/key%20x?list-type=2&prefix=a").unwrap();
        assert_eq!(t.authority, "127.0.0.1:9000");
        assert_eq!(t.path_and_query, "/bucket/key%20x?list-type=2&prefix=a");
        assert!(matches!(t.scheme, Scheme::Http));
        let t = split_url("https://s3.eu-west-1.amazonaws.com/").unwrap();
        assert_eq!(t.authority, "s3.eu-west-1.amazonaws.com");
        assert!(matches!(split_url("ftp://x/"), Err(Error::InvalidUrl(_))));
        assert!(matches!(split_url("not a url"), Err(Error::InvalidUrl(_))));
    }

    #[test]
    fn endpoints_split_into_origin_and_path_or_say_what_is_wrong() {
        assert_eq!(
            split_endpoint("http://azurite:10000/devstoreaccount1/"),
            Ok(("http://azurite:10000".into(), "/devstoreaccount1".into()))
        );
        assert_eq!(
            split_endpoint("https://h"),
            Ok(("https://h".into(), String::new()))
        );
        for (bad, why) in [
            ("h:1", "has no scheme"),
            ("ftp://h", "is not http or https"),
            ("http://", "has no host, or user information"),
            ("http://u:p@h", "has no host, or user information"),
            ("http://h/p?x", "has a query or fragment"),
            ("http://h/a b", "has characters a URL path cannot carry"),
        ] {
            assert_eq!(split_endpoint(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn urls_in_messages_carry_no_query_and_no_user() {
        assert_eq!(
            display_url("http://127.0.0.1:9000/b/k?X-Amz-Credential=AKIA&X-Amz-Signature=ff#x"),
            "http://127.0.0.1:9000/b/k"
        );
        assert_eq!(
            display_url("https://user:pw@host.example/p?sig=abc"),
            "https://host.example/p"
        );
        assert_eq!(display_url("not a url?sig=abc"), "not a url");
        assert_eq!(display_url("x://u:p@h?q"), "x://h");
        let Err(Error::InvalidUrl(m)) = split_url("ftp://h/p?X-Amz-Signature=ff") else {
            panic!("ftp accepted");
        };
        assert!(!m.contains("ff") && m.contains("ftp://h/p"), "{m}");
    }
}
