//! Segments written into preallocated, zero-filled files: a live reader follows them, a
//! crash leaves zeros that recovery keeps and the writer fills, a clean shutdown or a roll
//! leaves no zeros behind, and damage among zeros is still told from a torn write.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_log::{read_from, recover, Epoch, FsyncPolicy, Log, LogError, LogIndex, LogOptions, NodeId};

use crate::common::{capture_logs, copy_log, frames_of, payload, read_all_from, segment_files, small_segments};

/// Segments large enough that the first prepared file (1 MiB) is smaller than a segment, so
/// the writer both rolls into prepared files early and outgrows them.
fn options() -> LogOptions {
    small_segments(2 * 1024 * 1024, FsyncPolicy::Always)
}

/// Recovers the log in `dir` and opens it with `options()`.
fn open_log(dir: &Path) -> Log {
    let recovery = recover(dir, &options()).unwrap();
    Log::open(dir, &options(), &recovery).unwrap()
}

/// Appends until the writer is in a preallocated segment; returns the last index.
fn append_until_preallocated(log: &Log) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let index = log.append(Epoch(1), 0, NodeId(1), &payload(log.last_index().0 + 1, 100));
        log.persist_pending();
        if log.counters().segments_preallocated >= 1 {
            return index.0;
        }
        assert!(Instant::now() < deadline, "the writer never moved into a preallocated segment");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// (offset, length) of each frame of a segment's bytes, up to the first zero frame header.
fn frames_before_zeros(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = vec![];
    let mut offset = 28usize;
    while offset + 8 <= bytes.len() && bytes[offset..offset + 8] != [0u8; 8] {
        let length = 8 + u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        frames.push((offset, length));
        offset += length;
    }
    frames
}

/// The last segment's length and where its records end.
fn tail_lengths(dir: &Path) -> (u64, u64) {
    let bytes = fs::read(segment_files(dir).pop().unwrap()).unwrap();
    let records_end = frames_before_zeros(&bytes).last().map_or(28, |(offset, length)| offset + length);
    (bytes.len() as u64, records_end as u64)
}

#[test]
fn a_live_reader_follows_records_written_into_preallocated_space() {
    let dir = tempfile::tempdir().unwrap();
    let options = options();
    let log = open_log(dir.path());
    let mut appended = vec![];
    let first = append_until_preallocated(&log);
    appended.extend((1..=first).map(|index| payload(index, 100)));
    let mut reader = read_from(dir.path(), LogIndex(1), &options).unwrap();
    let mut seen = 0u64;
    // Enough rounds (3 MB) to outgrow the 1 MiB the log opened with, then the next 2 MiB.
    for round in 0..300u64 {
        for size in [40, 7_000, 3_000, 11] {
            let index = log.last_index().0 + 1;
            appended.push(payload(index, size + round as usize));
            log.append(Epoch(1), round, NodeId(1), appended.last().unwrap());
        }
        let written = log.persist_pending();
        // As a replication sender does: resume, and never ask past what was written.
        reader.resume().unwrap();
        while reader.next_index() <= written {
            let record = reader.next().expect("a written record").expect("intact");
            seen += 1;
            assert_eq!(record.index, LogIndex(seen));
            assert_eq!(record.payload[..], appended[seen as usize - 1][..], "record {seen}");
        }
    }
    assert_eq!(seen, appended.len() as u64);
    let counters = log.counters();
    assert!(counters.segments_preallocated >= 3, "{counters:?}");
    let (file_bytes, records_end) = tail_lengths(dir.path());
    assert!(file_bytes > records_end, "the writer's segment ends in zeros while it runs");
    log.shutdown().unwrap();
    // After a clean shutdown no segment ends in zeros: each is intact to its last byte.
    for segment in segment_files(dir.path()) {
        frames_of(&segment);
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(read_all_from(dir.path(), &options, 1).len(), appended.len());
}

#[test]
fn a_crash_in_preallocated_space_keeps_every_record_and_the_space() {
    let dir = tempfile::tempdir().unwrap();
    let options = options();
    let log = open_log(dir.path());
    let last = append_until_preallocated(&log);
    // A copy of the directory while the log runs: what a crash would leave on disk.
    let crashed = copy_log(dir.path());
    log.shutdown().unwrap();
    let (file_bytes, records_end) = tail_lengths(crashed.path());
    assert!(file_bytes > records_end);
    let (recovery, logs) = capture_logs(|| recover(crashed.path(), &options));
    let recovery = recovery.unwrap();
    assert_eq!((recovery.last_index, recovery.torn_tail_bytes_dropped), (Some(LogIndex(last)), 0));
    assert!(!logs.contains("WARN"), "zeros are not a torn tail: {logs}");
    assert!(!logs.contains("preallocated-"), "the prepared file nobody took is removed quietly: {logs}");
    assert_eq!(tail_lengths(crashed.path()).0, file_bytes, "recovery keeps the space");
    let log = Log::open(crashed.path(), &options, &recovery).unwrap();
    assert_eq!(log.append(Epoch(2), 0, NodeId(2), b"after the crash"), LogIndex(last + 1));
    log.persist_pending();
    let (_, records_end_after) = tail_lengths(crashed.path());
    assert!(records_end_after > records_end, "written where the records ended, over the zeros");
    log.shutdown().unwrap();
    let records = read_all_from(crashed.path(), &options, 1);
    assert_eq!(records.len() as u64, last + 1);
    assert_eq!(&records.last().unwrap().payload[..], b"after the crash");
}

#[test]
fn damage_among_zeros_is_still_told_from_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let options = options();
    let log = open_log(dir.path());
    append_until_preallocated(&log);
    for index in 0..6 {
        log.append(Epoch(1), index, NodeId(1), &payload(index, 300));
    }
    log.persist_pending();
    let crashed = copy_log(dir.path());
    log.shutdown().unwrap();
    let segment = segment_files(crashed.path()).pop().unwrap();
    let (_, records_end) = tail_lengths(crashed.path());
    let mut bytes = fs::read(&segment).unwrap();

    // A torn write: the start of a frame's header and body, then zeros.
    let mut torn = bytes.clone();
    torn[records_end as usize..records_end as usize + 20].copy_from_slice(&[0xAB; 20]);
    let torn_dir = tempfile::tempdir().unwrap();
    fs::write(torn_dir.path().join(segment.file_name().unwrap()), &torn).unwrap();
    let recovery = recover(torn_dir.path(), &options).unwrap();
    assert_eq!(recovery.torn_tail_bytes_dropped, torn.len() as u64 - records_end);

    // Zeros where a record was, with intact records after them: corruption, not a torn tail.
    let frames = frames_before_zeros(&bytes);
    let (offset, length) = frames[frames.len() - 3];
    bytes[offset..offset + length].fill(0);
    fs::write(&segment, &bytes).unwrap();
    let error = recover(crashed.path(), &options).unwrap_err();
    assert!(
        matches!(&error, LogError::Corrupt { file, offset: at, .. } if file == &segment && *at == offset as u64),
        "{error:?}"
    );
}
