//! A real Azurite server (Azure Blob Storage) on loopback.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::process::{ServerProcess, free_port, http_get, with_port_retries};
use crate::{Error, Result, find_binary, server_dir, shared};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Azurite's well-known development account.
const ACCOUNT: &str = "devstoreaccount1";

/// Azurite's well-known development account key (public, documented by
/// Microsoft; not a secret).
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service with the development account.
pub struct AzuriteServer {
    endpoint: String,
    process: ServerProcess,
}

impl AzuriteServer {
    /// Starts a new Azurite blob service with an empty data directory.
    pub fn start() -> Result<Self> {
        with_port_retries(Self::try_start)
    }

    /// The Azurite server shared by every test of this test binary.
    pub fn shared() -> &'static AzuriteServer {
        static CELL: OnceLock<std::result::Result<AzuriteServer, String>> = OnceLock::new();
        shared(&CELL, Self::start)
    }

    fn try_start() -> Result<Self> {
        let azurite = find_binary("azurite-blob", "azurite")?;
        let port = free_port()?;
        let dir = server_dir(&format!("azurite-{port}"))?;
        let data = server_dir(&format!("azurite-{port}/data"))?;
        let mut command = Command::new(azurite);
        command
            .args(["--blobHost", "127.0.0.1"])
            .arg("--blobPort")
            .arg(port.to_string())
            .arg("--location")
            .arg(&data)
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"])
            .current_dir(&dir);
        let base = format!("http://127.0.0.1:{port}");
        let process = ServerProcess::spawn(
            &format!("azurite-blob ({base})"),
            command,
            &dir.join("azurite.log"),
        )?;
        // Unauthenticated, the account answers 403: any HTTP answer means the
        // service is up.
        let ready = format!("{base}/{ACCOUNT}?comp=list");
        process.wait_ready(READY_TIMEOUT, || Ok(http_get(&ready).is_ok()))?;
        Ok(Self {
            endpoint: format!("{base}/{ACCOUNT}"),
            process,
        })
    }

    /// The account's blob endpoint (path style), e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The storage account name, `devstoreaccount1`.
    pub fn account(&self) -> &str {
        ACCOUNT
    }

    /// The account key (base64), Azurite's well-known development key.
    pub fn key(&self) -> &str {
        KEY
    }

    /// The process.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }
}

/// The Blob service version the test support's requests ask for.
pub const AZURE_VERSION: &str = "2021-08-06";

/// Seconds since 1970 as (year, month, day, hour, minute, second, days
/// since 1970), by Howard Hinnant's civil-from-days algorithm.
fn civil(time: SystemTime) -> (u64, u64, u64, u64, u64, u64, u64) {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        year,
        month,
        day,
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        days,
    )
}

/// An RFC 1123 date (`Tue, 14 Nov 2023 22:13:20 GMT`), as `x-ms-date` takes.
pub fn azure_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, h, mi, s, days) = civil(time);
    format!(
        "{}, {day:02} {} {year} {h:02}:{mi:02}:{s:02} GMT",
        DAYS[usize::try_from(days % 7).unwrap_or(0)],
        MONTHS[usize::try_from(month - 1).unwrap_or(0)],
    )
}

/// An ISO 8601 UTC time (`2023-11-14T22:13:20Z`), as a SAS's `se` takes.
fn iso_date(time: SystemTime) -> String {
    let (year, month, day, h, mi, s, _) = civil(time);
    format!("{year}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn hmac_base64(key_base64: &str, message: &str) -> Result<String> {
    let key = BASE64
        .decode(key_base64)
        .map_err(|e| Error::io("the account key is not base64")(std::io::Error::other(e)))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|e| Error::io("HMAC key")(std::io::Error::other(e.to_string())))?;
    mac.update(message.as_bytes());
    Ok(BASE64.encode(mac.finalize().into_bytes()))
}

/// The `Authorization` value of a Shared Key request: `method` on the
/// URL's `path` (percent-encoded as sent) with its decoded `query`,
/// `ms_headers` (every `x-ms-*` header sent) and a body of
/// `content_length` bytes, signed with `key_base64` of `account`.
pub fn shared_key_authorization(
    account: &str,
    key_base64: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    ms_headers: &[(String, String)],
    content_length: usize,
) -> Result<String> {
    let mut headers: Vec<(String, String)> = ms_headers
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    // The canonicalized resource is `/account` followed by the URL's
    // path; with Azurite's path-style URLs the path starts with the
    // account too (`/devstoreaccount1/devstoreaccount1/container`).
    let mut resource = format!("/{account}{path}");
    let mut params: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    params.sort();
    for (name, value) in &params {
        resource.push_str(&format!("\n{name}:{value}"));
    }
    let length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    // VERB, Content-Encoding, Content-Language, Content-Length,
    // Content-MD5, Content-Type, Date, If-Modified-Since, If-Match,
    // If-None-Match, If-Unmodified-Since, Range.
    let mut to_sign = format!("{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n");
    for (name, value) in &headers {
        to_sign.push_str(&format!("{name}:{value}\n"));
    }
    to_sign.push_str(&resource);
    Ok(format!(
        "SharedKey {account}:{}",
        hmac_base64(key_base64, &to_sign)?
    ))
}

impl AzuriteServer {
    /// A service SAS for container `container` (the query string, without
    /// `?`) granting `permissions` (e.g. `racwdl`) for an hour, signed with
    /// the account key as version 2020-12-06 defines it.
    pub fn container_sas(&self, container: &str, permissions: &str) -> Result<String> {
        const VERSION: &str = "2020-12-06";
        let expiry = iso_date(SystemTime::now() + Duration::from_secs(3600));
        // sp, st, se, canonicalized resource, si, sip, spr, sv, sr,
        // snapshot time, encryption scope, rscc, rscd, rsce, rscl, rsct.
        let to_sign = format!(
            "{permissions}\n\n{expiry}\n/blob/{ACCOUNT}/{container}\n\n\n\n{VERSION}\nc\n\n\n\n\n\n\n"
        );
        let signature = hmac_base64(KEY, &to_sign)?;
        let encoded: String = form_urlencoded::byte_serialize(signature.as_bytes()).collect();
        Ok(format!(
            "sv={VERSION}&sr=c&sp={permissions}&se={}&sig={encoded}",
            expiry.replace(':', "%3A")
        ))
    }

    /// Creates blob container `name` (an existing one is fine).
    pub fn create_container(&self, name: &str) -> Result<()> {
        let url = format!("{}/{name}?restype=container", self.endpoint);
        let path = format!("/{ACCOUNT}/{name}");
        let headers = vec![
            ("x-ms-date".to_string(), azure_date(SystemTime::now())),
            ("x-ms-version".to_string(), AZURE_VERSION.to_string()),
        ];
        let authorization = shared_key_authorization(
            ACCOUNT,
            KEY,
            "PUT",
            &path,
            &[("restype".to_string(), "container".to_string())],
            &headers,
            0,
        )?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut request = agent.put(&url).header("authorization", &authorization);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let context = format!("creating container {name:?} on Azurite");
        let mut response = request
            .send_empty()
            .map_err(|e| Error::io(context.clone())(std::io::Error::other(e.to_string())))?;
        let status = response.status().as_u16();
        if status == 201 || status == 409 {
            return Ok(());
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Err(Error::io(context)(std::io::Error::other(format!(
            "HTTP {status}: {body}"
        ))))
    }
}
