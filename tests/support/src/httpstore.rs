//! A tiny HTTP object store on a loopback port: the store behind the worked
//! example of a third-party provider plugin (`examples/httpstore-plugin`).
//! Small and obvious on purpose; not for production. HTTP itself is
//! `tiny_http`'s; this file is only the store.
//!
//! # Protocol
//!
//! Containers are directories directly below the root (a plain name:
//! `A-Za-z0-9._-`, not starting with `.`); an object is a file below its
//! container, its key the relative path (keys may contain `/`; no empty,
//! `.` or `..` segment). Path segments and query values are
//! percent-decoded. Every request carries `Authorization: Bearer <token>`,
//! else `401`.
//!
//! | request | answer |
//! |---|---|
//! | `PUT /<container>/<key>?stage` | `202` and `{"upload":..,"size":..}`: the body is staged, nothing is visible yet |
//! | `POST /<container>/<key>?commit=<upload>&size=<n>` | `201` and `{"key":..,"size":..}`: the staged upload becomes the object, if it holds `n` bytes (else `409` and it is dropped); `404` when no such upload is staged |
//! | `PUT /<container>/<key>` | `201` and `{"key":..,"size":..}`: one-shot; the body goes to a temporary file renamed into place when the request's body ends. A chunked body cut off mid-chunk looks ended to the HTTP library, so a client that needs an upload that breaks off to leave nothing stages and commits |
//! | `GET /<container>/<key>` | `200` and the object; with `Range: bytes=A-B` or `bytes=A-` `206` and those bytes (`Content-Range`), `416` when `A` is past the end |
//! | `HEAD /<container>/<key>` | `200` with `Content-Length` |
//! | `DELETE /<container>/<key>` | `204`, also when the object is missing |
//! | `GET /<container>?prefix=P&after=K&max=N` | `200` and `{"objects":[{"key":..,"size":..}],"next":..}`: up to `N` (default 1,000, at most 10,000) keys starting with `P` and greater than `K`, in byte order; `next` is the last key returned while more follow, else `null` |
//!
//! Errors are a status, a header `X-Store-Error` (`not-found`,
//! `no-such-container`, `unauthorized`, `bad-request`, `internal`) and a
//! text body saying what is wrong.
//!
//! Limitation: a key cannot be both an object and a "directory" of other
//! keys (`a` and `a/b`), as on a file system.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use crate::{Error, Result};

/// A running store; it stops when dropped.
pub struct HttpStore {
    url: String,
    root: PathBuf,
    server: Arc<Server>,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStore").field("url", &self.url).finish()
    }
}

/// Where uploads are written before they are renamed into place (not a
/// valid container name).
const TMP: &str = ".uploads";

impl HttpStore {
    /// Serves the containers below `root` on a free loopback port,
    /// accepting requests that carry `token`.
    pub fn start(root: &Path, token: &str) -> Result<HttpStore> {
        Self::start_on(root, token, "127.0.0.1")
    }

    /// As [`HttpStore::start`], on address `ip` (e.g. the host's address
    /// on the test node's network, which pods reach).
    pub fn start_on(root: &Path, token: &str, ip: &str) -> Result<HttpStore> {
        std::fs::create_dir_all(root.join(TMP))
            .map_err(Error::io(format!("cannot create {}", root.display())))?;
        let server = Server::http(format!("{ip}:0")).map_err(|e| {
            Error::io("cannot serve on a free port")(io::Error::other(e.to_string()))
        })?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| Error::io("cannot read the bound port")(io::Error::other("no IP")))?;
        let server = Arc::new(server);
        let store = Arc::new(Store {
            root: root.to_path_buf(),
            auth: format!("Bearer {token}"),
        });
        let serving = Arc::clone(&server);
        std::thread::spawn(move || {
            for request in serving.incoming_requests() {
                let store = Arc::clone(&store);
                std::thread::spawn(move || store.serve(request));
            }
        });
        Ok(HttpStore {
            url: format!("http://{ip}:{port}"),
            root: root.to_path_buf(),
            server,
        })
    }

    /// The store's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory holding the containers.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for HttpStore {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

type Answer = Response<Box<dyn Read + Send>>;

/// `response` with the header `name: value` (names and values here are
/// ASCII the store writes itself, so always valid).
fn with(mut response: Answer, name: &str, value: &str) -> Answer {
    if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        response.add_header(h);
    }
    response
}

fn answer(status: u16, body: Vec<u8>, content_type: &str) -> Answer {
    let len = body.len();
    let response = Response::new(
        StatusCode(status),
        Vec::new(),
        Box::new(io::Cursor::new(body)) as Box<dyn Read + Send>,
        Some(len),
        None,
    );
    with(response, "Content-Type", content_type)
}

fn error(status: u16, code: &str, message: String) -> Answer {
    with(
        answer(status, message.into_bytes(), "text/plain; charset=utf-8"),
        "X-Store-Error",
        code,
    )
}

fn bad(message: impl Into<String>) -> Answer {
    error(400, "bad-request", message.into())
}

fn json(status: u16, value: &serde_json::Value) -> Answer {
    answer(status, value.to_string().into_bytes(), "application/json")
}

struct Store {
    root: PathBuf,
    auth: String,
}

impl Store {
    fn serve(&self, mut request: Request) {
        let response = self.answer(&mut request);
        // A refused upload's body is read and dropped first, so that the
        // client sees the answer rather than a connection reset mid-body.
        if response.status_code().0 >= 400 {
            let _ = io::copy(request.as_reader(), &mut io::sink());
        }
        let _ = request.respond(response);
    }

    fn answer(&self, request: &mut Request) -> Answer {
        let authorized = request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Authorization") && h.value.as_str() == self.auth);
        if !authorized {
            return error(
                401,
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer <token>)".into(),
            );
        }
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let (container, key) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path.trim_start_matches('/'), ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
        };
        let (Ok(container), Ok(key)) = (decode(container), decode(key)) else {
            return bad("bad percent-encoding in the path");
        };
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
        if container.is_empty() || container.starts_with('.') || !container.bytes().all(plain) {
            return bad(format!("{container:?} is not a container name"));
        }
        let dir = self.root.join(&container);
        if !dir.is_dir() {
            return error(
                404,
                "no-such-container",
                format!("no container {container:?}"),
            );
        }
        if key.is_empty() {
            return match request.method() {
                Method::Get => list(&dir, query),
                _ => bad("only GET (a listing) on a container"),
            };
        }
        if key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\0'))
        {
            return bad(format!("{key:?} is not a valid key"));
        }
        let path = dir.join(&key);
        match request.method() {
            Method::Put if query == "stage" => match self.receive(request) {
                Ok((upload, size)) => {
                    json(202, &serde_json::json!({ "upload": upload, "size": size }))
                }
                Err(answer) => answer,
            },
            Method::Put => self.put(&path, &key, request),
            Method::Post => self.commit(&path, &key, query),
            Method::Get | Method::Head => {
                let range = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Range"))
                    .map(|h| h.value.as_str().to_string());
                get(&path, &container, &key, range.as_deref())
            }
            Method::Delete => match std::fs::remove_file(&path) {
                Ok(()) => answer(204, Vec::new(), "text/plain"),
                Err(_) if !path.is_file() => answer(204, Vec::new(), "text/plain"),
                Err(e) => error(500, "internal", format!("cannot delete {key:?}: {e}")),
            },
            m => bad(format!("method {m} is not served")),
        }
    }

    /// Writes the request's body to a new file below [`TMP`]: its name
    /// (the upload's id) and size, or the answer saying why not.
    fn receive(&self, request: &mut Request) -> std::result::Result<(String, u64), Answer> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let tmp = self.root.join(TMP).join(&id);
        let written =
            std::fs::File::create(&tmp).and_then(|mut f| io::copy(request.as_reader(), &mut f));
        match written {
            Ok(n) => Ok((id, n)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(bad(format!("the upload broke off: {e}")))
            }
        }
    }

    /// Moves the received upload `id` into place as `key`.
    fn place(&self, id: &str, path: &Path, key: &str) -> std::result::Result<(), Answer> {
        let tmp = self.root.join(TMP).join(id);
        let placed = match path.parent() {
            Some(parent) => std::fs::create_dir_all(parent),
            None => Ok(()),
        }
        .and_then(|()| std::fs::rename(&tmp, path));
        placed.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            error(409, "bad-request", format!("cannot store {key:?}: {e}"))
        })
    }

    fn put(&self, path: &Path, key: &str, request: &mut Request) -> Answer {
        let (id, size) = match self.receive(request) {
            Ok(received) => received,
            Err(answer) => return answer,
        };
        match self.place(&id, path, key) {
            Ok(()) => json(201, &serde_json::json!({ "key": key, "size": size })),
            Err(answer) => answer,
        }
    }

    /// `POST ...?commit=<upload>&size=<n>`: the staged upload becomes
    /// `key` if it holds `n` bytes.
    fn commit(&self, path: &Path, key: &str, query: &str) -> Answer {
        let params = Params::parse(query);
        let param = |name: &str| params.get(name);
        let (Some(id), Some(expected)) = (
            param("commit"),
            param("size").and_then(|n| n.parse::<u64>().ok()),
        ) else {
            return bad("POST on an object is a commit: ?commit=<upload>&size=<bytes>");
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return bad(format!("{id:?} is not an upload id"));
        }
        let staged = self.root.join(TMP).join(id);
        let size = match std::fs::metadata(&staged) {
            Ok(meta) => meta.len(),
            Err(_) => {
                return error(
                    404,
                    "not-found",
                    format!("no staged upload {id:?} (committed already, or never staged)"),
                );
            }
        };
        if size != expected {
            let _ = std::fs::remove_file(&staged);
            return error(
                409,
                "bad-request",
                format!("upload {id:?} holds {size} bytes, not {expected}: dropped, upload again"),
            );
        }
        match self.place(id, path, key) {
            Ok(()) => json(201, &serde_json::json!({ "key": key, "size": size })),
            Err(answer) => answer,
        }
    }
}

/// GET or HEAD of an object, whole or a range of it (tiny_http sends no
/// body for HEAD, with the length of the body it would have sent).
fn get(path: &Path, container: &str, key: &str, range: Option<&str>) -> Answer {
    let missing = || {
        error(
            404,
            "not-found",
            format!("no object {key:?} in {container:?}"),
        )
    };
    let Ok(mut file) = std::fs::File::open(path) else {
        return missing();
    };
    let size = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => return missing(),
    };
    let (status, start, len) = match range.map(parse_range) {
        None => (200, 0, size),
        Some(None) => return bad("Range must be bytes=A-B or bytes=A-"),
        Some(Some((start, _))) if start >= size => {
            return with(
                error(416, "bad-request", "range past the end".into()),
                "Content-Range",
                &format!("bytes */{size}"),
            );
        }
        Some(Some((start, end))) => {
            let end = end.unwrap_or(size - 1).min(size - 1);
            if end < start {
                return bad("the range ends before it starts");
            }
            (206, start, end - start + 1)
        }
    };
    if file.seek(SeekFrom::Start(start)).is_err() {
        return missing();
    }
    let Ok(len_usize) = usize::try_from(len) else {
        return error(500, "internal", "object too large for this platform".into());
    };
    let response = Response::new(
        StatusCode(status),
        Vec::new(),
        Box::new(file.take(len)) as Box<dyn Read + Send>,
        Some(len_usize),
        None,
    )
    // A Content-Length always (tiny_http would send large bodies chunked,
    // and a HEAD then has no length).
    .with_chunked_threshold(usize::MAX);
    let response = with(response, "Content-Type", "application/octet-stream");
    if status == 206 {
        with(
            response,
            "Content-Range",
            &format!("bytes {start}-{}/{size}", start + len - 1),
        )
    } else {
        response
    }
}

/// A request's query parameters, percent-decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Self {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn list(dir: &Path, query: &str) -> Answer {
    let params = Params::parse(query);
    let param = |name: &str| params.get(name);
    let prefix = param("prefix").unwrap_or("");
    let after = param("after");
    let max = match param("max").map(str::parse::<usize>) {
        None => 1000,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => return bad("max must be 1 to 10000"),
    };
    let mut all = Vec::new();
    if let Err(e) = walk(dir, "", &mut all) {
        return error(500, "internal", format!("cannot list: {e}"));
    }
    all.sort();
    let mut keys = all
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a));
    let page: Vec<(String, u64)> = keys.by_ref().take(max).collect();
    let next = match (keys.next(), page.last()) {
        (Some(_), Some((last, _))) => serde_json::Value::String(last.clone()),
        _ => serde_json::Value::Null,
    };
    let objects: Vec<serde_json::Value> = page
        .iter()
        .map(|(k, size)| serde_json::json!({ "key": k, "size": size }))
        .collect();
    json(
        200,
        &serde_json::json!({ "objects": objects, "next": next }),
    )
}

/// Every file below `dir`, as keys relative to it with their sizes.
fn walk(dir: &Path, base: &str, out: &mut Vec<(String, u64)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let key = format!("{base}{name}");
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), &format!("{key}/"), out)?;
        } else if meta.is_file() {
            out.push((key, meta.len()));
        }
    }
    Ok(())
}

/// `bytes=A-B` or `bytes=A-` as (A, B).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => None,
        b => Some(b.parse().ok()?),
    };
    Some((start, end))
}

/// The worked example of a third-party provider
/// (`examples/httpstore-plugin`) built as plugins/sdk/README.md says, with
/// `scripts/build-plugin.sh`, once per test process: the path of its
/// component, `druid_plugin_httpstore.wasm`.
pub fn httpstore_example_plugin() -> Result<PathBuf> {
    static BUILT: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = crate::server_dir("httpstore-example-build").map_err(|e| e.to_string())?;
            let root = crate::repo_root();
            let command = format!(
                "bash scripts/build-plugin.sh examples/httpstore-plugin {}",
                out.display()
            );
            let output = std::process::Command::new("bash")
                .arg(root.join("scripts/build-plugin.sh"))
                .arg(root.join("examples/httpstore-plugin"))
                .arg(&out)
                .output()
                .map_err(|e| format!("{command}: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "{command}: {}\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            let wasm = out.join("druid_plugin_httpstore.wasm");
            if wasm.is_file() {
                Ok(wasm)
            } else {
                Err(format!("{command} built no {}", wasm.display()))
            }
        })
        .clone()
        .map_err(|reason| Error::PluginBuild {
            command: "scripts/build-plugin.sh examples/httpstore-plugin".into(),
            reason,
        })
}
