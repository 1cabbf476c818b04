//! Shared by the integration tests: frame strategies, the expected effect of
//! encoding, and helpers that feed a parser in chunks.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use tandem_resp::{decode_frame, format_double, parse_request, Frame, Limits, Protocol, ProtocolError};

/// Small limits, so that random input reaches every limit check.
pub const SMALL_LIMITS: Limits = Limits { bulk_bytes_max: 16, array_len_max: 4, depth_max: 3, inline_bytes_max: 12 };

/// Short byte strings that sometimes hold CR or LF.
pub fn short_bytes() -> impl Strategy<Value = Bytes> {
    vec(prop_oneof![4 => any::<u8>(), 1 => Just(b'\r'), 1 => Just(b'\n')], 0..24).prop_map(Bytes::from)
}

/// Text of a RESP3 big number.
pub fn big_number() -> impl Strategy<Value = Bytes> {
    "0|-?[1-9][0-9]{0,40}".prop_map(Bytes::from)
}

/// Any frame, with any double (NaN, infinities, subnormals included) and any verbatim format.
pub fn any_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        short_bytes().prop_map(Frame::Simple),
        short_bytes().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        short_bytes().prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
        any::<f64>().prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        big_number().prop_map(Frame::BigNumber),
        short_bytes().prop_map(Frame::BulkError),
        (any::<[u8; 3]>(), short_bytes()).prop_map(|(format, text)| Frame::Verbatim { format, text }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(Frame::Map),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(Frame::Pairs),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner, 0..6).prop_map(Frame::Push),
        ]
    })
}

/// Arguments of one request: at least one, any bytes.
pub fn request_arguments() -> impl Strategy<Value = Vec<Bytes>> {
    vec(vec(any::<u8>(), 0..40).prop_map(Bytes::from), 1..8)
}

/// Bytes that look like RESP often enough to reach deep parser states.
pub fn resp_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(&b"*"[..]),
        Just(&b"$"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"\n"[..]),
        Just(&b"-1"[..]),
        Just(&b"0"[..]),
        Just(&b"1"[..]),
        Just(&b"2"[..]),
        Just(&b"3"[..]),
        Just(&b"17"[..]),
        Just(&b"abc"[..]),
        Just(&b" "[..]),
        Just(&b"\""[..]),
        Just(&b"'"[..]),
        Just(&b"\\x4"[..]),
        Just(&b"\\"[..]),
        Just(&b"+OK"[..]),
        Just(&b":"[..]),
        Just(&b"%"[..]),
        Just(&b"~"[..]),
        Just(&b">"[..]),
        Just(&b"|"[..]),
        Just(&b"_"[..]),
        Just(&b",inf"[..]),
        Just(&b"#t"[..]),
        Just(&b"=7"[..]),
        Just(&b"txt:"[..]),
        Just(&b"!"[..]),
        Just(&b"("[..]),
    ];
    vec(fragment, 0..48).prop_map(|fragments| fragments.concat())
}

/// Encodes `frame` in `protocol`.
pub fn encode(frame: &Frame, protocol: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    frame.encode(protocol, &mut out);
    out
}

/// Encodes a request the way clients send it: a RESP2 array of bulk strings.
pub fn encode_request(arguments: &[Bytes], out: &mut BytesMut) {
    Frame::Array(arguments.iter().cloned().map(Frame::Bulk).collect()).encode(Protocol::Resp2, out);
}

/// CR and LF become spaces, as the encoder writes line frames.
pub fn sanitized(text: &Bytes) -> Bytes {
    text.iter().map(|&byte| if byte == b'\r' || byte == b'\n' { b' ' } else { byte }).collect()
}

/// What decoding `frame` encoded as RESP3 gives back.
pub fn expected_resp3(frame: &Frame) -> Frame {
    match frame {
        Frame::Simple(text) => Frame::Simple(sanitized(text)),
        Frame::Error(message) => Frame::Error(sanitized(message)),
        Frame::BigNumber(digits) => Frame::BigNumber(sanitized(digits)),
        Frame::NullArray => Frame::Null,
        Frame::Array(items) => Frame::Array(items.iter().map(expected_resp3).collect()),
        Frame::Set(items) => Frame::Set(items.iter().map(expected_resp3).collect()),
        Frame::Push(items) => Frame::Push(items.iter().map(expected_resp3).collect()),
        Frame::Map(pairs) => {
            Frame::Map(pairs.iter().map(|(key, value)| (expected_resp3(key), expected_resp3(value))).collect())
        }
        Frame::Pairs(pairs) => Frame::Array(
            pairs
                .iter()
                .map(|(first, second)| Frame::Array(vec![expected_resp3(first), expected_resp3(second)]))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What decoding `frame` encoded as RESP2 gives back: RESP3 types downgraded as Redis does.
pub fn expected_resp2(frame: &Frame) -> Frame {
    match frame {
        Frame::Simple(text) => Frame::Simple(sanitized(text)),
        Frame::Error(message) | Frame::BulkError(message) => Frame::Error(sanitized(message)),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            Frame::Array(items.iter().map(expected_resp2).collect())
        }
        Frame::Map(pairs) | Frame::Pairs(pairs) => {
            Frame::Array(pairs.iter().flat_map(|(key, value)| [expected_resp2(key), expected_resp2(value)]).collect())
        }
        Frame::Double(value) => Frame::Bulk(Bytes::from(format_double(*value))),
        Frame::Boolean(value) => Frame::Integer(i64::from(*value)),
        Frame::BigNumber(digits) => Frame::Bulk(digits.clone()),
        Frame::Verbatim { text, .. } => Frame::Bulk(text.clone()),
        other => other.clone(),
    }
}

/// Frames compared through `Debug`, so that NaN equals NaN and -0 differs from 0.
pub fn assert_same_frame(actual: &Frame, expected: &Frame) {
    assert_eq!(format!("{actual:?}"), format!("{expected:?}"));
}

/// What a parser produced from some input: the items, then the error that stopped it, if any.
pub type Outcome<T> = (Vec<T>, Option<ProtocolError>);

/// Feeds `input` in chunks of the given sizes (the rest at once), taking items after each chunk.
///
/// Asserts the parser's progress contract: an item consumes bytes, and nothing
/// ever makes the buffer grow except the caller's appends.
pub fn feed_in_chunks<T>(
    input: &[u8],
    chunk_sizes: &[usize],
    mut parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
) -> Outcome<T> {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut rest = input;
    let mut sizes = chunk_sizes.iter().copied();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        loop {
            let before = buf.len();
            match parse(&mut buf) {
                Ok(Some(item)) => {
                    assert!(buf.len() < before, "an item must consume bytes");
                    items.push(item);
                }
                Ok(None) => {
                    assert!(buf.len() <= before);
                    break;
                }
                Err(error) => return (items, Some(error)),
            }
        }
    }
    (items, None)
}

/// All requests in `input`, fed in chunks of the given sizes.
pub fn requests_in_chunks(input: &[u8], chunk_sizes: &[usize], limits: &Limits) -> Outcome<Vec<Bytes>> {
    feed_in_chunks(input, chunk_sizes, |buf| parse_request(buf, limits))
}

/// All frames in `input`, fed in chunks of the given sizes.
pub fn frames_in_chunks(input: &[u8], chunk_sizes: &[usize], limits: &Limits) -> Outcome<Frame> {
    feed_in_chunks(input, chunk_sizes, |buf| decode_frame(buf, limits))
}
