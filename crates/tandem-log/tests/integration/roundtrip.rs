//! Records written across many segments read back exactly, from any starting index.

use std::fs;

use tandem_log::{
    check, read_from, recover, remove_segments_before, Epoch, FsyncPolicy, Log, LogError, LogIndex, NodeId,
};

use crate::common::{append_records, frames_of, read_all_from, segment_files, small_segments};

/// Sizes from empty to larger than a segment, in an irregular pattern.
fn varied_sizes(count: usize) -> Vec<usize> {
    (0..count).map(|position| [0, 1, 17, 100, 333, 900, 2_500][position * 5 % 7]).collect()
}

#[test]
fn records_roundtrip_across_segments_from_any_start() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Never);
    let expected = append_records(dir.path(), &options, &varied_sizes(120));

    let segments = segment_files(dir.path());
    assert!(segments.len() > 10, "only {} segments", segments.len());
    for segment in &segments {
        let frames = frames_of(segment);
        let bytes = fs::metadata(segment).unwrap().len();
        // A segment exceeds the limit only when it holds a single oversized record.
        assert!(bytes <= 1024 || frames.len() == 1, "{} has {bytes} bytes", segment.display());
        assert!(!frames.is_empty());
    }

    let recovery = recover(dir.path(), &options).unwrap();
    assert_eq!(recovery.first_index, Some(LogIndex(1)));
    assert_eq!(recovery.last_index, Some(LogIndex(120)));
    assert_eq!(recovery.torn_tail_bytes_dropped, 0);
    assert_eq!(recovery.segments, segments.len());

    assert_eq!(read_all_from(dir.path(), &options, 1), expected);
    assert_eq!(read_all_from(dir.path(), &options, 0), expected);
    for start in [2, 7, 50, 119, 120] {
        assert_eq!(read_all_from(dir.path(), &options, start), expected[start as usize - 1..]);
    }
    // Every segment boundary, where the reader skips whole files by name.
    for segment in &segments {
        let first = frames_of(segment)[0].index;
        assert_eq!(read_all_from(dir.path(), &options, first), expected[first as usize - 1..]);
    }
    assert!(read_all_from(dir.path(), &options, 121).is_empty());
    assert!(read_all_from(dir.path(), &options, 10_000).is_empty());
}

#[test]
fn appending_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(512, FsyncPolicy::Always);
    let mut expected = append_records(dir.path(), &options, &[10, 20, 300]);
    expected.extend(append_records(dir.path(), &options, &[40, 0, 600, 5]));
    assert_eq!(expected.last().unwrap().index, LogIndex(7));
    assert_eq!(read_all_from(dir.path(), &options, 1), expected);
    let report = check(dir.path(), &options).unwrap();
    assert_eq!(report.records, 7);
    assert_eq!(report.problem, None);
    assert!(report.to_string().contains("7 records (indexes 1..=7); no problems"), "{report}");
}

#[test]
fn empty_log_opens_and_reads_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("nested").join("log");
    let options = small_segments(4096, FsyncPolicy::Always);
    let recovery = recover(&log_dir, &options).unwrap();
    assert_eq!((recovery.first_index, recovery.last_index), (None, None));
    assert!(read_all_from(&log_dir, &options, 1).is_empty());
    let log = Log::open(&log_dir, &options, &recovery).unwrap();
    assert_eq!(log.last_index(), LogIndex(0));
    assert_eq!(log.progress().durable(), LogIndex(0));
    log.shutdown().unwrap();
    // The empty first segment is valid and recovers as empty.
    let recovery = recover(&log_dir, &options).unwrap();
    assert_eq!((recovery.segments, recovery.last_index), (1, None));
    assert!(read_all_from(&log_dir, &options, 1).is_empty());
}

#[test]
fn a_second_writer_is_refused_while_the_log_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(4096, FsyncPolicy::Always);
    let recovery = recover(dir.path(), &options).unwrap();
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    assert!(matches!(recover(dir.path(), &options), Err(LogError::Locked { .. })));
    assert!(matches!(tandem_log::repair(dir.path(), &options), Err(LogError::Locked { .. })));
    log.shutdown().unwrap();
    recover(dir.path(), &options).unwrap();
}

#[test]
fn open_refuses_a_directory_changed_since_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(4096, FsyncPolicy::Always);
    append_records(dir.path(), &options, &[10, 10]);
    let recovery = recover(dir.path(), &options).unwrap();
    let segment = segment_files(dir.path()).pop().unwrap();
    let file = fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(fs::metadata(&segment).unwrap().len() - 3).unwrap();
    let opened = Log::open(dir.path(), &options, &recovery);
    assert!(matches!(opened, Err(LogError::Stale { .. })), "{opened:?}");
}

#[test]
fn removing_segments_before_a_checkpoint_keeps_the_rest_readable() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(512, FsyncPolicy::Never);
    let expected = append_records(dir.path(), &options, &[100; 40]);
    let before = segment_files(dir.path());
    let firsts: Vec<u64> = before.iter().map(|path| frames_of(path)[0].index).collect();

    // Index 20 is inside some segment: every segment wholly below it goes, that one stays.
    let removed = remove_segments_before(dir.path(), LogIndex(20)).unwrap();
    let kept_first = *firsts.iter().filter(|&&first| first <= 20).max().unwrap();
    assert_eq!(removed, firsts.iter().filter(|&&first| first < kept_first).count());
    assert_eq!(read_all_from(dir.path(), &options, 20), expected[19..]);
    let unavailable = read_from(dir.path(), LogIndex(1), &options).map(|_| ());
    assert!(
        matches!(unavailable, Err(LogError::Unavailable { first_available, .. }) if first_available == LogIndex(kept_first)),
        "{unavailable:?}"
    );
    let recovery = recover(dir.path(), &options).unwrap();
    assert_eq!(recovery.first_index, Some(LogIndex(kept_first)));
    assert_eq!(recovery.last_index, Some(LogIndex(40)));

    // Far past the end: everything but the last segment, never the last.
    remove_segments_before(dir.path(), LogIndex(1_000)).unwrap();
    let left = segment_files(dir.path());
    assert_eq!(left, vec![before.last().unwrap().clone()]);
    let recovery = recover(dir.path(), &options).unwrap();
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    assert_eq!(log.append(Epoch(9), 1, NodeId(1), b"after"), LogIndex(41));
    log.shutdown().unwrap();
}

#[test]
fn a_reader_follows_a_live_writer_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(600, FsyncPolicy::Never);
    let recovery = recover(dir.path(), &options).unwrap();
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    let progress = log.progress();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut next = 1;
    for round in 0..30u64 {
        for _ in 0..7 {
            log.append(Epoch(1), round, NodeId(0), &[round as u8; 50]);
        }
        // Read concurrently with the writer: whatever is complete, in order, no errors.
        for record in read_from(dir.path(), LogIndex(next), &options).unwrap() {
            let record = record.unwrap();
            assert_eq!(record.index, LogIndex(next));
            next += 1;
        }
        runtime.block_on(progress.wait_written(log.last_index()));
    }
    let remaining = read_all_from(dir.path(), &options, next);
    assert_eq!(next - 1 + remaining.len() as u64, 210);
    log.shutdown().unwrap();
}
