//! Container listings (`format=json`) to the store interface's types, and
//! which names are large objects' segments. Pure logic, tested natively.

use druid_plugin_sdk::store::{ListPage, ObjectInfo};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Entry {
    name: Option<String>,
    /// A delimiter listing's pseudo-directory (in place of `name`).
    subdir: Option<String>,
    bytes: Option<u64>,
    last_modified: Option<String>,
}

/// Whether `name` is a segment of a large object: `<object>/NNNNNNNNNN`
/// (ten digits), the names upstream gives its segments and so does this
/// plugin. Listings leave them out: they are part of their object, which
/// reads and deletes them with it (upstream's garbage collection ignores
/// Swift's chunks for the same reason).
pub fn is_segment(name: &str) -> bool {
    name.rsplit_once('/').is_some_and(|(object, last)| {
        !object.is_empty() && last.len() == 10 && last.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The segment name of part `index` (from 0) of `key`:
/// `<key>/0000000001` for the first.
pub fn segment_name(key: &str, index: usize) -> String {
    format!("{key}/{:010}", index + 1)
}

/// Swift's listing time (`2026-12-07T13:24:05.123450`, UTC without a
/// zone) in Unix seconds.
fn listing_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.ends_with('Z') || s.contains('+') {
        druid_plugin_sdk::time::parse_iso8601(s)
    } else {
        druid_plugin_sdk::time::parse_iso8601(&format!("{s}Z"))
    }
}

/// A listing page from a `GET <container>?format=json&limit=N` answer:
/// the objects that are not segments, and the marker to go on from when
/// the page was full (`limit` entries; Swift says no more than that).
pub fn parse_list(json: &str, limit: u32) -> Result<ListPage, String> {
    let entries: Vec<Entry> = if json.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(json).map_err(|e| e.to_string())?
    };
    let full = entries.len() >= limit as usize;
    let last = entries
        .last()
        .and_then(|e| e.name.clone().or_else(|| e.subdir.clone()));
    let mut objects = Vec::with_capacity(entries.len());
    for e in entries {
        // A `subdir` entry (a delimiter listing) has no name.
        let Some(name) = e.name else { continue };
        if is_segment(&name) {
            continue;
        }
        let size = e
            .bytes
            .ok_or_else(|| format!("object {name:?} has no size"))?;
        objects.push(ObjectInfo {
            last_modified: e.last_modified.as_deref().and_then(listing_time),
            key: name,
            size,
        });
    }
    Ok(ListPage {
        objects,
        next_token: if full { last } else { None },
    })
}

/// A page of raw names below a prefix, for deleting segments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SegmentPage {
    /// The names of the page that are segments `<prefix>NNNNNNNNNN`.
    pub segments: Vec<String>,
    /// How many names the page had.
    pub names: usize,
    /// The page's last name (the marker of the next page).
    pub last: Option<String>,
}

/// The segments `<prefix>NNNNNNNNNN` of a raw listing page (`prefix` is
/// `<key>/`); other names below the prefix are kept.
pub fn segment_names(json: &str, prefix: &str) -> Result<SegmentPage, String> {
    let entries: Vec<Entry> = if json.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(json).map_err(|e| e.to_string())?
    };
    let names: Vec<String> = entries.into_iter().filter_map(|e| e.name).collect();
    Ok(SegmentPage {
        segments: names
            .iter()
            .filter(|n| {
                n.strip_prefix(prefix).is_some_and(|rest| {
                    rest.len() == 10 && rest.bytes().all(|b| b.is_ascii_digit())
                })
            })
            .cloned()
            .collect(),
        names: names.len(),
        last: names.last().cloned(),
    })
}
