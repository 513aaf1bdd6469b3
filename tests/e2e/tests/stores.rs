//! The object stores the backup plugins target answer real requests:
//! fake-gcs-server (the GCS JSON API) and Azurite (Azure Blob Storage,
//! Shared Key authentication).
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use druid_test_support::{
    AZURE_VERSION, AzuriteServer, FakeGcsServer, azure_date, shared_key_authorization,
};
use reqwest::{Method, StatusCode, Url};

const SNAPSHOT: &str = "v2/Full-00000000-00000010-1700000000";

/// A megabyte of every byte value, so a store that mangles bytes shows it.
fn snapshot_body() -> Vec<u8> {
    (0..=255u8).cycle().take(1 << 20).collect()
}

/// A plain-HTTP client (reqwest is built without TLS).
fn http_client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (a `/` in
/// an object name becomes `%2F`, as GCS wants in a path segment).
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- fake-gcs-server -------------------------------------------------------

struct Gcs {
    endpoint: String,
    http: reqwest::Client,
}

impl Gcs {
    fn new(server: &FakeGcsServer) -> Self {
        Self {
            endpoint: server.endpoint().to_string(),
            http: http_client(),
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url: Url = format!("{}{path}", self.endpoint).parse().unwrap();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn create_bucket(&self, bucket: &str) {
        let body = serde_json::json!({ "name": bucket }).to_string();
        let response = self
            .http
            .post(self.url("/storage/v1/b", &[]))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        let created: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(created["name"], bucket, "{text}");
    }

    fn object_url(&self, bucket: &str, name: &str, query: &[(&str, &str)]) -> Url {
        let path = format!("/storage/v1/b/{bucket}/o/{}", encode_segment(name));
        self.url(&path, query)
    }
}

#[tokio::test]
async fn fake_gcs_object_round_trip() {
    let gcs = Gcs::new(FakeGcsServer::shared());
    let bucket = "druid-e2e";
    gcs.create_bucket(bucket).await;

    let body = snapshot_body();
    let upload = gcs.url(
        &format!("/upload/storage/v1/b/{bucket}/o"),
        &[("uploadType", "media"), ("name", SNAPSHOT)],
    );
    let response = gcs
        .http
        .post(upload)
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    let uploaded: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(uploaded["name"], SNAPSHOT, "{text}");
    assert_eq!(uploaded["bucket"], bucket, "{text}");
    assert_eq!(uploaded["size"], body.len().to_string(), "{text}");

    let download = gcs.object_url(bucket, SNAPSHOT, &[("alt", "media")]);
    let response = gcs.http.get(download).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), body.as_slice());

    let list = gcs.url(&format!("/storage/v1/b/{bucket}/o"), &[("prefix", "v2/")]);
    let response = gcs.http.get(list).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let listed: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![SNAPSHOT]);

    // A prefix that matches nothing lists nothing.
    let list = gcs.url(&format!("/storage/v1/b/{bucket}/o"), &[("prefix", "v3/")]);
    let response = gcs.http.get(list).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let listed: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        listed["items"].as_array().is_none_or(Vec::is_empty),
        "{listed}"
    );
}

#[tokio::test]
async fn fake_gcs_missing_object_is_not_found() {
    let gcs = Gcs::new(FakeGcsServer::shared());
    let bucket = "druid-e2e-missing";
    gcs.create_bucket(bucket).await;

    let missing = "v2/Full-99999999-99999999-1700000000";
    let media = gcs.object_url(bucket, missing, &[("alt", "media")]);
    let response = gcs.http.get(media).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.text().await.unwrap().trim(), "Not Found");

    // The metadata request answers a JSON API error.
    let metadata = gcs.object_url(bucket, missing, &[]);
    let response = gcs.http.get(metadata).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let text = response.text().await.unwrap();
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], 404, "{text}");
    assert_eq!(error["error"]["errors"][0]["reason"], "notFound", "{text}");

    // So does a bucket that does not exist.
    let url = gcs.object_url("druid-e2e-no-such-bucket", missing, &[]);
    let response = gcs.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

// ---- Azurite ---------------------------------------------------------------

#[test]
fn x_ms_date_is_rfc1123() {
    let at = |secs| azure_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(at(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    assert_eq!(at(951_825_600), "Tue, 29 Feb 2000 12:00:00 GMT");
}

/// A client that signs every request with Shared Key.
struct Azure {
    endpoint: String,
    account: String,
    /// The account key, base64.
    key: String,
    http: reqwest::Client,
}

impl Azure {
    fn new(server: &AzuriteServer, key_base64: &str) -> Self {
        Self {
            endpoint: server.endpoint().to_string(),
            account: server.account().to_string(),
            key: key_base64.to_string(),
            http: http_client(),
        }
    }

    /// A signed request for `path` (`/container` or `/container/blob`)
    /// under the account's endpoint. `headers` are extra `x-ms-*` headers.
    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let mut url: Url = format!("{}{path}", self.endpoint).parse().unwrap();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }

        let date = azure_date(SystemTime::now());
        let mut ms_headers: Vec<(String, String)> = [("x-ms-date", date.as_str())]
            .into_iter()
            .chain([("x-ms-version", AZURE_VERSION)])
            .chain(headers.iter().copied())
            .map(|(name, value)| (name.to_lowercase(), value.trim().to_string()))
            .collect();
        ms_headers.sort();
        let params: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let authorization = shared_key_authorization(
            &self.account,
            &self.key,
            method.as_str(),
            url.path(),
            &params,
            &ms_headers,
            body.len(),
        )
        .unwrap();

        let mut request = self
            .http
            .request(method, url)
            .header("authorization", authorization);
        for (name, value) in &ms_headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request.body(body)
    }

    /// A signed container-level request (`?restype=container`): its status
    /// and body.
    async fn container(&self, method: Method, container: &str) -> (StatusCode, String) {
        let response = self
            .request(
                method,
                &format!("/{container}"),
                &[("restype", "container")],
                &[],
                Vec::new(),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    async fn create_container(&self, container: &str) {
        let (status, text) = self.container(Method::PUT, container).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
    }
}

#[tokio::test]
async fn azurite_blob_round_trip() {
    let server = AzuriteServer::shared();
    let azure = Azure::new(server, server.key());
    let container = "druid-e2e";
    azure.create_container(container).await;

    let body = snapshot_body();
    let blob = format!("/{container}/{SNAPSHOT}");
    let response = azure
        .request(
            Method::PUT,
            &blob,
            &[],
            &[("x-ms-blob-type", "BlockBlob")],
            body.clone(),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{text}");

    let response = azure
        .request(Method::GET, &blob, &[], &[], Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("x-ms-blob-type")
            .and_then(|v| v.to_str().ok()),
        Some("BlockBlob")
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), body.as_slice());

    let response = azure
        .request(
            Method::GET,
            &format!("/{container}"),
            &[
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", "v2/"),
            ],
            &[],
            Vec::new(),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains(&format!("<Name>{SNAPSHOT}</Name>")), "{text}");
    assert!(
        text.contains(&format!("<Content-Length>{}</Content-Length>", body.len())),
        "{text}"
    );
    assert_eq!(text.matches("<Blob>").count(), 1, "{text}");
}

#[tokio::test]
async fn azurite_refuses_a_wrong_key() {
    let server = AzuriteServer::shared();
    let wrong_key = BASE64.encode([7u8; 64]);
    let azure = Azure::new(server, &wrong_key);
    let (status, text) = azure.container(Method::PUT, "druid-e2e-denied").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(
        text.contains("AuthenticationFailed") || text.contains("AuthorizationFailure"),
        "{text}"
    );

    // The container was not created: the right key cannot find it.
    let azure = Azure::new(server, server.key());
    let (status, text) = azure.container(Method::GET, "druid-e2e-denied").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("ContainerNotFound"), "{text}");
}
