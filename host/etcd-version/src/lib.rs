//! etcd versions as the product compares them and as etcd's binaries
//! print them. See the crate's README.

use std::fmt;

/// An etcd major.minor version: what decides whether data may move between
/// two etcd builds (patch releases share a storage schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtcdVersion {
    /// The major version (3).
    pub major: u32,
    /// The minor version.
    pub minor: u32,
}

impl EtcdVersion {
    /// Parses `3.6`, `3.6.17`, `v3.6.17`, `3.7.0-rc.1`; `None` for anything
    /// else.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let mut parts = t.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The value (trimmed, otherwise as printed) of the first line of the form
/// `<tool> version: X` where the tool is etcd, etcdctl or etcdutl, in any
/// case: `etcd --version` prints `etcd Version: 3.5.36`, `etcdutl version`
/// `etcdutl version: 3.6.17`. Other lines (`API version: 3.6`,
/// `Go Version: go1.26.8`) never match.
pub fn version_line(output: &str) -> Option<&str> {
    output.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        let tool = name.strip_suffix(" version")?;
        matches!(tool, "etcd" | "etcdctl" | "etcdutl").then_some(value.trim())
    })
}

/// [`version_line`] as an [`EtcdVersion`]; `None` without such a line or
/// when its value is not a version.
pub fn parse_version_output(output: &str) -> Option<EtcdVersion> {
    version_line(output).and_then(EtcdVersion::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32) -> EtcdVersion {
        EtcdVersion { major, minor }
    }

    #[test]
    fn parses_versions_as_etcd_prints_them() {
        assert_eq!(EtcdVersion::parse("3.6.17"), Some(v(3, 6)));
        assert_eq!(EtcdVersion::parse("v3.5.36"), Some(v(3, 5)));
        assert_eq!(EtcdVersion::parse("3.7"), Some(v(3, 7)));
        assert_eq!(EtcdVersion::parse(" 3.7.0-rc.1 "), Some(v(3, 7)));
        assert_eq!(EtcdVersion::parse("3.10.0"), Some(v(3, 10)));
        for bad in ["", "3", "three.six", "3.x.1", "latest"] {
            assert_eq!(EtcdVersion::parse(bad), None, "{bad:?}");
        }
        assert!(v(3, 10) > v(3, 9), "minor versions compare as numbers");
        assert_eq!(v(3, 6).to_string(), "3.6");
    }

    #[test]
    fn reads_the_version_lines_of_etcd_etcdctl_and_etcdutl() {
        let etcd = "etcd Version: 3.5.36\nGit SHA: Not provided\nGo Version: go1.26.8\n";
        assert_eq!(version_line(etcd), Some("3.5.36"));
        assert_eq!(parse_version_output(etcd), Some(v(3, 5)));
        let etcdutl = "etcdutl version: 3.6.17\nAPI version: 3.6\n";
        assert_eq!(parse_version_output(etcdutl), Some(v(3, 6)));
        let etcdctl = "etcdctl version: 3.4.23\nAPI version: 3.4\n";
        assert_eq!(parse_version_output(etcdctl), Some(v(3, 4)));
        assert_eq!(
            version_line("etcd Version: 3.7.0-rc.1\n"),
            Some("3.7.0-rc.1")
        );
        // The value is returned as printed: callers that pass it on filter it.
        assert_eq!(
            version_line("etcd Version: 3.5&mode=full\n"),
            Some("3.5&mode=full")
        );
        assert_eq!(version_line("etcd Version: \n"), Some(""));
        assert_eq!(parse_version_output("etcd Version: \n"), None);
        for none in [
            "Go Version: go1.26.8\n",
            "API version: 3.6\n",
            "usage: etcdctl\n",
            "",
        ] {
            assert_eq!(version_line(none), None, "{none:?}");
        }
    }
}
