//! The `redis-protocol` crate as an independent oracle: it must read what we
//! write as the same values, and we must read what it writes.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use redis_protocol::resp2::types::{OwnedFrame as Resp2Frame, Resp2Frame as _};
use redis_protocol::resp3::types::{OwnedFrame as Resp3Frame, Resp3Frame as _, VerbatimStringFormat};
use support::*;
use tandem_resp::{decode_frame, parse_request, Frame, Limits, Protocol};

/// Text with CR and LF now and then; valid UTF-8 because the oracle keeps errors as `String`.
fn text() -> impl Strategy<Value = Bytes> {
    "(?s)[a-zA-Z0-9 \r\n\u{e9}\u{1F600}-]{0,20}".prop_map(Bytes::from)
}

fn keys() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..12)
}

/// Frames within what the oracle models: UTF-8 errors, `txt`/`mkd` verbatim
/// formats, no NaN (it compares doubles with `==`), and maps and sets with
/// distinct hashable members (it stores them in hash maps and sets).
fn oracle_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        short_bytes().prop_map(Frame::Simple),
        text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        short_bytes().prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
        any::<f64>()
            .prop_filter("the oracle compares doubles with ==", |value| !value.is_nan())
            .prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        big_number().prop_map(Frame::BigNumber),
        text().prop_map(Frame::BulkError),
        (prop_oneof![Just(*b"txt"), Just(*b"mkd")], short_bytes())
            .prop_map(|(format, text)| Frame::Verbatim { format, text }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            btree_map(keys(), inner, 0..4).prop_map(|pairs: BTreeMap<Vec<u8>, Frame>| {
                Frame::Map(pairs.into_iter().map(|(key, value)| (Frame::Bulk(Bytes::from(key)), value)).collect())
            }),
            btree_set(keys(), 0..6).prop_map(|members: BTreeSet<Vec<u8>>| {
                Frame::Set(members.into_iter().map(|member| Frame::Bulk(Bytes::from(member))).collect())
            }),
        ]
    })
}

/// The oracle's RESP3 value for a frame as we decode it (`expected_resp3` applied).
fn to_resp3(frame: &Frame) -> Resp3Frame {
    let attributes = None;
    match frame {
        Frame::Simple(text) => Resp3Frame::SimpleString { data: text.to_vec(), attributes },
        Frame::Error(message) => {
            Resp3Frame::SimpleError { data: String::from_utf8(message.to_vec()).unwrap(), attributes }
        }
        Frame::Integer(value) => Resp3Frame::Number { data: *value, attributes },
        Frame::Bulk(data) => Resp3Frame::BlobString { data: data.to_vec(), attributes },
        Frame::Null | Frame::NullArray => Resp3Frame::Null,
        Frame::Array(items) => Resp3Frame::Array { data: items.iter().map(to_resp3).collect(), attributes },
        Frame::Push(items) => Resp3Frame::Push { data: items.iter().map(to_resp3).collect(), attributes },
        Frame::Set(items) => Resp3Frame::Set { data: items.iter().map(to_resp3).collect(), attributes },
        Frame::Map(pairs) => Resp3Frame::Map {
            data: pairs.iter().map(|(key, value)| (to_resp3(key), to_resp3(value))).collect(),
            attributes,
        },
        Frame::Pairs(_) => panic!("{frame:?} does not decode: it reads back as arrays"),
        Frame::Double(value) => Resp3Frame::Double { data: *value, attributes },
        Frame::Boolean(value) => Resp3Frame::Boolean { data: *value, attributes },
        Frame::BigNumber(digits) => Resp3Frame::BigNumber { data: digits.to_vec(), attributes },
        Frame::BulkError(message) => Resp3Frame::BlobError { data: message.to_vec(), attributes },
        Frame::Verbatim { format, text } => Resp3Frame::VerbatimString {
            data: text.to_vec(),
            format: if format == b"txt" { VerbatimStringFormat::Text } else { VerbatimStringFormat::Markdown },
            attributes,
        },
    }
}

/// The oracle's RESP2 value for a frame as we decode it (`expected_resp2` applied).
fn to_resp2(frame: &Frame) -> Resp2Frame {
    match frame {
        Frame::Simple(text) => Resp2Frame::SimpleString(text.to_vec()),
        Frame::Error(message) => Resp2Frame::Error(String::from_utf8(message.to_vec()).unwrap()),
        Frame::Integer(value) => Resp2Frame::Integer(*value),
        Frame::Bulk(data) => Resp2Frame::BulkString(data.to_vec()),
        Frame::Null | Frame::NullArray => Resp2Frame::Null,
        Frame::Array(items) => Resp2Frame::Array(items.iter().map(to_resp2).collect()),
        other => panic!("{other:?} is not a RESP2 frame"),
    }
}

/// Attributes the oracle may attach to any frame it encodes.
fn oracle_attributes() -> impl Strategy<Value = Option<redis_protocol::resp3::types::OwnedAttributes>> {
    proptest::option::of(btree_map(keys(), any::<i64>(), 1..3)).prop_map(|pairs| {
        pairs.map(|pairs| {
            pairs
                .into_iter()
                .map(|(key, value)| {
                    (
                        Resp3Frame::BlobString { data: key, attributes: None },
                        Resp3Frame::Number { data: value, attributes: None },
                    )
                })
                .collect()
        })
    })
}

fn with_attributes(frame: Resp3Frame, attributes: Option<redis_protocol::resp3::types::OwnedAttributes>) -> Resp3Frame {
    match frame {
        Resp3Frame::Array { data, .. } => Resp3Frame::Array { data, attributes },
        Resp3Frame::BlobString { data, .. } => Resp3Frame::BlobString { data, attributes },
        Resp3Frame::Number { data, .. } => Resp3Frame::Number { data, attributes },
        other => other,
    }
}

fn without_attributes(frame: &Resp3Frame) -> Resp3Frame {
    match frame.clone() {
        Resp3Frame::Array { data, .. } => Resp3Frame::Array { data, attributes: None },
        Resp3Frame::BlobString { data, .. } => Resp3Frame::BlobString { data, attributes: None },
        Resp3Frame::Number { data, .. } => Resp3Frame::Number { data, attributes: None },
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_oracle_reads_our_resp3_as_the_same_value(frame in oracle_frame()) {
        let encoded = encode(&frame, Protocol::Resp3);
        let (decoded, consumed) = redis_protocol::resp3::decode::complete::decode(&encoded).unwrap().expect("complete");
        prop_assert_eq!(consumed, encoded.len());
        prop_assert_eq!(decoded, to_resp3(&expected_resp3(&frame)));
    }

    #[test]
    fn the_oracle_reads_our_resp2_as_the_downgraded_value(frame in oracle_frame()) {
        let encoded = encode(&frame, Protocol::Resp2);
        let (decoded, consumed) = redis_protocol::resp2::decode::decode(&encoded).unwrap().expect("complete");
        prop_assert_eq!(consumed, encoded.len());
        prop_assert_eq!(decoded, to_resp2(&expected_resp2(&frame)));
    }

    #[test]
    fn we_read_the_oracles_resp3(frame in oracle_frame(), attributes in oracle_attributes()) {
        // The oracle writes attributes before the frame they decorate; we drop them.
        let theirs = with_attributes(to_resp3(&expected_resp3(&frame)), attributes);
        let mut encoded = vec![0; theirs.encode_len(false)];
        redis_protocol::resp3::encode::complete::encode(&mut encoded, &theirs, false).unwrap();
        let mut buf = BytesMut::from(&encoded[..]);
        let ours = decode_frame(&mut buf, &Limits::default()).unwrap().expect("complete");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(to_resp3(&ours), without_attributes(&theirs));
    }

    #[test]
    fn we_read_the_oracles_resp2(frame in oracle_frame()) {
        let theirs = to_resp2(&expected_resp2(&frame));
        let mut encoded = vec![0; theirs.encode_len(false)];
        redis_protocol::resp2::encode::encode(&mut encoded, &theirs, false).unwrap();
        let mut buf = BytesMut::from(&encoded[..]);
        let ours = decode_frame(&mut buf, &Limits::default()).unwrap().expect("complete");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(to_resp2(&ours), theirs);
    }

    #[test]
    fn requests_parse_as_the_oracle_reads_them(requests in vec(request_arguments(), 1..6)) {
        let mut input = BytesMut::new();
        for arguments in &requests {
            encode_request(arguments, &mut input);
        }
        let mut oracle_position = 0;
        let mut buf = input.clone();
        for _ in &requests {
            let (theirs, consumed) = redis_protocol::resp2::decode::decode(&input[oracle_position..]).unwrap().expect("complete");
            oracle_position += consumed;
            let ours = parse_request(&mut buf, &Limits::default()).unwrap().expect("complete");
            prop_assert_eq!(Resp2Frame::Array(ours.iter().map(|argument| Resp2Frame::BulkString(argument.to_vec())).collect()), theirs);
            prop_assert_eq!(buf.len(), input.len() - oracle_position);
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn requests_the_oracle_writes_parse_back(requests in vec(request_arguments(), 1..6)) {
        let mut input = Vec::new();
        for arguments in &requests {
            let theirs = Resp2Frame::Array(arguments.iter().map(|argument| Resp2Frame::BulkString(argument.to_vec())).collect());
            let mut encoded = vec![0; theirs.encode_len(false)];
            redis_protocol::resp2::encode::encode(&mut encoded, &theirs, false).unwrap();
            input.extend_from_slice(&encoded);
        }
        let (parsed, error) = requests_in_chunks(&input, &[], &Limits::default());
        prop_assert_eq!(error, None);
        prop_assert_eq!(parsed, requests);
    }
}
