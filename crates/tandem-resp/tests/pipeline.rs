//! Pipelines as a server sees them: many requests back to back, arriving in
//! reads of any size, and one very large argument arriving in small reads.

mod support;

use bytes::{Bytes, BytesMut};
use support::*;
use tandem_resp::{parse_request, Frame, Limits, Protocol};

fn arguments(words: &[&[u8]]) -> Vec<Bytes> {
    words.iter().map(|word| Bytes::copy_from_slice(word)).collect()
}

/// Multibulk, inline, quoted inline and empty requests, back to back.
const PIPELINE: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n\
*0\r\n\
PING\r\n\
*-1\r\n\
\r\n\
\n\
ECHO \"a b\\x21\" 'c\\'d'\n\
*2\r\n$3\r\nGET\r\n$0\r\n\r\n\
  INCR   counter  \r\n";

fn pipeline_requests() -> Vec<Vec<Bytes>> {
    vec![
        arguments(&[b"SET", b"key", b"va\r\nl"]),
        arguments(&[b"PING"]),
        arguments(&[b"ECHO", b"a b!", b"c'd"]),
        arguments(&[b"GET", b""]),
        arguments(&[b"INCR", b"counter"]),
    ]
}

#[test]
fn a_pipeline_parses_the_same_at_once_and_byte_at_a_time() {
    let limits = Limits::default();
    assert_eq!(requests_in_chunks(PIPELINE, &[], &limits), (pipeline_requests(), None));
    assert_eq!(requests_in_chunks(PIPELINE, &[1; 512], &limits), (pipeline_requests(), None));
}

#[test]
fn a_pipeline_split_at_every_point_parses_the_same() {
    let limits = Limits::default();
    for split in 1..PIPELINE.len() {
        assert_eq!(requests_in_chunks(PIPELINE, &[split], &limits), (pipeline_requests(), None), "split at {split}");
    }
}

#[test]
fn an_incomplete_request_leaves_its_bytes_in_the_buffer() {
    let limits = Limits::default();
    let mut first_request = BytesMut::new();
    encode_request(&pipeline_requests()[0], &mut first_request);
    assert!(PIPELINE.starts_with(&first_request));
    let first_request_bytes = first_request.len();
    for end in 0..first_request_bytes {
        let mut buf = BytesMut::from(&PIPELINE[..end]);
        assert_eq!(parse_request(&mut buf, &limits), Ok(None), "prefix of {end} bytes");
        assert_eq!(&buf[..], &PIPELINE[..end]);
    }
    let mut buf = BytesMut::from(&PIPELINE[..first_request_bytes]);
    assert_eq!(parse_request(&mut buf, &limits), Ok(Some(pipeline_requests()[0].clone())));
}

#[test]
fn a_pipeline_of_replies_decodes_the_same_at_once_and_byte_at_a_time() {
    let replies = vec![
        Frame::ok(),
        Frame::error("ERR unknown command"),
        Frame::Integer(-7),
        Frame::bulk("value"),
        Frame::Null,
        Frame::Map(vec![(Frame::bulk("server"), Frame::bulk("tandem")), (Frame::bulk("proto"), Frame::Integer(3))]),
        Frame::Push(vec![Frame::bulk("message"), Frame::bulk("channel"), Frame::bulk("hello")]),
        Frame::Set(vec![Frame::Double(1.5), Frame::Boolean(true)]),
        Frame::Verbatim { format: *b"txt", text: Bytes::from_static(b"# Server\r\nversion:1\r\n") },
    ];
    let mut input = BytesMut::new();
    for reply in &replies {
        reply.encode(Protocol::Resp3, &mut input);
    }
    let limits = Limits::default();
    let at_once = frames_in_chunks(&input, &[], &limits);
    assert_eq!(at_once, (replies, None));
    assert_eq!(frames_in_chunks(&input, &[1; 4096], &limits), at_once);
}

#[test]
fn a_100_mib_argument_in_4_kib_reads_parses_in_linear_time() {
    const PAYLOAD_BYTES: usize = 100 * 1024 * 1024;
    const READ_BYTES: usize = 4 * 1024;
    let mut input = Vec::with_capacity(PAYLOAD_BYTES + 64);
    input.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${PAYLOAD_BYTES}\r\n").as_bytes());
    input.resize(input.len() + PAYLOAD_BYTES, b'v');
    input.extend_from_slice(b"\r\n");

    // Each attempt walks three headers and looks at two bytes past the payload, so
    // 25,600 attempts cost about as much as one; a byte-scanning parser would take minutes here.
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut parsed = None;
    for read in input.chunks(READ_BYTES) {
        buf.extend_from_slice(read);
        if let Some(arguments) = parse_request(&mut buf, &limits).unwrap() {
            parsed = Some(arguments);
        }
    }
    let arguments = parsed.expect("the request completes with its last read");
    assert!(buf.is_empty());
    assert_eq!(arguments.len(), 3);
    assert_eq!(&arguments[1][..], b"big");
    assert_eq!(arguments[2].len(), PAYLOAD_BYTES);
    assert!(arguments[2].iter().all(|&byte| byte == b'v'));
}
