//! The requests a connection has parsed but not yet run.
//!
//! A connection parses up to [`PREFETCH_AHEAD_MAX`] buffered requests at
//! once and prefetches their keys together before running them one by one
//! (see `Keyspace::prefetch`). Parsing ahead changes nothing a client sees:
//! the requests still run in order, and a malformed one is reported after
//! every request before it ran, as when each was parsed just before running.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tandem_resp::{parse_request, Limits, ProtocolError};

use crate::limits::{PREFETCH_AHEAD_MAX, PREFETCH_KEYS_MAX};

/// What a connection does next.
#[derive(Debug)]
pub enum Next {
    /// Run this request.
    Request(Vec<Bytes>),
    /// The input holds no complete request: read more.
    NeedsInput,
    /// The input is malformed here: reply with the error and close.
    Malformed(ProtocolError),
    /// Parse the next requests already buffered (the look-ahead was full).
    ParseMore,
}

/// A connection's look-ahead queue of parsed requests.
#[derive(Default)]
pub struct Pipeline {
    parsed: VecDeque<Vec<Bytes>>,
    /// Met after the parsed requests, reported once they ran.
    malformed: Option<ProtocolError>,
    /// Whether parsing stopped at an incomplete request (rather than at the look-ahead bound).
    input_drained: bool,
}

impl Pipeline {
    /// Once the previous look-ahead has run, parses the complete requests
    /// `input` holds, up to the bound; returns whether it parsed any.
    pub fn parse_ahead(&mut self, input: &mut BytesMut, limits: &Limits) -> bool {
        if !self.parsed.is_empty() || self.malformed.is_some() {
            return false;
        }
        self.input_drained = false;
        while self.parsed.len() < PREFETCH_AHEAD_MAX {
            match parse_request(input, limits) {
                // The parser skips empty requests; one would have no command to run.
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => self.parsed.push_back(args),
                Ok(None) => {
                    self.input_drained = true;
                    break;
                }
                Err(error) => {
                    self.malformed = Some(error);
                    break;
                }
            }
        }
        !self.parsed.is_empty()
    }

    /// The key arguments of the parsed requests, as their commands' specs
    /// place them (`MSET`'s every other argument, say), at most
    /// [`PREFETCH_KEYS_MAX`]; an unknown command names none.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.parsed
            .iter()
            .filter_map(|args| Some((crate::cmd::table::lookup(&args[0])?, args)))
            .flat_map(|(spec, args)| spec.keys(args))
            .map(|key| &key[..])
            .take(PREFETCH_KEYS_MAX)
    }

    /// The next request to run, or why there is none.
    pub fn next_step(&mut self) -> Next {
        if let Some(args) = self.parsed.pop_front() {
            return Next::Request(args);
        }
        match self.malformed.take() {
            Some(error) => Next::Malformed(error),
            None if self.input_drained => Next::NeedsInput,
            None => Next::ParseMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn names(pipeline: &mut Pipeline) -> Vec<String> {
        let mut names = Vec::new();
        while let Next::Request(args) = pipeline.next_step() {
            names.push(String::from_utf8_lossy(&args[0]).into_owned());
        }
        names
    }

    #[test]
    fn requests_run_in_order_and_a_partial_one_waits_for_input() {
        let mut input = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1"[..]);
        let mut pipeline = Pipeline::default();
        assert!(pipeline.parse_ahead(&mut input, &limits()));
        assert_eq!(pipeline.keys().collect::<Vec<_>>(), vec![&b"a"[..]], "PING names no key");
        assert_eq!(names(&mut pipeline), ["GET", "PING"]);
        assert!(matches!(pipeline.next_step(), Next::NeedsInput));
        assert_eq!(&input[..], b"*2\r\n$3\r\nGET\r\n$1", "the partial request stays in the input");
    }

    #[test]
    fn the_keys_to_prefetch_are_where_each_commands_spec_places_them() {
        let wire = "MSET a 1 b 2 c 3\r\nGET d\r\nNOSUCH e\r\nLMOVE f g LEFT RIGHT\r\n";
        let mut input = BytesMut::from(wire.as_bytes());
        let mut pipeline = Pipeline::default();
        pipeline.parse_ahead(&mut input, &limits());
        let keys: Vec<&[u8]> = pipeline.keys().collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"c", b"d", b"f", b"g"]);

        let many =
            format!("MSET {}\r\n", (0..PREFETCH_KEYS_MAX + 5).map(|n| format!("k{n} v")).collect::<Vec<_>>().join(" "));
        let mut input = BytesMut::from(many.as_bytes());
        let mut pipeline = Pipeline::default();
        pipeline.parse_ahead(&mut input, &limits());
        assert_eq!(pipeline.keys().count(), PREFETCH_KEYS_MAX, "bounded");
    }

    #[test]
    fn the_look_ahead_is_bounded_and_asks_to_parse_more() {
        let mut input = BytesMut::from("PING\r\n".repeat(PREFETCH_AHEAD_MAX + 3).as_bytes());
        let mut pipeline = Pipeline::default();
        pipeline.parse_ahead(&mut input, &limits());
        assert_eq!(names(&mut pipeline).len(), PREFETCH_AHEAD_MAX);
        assert!(matches!(pipeline.next_step(), Next::ParseMore), "more complete requests are buffered");
        pipeline.parse_ahead(&mut input, &limits());
        assert_eq!(names(&mut pipeline).len(), 3);
        assert!(matches!(pipeline.next_step(), Next::NeedsInput));
    }

    #[test]
    fn a_malformed_request_is_reported_after_the_requests_before_it() {
        let mut input = BytesMut::from(&b"PING\r\n*1\r\n$x\r\n"[..]);
        let mut pipeline = Pipeline::default();
        assert!(pipeline.parse_ahead(&mut input, &limits()), "the request before the malformed one");
        assert!(matches!(pipeline.next_step(), Next::Request(_)));
        assert!(matches!(pipeline.next_step(), Next::Malformed(_)));
    }

    #[test]
    fn nothing_new_is_parsed_until_the_look_ahead_has_run() {
        let mut input = BytesMut::from(&b"PING\r\nPING\r\n"[..]);
        let mut pipeline = Pipeline::default();
        assert!(pipeline.parse_ahead(&mut input, &limits()));
        input.extend_from_slice(b"ECHO\r\n");
        assert!(!pipeline.parse_ahead(&mut input, &limits()));
        assert_eq!(names(&mut pipeline), ["PING", "PING"]);
        pipeline.parse_ahead(&mut input, &limits());
        assert_eq!(names(&mut pipeline), ["ECHO"]);
    }

    /// Feeds `wire` in chunks of the given sizes, running the pipeline as a connection
    /// does between reads; returns the requests in the order they came out.
    fn run_in_chunks(wire: &[u8], chunks: &[usize]) -> Vec<Vec<Bytes>> {
        let (mut input, mut pipeline, mut got) = (BytesMut::new(), Pipeline::default(), Vec::new());
        let mut offset = 0;
        for chunk in chunks.iter().cycle() {
            pipeline.parse_ahead(&mut input, &limits());
            loop {
                match pipeline.next_step() {
                    Next::Request(args) => got.push(args),
                    Next::ParseMore => {
                        pipeline.parse_ahead(&mut input, &limits());
                    }
                    Next::NeedsInput => break,
                    Next::Malformed(error) => panic!("{error}"),
                }
            }
            if offset == wire.len() {
                return got;
            }
            let end = (offset + chunk).min(wire.len());
            input.extend_from_slice(&wire[offset..end]);
            offset = end;
        }
        unreachable!("the chunk sizes cycle forever")
    }

    proptest! {
        /// However the bytes arrive, and whatever the look-ahead bound cuts, the requests
        /// come out whole, once each, in the order they were sent.
        #[test]
        fn requests_come_out_in_order_whatever_the_chunks(
            requests in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec("[a-z0-9]{1,6}", 1..5)), 0..200),
            chunks in proptest::collection::vec(prop_oneof![1usize..80, 1000usize..5000], 1..20),
        ) {
            let mut wire = Vec::new();
            for (inline, args) in &requests {
                if *inline {
                    wire.extend_from_slice(args.join(" ").as_bytes());
                    wire.extend_from_slice(b"\r\n");
                } else {
                    wire.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
                    for arg in args {
                        wire.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
                    }
                }
            }
            let got: Vec<Vec<String>> = run_in_chunks(&wire, &chunks)
                .iter()
                .map(|args| args.iter().map(|arg| String::from_utf8_lossy(arg).into_owned()).collect())
                .collect();
            let sent: Vec<Vec<String>> = requests.into_iter().map(|(_, args)| args).collect();
            prop_assert_eq!(got, sent);
        }
    }
}
