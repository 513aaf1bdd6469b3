//! A GET's response body read as a `download` resource: in chunks of at
//! most what the host asks for, dropping what a server that ignored the
//! `Range` sent before the range's start, and stopping at its end.

use std::cell::{Cell, RefCell};

use crate::http::{self, Response};
use crate::store::{ByteRange, StoreError};

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
