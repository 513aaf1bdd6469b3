//! The timestamp formats object stores use, to and from Unix seconds: ISO
//! 8601 in S3's listings (`2009-10-12T17:50:30.000Z`) and the HTTP date of
//! `Last-Modified`, Azure's listings and its `x-ms-date` header
//! (`Wed, 12 Oct 2009 17:50:30 GMT`). Small enough to write here: a date
//! crate would add more to every plugin than these few functions.

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn seconds(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    let valid = (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..=23).contains(&h)
        && (0..=59).contains(&mi)
        && (0..=60).contains(&s);
    valid.then(|| days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

fn num(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses `YYYY-MM-DDThh:mm:ss[.fff]Z` (UTC).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let time = time.split_once('.').map_or(
        time,
        |(t, frac)| {
            if num(frac).is_some() { t } else { "invalid" }
        },
    );
    let mut t = time.split(':');
    let (h, mi, sec) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    seconds(y, mo, day, h, mi, sec)
}

/// Parses an RFC 7231 IMF-fixdate, `Wed, 12 Oct 2009 17:50:30 GMT`.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let (_, rest) = s.trim().split_once(", ")?;
    let mut parts = rest.split(' ');
    let day = num(parts.next()?)?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = num(parts.next()?)?;
    let mut t = parts.next()?.split(':');
    let (h, mi, sec) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if parts.next()? != "GMT" || parts.next().is_some() || t.next().is_some() {
        return None;
    }
    seconds(year, month, day, h, mi, sec)
}

/// The civil date of `days` since 1970-01-01 (H. Hinnant's
/// `civil_from_days`): (year, month 1-12, day 1-31).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Unix seconds as an RFC 7231 IMF-fixdate, `Wed, 12 Oct 2009 17:50:30 GMT`.
pub fn format_http_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rest) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{weekday}, {day:02} {month} {year} {:02}:{:02}:{:02} GMT",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Unix seconds as ISO 8601's basic UTC form, `20091012T175030Z` (the
/// timestamps of SigV4-style signatures).
pub fn format_iso8601_basic(unix: i64) -> String {
    let (days, rest) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The current time (the `wasi:clocks` wall clock in a plugin) in Unix
/// seconds; 0 if the clock is before 1970.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_timestamps_parse_to_unix_seconds() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_iso8601("2009-10-12T17:50:30.000Z"),
            Some(1_255_369_830)
        );
        assert_eq!(parse_iso8601("2013-05-24T00:00:00Z"), Some(1_369_353_600));
        assert_eq!(
            parse_iso8601("2024-02-29T23:59:59.123Z"),
            Some(1_709_251_199)
        );
        assert_eq!(parse_iso8601("2009-10-12 17:50:30"), None);
        assert_eq!(parse_iso8601("2009-13-12T17:50:30Z"), None);
        assert_eq!(parse_iso8601("garbage"), None);
    }

    #[test]
    fn http_dates_parse_to_unix_seconds() {
        assert_eq!(
            parse_http_date("Wed, 12 Oct 2009 17:50:30 GMT"),
            Some(1_255_369_830)
        );
        assert_eq!(
            parse_http_date("Fri, 24 May 2013 00:00:00 GMT"),
            Some(1_369_353_600)
        );
        assert_eq!(parse_http_date("Fri, 24 Foo 2013 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("2013-05-24T00:00:00Z"), None);
    }

    #[test]
    fn basic_iso8601_timestamps_are_utc_to_the_second() {
        assert_eq!(format_iso8601_basic(0), "19700101T000000Z");
        assert_eq!(format_iso8601_basic(1_702_743_657), "20231216T162057Z");
        assert_eq!(format_iso8601_basic(951_825_600), "20000229T120000Z");
    }

    #[test]
    fn http_dates_format_and_parse_back() {
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            format_http_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(
            format_http_date(951_825_600),
            "Tue, 29 Feb 2000 12:00:00 GMT"
        );
        for t in [0, 951_825_600, 1_255_369_830, 1_709_251_199, 4_102_444_800] {
            assert_eq!(parse_http_date(&format_http_date(t)), Some(t), "{t}");
        }
    }
}
