//! The full snapshot format: etcd's `Maintenance.Snapshot` stream, stored
//! verbatim (before compression), which is the bbolt database followed by a
//! raw 32-byte SHA-256 of the database bytes that etcd appends.
//!
//! [`TrailerCheck`] verifies that trailer while the stream passes through,
//! holding back only the last 32 bytes, so a multi-gigabyte snapshot is
//! checked without being buffered. The sidecar checks before uploading a
//! full snapshot and before restoring one.

use std::io;

use sha2::{Digest as _, Sha256};

/// Length of the SHA-256 trailer etcd appends to a snapshot stream: etcd-db's
/// one snapshot hash length, which the delta format's hash shares.
pub const TRAILER_LEN: usize = druid_etcd_db::SNAPSHOT_HASH_LEN;

/// Upstream's plausibility check before hashing: a bbolt file is a whole
/// number of pages, so the stream length must be 32 modulo 512 (else
/// "SHA256 hash seems to be missing").
pub const UPSTREAM_SIZE_MODULUS: u64 = 512;

/// Streaming verifier of the SHA-256 trailer of a full snapshot stream.
///
/// Feed the (decompressed) stream with [`TrailerCheck::update`] or as an
/// [`io::Write`], then call [`TrailerCheck::finish`]. Everything except the
/// last 32 bytes seen so far is hashed as it arrives.
#[derive(Clone, Debug)]
pub struct TrailerCheck {
    hasher: Sha256,
    /// The last `tail_len` bytes seen, not yet hashed.
    tail: [u8; TRAILER_LEN],
    tail_len: usize,
    total: u64,
    check_size: bool,
}

impl Default for TrailerCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl TrailerCheck {
    /// A checker that only verifies the hash (the stream may have any
    /// length of at least 32 bytes).
    pub fn new() -> Self {
        TrailerCheck {
            hasher: Sha256::new(),
            tail: [0; TRAILER_LEN],
            tail_len: 0,
            total: 0,
            check_size: false,
        }
    }

    /// A checker that, like upstream, also requires the stream length to be
    /// 32 modulo [`UPSTREAM_SIZE_MODULUS`] (a page-aligned bbolt file plus
    /// the trailer) and reports [`TrailerError::HashMissing`] otherwise.
    pub fn with_upstream_size_check() -> Self {
        TrailerCheck {
            check_size: true,
            ..Self::new()
        }
    }

    /// Consumes the next piece of the stream.
    pub fn update(&mut self, data: &[u8]) {
        self.total = self.total.saturating_add(data.len() as u64);
        let held = self.tail_len + data.len();
        if held <= TRAILER_LEN {
            self.tail[self.tail_len..held].copy_from_slice(data);
            self.tail_len = held;
            return;
        }
        // `overflow` bytes (the oldest held ones) are no longer among the
        // last 32 and get hashed.
        let overflow = held - TRAILER_LEN;
        if overflow >= self.tail_len {
            self.hasher.update(&self.tail[..self.tail_len]);
            let from_data = overflow - self.tail_len;
            self.hasher.update(&data[..from_data]);
            self.tail.copy_from_slice(&data[from_data..]);
        } else {
            self.hasher.update(&self.tail[..overflow]);
            self.tail.copy_within(overflow..self.tail_len, 0);
            let kept = self.tail_len - overflow;
            self.tail[kept..].copy_from_slice(data);
        }
        self.tail_len = TRAILER_LEN;
    }

    /// How many bytes have been consumed so far.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// Ends the stream and checks that its last 32 bytes are the SHA-256
    /// of everything before them.
    pub fn finish(self) -> Result<Verified, TrailerError> {
        if self.tail_len < TRAILER_LEN {
            return Err(TrailerError::TooShort { len: self.total });
        }
        if self.check_size && self.total % UPSTREAM_SIZE_MODULUS != TRAILER_LEN as u64 {
            return Err(TrailerError::HashMissing { len: self.total });
        }
        let digest: [u8; TRAILER_LEN] = self.hasher.finalize().into();
        if digest != self.tail {
            return Err(TrailerError::Mismatch {
                len: self.total,
                trailer: hex(&self.tail),
                computed: hex(&digest),
            });
        }
        Ok(Verified {
            payload_len: self.total - TRAILER_LEN as u64,
            digest,
        })
    }
}

impl io::Write for TrailerCheck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The result of a successful [`TrailerCheck::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Length of the database, i.e. the stream without its trailer.
    pub payload_len: u64,
    /// The SHA-256 of the database (equal to the trailer).
    pub digest: [u8; TRAILER_LEN],
}

/// Why a full snapshot stream failed its trailer check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrailerError {
    /// The stream is shorter than the trailer itself.
    #[error(
        "full snapshot is truncated: {len} bytes is shorter than its \
         {TRAILER_LEN}-byte SHA-256 trailer"
    )]
    TooShort {
        /// The stream's length.
        len: u64,
    },
    /// The length is not that of a page-aligned database plus a trailer
    /// (only with [`TrailerCheck::with_upstream_size_check`]).
    #[error(
        "full snapshot of {len} bytes seems to miss its SHA-256 trailer \
         (length is not 32 modulo {UPSTREAM_SIZE_MODULUS})"
    )]
    HashMissing {
        /// The stream's length.
        len: u64,
    },
    /// The trailer is not the SHA-256 of the bytes before it: the snapshot
    /// is corrupt or truncated.
    #[error(
        "full snapshot of {len} bytes is corrupt or truncated: trailer {trailer} \
         is not the SHA-256 {computed} of the preceding bytes"
    )]
    Mismatch {
        /// The stream's length.
        len: u64,
        /// The last 32 bytes, hex.
        trailer: String,
        /// The SHA-256 of the preceding bytes, hex.
        computed: String,
    },
}

/// Why a full snapshot file on disk failed its check.
#[derive(Debug, thiserror::Error)]
pub enum FileCheckError {
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file could not be read to its end.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The trailer is missing or does not match.
    #[error(transparent)]
    Trailer(#[from] TrailerError),
}

/// Checks the SHA-256 trailer of a decompressed full snapshot (or a
/// compacted database) on disk, reading it once in constant memory.
pub fn check_file(path: &std::path::Path) -> Result<Verified, FileCheckError> {
    let mut file = std::fs::File::open(path).map_err(|source| FileCheckError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut check = TrailerCheck::new();
    io::copy(&mut file, &mut check).map_err(|source| FileCheckError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(check.finish()?)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A database-like payload followed by its SHA-256.
    fn snapshot(payload_len: usize) -> Vec<u8> {
        let mut data: Vec<u8> = (0..payload_len).map(|i| (i * 31 % 251) as u8).collect();
        let digest = Sha256::digest(&data);
        data.extend_from_slice(&digest);
        data
    }

    fn check_in_chunks(
        data: &[u8],
        chunk: usize,
        mut check: TrailerCheck,
    ) -> Result<Verified, TrailerError> {
        for piece in data.chunks(chunk.max(1)) {
            check.update(piece);
        }
        assert_eq!(check.total_len(), data.len() as u64);
        check.finish()
    }

    #[test]
    fn accepts_valid_streams_in_any_chunking() {
        for payload_len in [0, 1, 31, 32, 33, 64, 4096, 10_000] {
            let data = snapshot(payload_len);
            let want = Verified {
                payload_len: payload_len as u64,
                digest: Sha256::digest(&data[..payload_len]).into(),
            };
            for chunk in [1, 2, 7, 31, 32, 33, 64, 1000, data.len()] {
                let got = check_in_chunks(&data, chunk, TrailerCheck::new()).unwrap();
                assert_eq!(got, want, "payload {payload_len}, chunk {chunk}");
            }
            // Irregular chunks, including empty ones.
            let mut check = TrailerCheck::new();
            let mut rest = &data[..];
            let mut size = 0;
            while !rest.is_empty() {
                let n = size.min(rest.len());
                check.update(&rest[..n]);
                rest = &rest[n..];
                size = (size * 7 + 3) % 50;
            }
            assert_eq!(check.finish().unwrap(), want);
        }
    }

    #[test]
    fn works_as_a_writer() {
        let data = snapshot(8192);
        let mut check = TrailerCheck::default();
        io::copy(&mut &data[..], &mut check).unwrap();
        check.flush().unwrap();
        assert_eq!(check.finish().unwrap().payload_len, 8192);
    }

    #[test]
    fn rejects_short_streams() {
        for len in [0, 1, 31] {
            let err = check_in_chunks(&vec![0; len], 5, TrailerCheck::new()).unwrap_err();
            assert_eq!(err, TrailerError::TooShort { len: len as u64 });
        }
    }

    #[test]
    fn rejects_truncated_and_corrupt_streams() {
        let data = snapshot(4096);
        // Truncated anywhere (past the trailer length), including cut
        // trailers.
        for cut in [32, 33, 100, 4096, 4096 + 16, data.len() - 1] {
            let err = check_in_chunks(&data[..cut], 100, TrailerCheck::new()).unwrap_err();
            assert!(
                matches!(err, TrailerError::Mismatch { .. }),
                "cut {cut}: {err}"
            );
        }
        // Any flipped bit, in the payload or the trailer.
        for at in [0, 1, 2048, 4095, 4096, data.len() - 1] {
            let mut bad = data.clone();
            bad[at] ^= 0x10;
            let err = check_in_chunks(&bad, 333, TrailerCheck::new()).unwrap_err();
            assert!(matches!(err, TrailerError::Mismatch { .. }), "flip at {at}");
        }
        // Extra bytes after the trailer.
        let mut longer = data.clone();
        longer.push(0);
        assert!(check_in_chunks(&longer, 64, TrailerCheck::new()).is_err());
        // A stream without a trailer at all.
        let bare: Vec<u8> = data[..4096].to_vec();
        assert!(check_in_chunks(&bare, 64, TrailerCheck::new()).is_err());
    }

    #[test]
    fn mismatch_message_names_both_hashes() {
        let mut data = snapshot(64);
        data[0] ^= 1;
        let err = check_in_chunks(&data, 10, TrailerCheck::new()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&hex(&data[64..])), "{message}");
        assert!(
            message.contains(&hex(&Sha256::digest(&data[..64]))),
            "{message}"
        );
        assert!(message.starts_with("full snapshot of 96 bytes is corrupt or truncated"));
    }

    #[test]
    fn upstream_size_check() {
        // Page-aligned databases pass.
        for pages in [1, 2, 10] {
            let data = snapshot(pages * 4096);
            check_in_chunks(&data, 1000, TrailerCheck::with_upstream_size_check()).unwrap();
        }
        // 32 bytes short of alignment: hash missing, before any hashing.
        let data = snapshot(4096);
        let err = check_in_chunks(
            &data[..4096],
            1000,
            TrailerCheck::with_upstream_size_check(),
        )
        .unwrap_err();
        assert_eq!(err, TrailerError::HashMissing { len: 4096 });
        // A valid hash over an unaligned payload still fails the size check.
        let data = snapshot(100);
        let err = check_in_chunks(&data, 7, TrailerCheck::with_upstream_size_check()).unwrap_err();
        assert_eq!(err, TrailerError::HashMissing { len: 132 });
        // Without the size check it passes.
        check_in_chunks(&data, 7, TrailerCheck::new()).unwrap();
    }

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
        assert_eq!(hex(&[]), "");
    }
}
