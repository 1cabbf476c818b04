//! Property tests: any record sequence roundtrips; any single damaged byte is never
//! accepted as data — recovery either refuses, or (only for the log's final record) drops the
//! damaged record as a torn tail.

use std::fs;

use proptest::prelude::*;
use tandem_log::{
    check, read_from, read_from_recovered, recover, Epoch, FsyncPolicy, Log, LogIndex, LogOptions, NodeId, Record,
};

use crate::common::{frames_of, segment_files};

/// (epoch, hlc, origin, payload) of one record to append.
type Input = (u64, u64, u32, Vec<u8>);

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    prop::collection::vec((0..4u64, any::<u64>(), 0..3u32, prop::collection::vec(any::<u8>(), 0..400)), 1..40)
}

fn write_inputs(dir: &std::path::Path, options: &LogOptions, inputs: &[Input]) -> Vec<Record> {
    let recovery = recover(dir, options).unwrap();
    let log = Log::open(dir, options, &recovery).unwrap();
    let records = inputs
        .iter()
        .map(|(epoch, hlc, origin, payload)| Record {
            index: log.append(Epoch(*epoch), *hlc, NodeId(*origin), payload),
            epoch: Epoch(*epoch),
            hlc: *hlc,
            origin: NodeId(*origin),
            payload: payload.clone().into(),
        })
        .collect();
    log.shutdown().unwrap();
    records
}

fn options(segment_bytes_max: u64) -> LogOptions {
    LogOptions { segment_bytes_max, record_bytes_max: 4096, fsync: FsyncPolicy::Never, preallocate: true }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn records_roundtrip(inputs in inputs(), segment_bytes_max in 256..3000u64, start in 0..45u64) {
        let dir = tempfile::tempdir().unwrap();
        let options = options(segment_bytes_max);
        let written = write_inputs(dir.path(), &options, &inputs);
        let read: Vec<Record> = read_from(dir.path(), LogIndex(1), &options)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(&read, &written);
        let from: Vec<Record> = read_from(dir.path(), LogIndex(start), &options)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let skip = (start.max(1) - 1) as usize;
        prop_assert_eq!(&from[..], &written[skip.min(written.len())..]);
        let recovery = recover(dir.path(), &options).unwrap();
        let recovered: Vec<Record> = read_from_recovered(dir.path(), LogIndex(start), &options, &recovery)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(&recovered, &from);
    }

    #[test]
    fn a_damaged_byte_is_never_accepted(
        inputs in inputs(),
        segment_bytes_max in 256..3000u64,
        file_choice in any::<prop::sample::Index>(),
        byte_choice in any::<prop::sample::Index>(),
        mask in 1..=255u8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = options(segment_bytes_max);
        let written = write_inputs(dir.path(), &options, &inputs);
        let segments = segment_files(dir.path());
        let segment = file_choice.get(&segments);
        let mut bytes = fs::read(segment).unwrap();
        let position = byte_choice.index(bytes.len());
        // The record the damaged byte belongs to; None for the segment header.
        let damaged_index = frames_of(segment)
            .iter()
            .find(|frame| (frame.offset..frame.offset + frame.bytes).contains(&(position as u64)))
            .map(|frame| frame.index);
        bytes[position] ^= mask;
        fs::write(segment, &bytes).unwrap();

        prop_assert!(check(dir.path(), &options).unwrap().problem.is_some());
        // A reader on the damaged log returns only true records, and stops at the damage.
        // (Opening the reader may already fail, on a damaged first header.)
        let reader = read_from(dir.path(), LogIndex(1), &options).into_iter().flatten();
        for (position, record) in reader.map_while(Result::ok).enumerate() {
            prop_assert_eq!(&record, &written[position]);
            if let Some(damaged) = damaged_index {
                prop_assert!(record.index.0 < damaged);
            }
        }
        match recover(dir.path(), &options) {
            Err(error) => prop_assert!(matches!(error, tandem_log::LogError::Corrupt { .. }), "{}", error),
            Ok(recovery) => {
                let damaged = damaged_index.expect("a damaged header must be refused");
                prop_assert!(recovery.torn_tail_bytes_dropped > 0);
                // Intact records after the damage prove it is not an unfinished write, so
                // only damage to the very last record may pass for a torn tail.
                prop_assert_eq!(damaged, written.len() as u64);
                prop_assert_eq!(recovery.last_index.map_or(0, |last| last.0), damaged - 1);
                let read: Vec<Record> = read_from(dir.path(), LogIndex(1), &options)
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                prop_assert_eq!(&read[..], &written[..damaged as usize - 1]);
            }
        }
    }
}
