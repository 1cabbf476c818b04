//! Properties of the codec over generated input: encoding round-trips, and no
//! input, however it is split across reads, can panic a parser or change its result.

mod support;

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use support::*;
use tandem_resp::{decode_frame, Frame, Limits, Protocol};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn resp3_encoding_decodes_to_the_same_frame(frame in any_frame()) {
        let mut buf = encode(&frame, Protocol::Resp3);
        let decoded = decode_frame(&mut buf, &Limits::default()).unwrap().expect("a whole frame");
        prop_assert!(buf.is_empty());
        assert_same_frame(&decoded, &expected_resp3(&frame));
    }

    #[test]
    fn resp2_encoding_decodes_to_the_downgraded_frame(frame in any_frame()) {
        let mut buf = encode(&frame, Protocol::Resp2);
        let decoded = decode_frame(&mut buf, &Limits::default()).unwrap().expect("a whole frame");
        prop_assert!(buf.is_empty());
        assert_same_frame(&decoded, &expected_resp2(&frame));
    }

    #[test]
    fn encoded_requests_parse_back(requests in vec(request_arguments(), 1..6), chunk_sizes in vec(1_usize..64, 0..64)) {
        let mut input = BytesMut::new();
        for arguments in &requests {
            encode_request(arguments, &mut input);
        }
        let (parsed, error) = requests_in_chunks(&input, &chunk_sizes, &Limits::default());
        prop_assert_eq!(error, None);
        prop_assert_eq!(parsed, requests);
    }

    #[test]
    fn a_frame_split_anywhere_decodes_the_same(frame in any_frame(), chunk_sizes in vec(1_usize..16, 0..256)) {
        let input = encode(&frame, Protocol::Resp3);
        let (frames, error) = frames_in_chunks(&input, &chunk_sizes, &Limits::default());
        prop_assert_eq!(error, None);
        prop_assert_eq!(frames.len(), 1);
        assert_same_frame(&frames[0], &expected_resp3(&frame));
    }

    #[test]
    fn random_bytes_parse_the_same_however_split(
        input in prop_oneof![vec(any::<u8>(), 0..256), resp_like_bytes()],
        chunk_sizes in vec(1_usize..8, 0..256),
        small in any::<bool>(),
    ) {
        let limits = if small { SMALL_LIMITS } else { Limits::default() };
        let at_once = requests_in_chunks(&input, &[], &limits);
        let byte_at_a_time = requests_in_chunks(&input, &[1; 256], &limits);
        let in_chunks = requests_in_chunks(&input, &chunk_sizes, &limits);
        prop_assert_eq!(&byte_at_a_time, &at_once);
        prop_assert_eq!(&in_chunks, &at_once);
    }

    #[test]
    fn random_bytes_decode_the_same_however_split(
        input in prop_oneof![vec(any::<u8>(), 0..256), resp_like_bytes()],
        chunk_sizes in vec(1_usize..8, 0..256),
        small in any::<bool>(),
    ) {
        let limits = if small { SMALL_LIMITS } else { Limits::default() };
        let debug = |outcome: Outcome<Frame>| format!("{outcome:?}");
        let at_once = debug(frames_in_chunks(&input, &[], &limits));
        prop_assert_eq!(debug(frames_in_chunks(&input, &[1; 256], &limits)), at_once.clone());
        prop_assert_eq!(debug(frames_in_chunks(&input, &chunk_sizes, &limits)), at_once);
    }
}
