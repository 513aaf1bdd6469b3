//! Reading a store's credentials from the mounted secret, in the forms
//! etcd-backup-restore reads them:
//! - a directory with one file per key (a Kubernetes secret volume), or a
//!   directory holding a `*.json` file (legacy JSON form);
//! - a JSON file (`<P>_APPLICATION_CREDENTIALS_JSON`).
//!
//! Values are handed to the plugin as strings; JSON booleans and numbers
//! are written out as text. Trailing newlines of key files are dropped
//! (secrets made with `--from-file` often end with one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest credential file the host reads.
const MAX_FILE: u64 = 1 << 20;

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
    /// A file is larger than credentials can be.
    #[error("store credential file {path} is {size} bytes, over the limit of {MAX_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The JSON form is not a flat JSON object.
    #[error("store credentials file {path} is not a flat JSON object of strings: {detail}")]
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

/// Parses the JSON form: a flat object whose values are strings, booleans
/// or numbers.
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
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            other => Err(json_error(format!("key {k:?} holds {other}, not a string"))),
        })
        .collect()
}

/// Reads credentials from `path`: a JSON file, or a directory of key files
/// (a `*.json` file in it takes precedence, as upstream).
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, CredentialsError> {
    let io = |source| CredentialsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return parse_json(path, &read_limited(path)?);
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Secret volumes hold `..data` and timestamped directories; the
        // keys are the visible names (symlinks to files).
        if name.starts_with('.') {
            continue;
        }
        let p = entry.path();
        if p.is_file() {
            files.push((name, p));
        }
    }
    files.sort();
    if let Some((_, json)) = files.iter().find(|(n, _)| n.ends_with(".json")) {
        return parse_json(json, &read_limited(json)?);
    }
    files
        .into_iter()
        .map(|(name, p)| {
            let value = read_limited(&p)?;
            Ok((name, value.trim_end_matches(['\n', '\r']).to_string()))
        })
        .collect()
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
        std::fs::write(d.join("ignored"), "x").unwrap();
        for path in [&f, &d] {
            let c = read(path).unwrap();
            assert_eq!(c.get("s3ForcePathStyle").map(String::as_str), Some("true"));
            assert_eq!(c.get("port").map(String::as_str), Some("9000"));
            assert!(!c.contains_key("ignored"));
        }
    }

    #[test]
    fn bad_json_and_missing_paths_name_the_file() {
        let d = temp_dir("bad");
        let f = d.join("creds.json");
        std::fs::write(&f, r#"{"nested":{"a":1}}"#).unwrap();
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("creds.json") && e.contains("nested"), "{e}");
        let e = read(&d.join("nope")).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
