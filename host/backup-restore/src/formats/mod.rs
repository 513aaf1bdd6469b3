//! The object-store formats, byte-compatible with the upstream sidecar:
//! pure code with no I/O beyond the streams it is handed.
//!
//! - [`names`]: snapshot object keys (`v2/Full-…`, `v2/Incr-…`, the legacy
//!   `v1/Backup-<ts>/…`, chunks), parsing and writing them;
//! - [`compression`]: gzip, zlib and Go-compatible LZW, chosen by suffix;
//! - [`full`]: the full snapshot format's SHA-256 trailer, checked while
//!   streaming;
//! - [`delta`]: the delta snapshot format (JSON watch events plus SHA-256);
//! - [`version`]: which etcd minor version wrote a snapshot database, and
//!   the rule against restoring it onto an older one.

pub mod compression;
pub mod delta;
pub mod full;
pub mod names;
pub mod version;
