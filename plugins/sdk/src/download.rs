//! A GET's response body read as a `download` resource: in chunks of at
//! most what the host asks for, dropping what a server that ignored the
//! `Range` sent before the range's start, and stopping at its end.

use std::cell::{Cell, RefCell};

use crate::http::{self, Response};
use crate::store::{ByteRange, GuestDownload, ObjectInfo, StoreError};

/// The body of one object's GET response, or nothing (an empty read).
pub struct RangedBody {
    key: String,
    response: RefCell<Option<Response>>,
    /// Bytes still to drop from the front (a server that ignored Range).
    skip: Cell<u64>,
    /// Bytes still to return, if the range had a length.
    remaining: Cell<Option<u64>>,
}

impl RangedBody {
    /// The body of `response` to a GET of `key` for `range`. A `200`
    /// answer to a ranged request is the whole object: its bytes before
    /// the range's start are dropped here.
    pub fn new(key: String, response: Response, range: Option<&ByteRange>) -> Self {
        let skip = match range {
            Some(r) if response.status == 200 => r.start,
            _ => 0,
        };
        Self {
            key,
            response: RefCell::new(Some(response)),
            skip: Cell::new(skip),
            remaining: Cell::new(range.and_then(|r| r.length)),
        }
    }

    /// The download of `key` for `range`, as a provider's store serves it:
    /// an empty range only asks `head` whether the object exists (nothing
    /// to read); otherwise `get` sends the request, answering none for a
    /// range that starts past the end (HTTP 416), which reads as empty.
    pub fn open(
        key: String,
        range: Option<ByteRange>,
        head: impl FnOnce(&str) -> Result<ObjectInfo, StoreError>,
        get: impl FnOnce(&str, Option<&ByteRange>) -> Result<Option<Response>, StoreError>,
    ) -> Result<Self, StoreError> {
        if let Some(ByteRange {
            length: Some(0), ..
        }) = range
        {
            head(&key)?;
            return Ok(Self::empty(key));
        }
        Ok(match get(&key, range.as_ref())? {
            Some(response) => Self::new(key, response, range.as_ref()),
            None => Self::empty(key),
        })
    }

    /// A body with nothing to read (an empty range, or a range past the
    /// end of the object).
    pub fn empty(key: String) -> Self {
        Self {
            key,
            response: RefCell::new(None),
            skip: Cell::new(0),
            remaining: Cell::new(Some(0)),
        }
    }

    /// Up to `max` bytes (at least 1 is asked for); empty at the end.
    pub fn read(&self, max: u32) -> Result<Vec<u8>, StoreError> {
        let mut guard = self.response.borrow_mut();
        let Some(response) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        while self.skip.get() > 0 {
            let skip = self.skip.get();
            let n = usize::try_from(skip.min(1 << 20)).unwrap_or(1 << 20);
            let dropped = response.read(n).map_err(|e| self.broke_off(&e))?;
            if dropped.is_empty() {
                return Ok(dropped);
            }
            self.skip.set(skip - dropped.len() as u64);
        }
        let remaining = self.remaining.get();
        let want = u64::from(max.max(1)).min(remaining.unwrap_or(u64::MAX));
        if want == 0 {
            return Ok(Vec::new());
        }
        let chunk = response
            .read(usize::try_from(want).unwrap_or(usize::MAX))
            .map_err(|e| self.broke_off(&e))?;
        if let Some(rest) = remaining {
            self.remaining
                .set(Some(rest.saturating_sub(chunk.len() as u64)));
        }
        Ok(chunk)
    }

    fn broke_off(&self, e: &http::Error) -> StoreError {
        StoreError::Unavailable(format!(
            "download {:?}: the transfer broke off: {e}",
            self.key
        ))
    }
}

/// A provider's `download` resource can be the body itself.
impl GuestDownload for RangedBody {
    fn read(&self, max: u32) -> Result<Vec<u8>, StoreError> {
        RangedBody::read(self, max)
    }
}

/// The value of a `Range` (or Azure's `x-ms-range`) header for a byte
/// range: `bytes=A-B`, or `bytes=A-` to the end. (A length of 0 reads
/// nothing: callers answer it without a request.)
pub fn range_header(r: &ByteRange) -> String {
    match r.length {
        Some(len) if len > 0 => format!("bytes={}-{}", r.start, r.start.saturating_add(len - 1)),
        _ => format!("bytes={}-", r.start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_range_only_asks_whether_the_object_exists() {
        let missing = || StoreError::NotFound("k".into());
        let body = RangedBody::open(
            "k".into(),
            Some(ByteRange {
                start: 5,
                length: Some(0),
            }),
            |k| {
                Ok(ObjectInfo {
                    key: k.into(),
                    size: 9,
                    last_modified: None,
                })
            },
            |_, _| panic!("no request for an empty range"),
        )
        .unwrap();
        assert!(body.read(10).unwrap().is_empty());
        let err = RangedBody::open(
            "k".into(),
            Some(ByteRange {
                start: 0,
                length: Some(0),
            }),
            |_| Err(missing()),
            |_, _| panic!("no request for an empty range"),
        )
        .err()
        .unwrap();
        assert!(matches!(err, StoreError::NotFound(_)));
        // A range past the end (the store's 416) reads as empty.
        let mut asked = None;
        let body = RangedBody::open(
            "k".into(),
            Some(ByteRange {
                start: 100,
                length: None,
            }),
            |_| panic!("no head for a range with bytes"),
            |k, r| {
                asked = Some((k.to_string(), r.map(|r| (r.start, r.length))));
                Ok(None)
            },
        )
        .unwrap();
        assert!(body.read(10).unwrap().is_empty());
        assert_eq!(asked, Some(("k".to_string(), Some((100, None)))));
    }

    #[test]
    fn ranges_become_inclusive_headers() {
        let r = |start, length| range_header(&ByteRange { start, length });
        assert_eq!(r(0, Some(10)), "bytes=0-9");
        assert_eq!(r(100, Some(1)), "bytes=100-100");
        assert_eq!(r(5, None), "bytes=5-");
        assert_eq!(
            r(u64::MAX - 1, Some(10)),
            format!("bytes={}-{}", u64::MAX - 1, u64::MAX)
        );
    }
}
