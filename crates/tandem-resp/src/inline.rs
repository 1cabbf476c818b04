//! Inline requests, the form a person types into telnet: one line of
//! whitespace-separated arguments, split exactly like Redis's `sdssplitargs`.
//!
//! Quoting rules (from Redis):
//! * `"double quotes"` take `\n \r \t \b \a`, `\xHH` and `\<any>` (that byte) escapes;
//! * `'single quotes'` take only `\'`;
//! * a quote may open inside an argument (`a"b c"` is `ab c`), but a closing quote
//!   must be followed by whitespace or the end of the line;
//! * an unclosed quote is an error.
//!
//! One deliberate difference: Redis's C strings end at a NUL byte; here NUL is an ordinary byte.

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::limits::Limits;

/// Takes one inline request off the front of `buf`; the line ends at `\n`, with an optional `\r` before it.
pub(crate) fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    // Looking no further than the limit makes the outcome independent of how the line was split across reads.
    let window = &buf[..buf.len().min(limits.inline_bytes_max.saturating_add(1))];
    let Some(newline) = window.iter().position(|&byte| byte == b'\n') else {
        return if buf.len() > limits.inline_bytes_max { Err(ProtocolError::InlineTooLong) } else { Ok(None) };
    };
    let mut line = buf.split_to(newline + 1).freeze();
    line.truncate(newline);
    if line.last() == Some(&b'\r') {
        line.truncate(newline - 1);
    }
    split_arguments(&line).map(Some)
}

/// Splits a line into arguments; unquoted arguments are zero-copy slices of `line`.
pub(crate) fn split_arguments(line: &Bytes) -> Result<Vec<Bytes>, ProtocolError> {
    let mut arguments = Vec::new();
    let mut position = 0;
    loop {
        while line.get(position).is_some_and(|&byte| is_space(byte)) {
            position += 1;
        }
        if position == line.len() {
            return Ok(arguments);
        }
        let (argument, next) = split_argument(line, position)?;
        arguments.push(argument);
        position = next;
    }
}

/// C's `isspace`: what separates arguments and may follow a closing quote.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// What ends an unquoted argument in `sdssplitargs` (a narrower set than `is_space`).
fn ends_argument(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Reads the argument starting at `start` (not a space); returns it and the position after it.
fn split_argument(line: &Bytes, start: usize) -> Result<(Bytes, usize), ProtocolError> {
    let is_plain = |byte: u8| !ends_argument(byte) && byte != b'"' && byte != b'\'';
    let plain_end = line[start..].iter().position(|&byte| !is_plain(byte)).map_or(line.len(), |offset| start + offset);
    let plain_argument = match line.get(plain_end) {
        None => true,
        Some(&byte) => ends_argument(byte),
    };
    if plain_argument {
        return Ok((line.slice(start..plain_end), plain_end));
    }
    // A quote: the argument must be unescaped into a copy.
    let mut argument = line[start..plain_end].to_vec();
    let mut position = plain_end;
    loop {
        match line.get(position) {
            None => return Ok((Bytes::from(argument), position)),
            Some(&byte) if ends_argument(byte) => return Ok((Bytes::from(argument), position)),
            Some(b'"') => {
                let next = read_double_quoted(line, position + 1, &mut argument)?;
                return Ok((Bytes::from(argument), next));
            }
            Some(b'\'') => {
                let next = read_single_quoted(line, position + 1, &mut argument)?;
                return Ok((Bytes::from(argument), next));
            }
            Some(&byte) => {
                argument.push(byte);
                position += 1;
            }
        }
    }
}

/// Reads a double-quoted section from just after its opening quote; returns the position after the closing quote.
fn read_double_quoted(line: &[u8], mut position: usize, argument: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(position..) {
            None | Some([]) => return Err(ProtocolError::UnbalancedQuotes),
            Some([b'\\', b'x', high, low, ..]) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                argument.push(hex_value(*high) * 16 + hex_value(*low));
                position += 4;
            }
            Some([b'\\', escaped, ..]) => {
                argument.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => *other,
                });
                position += 2;
            }
            Some([b'"', ..]) => return closing_quote(line, position),
            Some([byte, ..]) => {
                argument.push(*byte);
                position += 1;
            }
        }
    }
}

/// Reads a single-quoted section from just after its opening quote; returns the position after the closing quote.
fn read_single_quoted(line: &[u8], mut position: usize, argument: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(position..) {
            None | Some([]) => return Err(ProtocolError::UnbalancedQuotes),
            Some([b'\\', b'\'', ..]) => {
                argument.push(b'\'');
                position += 2;
            }
            Some([b'\'', ..]) => return closing_quote(line, position),
            Some([byte, ..]) => {
                argument.push(*byte);
                position += 1;
            }
        }
    }
}

/// Redis requires a closing quote to end the argument: `"a"b` is an error, not `ab`.
fn closing_quote(line: &[u8], quote: usize) -> Result<usize, ProtocolError> {
    match line.get(quote + 1) {
        Some(&byte) if !is_space(byte) => Err(ProtocolError::UnbalancedQuotes),
        _ => Ok(quote + 1),
    }
}

/// The value of an ASCII hex digit; callers check `is_ascii_hexdigit` first.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        split_arguments(&Bytes::copy_from_slice(line))
            .map(|arguments| arguments.iter().map(|argument| argument.to_vec()).collect())
    }

    fn words(words: &[&[u8]]) -> Vec<Vec<u8>> {
        words.iter().map(|word| word.to_vec()).collect()
    }

    #[test]
    fn plain_arguments_split_on_whitespace() {
        assert_eq!(split(b"SET key value"), Ok(words(&[b"SET", b"key", b"value"])));
        assert_eq!(split(b"  \t GET\tkey   "), Ok(words(&[b"GET", b"key"])));
        assert_eq!(split(b""), Ok(vec![]));
        assert_eq!(split(b" \t\x0b\x0c "), Ok(vec![]));
        // Vertical tab and form feed separate only between arguments, as in sdssplitargs.
        assert_eq!(split(b"a\x0bb \x0bc"), Ok(words(&[b"a\x0bb", b"c"])));
        assert_eq!(split(b"a\rb"), Ok(words(&[b"a", b"b"])));
        assert_eq!(split(b"a\0b"), Ok(words(&[b"a\0b"])));
    }

    #[test]
    fn double_quotes_take_escapes() {
        assert_eq!(split(br#"SET k "hello world""#), Ok(words(&[b"SET", b"k", b"hello world"])));
        assert_eq!(split(br#""\n\r\t\b\a\\\"\z""#), Ok(words(&[b"\n\r\t\x08\x07\\\"z"])));
        assert_eq!(split(br#""\x41\xfF\x4""#), Ok(words(&[b"A\xffx4"])));
        assert_eq!(split(br#""\x4g""#), Ok(words(&[b"x4g"])));
        assert_eq!(split(br#""""#), Ok(words(&[b""])));
        assert_eq!(split(br#"a"b c"d"#), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split(br#"a"b c" d"#), Ok(words(&[b"ab c", b"d"])));
        assert_eq!(split(b"\"a\"\x0bb"), Ok(words(&[b"a", b"b"])));
    }

    #[test]
    fn single_quotes_take_only_escaped_quotes() {
        assert_eq!(split(br"'it\'s \n'"), Ok(words(&[br"it's \n"])));
        assert_eq!(split(br"x'y' z"), Ok(words(&[b"xy", b"z"])));
        assert_eq!(split(br#"'"'"#), Ok(words(&[b"\""])));
    }

    #[test]
    fn unbalanced_quotes_are_rejected() {
        for line in [&br#""abc"#[..], br"'abc", br#""abc"x"#, br"'abc'x", br#""abc\"#, br#""abc\""#, br"'abc\'"] {
            let error = split(line).expect_err(&String::from_utf8_lossy(line));
            assert_eq!(error.to_string(), "Protocol error: unbalanced quotes in request");
        }
    }

    #[test]
    fn lines_end_at_newline_with_optional_carriage_return() {
        let limits = Limits::default();
        let mut buf = BytesMut::from(&b"PING\nECHO hi\r\nGET"[..]);
        assert_eq!(parse_inline(&mut buf, &limits), Ok(Some(vec![Bytes::from_static(b"PING")])));
        assert_eq!(
            parse_inline(&mut buf, &limits),
            Ok(Some(vec![Bytes::from_static(b"ECHO"), Bytes::from_static(b"hi")]))
        );
        assert_eq!(parse_inline(&mut buf, &limits), Ok(None));
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn overlong_lines_are_rejected_with_or_without_their_newline() {
        let limits = Limits { inline_bytes_max: 4, ..Limits::default() };
        assert_eq!(parse_inline(&mut BytesMut::from(&b"PING"[..]), &limits), Ok(None));
        assert_eq!(
            parse_inline(&mut BytesMut::from(&b"PING\n"[..]), &limits),
            Ok(Some(vec![Bytes::from_static(b"PING")]))
        );
        let error = parse_inline(&mut BytesMut::from(&b"PINGS"[..]), &limits).unwrap_err();
        assert_eq!(error.to_string(), "Protocol error: too big inline request");
        assert_eq!(parse_inline(&mut BytesMut::from(&b"PINGS\n"[..]), &limits), Err(ProtocolError::InlineTooLong));
    }
}
