//! Scanning primitives shared by the request parser and the frame decoder:
//! CRLF-terminated lines, integers parsed as strictly as Redis's `string2ll`,
//! and length-prefixed payloads.
//!
//! Every function is pure and bounded: a search never looks further than the
//! limit it is given, so an attacker cannot make one call scan more than that.

use std::ops::Range;

use crate::error::ProtocolError;

/// What [`find_line`] found at a position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line's text ends at `content_end` (its `\r`); the next item starts at `next`.
    Complete { content_end: usize, next: usize },
    /// More bytes are needed to see the end of the line.
    Incomplete,
    /// No `\r` within the limit: the line is longer than allowed.
    TooLong,
    /// The first `\r` is followed by something other than `\n`.
    Malformed,
}

/// Finds the line starting at `start` whose text is at most `content_bytes_max` bytes long.
///
/// The answer depends only on bytes that a longer buffer would also hold, so a
/// request split across reads parses exactly as if it had arrived at once.
pub(crate) fn find_line(src: &[u8], start: usize, content_bytes_max: usize) -> Line {
    let window_end = src.len().min(start.saturating_add(content_bytes_max).saturating_add(1));
    let window = src.get(start..window_end).unwrap_or_default();
    match window.iter().position(|&byte| byte == b'\r') {
        Some(offset) => {
            let carriage_return = start + offset;
            match src.get(carriage_return + 1) {
                None => Line::Incomplete,
                Some(b'\n') => Line::Complete { content_end: carriage_return, next: carriage_return + 2 },
                Some(_) => Line::Malformed,
            }
        }
        None if src.len().saturating_sub(start) > content_bytes_max => Line::TooLong,
        None => Line::Incomplete,
    }
}

/// Parses a decimal i64 like Redis's `string2ll`: an optional `-`, then digits
/// without leading zeros; `0` alone is zero, and `+5`, `-0`, `007`, ` 5` and overflow are rejected.
pub(crate) fn parse_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut magnitude: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0_i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Parses a length header: an integer in `0..=length_max`.
pub(crate) fn parse_length(text: &[u8], length_max: usize) -> Option<usize> {
    let length = usize::try_from(parse_integer(text)?).ok()?;
    (length <= length_max).then_some(length)
}

/// Locates a `length`-byte payload at `start` that must be followed by CRLF.
///
/// Returns the payload's range and the position after its CRLF, or `None` until
/// all of it has arrived; this looks at two bytes, never at the payload, so a
/// large payload arriving in small reads costs O(1) per attempt.
pub(crate) fn find_payload(
    src: &[u8],
    start: usize,
    length: usize,
) -> Result<Option<(Range<usize>, usize)>, ProtocolError> {
    let end = start.checked_add(length).ok_or(ProtocolError::InvalidBulkLength)?;
    let next = end.checked_add(2).ok_or(ProtocolError::InvalidBulkLength)?;
    match src.get(end..next) {
        None => Ok(None),
        Some(b"\r\n") => Ok(Some((start..end, next))),
        Some(_) => Err(ProtocolError::ExpectedCrlfAfterBulk),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_redis_string2ll() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"7"), Some(7));
        assert_eq!(parse_integer(b"-1"), Some(-1));
        assert_eq!(parse_integer(b"1234567890"), Some(1_234_567_890));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for rejected in [
            &b""[..],
            b"-",
            b"+5",
            b"-0",
            b"007",
            b"00",
            b" 5",
            b"5 ",
            b"5a",
            b"--5",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_integer(rejected), None, "{:?}", String::from_utf8_lossy(rejected));
        }
    }

    #[test]
    fn lengths_are_bounded_and_not_negative() {
        assert_eq!(parse_length(b"10", 10), Some(10));
        assert_eq!(parse_length(b"11", 10), None);
        assert_eq!(parse_length(b"-1", 10), None);
    }

    #[test]
    fn lines_are_found_only_within_their_limit() {
        assert_eq!(find_line(b"*12\r\n", 1, 4), Line::Complete { content_end: 3, next: 5 });
        assert_eq!(find_line(b"*12\r", 1, 4), Line::Incomplete);
        assert_eq!(find_line(b"*12", 1, 4), Line::Incomplete);
        assert_eq!(find_line(b"*12\rx", 1, 4), Line::Malformed);
        // Four bytes of text are allowed, a fifth without `\r` is too many.
        assert_eq!(find_line(b"*1234", 1, 4), Line::Incomplete);
        assert_eq!(find_line(b"*1234\r\n", 1, 4), Line::Complete { content_end: 5, next: 7 });
        assert_eq!(find_line(b"*12345", 1, 4), Line::TooLong);
        assert_eq!(find_line(b"*12345\r\n", 1, 4), Line::TooLong);
        assert_eq!(find_line(b"", 0, 4), Line::Incomplete);
        assert_eq!(find_line(b"x", 5, 4), Line::Incomplete);
    }

    #[test]
    fn payloads_need_their_crlf() {
        assert_eq!(find_payload(b"$3\r\nabc\r\n", 4, 3), Ok(Some((4..7, 9))));
        assert_eq!(find_payload(b"$3\r\nabc\r", 4, 3), Ok(None));
        assert_eq!(find_payload(b"$3\r\nabcd\r\n", 4, 3), Err(ProtocolError::ExpectedCrlfAfterBulk));
        assert_eq!(find_payload(b"", 4, usize::MAX), Err(ProtocolError::InvalidBulkLength));
    }
}
