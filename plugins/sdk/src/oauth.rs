//! OAuth2 token requests as the cloud providers' identity services take
//! them: a form (or JSON) POST answered with `{"access_token",
//! "expires_in", "token_type"}` or an error `{"error",
//! "error_description"}`; the bearer token held until shortly before it
//! expires. Google's token endpoint and STS, and Microsoft Entra ID's
//! token endpoint, all answer this way.

use std::cell::RefCell;

use serde::Deserialize;

use crate::exchange;
use crate::http::{self, Method};
use crate::retry::{Attempt, Backoff, with_backoff};
use crate::store::StoreError;
use crate::time::now_unix;

/// The largest token answer read.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;

/// A bearer token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The access token: a credential.
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Token {
    /// Whether the token is still good for a request of up to `margin`
    /// seconds at `now`.
    pub fn fresh(&self, now: i64, margin: i64) -> bool {
        now + margin < self.expires_at
    }
}

/// A bearer token held between a store's requests: reused while it has
/// more than a margin left, fetched anew otherwise, and dropped when the
/// service no longer takes it (a 401).
#[derive(Debug, Default)]
pub struct HeldToken {
    token: RefCell<Option<Token>>,
}

impl HeldToken {
    /// The token held, if it has more than `margin` seconds left, else
    /// the one `fetch` gets (then held).
    pub fn get(
        &self,
        margin: i64,
        fetch: impl FnOnce() -> Result<Token, StoreError>,
    ) -> Result<String, StoreError> {
        if let Some(token) = self.token.borrow().as_ref()
            && token.fresh(now_unix(), margin)
        {
            return Ok(token.access_token.clone());
        }
        let token = fetch()?;
        let bearer = token.access_token.clone();
        *self.token.borrow_mut() = Some(token);
        Ok(bearer)
    }

    /// Drops the token held: the next request gets a new one.
    pub fn forget(&self) {
        self.token.borrow_mut().take();
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<i64>,
    token_type: Option<String>,
}

/// Whether `token` can go into an `Authorization` header as it is.
pub fn header_safe(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// Reads a token answer received at `now`; its lifetime is taken as at
/// most `max_lifetime` seconds (ten minutes when it names none).
pub fn parse_token_response(body: &str, now: i64, max_lifetime: i64) -> Result<Token, String> {
    let r: TokenResponse = serde_json::from_str(body)
        .map_err(|e| format!("the token endpoint's answer is not a token response ({e})"))?;
    if let Some(kind) = &r.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!(
            "the token endpoint answered a {kind:?} token, not a bearer token"
        ));
    }
    let access_token = r
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint's answer has no access_token")?;
    if !header_safe(&access_token) {
        return Err("the token endpoint's access_token is not a header-safe token".into());
    }
    Ok(Token {
        access_token,
        expires_at: now + r.expires_in.unwrap_or(600).clamp(0, max_lifetime),
    })
}

/// The fields of an OAuth2 error (`{"error": ..., "error_description": ...}`).
#[derive(Debug, Default, Deserialize)]
pub struct OAuthError {
    /// E.g. `invalid_grant`.
    pub error: Option<String>,
    /// The service's explanation.
    pub error_description: Option<String>,
}

/// Reads an OAuth2 error body; empty fields when it is not one.
pub fn parse_oauth_error(body: &str) -> OAuthError {
    serde_json::from_str(body).unwrap_or_default()
}

/// Maps a token endpoint's error answer to a `store-error`: a refusal
/// (400, 401, 403) says `refused` (what to check); throttling and server
/// errors are retried.
pub fn classify(status: u16, body: &str, url: &str, refused: &str) -> Attempt<StoreError> {
    let e = parse_oauth_error(body);
    let detail = match (e.error, e.error_description) {
        (Some(code), Some(d)) => format!("{code}: {d}"),
        (Some(code), None) => format!("{code} (HTTP {status})"),
        (None, Some(d)) => format!("HTTP {status}: {d}"),
        (None, None) => format!("HTTP {status}"),
    };
    let message = format!(
        "get an access token from {}: {detail}",
        http::display_url(url)
    );
    match status {
        400 | 401 | 403 => {
            Attempt::Fail(StoreError::AccessDenied(format!("{message} ({refused})")))
        }
        429 => Attempt::Retry(StoreError::Throttled(message)),
        408 | 500..=599 => Attempt::Retry(StoreError::Unavailable(message)),
        _ => Attempt::Fail(StoreError::Other(message)),
    }
}

/// One token request: `body()` (made afresh for each attempt) POSTed to
/// `url` with `headers`, retried with backoff while it fails transiently;
/// a 2xx answer is read by `parse` (with the time it arrived), an error
/// answer mapped by [`classify`] with `refused`. `reach` says what the
/// plugin may reach, for a destination the host refuses.
pub fn request_token(
    url: &str,
    headers: &[(String, String)],
    body: impl Fn() -> String,
    parse: impl Fn(&str, i64) -> Result<Token, String>,
    refused: &str,
    reach: &str,
) -> Result<Token, StoreError> {
    let what = format!("get an access token from {}", http::display_url(url));
    with_backoff(Backoff::default(), |_| {
        let body = body();
        let mut response = http::send(Method::Post, url, headers, body.as_bytes())
            .map_err(|e| exchange::transport(&e, &what, reach))?;
        let text = response.text(MAX_TOKEN_BYTES);
        if (200..300).contains(&response.status) {
            parse(&text, now_unix())
                .map_err(|e| Attempt::Fail(StoreError::AccessDenied(format!("{what}: {e}"))))
        } else {
            Err(classify(response.status, &text, url, refused))
        }
    })
}

/// The headers of a form POST.
pub fn form_headers() -> Vec<(String, String)> {
    vec![(
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn a_held_token_is_reused_until_its_margin_and_dropped_on_forget() {
        let held = HeldToken::default();
        let fetches = std::cell::Cell::new(0);
        let fetch = |lifetime: i64| {
            fetches.set(fetches.get() + 1);
            Ok(Token {
                access_token: format!("t{}", fetches.get()),
                expires_at: now_unix() + lifetime,
            })
        };
        assert_eq!(held.get(300, || fetch(3600)).unwrap(), "t1");
        assert_eq!(held.get(300, || fetch(3600)).unwrap(), "t1");
        held.forget();
        assert_eq!(held.get(300, || fetch(200)).unwrap(), "t2");
        // Less than the margin left: fetched anew.
        assert_eq!(held.get(300, || fetch(3600)).unwrap(), "t3");
        // A failed fetch keeps nothing and says why.
        held.forget();
        let e = held.get(300, || Err(StoreError::AccessDenied("no".into())));
        assert!(matches!(e, Err(StoreError::AccessDenied(_))));
        assert_eq!(fetches.get(), 3);
    }

    #[test]
    fn token_answers_and_errors() {
        let t = parse_token_response(
            r#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#,
            1000,
            3600,
        )
        .unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_at), ("ya29.a", 4599));
        assert!(t.fresh(4000, 300) && !t.fresh(4300, 300));
        assert!(!format!("{t:?}").contains("ya29"));
        // Clamped to the lifetime given; ten minutes when none is named.
        let t = parse_token_response(r#"{"access_token":"x","expires_in":99999}"#, 0, 3600);
        assert_eq!(t.unwrap().expires_at, 3600);
        let t = parse_token_response(r#"{"access_token":"x"}"#, 0, 3600);
        assert_eq!(t.unwrap().expires_at, 600);
        for bad in [
            "not json",
            r#"{"expires_in":1}"#,
            r#"{"access_token":"a b"}"#,
            r#"{"access_token":"a","token_type":"mac"}"#,
        ] {
            assert!(parse_token_response(bad, 0, 3600).is_err(), "{bad}");
        }
        match classify(
            400,
            r#"{"error":"invalid_grant","error_description":"Bad token."}"#,
            "https://t/token?secret=1",
            "check the token",
        ) {
            Attempt::Fail(StoreError::AccessDenied(m)) => {
                assert!(
                    m.contains("invalid_grant: Bad token. (check the token)"),
                    "{m}"
                );
                assert!(!m.contains("secret=1"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(503, "", "https://t", ""),
            Attempt::Retry(_)
        ));
        assert!(matches!(
            classify(429, "", "https://t", ""),
            Attempt::Retry(_)
        ));
        assert!(matches!(
            classify(302, "", "https://t", ""),
            Attempt::Fail(StoreError::Other(_))
        ));
    }
}
