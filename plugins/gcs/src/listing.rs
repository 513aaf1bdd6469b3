//! The JSON API's object resources (a listing page, one object's
//! metadata) to the store interface's types. Pure logic, tested natively.

use druid_plugin_sdk::store::{ListPage, ObjectInfo};
use serde::Deserialize;

/// The fields of a listing asked for (`fields=`), so that pages stay small.
pub const LIST_FIELDS: &str = "items(name,size,updated),nextPageToken";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Objects {
    #[serde(default)]
    items: Vec<Object>,
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Object {
    name: String,
    /// A decimal string (the API's uint64s are strings).
    size: Option<String>,
    updated: Option<String>,
}

impl Object {
    fn info(self) -> Result<ObjectInfo, String> {
        let size = match &self.size {
            Some(s) => s
                .parse()
                .map_err(|_| format!("object {:?} has size {s:?}", self.name))?,
            None => return Err(format!("object {:?} has no size", self.name)),
        };
        Ok(ObjectInfo {
            last_modified: self
                .updated
                .as_deref()
                .and_then(druid_plugin_sdk::time::parse_iso8601),
            key: self.name,
            size,
        })
    }
}

/// A listing page from an `objects.list` answer: the objects in the
/// service's order (by name) and `nextPageToken`, when not empty.
pub fn parse_list(json: &str) -> Result<ListPage, String> {
    let page: Objects = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(ListPage {
        objects: page
            .items
            .into_iter()
            .map(Object::info)
            .collect::<Result<_, _>>()?,
        next_token: page.next_page_token.filter(|t| !t.is_empty()),
    })
}

/// An object's metadata from an `objects.get` answer.
pub fn parse_object(json: &str) -> Result<ObjectInfo, String> {
    serde_json::from_str::<Object>(json)
        .map_err(|e| e.to_string())?
        .info()
}
