//! Random-access sources of database bytes.

use crate::Error;

/// A random-access, read-only source of bytes: what [`crate::Db`] reads a
/// database from.
///
/// Implemented for byte slices, `Vec<u8>`, references and `Arc`s of
/// sources, [`Prefix`] and, natively on Unix, [`std::fs::File`] (positional
/// reads; the file is not mapped into memory).
pub trait ReadAt {
    /// The number of bytes the source holds.
    fn size(&self) -> Result<u64, Error>;

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`; reading
    /// past the end is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error>;

    /// The SHA-256 of the bytes at `offset..offset + len`. The default
    /// reads them in 1 MiB pieces; a source that can hash faster (the
    /// plugin host's handles, which hash natively) overrides it.
    fn sha256(&self, offset: u64, len: u64) -> Result<[u8; 32], Error> {
        use sha2::{Digest as _, Sha256};
        const PIECE: u64 = 1 << 20;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; usize::try_from(len.min(PIECE)).unwrap_or(1 << 20)];
        let mut at = 0;
        while at < len {
            let n = usize::try_from((len - at).min(PIECE)).unwrap_or(buf.len());
            self.read_at(offset + at, &mut buf[..n])?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(hasher.finalize().into())
    }
}

fn past_end(offset: u64, len: usize, size: u64) -> Error {
    Error::Io {
        offset,
        len,
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("past the end of the {size}-byte source"),
        ),
    }
}

impl ReadAt for [u8] {
    fn size(&self) -> Result<u64, Error> {
        Ok(self.len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| past_end(offset, buf.len(), self.len() as u64))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> Result<u64, Error> {
        self.as_slice().size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.as_slice().read_at(offset, buf)
    }
}

/// Forwards [`ReadAt`] through references and smart pointers.
macro_rules! forward_read_at {
    ($($ty:ty),*) => {$(
        impl<T: ReadAt + ?Sized> ReadAt for $ty {
            fn size(&self) -> Result<u64, Error> {
                (**self).size()
            }

            fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
                (**self).read_at(offset, buf)
            }

            fn sha256(&self, offset: u64, len: u64) -> Result<[u8; 32], Error> {
                (**self).sha256(offset, len)
            }
        }
    )*};
}

forward_read_at!(&T, &mut T, std::sync::Arc<T>, Box<T>);

#[cfg(unix)]
impl ReadAt for std::fs::File {
    fn size(&self) -> Result<u64, Error> {
        self.metadata()
            .map(|m| m.len())
            .map_err(|source| Error::Io {
                offset: 0,
                len: 0,
                source,
            })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        self.read_exact_at(buf, offset).map_err(|source| Error::Io {
            offset,
            len: buf.len(),
            source,
        })
    }
}

/// The first `len` bytes of another source, e.g. the database part of a
/// snapshot stream without its SHA-256 trailer.
///
/// A database can be opened on a whole snapshot stream too (the reader
/// never looks past the pages its meta page counts); `Prefix` makes the
/// limit explicit.
#[derive(Debug, Clone)]
pub struct Prefix<R> {
    inner: R,
    len: u64,
}

impl<R: ReadAt> Prefix<R> {
    /// The first `len` bytes of `inner` (all of it if it is shorter).
    pub fn new(inner: R, len: u64) -> Self {
        Self { inner, len }
    }

    /// The underlying source.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: ReadAt> ReadAt for Prefix<R> {
    fn size(&self) -> Result<u64, Error> {
        Ok(self.inner.size()?.min(self.len))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let size = self.size()?;
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= size => self.inner.read_at(offset, buf),
            _ => Err(past_end(offset, buf.len(), size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reads_in_bounds_only() {
        let data = [1u8, 2, 3, 4];
        let mut buf = [0u8; 2];
        data[..].read_at(2, &mut buf).unwrap();
        assert_eq!(buf, [3, 4]);
        assert!(data[..].read_at(3, &mut buf).is_err());
        assert!(data[..].read_at(u64::MAX, &mut buf).is_err());
    }

    #[test]
    fn prefix_limits_the_source() {
        let data = vec![1u8, 2, 3, 4, 5];
        let p = Prefix::new(&data, 3);
        assert_eq!(p.size().unwrap(), 3);
        let mut buf = [0u8; 2];
        p.read_at(1, &mut buf).unwrap();
        assert_eq!(buf, [2, 3]);
        assert!(p.read_at(2, &mut buf).is_err());
        assert_eq!(Prefix::new(&data, 100).size().unwrap(), 5);
    }

    #[cfg(unix)]
    #[test]
    fn file_reads_positionally() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("etcd-db-read-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"hello world")
            .unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(f.size().unwrap(), 11);
        let mut buf = [0u8; 5];
        f.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
        assert!(f.read_at(8, &mut buf).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
