//! OSS's XML: the ListObjectsV2 answer (`ListBucketResult`) to a listing
//! page, the InitiateMultipartUpload answer, the CompleteMultipartUpload
//! body, and error documents. Pure logic, tested natively.

use druid_plugin_sdk::store::{ListPage, ObjectInfo};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct ListBucketResult {
    #[serde(rename = "Contents", default)]
    contents: Vec<Contents>,
    #[serde(rename = "IsTruncated", default)]
    is_truncated: Option<String>,
    #[serde(rename = "NextContinuationToken", default)]
    next_continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Contents {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "LastModified", default)]
    last_modified: Option<String>,
}

/// A listing page from a ListObjectsV2 body: the objects in OSS's order
/// (by key) and, when the listing is truncated, `NextContinuationToken`
/// as the token of the next page.
pub fn parse_list(xml: &str) -> Result<ListPage, String> {
    if !xml.contains("<ListBucketResult") {
        return Err("not a ListBucketResult document".into());
    }
    let parsed: ListBucketResult = quick_xml::de::from_str(xml).map_err(|e| e.to_string())?;
    let truncated = parsed
        .is_truncated
        .as_deref()
        .is_some_and(|t| t.trim() == "true");
    let next_token = parsed
        .next_continuation_token
        .filter(|t| !t.trim().is_empty());
    if truncated && next_token.is_none() {
        return Err("the listing is truncated but has no NextContinuationToken".into());
    }
    Ok(ListPage {
        objects: parsed
            .contents
            .into_iter()
            .map(|c| ObjectInfo {
                key: c.key,
                size: c.size,
                last_modified: c
                    .last_modified
                    .as_deref()
                    .and_then(druid_plugin_sdk::time::parse_iso8601),
            })
            .collect(),
        next_token: if truncated { next_token } else { None },
    })
}

#[derive(Debug, Deserialize)]
struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId")]
    upload_id: String,
}

/// The upload id of an InitiateMultipartUpload answer.
pub fn parse_upload_id(xml: &str) -> Result<String, String> {
    let parsed: InitiateMultipartUploadResult =
        quick_xml::de::from_str(xml).map_err(|e| e.to_string())?;
    let id = parsed.upload_id.trim();
    if id.is_empty() {
        return Err("the UploadId is empty".into());
    }
    Ok(id.to_string())
}

/// Escapes text for an XML element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The CompleteMultipartUpload body over the parts' ETags, in order
/// (part numbers from 1).
pub fn complete_body(etags: &[String]) -> String {
    let mut body =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            escape(etag)
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

/// The fields of an OSS `<Error>` document that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OssError {
    /// `<Code>`, e.g. `NoSuchKey`.
    #[serde(rename = "Code", default)]
    pub code: Option<String>,
    /// `<Message>`.
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
    /// `<EC>`, OSS's error number, e.g. `0026-00000001` (looked up in
    /// Alibaba's error center).
    #[serde(rename = "EC", default)]
    pub ec: Option<String>,
}

/// Reads an error body; empty fields when it is not an `<Error>` document
/// (a HEAD's answer has no body).
pub fn parse_error(body: &str) -> OssError {
    if !body.contains("<Error") {
        return OssError::default();
    }
    quick_xml::de::from_str(body).unwrap_or_default()
}
