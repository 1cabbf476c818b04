//! Decoding every RESP2 and RESP3 type, for reading replies in client tools and tests.
//!
//! Like mini-redis's `frame.rs`, decoding is two passes: `check_frame` walks
//! the headers of one frame in place (skipping payloads by length, allocating
//! nothing) until it knows the frame is complete and valid; only then is the
//! frame split off the buffer and built, with zero-copy slices.
//!
//! Invariants:
//! * `Ok(None)` consumes nothing; `Ok(Some(_))` consumes exactly one frame.
//! * `build_frame` only ever reads bytes `check_frame` accepted, with the same limits.
//! * Recursion depth is bounded by `Limits::depth_max`; attributes, which
//!   decorate the frame after them, are handled by a loop, so a chain of
//!   attributes cannot deepen the stack.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::limits::Limits;
use crate::scan::{find_line, find_payload, parse_integer, parse_length, Line};

/// Takes one complete frame off the front of `buf`: `Ok(None)` means more bytes are needed.
///
/// `$-1` decodes to [`Frame::Null`], `*-1` to [`Frame::NullArray`], RESP3 `_`
/// to [`Frame::Null`]; attributes (`|`) are read and dropped. RESP3 streamed
/// strings and aggregates (`$?`, `*?`) are rejected: Redis never sends them.
pub fn decode_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    let Some(frame_bytes) = check_frame(buf, 0, 0, limits)? else {
        return Ok(None);
    };
    let src = buf.split_to(frame_bytes).freeze();
    let (frame, end) = build_frame(&src, 0, limits);
    debug_assert_eq!(end, frame_bytes, "a checked frame must build to the same length");
    Ok(Some(frame))
}

/// One header read from the wire: a whole scalar, or the start of an aggregate.
#[derive(Debug, PartialEq)]
enum Token {
    Simple(Range<usize>),
    Error(Range<usize>),
    Integer(i64),
    Bulk(Range<usize>),
    Null,
    NullArray,
    Double(f64),
    Boolean(bool),
    BigNumber(Range<usize>),
    BulkError(Range<usize>),
    Verbatim { format: [u8; 3], text: Range<usize> },
    Aggregate { kind: AggregateKind, length: usize },
}

/// The aggregates: their elements follow their header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AggregateKind {
    Array,
    Map,
    Set,
    Push,
    /// Metadata pairs that decorate the frame after them (RESP3 `|`).
    Attribute,
}

impl AggregateKind {
    /// How many frames follow the header: maps and attributes hold `length` pairs.
    fn element_count(self, length: usize) -> usize {
        match self {
            AggregateKind::Map | AggregateKind::Attribute => length.saturating_mul(2),
            AggregateKind::Array | AggregateKind::Set | AggregateKind::Push => length,
        }
    }
}

/// Returns where the frame starting at `position` ends, once all of it is in `src`.
///
/// `depth` counts the aggregates around this frame.
fn check_frame(src: &[u8], mut position: usize, depth: usize, limits: &Limits) -> Result<Option<usize>, ProtocolError> {
    loop {
        let Some((token, next)) = read_token(src, position, limits)? else {
            return Ok(None);
        };
        let Token::Aggregate { kind, length } = token else {
            return Ok(Some(next));
        };
        if depth >= limits.depth_max {
            return Err(ProtocolError::NestingTooDeep);
        }
        position = next;
        for _ in 0..kind.element_count(length) {
            match check_frame(src, position, depth + 1, limits)? {
                Some(end) => position = end,
                None => return Ok(None),
            }
        }
        if kind != AggregateKind::Attribute {
            return Ok(Some(position));
        }
    }
}

/// Builds the frame at `position` of a buffer `check_frame` accepted; returns it and where it ends.
fn build_frame(src: &Bytes, mut position: usize, limits: &Limits) -> (Frame, usize) {
    loop {
        let (token, next) = match read_token(src, position, limits) {
            Ok(Some(found)) => found,
            _ => unreachable!("check_frame accepted these bytes, so reading them again cannot fail"),
        };
        let frame = match token {
            Token::Simple(text) => Frame::Simple(src.slice(text)),
            Token::Error(message) => Frame::Error(src.slice(message)),
            Token::Integer(value) => Frame::Integer(value),
            Token::Bulk(data) => Frame::Bulk(src.slice(data)),
            Token::Null => Frame::Null,
            Token::NullArray => Frame::NullArray,
            Token::Double(value) => Frame::Double(value),
            Token::Boolean(value) => Frame::Boolean(value),
            Token::BigNumber(digits) => Frame::BigNumber(src.slice(digits)),
            Token::BulkError(message) => Frame::BulkError(src.slice(message)),
            Token::Verbatim { format, text } => Frame::Verbatim { format, text: src.slice(text) },
            Token::Aggregate { kind, length } => {
                let (elements, end) = build_elements(src, next, kind.element_count(length), limits);
                let frame = match kind {
                    AggregateKind::Array => Frame::Array(elements),
                    AggregateKind::Set => Frame::Set(elements),
                    AggregateKind::Push => Frame::Push(elements),
                    AggregateKind::Map => Frame::Map(into_pairs(elements)),
                    AggregateKind::Attribute => {
                        // Nothing in tandem reads attributes; drop them and decode what they decorate.
                        position = end;
                        continue;
                    }
                };
                return (frame, end);
            }
        };
        return (frame, next);
    }
}

fn build_elements(src: &Bytes, mut position: usize, count: usize, limits: &Limits) -> (Vec<Frame>, usize) {
    // The count is trusted here: check_frame saw every element in `src`.
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        let (element, end) = build_frame(src, position, limits);
        elements.push(element);
        position = end;
    }
    (elements, position)
}

fn into_pairs(elements: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut pairs = Vec::with_capacity(elements.len() / 2);
    let mut elements = elements.into_iter();
    while let (Some(key), Some(value)) = (elements.next(), elements.next()) {
        pairs.push((key, value));
    }
    pairs
}

/// The type bytes of RESP2 and RESP3.
const TYPE_BYTES: &[u8] = b"+-:$*_,#!=(%~>|";

/// Reads the header at `position`: a whole scalar or an aggregate's length; returns it and the position after it.
fn read_token(src: &[u8], position: usize, limits: &Limits) -> Result<Option<(Token, usize)>, ProtocolError> {
    let Some(&type_byte) = src.get(position) else {
        return Ok(None);
    };
    if !TYPE_BYTES.contains(&type_byte) {
        return Err(ProtocolError::UnknownFrameType { found: char::from(type_byte) });
    }
    let start = position + 1;
    let (end, next) = match find_line(src, start, limits.inline_bytes_max) {
        Line::Complete { content_end, next } => (content_end, next),
        Line::Incomplete => return Ok(None),
        Line::TooLong => return Err(line_too_long(type_byte)),
        Line::Malformed => return Err(ProtocolError::ExpectedCrlf),
    };
    let text = &src[start..end];
    let token = match type_byte {
        b'+' => Token::Simple(start..end),
        b'-' => Token::Error(start..end),
        b':' => Token::Integer(parse_integer(text).ok_or(ProtocolError::InvalidInteger)?),
        b',' => Token::Double(parse_double(text).ok_or(ProtocolError::InvalidDouble)?),
        b'#' => Token::Boolean(parse_boolean(text).ok_or(ProtocolError::InvalidBoolean)?),
        b'_' if text.is_empty() => Token::Null,
        b'_' => return Err(ProtocolError::InvalidNull),
        b'(' if is_big_number(text) => Token::BigNumber(start..end),
        b'(' => return Err(ProtocolError::InvalidBigNumber),
        b'$' | b'!' | b'=' => return read_blob(src, type_byte, text, next, limits),
        _ => read_aggregate(type_byte, text, limits)?,
    };
    Ok(Some((token, next)))
}

fn line_too_long(type_byte: u8) -> ProtocolError {
    match type_byte {
        b'*' => ProtocolError::MultibulkCountTooLong,
        b'$' => ProtocolError::BulkCountTooLong,
        _ => ProtocolError::LineTooLong,
    }
}

/// Reads a length-prefixed string (`$`, `!`, `=`) whose length text is `length_text` and whose payload starts at `start`.
fn read_blob(
    src: &[u8],
    type_byte: u8,
    length_text: &[u8],
    start: usize,
    limits: &Limits,
) -> Result<Option<(Token, usize)>, ProtocolError> {
    if type_byte == b'$' && length_text == b"-1" {
        return Ok(Some((Token::Null, start)));
    }
    let length = parse_length(length_text, limits.bulk_bytes_max).ok_or(ProtocolError::InvalidBulkLength)?;
    // A verbatim string holds at least its format and colon, `txt:`.
    if type_byte == b'=' && length < 4 {
        return Err(ProtocolError::InvalidVerbatim);
    }
    let Some((payload, next)) = find_payload(src, start, length)? else {
        return Ok(None);
    };
    let token = match (type_byte, &src[payload.clone()]) {
        (b'$', _) => Token::Bulk(payload),
        (b'!', _) => Token::BulkError(payload),
        (_, [first, second, third, b':', ..]) => {
            Token::Verbatim { format: [*first, *second, *third], text: payload.start + 4..payload.end }
        }
        _ => return Err(ProtocolError::InvalidVerbatim),
    };
    Ok(Some((token, next)))
}

fn read_aggregate(type_byte: u8, length_text: &[u8], limits: &Limits) -> Result<Token, ProtocolError> {
    let kind = match type_byte {
        b'*' if length_text == b"-1" => return Ok(Token::NullArray),
        b'*' => AggregateKind::Array,
        b'%' => AggregateKind::Map,
        b'~' => AggregateKind::Set,
        b'>' => AggregateKind::Push,
        _ => AggregateKind::Attribute,
    };
    let invalid = if kind == AggregateKind::Array {
        ProtocolError::InvalidMultibulkLength
    } else {
        ProtocolError::InvalidAggregateLength
    };
    let length = parse_length(length_text, limits.array_len_max).ok_or(invalid)?;
    Ok(Token::Aggregate { kind, length })
}

/// Parses a RESP3 double: `inf`, `-inf`, `nan` or a decimal number.
fn parse_double(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn parse_boolean(text: &[u8]) -> Option<bool> {
    match text {
        b"t" => Some(true),
        b"f" => Some(false),
        _ => None,
    }
}

/// A RESP3 big number: an optional `-` and at least one digit.
fn is_big_number(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limits: &Limits) -> Result<Vec<Frame>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Some(frame) = decode_frame(&mut buf, limits)? {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "left over: {:?}", String::from_utf8_lossy(&buf));
        Ok(frames)
    }

    fn decode_one(input: &[u8]) -> Frame {
        let frames = decode_all(input, &Limits::default()).unwrap();
        assert_eq!(frames.len(), 1, "{:?}", String::from_utf8_lossy(input));
        frames.into_iter().next().unwrap()
    }

    fn decode_error(input: &[u8], limits: &Limits) -> ProtocolError {
        decode_frame(&mut BytesMut::from(input), limits).expect_err(&String::from_utf8_lossy(input))
    }

    fn bytes(text: &'static [u8]) -> Bytes {
        Bytes::from_static(text)
    }

    #[test]
    fn resp2_types_decode() {
        assert_eq!(decode_one(b"+OK\r\n"), Frame::ok());
        assert_eq!(decode_one(b"+\r\n"), Frame::Simple(Bytes::new()));
        assert_eq!(decode_one(b"-ERR bad\r\n"), Frame::error("ERR bad"));
        assert_eq!(decode_one(b":-42\r\n"), Frame::Integer(-42));
        assert_eq!(decode_one(b"$3\r\na\r\n\r\n"), Frame::bulk(&b"a\r\n"[..]));
        assert_eq!(decode_one(b"$0\r\n\r\n"), Frame::bulk(""));
        assert_eq!(decode_one(b"$-1\r\n"), Frame::Null);
        assert_eq!(decode_one(b"*-1\r\n"), Frame::NullArray);
        assert_eq!(decode_one(b"*0\r\n"), Frame::Array(vec![]));
        assert_eq!(
            decode_one(b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n"),
            Frame::Array(vec![Frame::bulk("a"), Frame::Array(vec![Frame::Integer(1)])])
        );
    }

    #[test]
    fn resp3_types_decode() {
        assert_eq!(decode_one(b"_\r\n"), Frame::Null);
        assert_eq!(decode_one(b",1.5\r\n"), Frame::Double(1.5));
        assert_eq!(decode_one(b",3\r\n"), Frame::Double(3.0));
        assert_eq!(decode_one(b",inf\r\n"), Frame::Double(f64::INFINITY));
        assert_eq!(decode_one(b",-inf\r\n"), Frame::Double(f64::NEG_INFINITY));
        assert!(matches!(decode_one(b",nan\r\n"), Frame::Double(value) if value.is_nan()));
        assert_eq!(decode_one(b"#t\r\n"), Frame::Boolean(true));
        assert_eq!(decode_one(b"#f\r\n"), Frame::Boolean(false));
        assert_eq!(
            decode_one(b"(-123456789012345678901234567890\r\n"),
            Frame::BigNumber(bytes(b"-123456789012345678901234567890"))
        );
        assert_eq!(decode_one(b"!8\r\nERR x\r\ny\r\n"), Frame::BulkError(bytes(b"ERR x\r\ny")));
        assert_eq!(decode_one(b"=8\r\nmkd:# hi\r\n"), Frame::Verbatim { format: *b"mkd", text: bytes(b"# hi") });
        assert_eq!(decode_one(b"=4\r\ntxt:\r\n"), Frame::Verbatim { format: *b"txt", text: Bytes::new() });
        assert_eq!(
            decode_one(b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n_\r\n"),
            Frame::Map(vec![(Frame::simple("a"), Frame::Integer(1)), (Frame::bulk("b"), Frame::Null)])
        );
        assert_eq!(decode_one(b"~2\r\n:1\r\n#f\r\n"), Frame::Set(vec![Frame::Integer(1), Frame::Boolean(false)]));
        assert_eq!(
            decode_one(b">2\r\n+message\r\n$2\r\nhi\r\n"),
            Frame::Push(vec![Frame::simple("message"), Frame::bulk("hi")])
        );
    }

    #[test]
    fn attributes_are_dropped() {
        let attribute = b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n";
        let mut input = attribute.to_vec();
        input.extend_from_slice(b"*2\r\n:2039123\r\n");
        input.extend_from_slice(attribute);
        input.extend_from_slice(b":9543892\r\n");
        assert_eq!(decode_one(&input), Frame::Array(vec![Frame::Integer(2039123), Frame::Integer(9543892)]));
        // A chain of attributes is looped over, not recursed into.
        let mut chain = b"|0\r\n".repeat(100_000);
        chain.extend_from_slice(b"+OK\r\n");
        assert_eq!(decode_one(&chain), Frame::ok());
    }

    #[test]
    fn incomplete_frames_consume_nothing() {
        let complete = b"*3\r\n$3\r\nabc\r\n%1\r\n+k\r\n,1.5\r\n|1\r\n+a\r\n+b\r\n=5\r\ntxt:x\r\n";
        for split in 0..complete.len() {
            let mut buf = BytesMut::from(&complete[..split]);
            assert_eq!(decode_frame(&mut buf, &Limits::default()), Ok(None), "split at {split}");
            assert_eq!(buf.len(), split);
        }
        assert_eq!(decode_all(complete, &Limits::default()).unwrap().len(), 1);
    }

    #[test]
    fn malformed_frames_are_rejected_with_clear_texts() {
        let limits = Limits::default();
        let cases: &[(&[u8], &str)] = &[
            (b"?\r\n", "Protocol error: unknown frame type '?'"),
            (b":1.5\r\n", "Protocol error: invalid integer"),
            (b":+1\r\n", "Protocol error: invalid integer"),
            (b",abc\r\n", "Protocol error: invalid double"),
            (b",\r\n", "Protocol error: invalid double"),
            (b"#x\r\n", "Protocol error: invalid boolean"),
            (b"_x\r\n", "Protocol error: invalid null"),
            (b"(12a\r\n", "Protocol error: invalid big number"),
            (b"(\r\n", "Protocol error: invalid big number"),
            (b"$-2\r\n", "Protocol error: invalid bulk length"),
            (b"!-1\r\n", "Protocol error: invalid bulk length"),
            (b"$?\r\n", "Protocol error: invalid bulk length"),
            (b"=3\r\ntxt\r\n", "Protocol error: invalid verbatim string"),
            (b"=5\r\ntxt-x\r\n", "Protocol error: invalid verbatim string"),
            (b"$1\r\nab\r\n", "Protocol error: expected CRLF after bulk data"),
            (b"*-2\r\n", "Protocol error: invalid multibulk length"),
            (b"%-1\r\n", "Protocol error: invalid aggregate length"),
            (b"~x\r\n", "Protocol error: invalid aggregate length"),
            (b"+OK\rX", "Protocol error: expected CRLF at end of line"),
        ];
        for (input, text) in cases {
            assert_eq!(decode_error(input, &limits).to_string(), *text, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits { bulk_bytes_max: 4, array_len_max: 2, depth_max: 2, inline_bytes_max: 8 };
        assert_eq!(decode_error(b"$5\r\n", &limits), ProtocolError::InvalidBulkLength);
        assert_eq!(decode_error(b"!5\r\n", &limits), ProtocolError::InvalidBulkLength);
        assert_eq!(decode_error(b"*3\r\n", &limits), ProtocolError::InvalidMultibulkLength);
        assert_eq!(decode_error(b"%3\r\n", &limits), ProtocolError::InvalidAggregateLength);
        assert_eq!(decode_error(b"+123456789", &limits), ProtocolError::LineTooLong);
        assert_eq!(decode_error(b"*123456789", &limits), ProtocolError::MultibulkCountTooLong);
        assert_eq!(decode_error(b"$123456789", &limits), ProtocolError::BulkCountTooLong);
        assert_eq!(
            decode_all(b"*1\r\n*1\r\n:1\r\n", &limits),
            Ok(vec![Frame::Array(vec![Frame::Array(vec![Frame::Integer(1)])])])
        );
        let error = decode_error(b"*1\r\n*1\r\n*1\r\n:1\r\n", &limits);
        assert_eq!(error.to_string(), "Protocol error: aggregates nested too deep");
        // Attribute pairs are nested one level inside the frame they decorate.
        assert_eq!(decode_error(b"*1\r\n*1\r\n|1\r\n+a\r\n+b\r\n:1\r\n", &limits), ProtocolError::NestingTooDeep);
    }
}
