//! The server's hot path: one request, as a list of arguments, from the bytes read so far.
//!
//! Invariants:
//! * `Ok(None)` leaves every byte of a request in the buffer; only empty
//!   requests (`*0`, `*-1`, blank inline lines) in front of it may have been consumed.
//! * `Ok(Some(args))` consumes exactly one request, and `args` is never empty.
//! * A check pass walks the length headers and skips payloads by length, so an
//!   attempt costs O(arguments), not O(bytes); only a complete request is
//!   split off and sliced, so arguments are zero-copy views of the read buffer.
//! * Parsing `a ++ b` after `a` alone returned `Ok(None)` gives the same result as
//!   parsing `a ++ b` at once: requests split across reads parse identically.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::inline::parse_inline;
use crate::limits::Limits;
use crate::scan::{find_line, find_payload, parse_integer, parse_length, Line};

/// Takes one request off the front of `buf`: `Ok(None)` means more bytes are needed.
///
/// Requests are multibulk (`*<n>\r\n$<len>\r\n<arg>\r\n...`) or, when the first
/// byte is not `*`, inline (`SET key "a value"\n`). Empty requests are skipped,
/// so the arguments returned are never empty. After an error the caller replies
/// `-ERR <error>` and closes the connection, as Redis does: what the buffer then
/// holds is unspecified.
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    loop {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let request = if first == b'*' { parse_multibulk(buf, limits)? } else { parse_inline(buf, limits)? };
        match request {
            // Redis ignores empty requests; consuming them keeps a flood of them from being rescanned.
            Some(arguments) if arguments.is_empty() => continue,
            other => return Ok(other),
        }
    }
}

/// Where a complete multibulk request ends, and how many arguments it has.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    request_bytes: usize,
    argument_count: usize,
}

fn parse_multibulk(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(shape) = walk_multibulk(buf, limits, |_| {})? else {
        return Ok(None);
    };
    let request = buf.split_to(shape.request_bytes).freeze();
    // The count is trusted now: that many arguments are really in `request`.
    let mut arguments = Vec::with_capacity(shape.argument_count);
    let walked_again = walk_multibulk(&request, limits, |payload| arguments.push(request.slice(payload)));
    debug_assert_eq!(walked_again, Ok(Some(shape)), "a checked request must walk the same way twice");
    Ok(Some(arguments))
}

/// Walks one multibulk request at the start of `src`, calling `on_argument` with
/// each payload's range, and returns its shape once it is complete.
fn walk_multibulk(
    src: &[u8],
    limits: &Limits,
    mut on_argument: impl FnMut(Range<usize>),
) -> Result<Option<Shape>, ProtocolError> {
    let (count_end, mut position) = match find_line(src, 1, limits.inline_bytes_max) {
        Line::Complete { content_end, next } => (content_end, next),
        Line::Incomplete => return Ok(None),
        Line::TooLong => return Err(ProtocolError::MultibulkCountTooLong),
        Line::Malformed => return Err(ProtocolError::InvalidMultibulkLength),
    };
    let argument_count = match parse_integer(&src[1..count_end]) {
        // Redis treats `*0` and `*-1` as a request with nothing to run.
        Some(-1) => 0,
        Some(count) => usize::try_from(count)
            .ok()
            .filter(|&count| count <= limits.array_len_max)
            .ok_or(ProtocolError::InvalidMultibulkLength)?,
        None => return Err(ProtocolError::InvalidMultibulkLength),
    };
    for _ in 0..argument_count {
        let Some(&prefix) = src.get(position) else {
            return Ok(None);
        };
        if prefix != b'$' {
            return Err(ProtocolError::ExpectedBulkPrefix { found: char::from(prefix) });
        }
        let (length_end, payload_start) = match find_line(src, position + 1, limits.inline_bytes_max) {
            Line::Complete { content_end, next } => (content_end, next),
            Line::Incomplete => return Ok(None),
            Line::TooLong => return Err(ProtocolError::BulkCountTooLong),
            Line::Malformed => return Err(ProtocolError::InvalidBulkLength),
        };
        let length = parse_length(&src[position + 1..length_end], limits.bulk_bytes_max)
            .ok_or(ProtocolError::InvalidBulkLength)?;
        let Some((payload, next)) = find_payload(src, payload_start, length)? else {
            return Ok(None);
        };
        on_argument(payload);
        position = next;
    }
    Ok(Some(Shape { request_bytes: position, argument_count }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], limits: &Limits) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut requests = Vec::new();
        while let Some(arguments) = parse_request(&mut buf, limits)? {
            requests.push(arguments);
        }
        Ok(requests)
    }

    fn first_error(input: &[u8], limits: &Limits) -> ProtocolError {
        parse_all(input, limits).expect_err("input must be rejected")
    }

    fn arguments(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|word| Bytes::copy_from_slice(word.as_bytes())).collect()
    }

    #[test]
    fn multibulk_requests_parse_and_consume_exactly_one() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let limits = Limits::default();
        assert_eq!(parse_request(&mut buf, &limits).unwrap(), Some(arguments(&["GET", "key"])));
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(parse_request(&mut buf, &limits).unwrap(), Some(arguments(&["PING"])));
        assert!(buf.is_empty());
        assert_eq!(parse_request(&mut buf, &limits).unwrap(), None);
    }

    #[test]
    fn arguments_are_binary_safe() {
        let requests = parse_all(b"*2\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n", &Limits::default()).unwrap();
        assert_eq!(requests, vec![vec![Bytes::new(), Bytes::from_static(b"\r\n\0\xff")]]);
    }

    #[test]
    fn empty_requests_are_skipped() {
        let requests = parse_all(b"*0\r\n*-1\r\n\r\n\n   \r\n*1\r\n$4\r\nPING\r\n*0\r\n", &Limits::default()).unwrap();
        assert_eq!(requests, vec![arguments(&["PING"])]);
    }

    #[test]
    fn incomplete_requests_consume_nothing() {
        let limits = Limits::default();
        for input in [
            &b"*"[..],
            b"*2",
            b"*2\r",
            b"*2\r\n",
            b"*2\r\n$",
            b"*2\r\n$3\r\nGET",
            b"*2\r\n$3\r\nGET\r\n$3\r\nke",
            b"PING",
        ] {
            let mut buf = BytesMut::from(input);
            assert_eq!(parse_request(&mut buf, &limits), Ok(None), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(&buf[..], input);
        }
    }

    #[test]
    fn multibulk_count_errors_use_redis_texts() {
        let limits = Limits { array_len_max: 3, ..Limits::default() };
        for input in [
            &b"*x\r\n"[..],
            b"*\r\n",
            b"*-2\r\n",
            b"*+1\r\n",
            b"*01\r\n",
            b"*4\r\n",
            b"*99999999999999999999\r\n",
            b"*1\rx",
        ] {
            let error = first_error(input, &limits);
            assert_eq!(error, ProtocolError::InvalidMultibulkLength, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(error.to_string(), "Protocol error: invalid multibulk length");
        }
    }

    #[test]
    fn bulk_length_errors_use_redis_texts() {
        let limits = Limits { bulk_bytes_max: 5, ..Limits::default() };
        for input in
            [&b"*1\r\n$x\r\n"[..], b"*1\r\n$-1\r\n", b"*1\r\n$\r\n", b"*1\r\n$6\r\n", b"*1\r\n$-0\r\n", b"*1\r\n$1\rx"]
        {
            let error = first_error(input, &limits);
            assert_eq!(error, ProtocolError::InvalidBulkLength, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(error.to_string(), "Protocol error: invalid bulk length");
        }
    }

    #[test]
    fn a_missing_dollar_names_the_byte_found() {
        let error = first_error(b"*1\r\n:5\r\n", &Limits::default());
        assert_eq!(error, ProtocolError::ExpectedBulkPrefix { found: ':' });
        assert_eq!(error.to_string(), "Protocol error: expected '$', got ':'");
    }

    #[test]
    fn overlong_header_lines_are_rejected_before_their_crlf() {
        let limits = Limits { inline_bytes_max: 8, ..Limits::default() };
        assert_eq!(parse_all(b"*12345678", &limits), Ok(vec![]));
        let error = first_error(b"*123456789", &limits);
        assert_eq!(error.to_string(), "Protocol error: too big mbulk count string");
        let error = first_error(b"*1\r\n$123456789", &limits);
        assert_eq!(error.to_string(), "Protocol error: too big bulk count string");
    }

    #[test]
    fn bulk_data_must_end_with_crlf() {
        let error = first_error(b"*1\r\n$3\r\nabcd\r\n", &Limits::default());
        assert_eq!(error.to_string(), "Protocol error: expected CRLF after bulk data");
    }

    #[test]
    fn inline_requests_are_parsed_between_multibulk_ones() {
        let requests = parse_all(b"PING\r\n*1\r\n$4\r\nPING\r\nSET k \"v w\"\n", &Limits::default()).unwrap();
        assert_eq!(requests, vec![arguments(&["PING"]), arguments(&["PING"]), arguments(&["SET", "k", "v w"])]);
    }
}
