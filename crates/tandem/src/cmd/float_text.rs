//! `INCRBYFLOAT` arithmetic as Redis shows it.
//!
//! Redis adds in `long double` and prints the sum with `%.17Lf`, trailing
//! zeros trimmed, so `0.1 + 0.2` reads `0.3` (in 64-bit floats it would be
//! `0.30000000000000004`). We add the two decimal texts exactly instead and
//! round to 17 decimal places, which gives Redis's text wherever long double
//! is exact to that many places; numbers beyond the exact range (more than
//! 38 significant digits once aligned) fall back to 64-bit floats printed the
//! same way. The stored value is the text, so replay never depends on
//! floating-point rounding.

use super::args;
use super::CommandError;

/// Decimal places Redis keeps (`%.17Lf`).
const PLACES: u32 = 17;

/// A finite decimal number: `mantissa × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: i128,
    scale: u32,
}

/// Parses `[-+]digits[.digits][e[-+]digits]` exactly, if it fits.
fn parse_decimal(text: &str) -> Option<Decimal> {
    let (number, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, digits) = match number.as_bytes().first()? {
        b'-' => (true, &number[1..]),
        b'+' => (false, &number[1..]),
        _ => (false, number),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().chain(fraction.bytes()).all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let mut mantissa: i128 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add((byte - b'0') as i128)?;
    }
    let mut scale = fraction.len() as i64 - exponent as i64;
    while scale < 0 {
        mantissa = mantissa.checked_mul(10)?;
        scale += 1;
    }
    let scale = u32::try_from(scale).ok().filter(|scale| *scale <= 60)?;
    Some(Decimal { mantissa: if negative { -mantissa } else { mantissa }, scale })
}

fn add(left: Decimal, right: Decimal) -> Option<Decimal> {
    let scale = left.scale.max(right.scale);
    let widen = |value: Decimal| value.mantissa.checked_mul(10i128.checked_pow(scale - value.scale)?);
    Some(Decimal { mantissa: widen(left)?.checked_add(widen(right)?)?, scale })
}

/// Rounds to `PLACES` decimal places (half away from zero) and prints it
/// without trailing zeros, like Redis's `%.17Lf` + trim.
fn format(value: Decimal) -> String {
    let (mut mantissa, mut scale) = (value.mantissa, value.scale);
    if scale > PLACES {
        let divisor = 10i128.pow(scale - PLACES);
        let (quotient, remainder) = (mantissa / divisor, mantissa % divisor);
        mantissa = quotient + if remainder.abs() * 2 >= divisor { remainder.signum() } else { 0 };
        scale = PLACES;
    }
    let digits = mantissa.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale as usize + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale as usize);
    let fraction = fraction.trim_end_matches('0');
    let sign = if mantissa < 0 { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// Prints a 64-bit float like `%.17f` with trailing zeros trimmed.
fn format_float(value: f64) -> String {
    let text = format!("{value:.17}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// `current + increment` as Redis's INCRBYFLOAT prints it; both texts must
/// be valid floats (`not_float` names the error for `current`).
pub fn add_float_texts(current: &[u8], increment: &[u8], not_float: CommandError) -> Result<String, CommandError> {
    let increment_value = args::float(increment)?;
    let current_value = args::parse_float(current).ok_or(not_float)?;
    let sum = current_value + increment_value;
    if !sum.is_finite() {
        return Err(CommandError::err("increment would produce NaN or Infinity"));
    }
    let exact = std::str::from_utf8(current)
        .ok()
        .zip(std::str::from_utf8(increment).ok())
        .and_then(|(left, right)| add(parse_decimal(left)?, parse_decimal(right)?));
    Ok(match exact {
        Some(decimal) => format(decimal),
        None => format_float(sum),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(current: &str, increment: &str) -> String {
        add_float_texts(current.as_bytes(), increment.as_bytes(), CommandError::NotFloat).unwrap()
    }

    #[test]
    fn sums_read_like_redis() {
        assert_eq!(sum("0.1", "0.2"), "0.3");
        assert_eq!(sum("10.50", "0.1"), "10.6");
        assert_eq!(sum("10.6", "-5"), "5.6");
        assert_eq!(sum("5.0e3", "2.0e2"), "5200");
        assert_eq!(sum("0", "3.0"), "3");
        assert_eq!(sum("1", "-1"), "0");
        assert_eq!(sum("-0.5", "0.25"), "-0.25");
        assert_eq!(sum("0", "0.000000000000000001"), "0");
        assert_eq!(sum("0", "0.000000000000000005"), "0.00000000000000001");
        assert_eq!(sum("1000", "10.1"), "1010.1");
        assert_eq!(sum("3", "1e-3"), "3.001");
    }

    #[test]
    fn huge_values_fall_back_to_floats_and_infinity_is_refused() {
        assert_eq!(sum("1e300", "1"), format_float(1e300));
        assert!(add_float_texts(b"1e308", b"1e308", CommandError::NotFloat).is_err());
        assert_eq!(add_float_texts(b"abc", b"1", CommandError::NotFloat), Err(CommandError::NotFloat));
        assert_eq!(add_float_texts(b"1", b"x", CommandError::Syntax), Err(CommandError::NotFloat));
    }

    #[test]
    fn decimal_parsing_is_exact_and_strict() {
        assert_eq!(parse_decimal("12.50"), Some(Decimal { mantissa: 1250, scale: 2 }));
        assert_eq!(parse_decimal("-1.5e2"), Some(Decimal { mantissa: -150, scale: 0 }));
        assert_eq!(parse_decimal(".5"), Some(Decimal { mantissa: 5, scale: 1 }));
        assert_eq!(parse_decimal("."), None);
        assert_eq!(parse_decimal("1.2.3"), None);
        assert_eq!(parse_decimal("inf"), None);
    }
}
