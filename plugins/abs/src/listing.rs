//! The List Blobs answer (`EnumerationResults`) to a listing page, and the
//! Put Block List body. Pure logic, tested natively.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use druid_plugin_sdk::store::{ListPage, ObjectInfo};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Enumeration {
    #[serde(rename = "Blobs", default)]
    blobs: Blobs,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<Blob>,
}

#[derive(Debug, Deserialize)]
struct Blob {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Properties")]
    properties: Properties,
}

#[derive(Debug, Deserialize)]
struct Properties {
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
}

/// A listing page from a List Blobs body: the blobs in the service's
/// order (by name) and `NextMarker`, when not empty, as the token of the
/// next page.
pub fn parse_list(xml: &str) -> Result<ListPage, String> {
    if !xml.contains("<EnumerationResults") {
        return Err("not an EnumerationResults document".into());
    }
    let parsed: Enumeration = quick_xml::de::from_str(xml).map_err(|e| e.to_string())?;
    Ok(ListPage {
        objects: parsed
            .blobs
            .blob
            .into_iter()
            .map(|b| ObjectInfo {
                key: b.name,
                size: b.properties.content_length,
                last_modified: b
                    .properties
                    .last_modified
                    .as_deref()
                    .and_then(druid_plugin_sdk::time::parse_http_date),
            })
            .collect(),
        next_token: parsed.next_marker.filter(|m| !m.trim().is_empty()),
    })
}

/// The id of block `n` (from 0): base64 of the number written with ten
/// digits, as upstream names them, so every id of a blob has one length.
pub fn block_id(n: usize) -> String {
    BASE64.encode(format!("{n:010}"))
}

/// The Put Block List body committing `ids` in order.
pub fn block_list(ids: &[String]) -> String {
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for id in ids {
        // Base64: nothing to escape.
        body.push_str(&format!("<Latest>{id}</Latest>"));
    }
    body.push_str("</BlockList>");
    body
}
