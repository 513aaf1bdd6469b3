//! Parsers of the strings a spec holds: cron schedules and Go durations
//! (and Go's spelling of a duration for flags).

use std::time::Duration;

/// Parses a five-field cron schedule (or an @-shorthand) as the sidecar
/// does; also used by the sidecar's scheduler.
pub fn parse_cron(schedule: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(schedule)
}

/// The longest duration Go (and so etcd and the Go sidecar) can represent:
/// 2^63 − 1 nanoseconds, about 292 years.
pub const MAX_GO_DURATION: Duration = Duration::from_nanos(0x7fff_ffff_ffff_ffff);

/// Parses a Go duration (`300s`, `1h30m`, `1.5h`, `0`) as Go's
/// `time.ParseDuration` does; negative ones, and ones longer than Go can
/// represent ([`MAX_GO_DURATION`]), are refused.
///
/// Written here rather than taken from kube-core: its parser multiplies
/// with `Duration::mul_f64`, which panics on overflow
/// (`99999999999999999999h`), and a spec field must never panic the
/// operator or the sidecar.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = |why: &str| format!("'{text}' is not a duration: {why}");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("it is empty"));
    }
    let too_large = || {
        format!(
            "'{text}' is too long: the longest duration is {}h (Go's limit)",
            MAX_GO_DURATION.as_secs() / 3600
        )
    };
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid("a number must come before each unit"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(invalid(
                    "a unit (ns, us, ms, s, m, h) must follow each number",
                ));
            }
            _ => {
                return Err(invalid(&format!(
                    "unknown unit '{unit}' (use ns, us, ms, s, m or h)"
                )));
            }
        };
        // The integer part: any number of digits, checked.
        let mut whole: u128 = 0;
        for d in int_digits.bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u128::from(d - b'0')))
                .ok_or_else(too_large)?;
        }
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_large)?;
        // The fraction: digits past the 19th are below a nanosecond of any
        // unit and are ignored, as Go does.
        let mut scale: u128 = 1;
        let mut fraction: u128 = 0;
        for d in frac_digits.bytes().take(19) {
            fraction = fraction * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        nanos = nanos
            .checked_add(fraction * unit_nanos / scale)
            .ok_or_else(too_large)?;
        total = total.checked_add(nanos).ok_or_else(too_large)?;
        if total > MAX_GO_DURATION.as_nanos() {
            return Err(too_large());
        }
        rest = next;
    }
    if negative && total > 0 {
        return Err(format!("'{text}' is negative"));
    }
    let nanos = u64::try_from(total).map_err(|_| too_large())?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration as Go does for whole seconds (`300s`, `1.5s`), which
/// both etcd and the sidecar parse.
pub fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
