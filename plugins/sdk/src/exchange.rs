//! One store request, retried: the method, headers and body a provider
//! builds, the error statuses it takes as answers, whether its body is
//! read inside the retry; and the loop that addresses and authorizes each
//! attempt afresh (a new signature, a renewed token), sends it and sorts
//! the answer. The provider plugins share it; each keeps its URLs, its
//! authorization and its error mapping.

use crate::http::{self, Method, Response};
use crate::retry::{Attempt, Backoff, with_backoff};
use crate::store::StoreError;

/// The most of an error body handed to the refusal mapping.
pub const MAX_ERROR_BYTES: usize = 16 << 10;

/// One request before it is addressed and authorized.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    /// The method.
    pub method: Method,
    /// Headers of every attempt (the attempt's own, such as a signature,
    /// come after them).
    pub headers: Vec<(String, String)>,
    /// The body (may be empty).
    pub body: &'a [u8],
    /// Error statuses taken as answers rather than refusals (a 404 of a
    /// delete, a 416 of a ranged read).
    pub pass: &'a [u16],
    /// Read the body, up to this many bytes, inside the retry, so that a
    /// body cut off midway is retried like a failed request.
    pub read: Option<usize>,
}

/// An answer: the response, and its body when the exchange asked for it
/// to be read.
pub struct Reply {
    /// The response (its body unread when the exchange did not read it).
    pub response: Response,
    /// The body read, or empty.
    pub body: Vec<u8>,
}

/// Where one attempt goes, and the headers it adds (a signature, a
/// token).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The full URL.
    pub url: String,
    /// Headers added after the exchange's own.
    pub headers: Vec<(String, String)>,
}

/// Maps a request that got no response: a destination the host refused is
/// final, and the message adds `reach` (what the plugin may reach, and how
/// to allow more); an invalid URL is a configuration error; a broken
/// connection is retried.
pub fn transport(e: &http::Error, what: &str, reach: &str) -> Attempt<StoreError> {
    match e {
        http::Error::Denied(m) => {
            Attempt::Fail(StoreError::Unavailable(format!("{what}: {m} ({reach})")))
        }
        http::Error::InvalidUrl(m) => {
            Attempt::Fail(StoreError::InvalidConfig(format!("{what}: {m}")))
        }
        http::Error::Transport(m) => {
            Attempt::Retry(StoreError::Unavailable(format!("{what}: {m}")))
        }
    }
}

impl<'a> Exchange<'a> {
    /// A request with `method`, no headers and no body.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            headers: Vec::new(),
            body: &[],
            pass: &[],
            read: None,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }

    /// Takes these error statuses as answers.
    #[must_use]
    pub fn pass(mut self, statuses: &'a [u16]) -> Self {
        self.pass = statuses;
        self
    }

    /// Reads the body (up to `limit` bytes) inside the retry.
    #[must_use]
    pub fn read(mut self, limit: usize) -> Self {
        self.read = Some(limit);
        self
    }

    /// Sends the request, retrying with the default backoff. Each attempt
    /// (numbered from 1) is addressed by `address`; a request that got no
    /// response goes through `transport`; a 2xx or a `pass` status is the
    /// answer; any other status goes to `refuse` with the response and its
    /// body's text (empty for a HEAD), which says whether to retry. `what`
    /// names the request in the error of a body cut off midway.
    pub fn send(
        &self,
        what: &str,
        mut address: impl FnMut(u32) -> Result<Target, Attempt<StoreError>>,
        transport: impl Fn(&http::Error) -> Attempt<StoreError>,
        mut refuse: impl FnMut(u32, &Response, &str) -> Attempt<StoreError>,
    ) -> Result<Reply, StoreError> {
        with_backoff(Backoff::default(), |attempt| {
            let target = address(attempt)?;
            let mut headers = self.headers.clone();
            headers.extend(target.headers);
            let mut response = http::send(self.method, &target.url, &headers, self.body)
                .map_err(|e| transport(&e))?;
            let status = response.status;
            if (200..300).contains(&status) || self.pass.contains(&status) {
                let body = match self.read {
                    Some(limit) => response.read_to_end(limit).map_err(|e| {
                        Attempt::Retry(StoreError::Unavailable(format!("{what}: {e}")))
                    })?,
                    None => Vec::new(),
                };
                return Ok(Reply { response, body });
            }
            let body = if self.method == Method::Head {
                String::new()
            } else {
                response.text(MAX_ERROR_BYTES)
            };
            Err(refuse(attempt, &response, &body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_final_and_name_what_may_be_reached_broken_connections_retried() {
        let denied = http::Error::Denied("http://elsewhere:1 is not allowed".into());
        let Attempt::Fail(StoreError::Unavailable(m)) = transport(&denied, "list", "only X") else {
            panic!("a refusal is final and unavailable")
        };
        assert_eq!(m, "list: http://elsewhere:1 is not allowed (only X)");
        let invalid = http::Error::InvalidUrl("no host".into());
        assert!(matches!(
            transport(&invalid, "head", "only X"),
            Attempt::Fail(StoreError::InvalidConfig(m)) if m == "head: no host"
        ));
        let broken = http::Error::Transport("connection reset".into());
        assert!(matches!(
            transport(&broken, "get", "only X"),
            Attempt::Retry(StoreError::Unavailable(m)) if m == "get: connection reset"
        ));
        let request = Exchange::new(Method::Put)
            .header("a", "b")
            .body(b"xy")
            .pass(&[404])
            .read(10);
        assert_eq!(request.headers, [("a".to_string(), "b".to_string())]);
        assert_eq!(
            (request.body, request.pass, request.read),
            (&b"xy"[..], &[404u16][..], Some(10))
        );
    }
}
