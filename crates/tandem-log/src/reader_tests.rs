//! `read_from_recovered`: recovery's kept positions let a reader begin near
//! its start, and a position that no longer names its record is not used.

use crate::reader::{read_from, read_from_recovered};
use crate::recovery::recover;
use crate::scan::POSITION_STRIDE;
use crate::types::{Epoch, FsyncPolicy, LogIndex, LogOptions, NodeId, Record};
use crate::writer::Log;

/// One large segment holding `count` small records.
fn log_of(dir: &std::path::Path, count: u64) -> LogOptions {
    let options = LogOptions {
        segment_bytes_max: 64 * 1024 * 1024,
        record_bytes_max: 4096,
        fsync: FsyncPolicy::Never,
        preallocate: false,
    };
    let log = Log::open(dir, &options, &recover(dir, &options).unwrap()).unwrap();
    for seed in 1..=count {
        log.append(Epoch(1), seed, NodeId(1), &seed.to_le_bytes());
    }
    log.shutdown().unwrap();
    options
}

fn records(reader: crate::reader::LogReader) -> Vec<Record> {
    reader.collect::<Result<_, _>>().unwrap()
}

#[test]
fn a_recovered_reader_begins_at_the_kept_position_before_its_start_and_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let count = 3 * POSITION_STRIDE + 100;
    let options = log_of(dir.path(), count);
    let recovery = recover(dir.path(), &options).unwrap();
    let kept: Vec<u64> = recovery.positions.iter().map(|position| position.index).collect();
    assert_eq!(kept, [1, 1 + POSITION_STRIDE, 1 + 2 * POSITION_STRIDE, 1 + 3 * POSITION_STRIDE]);
    for start in
        [0, 1, 2, POSITION_STRIDE, POSITION_STRIDE + 1, POSITION_STRIDE + 2, 2 * POSITION_STRIDE + 7, count, count + 1]
    {
        let hinted = read_from_recovered(dir.path(), LogIndex(start), &options, &recovery).unwrap();
        let nearest = kept.iter().copied().filter(|&index| index <= start.max(1)).max().unwrap();
        assert_eq!(hinted.next_index, nearest, "start {start}");
        assert_eq!(
            records(hinted),
            records(read_from(dir.path(), LogIndex(start), &options).unwrap()),
            "start {start}"
        );
    }
}

#[test]
fn a_position_that_no_longer_names_its_record_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let options = log_of(dir.path(), 2 * POSITION_STRIDE);
    let mut recovery = recover(dir.path(), &options).unwrap();
    let start = POSITION_STRIDE + 10;
    let expected = records(read_from(dir.path(), LogIndex(start), &options).unwrap());
    for change in 0..2 {
        let mut stale = recovery.clone();
        let position = stale.positions.iter_mut().find(|position| position.index == 1 + POSITION_STRIDE).unwrap();
        if change == 0 {
            position.offset += 1; // not where a frame starts
        } else {
            position.index += 1; // the frame there holds another record
        }
        let hinted = read_from_recovered(dir.path(), LogIndex(start), &options, &stale).unwrap();
        assert_eq!(hinted.next_index, 1, "change {change}: the reader starts at its segment's first record");
        assert_eq!(records(hinted), expected, "change {change}");
    }
    recovery.positions.clear();
    assert_eq!(records(read_from_recovered(dir.path(), LogIndex(start), &options, &recovery).unwrap()), expected);
}
