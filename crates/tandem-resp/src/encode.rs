//! Writing frames. RESP3 types are downgraded for RESP2 the way Redis does it.
//!
//! Encoding allocates nothing besides growing `out`: integers and lengths go
//! through a stack buffer, doubles through a fixed-size stack writer.

use std::fmt::{self, Write as _};

use bytes::{BufMut, BytesMut};

use crate::frame::{Frame, Protocol};
use crate::limits::INTEGER_TEXT_BYTES_MAX;

/// Longest text `format_double` produces: `-0.0000` and 17 digits, or 17 digits, a point and an exponent.
const DOUBLE_TEXT_BYTES_MAX: usize = 40;

impl Frame {
    /// Appends this frame to `out` in `protocol`'s wire format.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Frame::Simple(text) => write_line(out, b'+', text),
            Frame::Error(message) => write_line(out, b'-', message),
            Frame::Integer(value) => write_integer_line(out, b':', *value),
            Frame::Bulk(data) => write_blob(out, b'$', data),
            Frame::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Frame::Null => out.extend_from_slice(b"$-1\r\n"),
            Frame::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Frame::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Frame::Array(items) => write_aggregate(out, b'*', items, protocol),
            Frame::Set(items) => write_aggregate(out, if resp3 { b'~' } else { b'*' }, items, protocol),
            Frame::Push(items) => write_aggregate(out, if resp3 { b'>' } else { b'*' }, items, protocol),
            Frame::Map(pairs) => {
                // RESP2 has no map: Redis sends the pairs flattened into one array.
                if resp3 {
                    write_length_line(out, b'%', pairs.len());
                } else {
                    write_length_line(out, b'*', pairs.len() * 2);
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            Frame::Pairs(pairs) => {
                write_length_line(out, b'*', if resp3 { pairs.len() } else { pairs.len() * 2 });
                for (first, second) in pairs {
                    if resp3 {
                        write_length_line(out, b'*', 2);
                    }
                    first.encode(protocol, out);
                    second.encode(protocol, out);
                }
            }
            Frame::Double(value) => write_double(out, *value, protocol),
            Frame::Boolean(value) if resp3 => out.extend_from_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::Boolean(value) => out.extend_from_slice(if *value { b":1\r\n" } else { b":0\r\n" }),
            Frame::BigNumber(digits) if resp3 => write_line(out, b'(', digits),
            Frame::BigNumber(digits) => write_blob(out, b'$', digits),
            Frame::BulkError(message) if resp3 => write_blob(out, b'!', message),
            Frame::BulkError(message) => write_line(out, b'-', message),
            Frame::Verbatim { format, text } if resp3 => {
                write_length_line(out, b'=', text.len() + 4);
                out.reserve(text.len() + 6);
                out.extend_from_slice(format);
                out.put_u8(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Verbatim { text, .. } => write_blob(out, b'$', text),
        }
    }
}

/// Formats a double the way replies carry it (Redis 7.2's `fpconv_dtoa`):
/// `inf`, `-inf`, `nan`, else the shortest digits that read back exactly, laid
/// out like C's `%.17g`: `3`, `10.5`, `0.0001`, `1e-05`, `1e+17`, `-0`.
pub fn format_double(value: f64) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = write_double_text(&mut text, value);
    text
}

/// `%g` switches to an exponent at this many digits before the point (`%.17g`).
const FIXED_DIGITS_MAX: i32 = 17;

fn write_double_text(out: &mut impl fmt::Write, value: f64) -> fmt::Result {
    if value.is_nan() {
        return out.write_str("nan");
    }
    if value.is_infinite() {
        return out.write_str(if value > 0.0 { "inf" } else { "-inf" });
    }
    if value.is_sign_negative() {
        out.write_char('-')?;
    }
    if value == 0.0 {
        return out.write_char('0');
    }
    // `{:e}` gives the shortest round-trip digits: `d[.ddd]e<exponent>`.
    let mut scientific = StackText::default();
    write!(scientific, "{:e}", value.abs())?;
    let scientific = std::str::from_utf8(scientific.as_bytes()).map_err(|_| fmt::Error)?;
    let (mantissa, exponent) = scientific.split_once('e').ok_or(fmt::Error)?;
    let exponent: i32 = exponent.parse().map_err(|_| fmt::Error)?;
    let digits: StackDigits = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let digits = digits.as_str();
    if !(-4..FIXED_DIGITS_MAX).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        out.write_str(first)?;
        if !rest.is_empty() {
            out.write_char('.')?;
            out.write_str(rest)?;
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        return write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    }
    if exponent < 0 {
        out.write_str("0.")?;
        for _ in 0..(-exponent - 1) {
            out.write_char('0')?;
        }
        return out.write_str(digits);
    }
    let whole = exponent as usize + 1;
    if digits.len() <= whole {
        out.write_str(digits)?;
        (digits.len()..whole).try_for_each(|_| out.write_char('0'))
    } else {
        out.write_str(&digits[..whole])?;
        out.write_char('.')?;
        out.write_str(&digits[whole..])
    }
}

/// The digits of a double's shortest form (17 at most), on the stack.
#[derive(Default)]
struct StackDigits {
    bytes: [u8; 24],
    len: usize,
}

impl FromIterator<u8> for StackDigits {
    fn from_iter<I: IntoIterator<Item = u8>>(digits: I) -> StackDigits {
        let mut collected = StackDigits::default();
        for digit in digits.into_iter().take(24) {
            collected.bytes[collected.len] = digit;
            collected.len += 1;
        }
        collected
    }
}

impl StackDigits {
    fn as_str(&self) -> &str {
        // Only ASCII digits are collected.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

fn write_double(out: &mut BytesMut, value: f64, protocol: Protocol) {
    let mut stack = StackText::default();
    let fallback;
    let text: &[u8] = if write_double_text(&mut stack, value).is_ok() {
        stack.as_bytes()
    } else {
        // Unreachable by DOUBLE_TEXT_BYTES_MAX; allocating is still better than a wrong reply.
        fallback = format_double(value);
        fallback.as_bytes()
    };
    if protocol == Protocol::Resp3 {
        out.reserve(text.len() + 3);
        out.put_u8(b',');
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    } else {
        write_blob(out, b'$', text);
    }
}

/// A fixed-capacity `fmt::Write` target, so formatting a double does not allocate.
struct StackText {
    bytes: [u8; DOUBLE_TEXT_BYTES_MAX],
    len: usize,
}

impl Default for StackText {
    fn default() -> StackText {
        StackText { bytes: [0; DOUBLE_TEXT_BYTES_MAX], len: 0 }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let destination = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        destination.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn write_aggregate(out: &mut BytesMut, prefix: u8, items: &[Frame], protocol: Protocol) {
    write_length_line(out, prefix, items.len());
    for item in items {
        item.encode(protocol, out);
    }
}

/// Writes `<prefix><text>\r\n`, turning CR and LF into spaces (as Redis does) so a reply can never break framing.
fn write_line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    if text.iter().any(|&byte| byte == b'\r' || byte == b'\n') {
        out.extend(text.iter().map(|&byte| match byte {
            b'\r' | b'\n' => b' ',
            other => other,
        }));
    } else {
        out.extend_from_slice(text);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `<prefix><length>\r\n<data>\r\n`.
fn write_blob(out: &mut BytesMut, prefix: u8, data: &[u8]) {
    write_length_line(out, prefix, data.len());
    out.reserve(data.len() + 2);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn write_length_line(out: &mut BytesMut, prefix: u8, length: usize) {
    let mut digits = [0_u8; INTEGER_TEXT_BYTES_MAX];
    // usize is at most 64 bits, so its text fits the same buffer as an i64's.
    let text = decimal_text(&mut digits, length as u64, false);
    write_line_unchecked(out, prefix, text);
}

fn write_integer_line(out: &mut BytesMut, prefix: u8, value: i64) {
    let mut digits = [0_u8; INTEGER_TEXT_BYTES_MAX];
    let text = decimal_text(&mut digits, value.unsigned_abs(), value < 0);
    write_line_unchecked(out, prefix, text);
}

/// Writes a line whose text is known to hold no CR or LF.
fn write_line_unchecked(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// Writes `magnitude` in decimal at the end of `buffer` and returns the written part.
fn decimal_text(buffer: &mut [u8; INTEGER_TEXT_BYTES_MAX], mut magnitude: u64, negative: bool) -> &[u8] {
    // u64::MAX has 20 digits; with a sign the magnitude is at most 2^63, which has 19.
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        start -= 1;
        buffer[start] = b'-';
    }
    &buffer[start..]
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn encoded(frame: &Frame, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame.encode(protocol, &mut out);
        out.to_vec()
    }

    fn assert_encodes(frame: Frame, resp2: &[u8], resp3: &[u8]) {
        assert_eq!(encoded(&frame, Protocol::Resp2), resp2, "RESP2 of {frame:?}");
        assert_eq!(encoded(&frame, Protocol::Resp3), resp3, "RESP3 of {frame:?}");
    }

    #[test]
    fn scalars_encode_in_both_protocols() {
        assert_encodes(Frame::ok(), b"+OK\r\n", b"+OK\r\n");
        assert_encodes(Frame::simple("PONG"), b"+PONG\r\n", b"+PONG\r\n");
        assert_encodes(Frame::error("ERR syntax error"), b"-ERR syntax error\r\n", b"-ERR syntax error\r\n");
        assert_encodes(Frame::Integer(0), b":0\r\n", b":0\r\n");
        assert_encodes(Frame::Integer(-42), b":-42\r\n", b":-42\r\n");
        assert_encodes(Frame::Integer(i64::MAX), b":9223372036854775807\r\n", b":9223372036854775807\r\n");
        assert_encodes(Frame::Integer(i64::MIN), b":-9223372036854775808\r\n", b":-9223372036854775808\r\n");
        assert_encodes(Frame::bulk("hello"), b"$5\r\nhello\r\n", b"$5\r\nhello\r\n");
        assert_encodes(Frame::bulk(""), b"$0\r\n\r\n", b"$0\r\n\r\n");
        assert_encodes(Frame::bulk(&b"a\r\nb"[..]), b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n");
        assert_encodes(Frame::Null, b"$-1\r\n", b"_\r\n");
        assert_encodes(Frame::NullArray, b"*-1\r\n", b"_\r\n");
    }

    #[test]
    fn resp3_types_encode_natively_and_downgrade_for_resp2() {
        assert_encodes(Frame::Double(3.0), b"$1\r\n3\r\n", b",3\r\n");
        assert_encodes(Frame::Double(10.5), b"$4\r\n10.5\r\n", b",10.5\r\n");
        assert_encodes(Frame::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n");
        assert_encodes(Frame::Double(f64::NEG_INFINITY), b"$4\r\n-inf\r\n", b",-inf\r\n");
        assert_encodes(Frame::Double(f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n");
        assert_encodes(Frame::Boolean(true), b":1\r\n", b"#t\r\n");
        assert_encodes(Frame::Boolean(false), b":0\r\n", b"#f\r\n");
        assert_encodes(
            Frame::BigNumber(Bytes::from_static(b"-12345678901234567890")),
            b"$21\r\n-12345678901234567890\r\n",
            b"(-12345678901234567890\r\n",
        );
        assert_encodes(
            Frame::BulkError(Bytes::from_static(b"SYNTAX bad")),
            b"-SYNTAX bad\r\n",
            b"!10\r\nSYNTAX bad\r\n",
        );
        assert_encodes(
            Frame::Verbatim { format: *b"txt", text: Bytes::from_static(b"Some string") },
            b"$11\r\nSome string\r\n",
            b"=15\r\ntxt:Some string\r\n",
        );
    }

    #[test]
    fn aggregates_encode_in_both_protocols() {
        assert_encodes(
            Frame::Array(vec![Frame::bulk("a"), Frame::Integer(1), Frame::Null]),
            b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n",
            b"*3\r\n$1\r\na\r\n:1\r\n_\r\n",
        );
        assert_encodes(Frame::Array(vec![]), b"*0\r\n", b"*0\r\n");
        assert_encodes(
            Frame::Map(vec![(Frame::bulk("k"), Frame::Boolean(true))]),
            b"*2\r\n$1\r\nk\r\n:1\r\n",
            b"%1\r\n$1\r\nk\r\n#t\r\n",
        );
        assert_encodes(Frame::Set(vec![Frame::Integer(7)]), b"*1\r\n:7\r\n", b"~1\r\n:7\r\n");
        assert_encodes(
            Frame::Push(vec![Frame::bulk("message"), Frame::Double(0.5)]),
            b"*2\r\n$7\r\nmessage\r\n$3\r\n0.5\r\n",
            b">2\r\n$7\r\nmessage\r\n,0.5\r\n",
        );
        assert_encodes(
            Frame::Array(vec![Frame::Array(vec![Frame::NullArray])]),
            b"*1\r\n*1\r\n*-1\r\n",
            b"*1\r\n*1\r\n_\r\n",
        );
    }

    #[test]
    fn pairs_nest_in_resp3_and_flatten_in_resp2() {
        let pairs = Frame::Pairs(vec![(Frame::bulk("a"), Frame::Double(1.5)), (Frame::bulk("b"), Frame::Double(2.0))]);
        assert_encodes(
            pairs,
            b"*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$1\r\n2\r\n",
            b"*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,2\r\n",
        );
    }

    #[test]
    fn line_frames_replace_cr_and_lf_with_spaces() {
        assert_encodes(Frame::error("ERR a\r\nb\nc\r"), b"-ERR a  b c \r\n", b"-ERR a  b c \r\n");
        assert_encodes(Frame::Simple(Bytes::from_static(b"x\ny")), b"+x y\r\n", b"+x y\r\n");
        assert_encodes(Frame::BulkError(Bytes::from_static(b"E\r\n")), b"-E  \r\n", b"!3\r\nE\r\n\r\n");
        assert_encodes(Frame::BigNumber(Bytes::from_static(b"1\r\n")), b"$3\r\n1\r\n\r\n", b"(1  \r\n");
    }

    #[test]
    fn format_double_is_shortest_round_trip_laid_out_like_percent_17g() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-0.0), "-0");
        assert_eq!(format_double(10.5), "10.5");
        assert_eq!(format_double(1.1), "1.1");
        assert_eq!(format_double(-2.5e-3), "-0.0025");
        assert_eq!(format_double(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_double(1e-4), "0.0001");
        assert_eq!(format_double(1.5e-5), "1.5e-05");
        assert_eq!(format_double(1e16), "10000000000000000");
        assert_eq!(format_double(1.25e17), "1.25e+17");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(-1e300), "-1e+300");
        assert_eq!(format_double(123456789.125), "123456789.125");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(f64::NAN), "nan");
        for extreme in [
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            -f64::from_bits(0x000F_FFFF_FFFF_FFFF),
            f64::from_bits(0x0008_0000_0000_0001),
        ] {
            let text = format_double(extreme);
            assert!(text.len() <= DOUBLE_TEXT_BYTES_MAX, "{} bytes for {extreme:e}", text.len());
            assert_eq!(text.parse::<f64>().unwrap(), extreme);
            // The stack writer must take the longest texts, or encoding would fall back to allocating.
            let mut stack = StackText::default();
            assert!(write_double_text(&mut stack, extreme).is_ok());
        }
    }
}
