//! What the host checks in a plugin's listing before anyone uses it: each
//! page alone (keys in byte order, each once; keys that are plain relative
//! names below the requested prefix; a continuation token that is not the
//! one the plugin was given) and the listing as a whole (pages continuing
//! in byte order, no continuation token twice, at most
//! [`MAX_LIST_PAGES`] pages and [`MAX_LISTED_OBJECTS`] objects).
//!
//! The host refuses an unsorted page rather than sorting it: the WIT
//! promises byte order, and a store's continuation positions follow its
//! own order, so a plugin whose pages are out of order may also skip or
//! repeat objects between pages, which sorting on the host would hide.
//! Checking is one comparison per key; nothing is reordered or copied.
//!
//! A refusal is a message; the store turns it into an error naming the
//! store, the plugin and the call.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::limits::{MAX_KEY, MAX_LIST_PAGES, MAX_LISTED_OBJECTS};

/// What a plugin must do about a refused listing.
const FIX: &str = "the plugin must be fixed (report it to its author)";

/// How a key is shown in a message: quoted, escaped, at most 200 bytes.
fn shown(key: &str) -> String {
    format!("{:?}", crate::limits::truncate(key, 200))
}

/// What is wrong with `key`, listed below `prefix`, if anything: it must
/// be a plain relative name (no leading `/`, no empty, `.` or `..`
/// segment, no control character) below the prefix. One trailing `/` is
/// allowed: S3 consoles create such "folder" objects.
pub(crate) fn key_problem(key: &str, prefix: &str) -> Option<String> {
    if key.is_empty() {
        return Some("empty".into());
    }
    if key.len() > MAX_KEY {
        return Some(format!("{} bytes long, over {MAX_KEY}", key.len()));
    }
    if key.chars().any(char::is_control) {
        return Some("holding a control character (NUL, newline, ...)".into());
    }
    if key.starts_with('/') {
        return Some("absolute (it starts with `/`)".into());
    }
    let body = key.strip_suffix('/').unwrap_or(key);
    for segment in body.split('/') {
        match segment {
            "" => return Some("holding an empty segment (`//`)".into()),
            ".." => return Some("holding a `..` segment (it climbs out of the prefix)".into()),
            "." => return Some("holding a `.` segment".into()),
            _ => {}
        }
    }
    if !key.starts_with(prefix) {
        return Some("not below the requested prefix".into());
    }
    None
}

/// What is wrong with one page of `store.list` below `prefix`, asked for
/// with `given` (the continuation token passed in) and at most `max_keys`
/// objects, if anything.
pub(crate) fn page_problem<'a>(
    prefix: &str,
    given: Option<&str>,
    max_keys: u32,
    keys: impl ExactSizeIterator<Item = &'a str>,
    next_token: Option<&str>,
) -> Option<String> {
    let count = keys.len();
    if count > max_keys as usize {
        return Some(format!(
            "a listing page below {prefix:?} holds {count} objects, {max_keys} were asked for \
             (`store.list`): {FIX}"
        ));
    }
    if next_token.is_some() && next_token == given {
        return Some(format!(
            "the listing below {prefix:?} repeats a continuation token: `store.list` returned \
             the token it was given, so the listing would never end; {FIX}"
        ));
    }
    let mut previous: Option<&str> = None;
    for key in keys {
        if let Some(problem) = key_problem(key, prefix) {
            return Some(format!(
                "`store.list` below {prefix:?} returned the key {}, which is {problem}: keys must \
                 be plain relative names below the prefix (no leading `/`, no empty, `.` or `..` \
                 segment, no control character); {FIX}",
                shown(key)
            ));
        }
        if let Some(prev) = previous {
            if key == prev {
                return Some(format!(
                    "`store.list` below {prefix:?} returned the key {} twice in one page: each \
                     key must come once; {FIX}",
                    shown(key)
                ));
            }
            if key < prev {
                return Some(format!(
                    "`store.list` below {prefix:?} returned an unsorted page: {} after {}; keys \
                     must come in byte order; {FIX}",
                    shown(key),
                    shown(prev)
                ));
            }
        }
        previous = Some(key);
    }
    None
}

/// The checks across the pages of one listing.
#[derive(Default)]
pub(crate) struct ListingCheck {
    pages: usize,
    objects: usize,
    last_key: Option<String>,
    /// SHA-256 of every continuation token seen: bounded memory whatever
    /// the tokens' size.
    tokens: HashSet<[u8; 32]>,
}

impl ListingCheck {
    /// Checks the next page (already checked alone) of the listing below
    /// `prefix`: its first and last key, its size and its token.
    pub(crate) fn page(
        &mut self,
        prefix: &str,
        first_key: Option<&str>,
        last_key: Option<&str>,
        count: usize,
        next_token: Option<&str>,
    ) -> Result<(), String> {
        self.pages += 1;
        self.objects += count;
        if let Some(token) = next_token
            && !self.tokens.insert(Sha256::digest(token.as_bytes()).into())
        {
            return Err(format!(
                "the listing below {prefix:?} repeats a continuation token after {} objects \
                 in {} pages: `store.list` returned a token it returned before, so the \
                 listing would never end; {FIX}",
                self.objects, self.pages
            ));
        }
        if let (Some(prev), Some(first)) = (self.last_key.as_deref(), first_key)
            && first <= prev
        {
            let what = if first == prev {
                format!("returned the key {} again on the next page", shown(first))
            } else {
                "went back in its next page".to_string()
            };
            return Err(format!(
                "`store.list` below {prefix:?} {what}: page {} starts with {} after {} ended \
                 the previous one; pages must continue in byte order, each key once; {FIX}",
                self.pages,
                shown(first),
                shown(prev)
            ));
        }
        if let Some(last) = last_key {
            self.last_key = Some(last.to_string());
        }
        if self.objects > MAX_LISTED_OBJECTS {
            return Err(format!(
                "more than {MAX_LISTED_OBJECTS} objects below {prefix:?}: the listing is \
                 stopped there; remove what does not belong to the backups"
            ));
        }
        if next_token.is_some() && self.pages >= MAX_LIST_PAGES {
            return Err(format!(
                "the listing below {prefix:?} goes on for more than {MAX_LIST_PAGES} pages \
                 ({} objects so far): `store.list` keeps returning new continuation tokens, so \
                 the listing is stopped there; {FIX}",
                self.objects
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_plain_relative_names_below_the_prefix() {
        for good in [
            "v2/Full-00000000-00000001-1",
            "v2/",
            "v2/a.b/c",
            "v2/.druid-x/y",
        ] {
            assert_eq!(key_problem(good, "v2/"), None, "{good:?}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("v2/../../etc/passwd", "`..`"),
            ("v2/./x", "`.` segment"),
            ("v2//x", "empty segment"),
            ("v2/a\0b", "control"),
            ("v2/a\nb", "control"),
            ("v3/x", "not below"),
        ] {
            let problem = key_problem(bad, "v2/").unwrap_or_default();
            assert!(problem.contains(says), "{bad:?}: {problem}");
        }
        assert!(key_problem(&format!("v2/{}", "a".repeat(MAX_KEY)), "v2/").is_some());
    }

    #[test]
    fn pages_are_sorted_unique_and_move_on() {
        let page = |keys: &[&str], given: Option<&str>, next: Option<&str>| {
            page_problem("", given, 10, keys.iter().copied(), next)
        };
        assert_eq!(page(&["a", "b", "c"], None, Some("t")), None);
        assert!(page(&["b", "a"], None, None).unwrap().contains("unsorted"));
        assert!(page(&["a", "a"], None, None).unwrap().contains("twice"));
        assert!(
            page(&["a"], Some("t"), Some("t"))
                .unwrap()
                .contains("repeats a continuation token")
        );
        let mut check = ListingCheck::default();
        check.page("", Some("a"), Some("b"), 2, Some("t1")).unwrap();
        let err = check
            .page("", Some("b"), Some("c"), 2, Some("t2"))
            .unwrap_err();
        assert!(err.contains("again on the next page"), "{err}");
        let mut check = ListingCheck::default();
        check.page("", Some("a"), Some("b"), 2, Some("t1")).unwrap();
        check.page("", Some("c"), Some("d"), 2, Some("t2")).unwrap();
        let err = check
            .page("", Some("e"), Some("f"), 2, Some("t1"))
            .unwrap_err();
        assert!(err.contains("repeats a continuation token"), "{err}");
        let mut check = ListingCheck::default();
        let mut last = Ok(());
        for i in 0..MAX_LIST_PAGES {
            last = check.page("", None, None, 0, Some(&i.to_string()));
            if last.is_err() {
                break;
            }
        }
        assert!(last.unwrap_err().contains("more than 2000 pages"));
    }
}
