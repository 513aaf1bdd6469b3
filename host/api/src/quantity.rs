//! Kubernetes quantities (`8Gi`, `500M`, `1.5Gi`, `1e9`) as whole bytes.
//!
//! k8s-openapi's `Quantity` is only the string; the crates that parse
//! quantities pull in much more than this needs, so this is the small
//! parser for the sizes the spec carries (quota, capacity, memory limits).

/// Why a quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a quantity: {reason}")]
pub struct QuantityError {
    /// The quantity as written in the spec.
    pub text: String,
    /// What is wrong with it (e.g. an unknown suffix), for the message.
    pub reason: &'static str,
}

/// Parses a quantity to bytes, rounding fractions of a byte up.
pub fn parse_quantity(text: &str) -> Result<i64, QuantityError> {
    let err = |reason| QuantityError {
        text: text.to_string(),
        reason,
    };
    let t = text.trim();
    let (sign, t) = match t.strip_prefix('-') {
        Some(rest) => (-1i128, rest),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let split = t
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err("it must start with a number"));
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // value = mantissa / 10^scale
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(err("the number is too long"));
    }
    let mantissa: i128 = digits
        .parse()
        .map_err(|_| err("it must start with a number"))?;
    let mut scale = frac_part.len() as i32;
    let mut multiplier: i128 = 1;
    match suffix {
        "" => {}
        "Ki" => multiplier = 1 << 10,
        "Mi" => multiplier = 1 << 20,
        "Gi" => multiplier = 1 << 30,
        "Ti" => multiplier = 1 << 40,
        "Pi" => multiplier = 1 << 50,
        "Ei" => multiplier = 1 << 60,
        "n" => scale += 9,
        "u" => scale += 6,
        "m" => scale += 3,
        "k" => scale -= 3,
        "M" => scale -= 6,
        "G" => scale -= 9,
        "T" => scale -= 12,
        "P" => scale -= 15,
        "E" => scale -= 18,
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..]
                .parse()
                .map_err(|_| err("the exponent is not a number"))?;
            if !(-30..=30).contains(&exp) {
                return Err(err("the exponent is out of range"));
            }
            scale -= exp;
        }
        _ => {
            return Err(err(
                "unknown suffix (use Ki, Mi, Gi, Ti, k, M, G, T or an exponent)",
            ));
        }
    }
    let mut value = mantissa
        .checked_mul(multiplier)
        .ok_or_else(|| err("it is too large"))?;
    if scale < 0 {
        value = value
            .checked_mul(
                10i128
                    .checked_pow(scale.unsigned_abs())
                    .ok_or_else(|| err("it is too large"))?,
            )
            .ok_or_else(|| err("it is too large"))?;
    } else if scale > 0 {
        let div = 10i128
            .checked_pow(scale.unsigned_abs())
            .ok_or_else(|| err("it is too precise"))?;
        value = (value + div - 1) / div;
    }
    i64::try_from(sign * value).map_err(|_| err("it is too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::parse_quantity;

    #[test]
    fn binary_decimal_fraction_and_exponent_forms() {
        for (text, bytes) in [
            ("8Gi", 8 << 30),
            ("1000Mi", 1000 << 20),
            ("80Gi", 80 << 30),
            ("1.5Gi", 3 << 29),
            ("500M", 500_000_000),
            ("1k", 1000),
            ("1e9", 1_000_000_000),
            ("1E3", 1000),
            ("123", 123),
            ("1500m", 2),
            ("+2Ki", 2048),
            ("-1Ki", -1024),
        ] {
            assert_eq!(parse_quantity(text).unwrap(), bytes, "{text}");
        }
    }

    #[test]
    fn garbage_is_refused_with_the_text() {
        for text in [
            "",
            "Gi",
            "8GB",
            "1..2Gi",
            "abc",
            "1e",
            "99999999999999999999999999999999999",
        ] {
            let e = parse_quantity(text).unwrap_err();
            assert_eq!(e.text, text);
        }
        assert!(
            parse_quantity("16Ei").is_err(),
            "overflow of i64 is refused"
        );
    }
}
