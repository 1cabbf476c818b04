//! Argument parsing shared by all command families, strict like Redis.

use bytes::Bytes;

use super::CommandError;

/// Parses a signed 64-bit integer exactly as Redis's `string2ll`: optional
/// `-`, digits, no leading zeros, no spaces, no `+`.
pub fn integer(arg: &[u8]) -> Result<i64, CommandError> {
    parse_integer(arg).ok_or(CommandError::NotInteger)
}

/// `integer` without the error, for callers that pick their own.
pub fn parse_integer(arg: &[u8]) -> Option<i64> {
    if arg.is_empty() || arg.len() > 20 {
        return None;
    }
    if arg == b"0" {
        return Some(0);
    }
    let (negative, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in digits {
        let digit = (digit - b'0') as i64;
        value = value.checked_mul(10)?;
        value = if negative { value.checked_sub(digit)? } else { value.checked_add(digit)? };
    }
    Some(value)
}

/// A non-negative integer, else `error`.
pub fn non_negative(arg: &[u8], error: CommandError) -> Result<u64, CommandError> {
    match parse_integer(arg) {
        Some(value) if value >= 0 => Ok(value as u64),
        _ => Err(error),
    }
}

/// Parses a float as Redis's `string2ld`/`strtold`: finite or ±inf, no NaN,
/// no surrounding spaces.
pub fn float(arg: &[u8]) -> Result<f64, CommandError> {
    parse_float(arg).ok_or(CommandError::NotFloat)
}

/// `float` without the error.
pub fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty()
        || text.len() > 5120
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace)
    {
        return None;
    }
    let value: f64 = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => text.parse().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

/// A database index (`SELECT`, `COPY ... DB`, `MOVE`), checked as Redis checks
/// it: an integer, then one that fits 32 bits, then the only database, 0.
pub fn database_index(arg: &[u8]) -> Result<(), CommandError> {
    let index = integer(arg)?;
    if i32::try_from(index).is_err() {
        return Err(CommandError::err("value is out of range, value must between -2147483648 and 2147483647"));
    }
    if index != 0 {
        return Err(CommandError::err("DB index is out of range"));
    }
    Ok(())
}

/// Whether `arg` equals the keyword `word` (ASCII, case-insensitive).
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Converts Redis-style `start`/`stop` (negative from the end) into an
/// inclusive in-range pair, or `None` when the range is empty.
pub fn normalize_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
    (start <= stop && start < len && stop >= 0).then_some((start as usize, stop as usize))
}

/// The argument after a keyword option, or a syntax error if it is missing.
pub fn option_value(args: &[Bytes], at: usize) -> Result<&Bytes, CommandError> {
    args.get(at).ok_or(CommandError::Syntax)
}

/// The keys of `numkeys key [key ...]` at `args[at..]` (LMPOP, ZMPOP and their
/// blocking forms), and the arguments after them.
pub fn counted_keys(args: &[Bytes], at: usize) -> Result<(&[Bytes], &[Bytes]), CommandError> {
    let numkeys_error = || CommandError::err("numkeys should be greater than 0");
    let numkeys = parse_integer(&args[at]).filter(|&count| count > 0).ok_or_else(numkeys_error)? as u64;
    if numkeys > (args.len() - at - 1) as u64 {
        return Err(CommandError::Syntax);
    }
    Ok(args[at + 1..].split_at(numkeys as usize))
}

/// The `[COUNT count]` that ends LMPOP and ZMPOP (1 when absent).
pub fn pop_count_option(rest: &[Bytes]) -> Result<usize, CommandError> {
    match rest {
        [] => Ok(1),
        [option, value] if is(option, "count") => {
            let positive = parse_integer(value).filter(|&count| count > 0);
            Ok(positive.ok_or_else(|| CommandError::err("count should be greater than 0"))? as usize)
        }
        _ => Err(CommandError::Syntax),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict_like_redis() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"-12"), Some(-12));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b"9223372036854775808"[..], b"+1", b" 1", b"1 ", b"01", b"-0", b"", b"-", b"1.0", b"abc"] {
            assert_eq!(parse_integer(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_refuse_nan_and_spaces() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float(b"5e3"), Some(5000.0));
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b""), None);
    }

    #[test]
    fn ranges_normalize_like_lrange() {
        assert_eq!(normalize_range(0, -1, 5), Some((0, 4)));
        assert_eq!(normalize_range(-2, -1, 5), Some((3, 4)));
        assert_eq!(normalize_range(-100, 100, 5), Some((0, 4)));
        assert_eq!(normalize_range(3, 1, 5), None);
        assert_eq!(normalize_range(5, 10, 5), None);
        assert_eq!(normalize_range(0, -1, 0), None);
    }
}
