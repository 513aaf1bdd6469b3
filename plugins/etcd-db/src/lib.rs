//! Pure-Rust access to etcd's database: bbolt pages, etcd's mvcc schema and
//! the snapshot formats. It builds natively and for wasm32, so the compactor
//! plugin, the host and the tests share one implementation.
//!
//! The compaction issue fills this crate; for now it holds the facts of the
//! snapshot stream that every later part relies on.

/// Length of the SHA-256 trailer that etcd appends to a snapshot stream.
pub const SNAPSHOT_HASH_LEN: usize = 32;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is shorter than a snapshot can be.
    #[error("snapshot is {len} bytes, shorter than its {SNAPSHOT_HASH_LEN}-byte SHA-256 trailer")]
    Truncated {
        /// The length seen.
        len: usize,
    },
}

/// Splits an in-memory snapshot stream into the database bytes and the
/// SHA-256 trailer.
pub fn split_snapshot(bytes: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    if bytes.len() < SNAPSHOT_HASH_LEN {
        return Err(Error::Truncated { len: bytes.len() });
    }
    Ok(bytes.split_at(bytes.len() - SNAPSHOT_HASH_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_off_the_trailer() {
        let mut stream = vec![7u8; 100];
        stream.extend([1u8; SNAPSHOT_HASH_LEN]);
        let (db, hash) = split_snapshot(&stream).unwrap();
        assert_eq!(db.len(), 100);
        assert_eq!(hash, &[1u8; SNAPSHOT_HASH_LEN]);
    }

    #[test]
    fn too_short_is_an_error() {
        let err = split_snapshot(&[0u8; 5]).unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
    }
}
