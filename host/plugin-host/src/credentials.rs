//! Reading a store's credentials from the mounted secret, in the forms
//! etcd-backup-restore reads them:
//! - a directory with one file per key (a Kubernetes secret volume), or a
//!   directory holding a `*.json` file (legacy JSON form);
//! - a JSON file (`<P>_APPLICATION_CREDENTIALS_JSON`, or upstream's
//!   `GOOGLE_APPLICATION_CREDENTIALS` naming `serviceaccount.json`).
//!
//! Values are handed to the plugin as strings; JSON booleans and numbers
//! are written out as text, objects and arrays as their compact JSON
//! (a GCS `external_account`'s `credential_source`). With the JSON form,
//! the other files of its directory (the Secret's other keys, e.g. the
//! `token` and `projectID` of upstream's GCS workload identity) are passed
//! too, under their names; the JSON's keys win. Trailing newlines of key
//! files are dropped (secrets made with `--from-file` often end with one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest credential file the host reads.
const MAX_FILE: u64 = 1 << 20;

/// Most files a credentials directory may hold (a Secret's keys).
const MAX_FILES: usize = 64;

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A file or directory could not be read.
    #[error("cannot read store credentials at {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A directory holds more files than a Secret's keys would be.
    #[error(
        "store credentials directory {path} holds more than {MAX_FILES} files: name the mounted \
         store Secret, not a directory of other files"
    )]
    TooManyFiles {
        /// The directory.
        path: PathBuf,
    },
    /// A file is larger than credentials can be.
    #[error("store credential file {path} is {size} bytes, over the limit of {MAX_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The JSON form is not a JSON object.
    #[error("store credentials file {path} is not a JSON object: {detail}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn read_limited(path: &Path) -> Result<String, CredentialsError> {
    let io = |source| CredentialsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE {
        return Err(CredentialsError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Parses the JSON form: an object whose values are strings, booleans,
/// numbers (as text) or objects and arrays (as compact JSON); `null`s are
/// left out.
pub fn parse_json(path: &Path, text: &str) -> Result<BTreeMap<String, String>, CredentialsError> {
    let json_error = |detail: String| CredentialsError::Json {
        path: path.to_path_buf(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| json_error(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(json_error("the top level is not an object".into()));
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            nested => Some((k, nested.to_string())),
        })
        .collect())
}

/// Reads one value from a file (a projected service-account token named
/// by a `*_FILE` variable): its content without the trailing newline.
pub fn read_value_file(path: &Path) -> Result<String, CredentialsError> {
    Ok(read_limited(path)?
        .trim_end_matches(['\n', '\r'])
        .to_string())
}

/// The visible regular files of a directory (a Secret volume's keys; its
/// `..data` and timestamped directories are hidden), by name.
fn key_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, CredentialsError> {
    let io = |source| CredentialsError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let p = entry.path();
        if p.is_file() {
            if files.len() == MAX_FILES {
                return Err(CredentialsError::TooManyFiles {
                    path: dir.to_path_buf(),
                });
            }
            files.push((name, p));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads key files, each without its trailing newline.
fn read_keys(files: &[(String, PathBuf)]) -> Result<BTreeMap<String, String>, CredentialsError> {
    files
        .iter()
        .map(|(name, p)| Ok((name.clone(), read_value_file(p)?)))
        .collect()
}

/// Reads credentials from `path`: a JSON file, or a directory of key files
/// (a `*.json` file in it takes precedence, as upstream). The JSON form
/// gets the other files of its directory too (see the module doc).
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, CredentialsError> {
    let meta = std::fs::metadata(path).map_err(|source| CredentialsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (json, dir) = if meta.is_file() {
        (
            Some(path.to_path_buf()),
            path.parent().map(Path::to_path_buf),
        )
    } else {
        let files = key_files(path)?;
        match files.iter().find(|(n, _)| n.ends_with(".json")) {
            Some((_, json)) => (Some(json.clone()), Some(path.to_path_buf())),
            None => return read_keys(&files),
        }
    };
    let Some(json) = json else {
        return Ok(BTreeMap::new());
    };
    let mut credentials = parse_json(&json, &read_limited(&json)?)?;
    if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
        let siblings: Vec<(String, PathBuf)> = key_files(&dir)?
            .into_iter()
            .filter(|(name, _)| !name.ends_with(".json") && !credentials.contains_key(name))
            .collect();
        credentials.extend(read_keys(&siblings)?);
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("druid-creds-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn one_file_per_key_with_trailing_newlines_dropped() {
        let d = temp_dir("files");
        std::fs::write(d.join("region"), "eu-west-1\n").unwrap();
        std::fs::write(d.join("accessKeyID"), "AKIA").unwrap();
        std::fs::create_dir(d.join("..2026_11_25")).unwrap();
        let c = read(&d).unwrap();
        assert_eq!(c.get("region").map(String::as_str), Some("eu-west-1"));
        assert_eq!(c.get("accessKeyID").map(String::as_str), Some("AKIA"));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn the_json_form_in_a_file_or_a_directory() {
        let d = temp_dir("json");
        let f = d.join("credentials.json");
        std::fs::write(
            &f,
            r#"{"region":"eu-west-1","s3ForcePathStyle":true,"port":9000}"#,
        )
        .unwrap();
        std::fs::write(d.join("token"), "header.claims.sig\n").unwrap();
        std::fs::write(d.join("region"), "not-the-jsons").unwrap();
        std::fs::write(d.join("other.json"), "{}").unwrap();
        for path in [&f, &d] {
            let c = read(path).unwrap();
            assert_eq!(c.get("s3ForcePathStyle").map(String::as_str), Some("true"));
            assert_eq!(c.get("port").map(String::as_str), Some("9000"));
            // The Secret's other keys come along; the JSON's win.
            assert_eq!(
                c.get("token").map(String::as_str),
                Some("header.claims.sig")
            );
            assert_eq!(c.get("region").map(String::as_str), Some("eu-west-1"));
            assert!(!c.contains_key("other.json"), "{c:?}");
        }
    }

    #[test]
    fn nested_json_values_are_passed_as_json_text() {
        let d = temp_dir("nested");
        let f = d.join("serviceaccount.json");
        std::fs::write(
            &f,
            r#"{"type":"external_account","credential_source":{"file":"/var/x/token","format":{"type":"text"}},"scopes":["a","b"],"quota_project_id":null}"#,
        )
        .unwrap();
        let c = read(&f).unwrap();
        assert_eq!(c["type"], "external_account");
        assert_eq!(
            c["credential_source"],
            r#"{"file":"/var/x/token","format":{"type":"text"}}"#
        );
        assert_eq!(c["scopes"], r#"["a","b"]"#);
        assert!(!c.contains_key("quota_project_id"));
    }

    #[test]
    fn a_directory_of_other_files_is_refused() {
        let d = temp_dir("many");
        for i in 0..=MAX_FILES {
            std::fs::write(d.join(format!("k{i}")), "v").unwrap();
        }
        let e = read(&d).unwrap_err().to_string();
        assert!(e.contains("more than 64 files"), "{e}");
    }

    #[test]
    fn bad_json_and_missing_paths_name_the_file() {
        let d = temp_dir("bad");
        let f = d.join("creds.json");
        std::fs::write(&f, r#"["not", "an", "object"]"#).unwrap();
        let e = read(&f).unwrap_err().to_string();
        assert!(
            e.contains("creds.json") && e.contains("not an object"),
            "{e}"
        );
        let e = read(&d.join("nope")).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
