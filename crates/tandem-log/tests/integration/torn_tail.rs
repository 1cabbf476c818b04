//! A write cut short by a crash is dropped at recovery, with a warning, and appending
//! continues at the right index.

use std::fs;
use std::io::Write;
use std::path::Path;

use tandem_log::{check, recover, Epoch, FsyncPolicy, Log, LogError, LogIndex, NodeId};

use crate::common::{
    append_records, capture_logs, copy_log, flip_byte, frames_of, read_all_from, segment_files, small_segments,
};

/// Recovers `dir`, expecting a torn tail of `bytes_dropped` at `offset` of the last segment,
/// then checks that appending continues at `next_index`.
fn expect_torn_tail_dropped(dir: &Path, offset: u64, bytes_dropped: u64, next_index: u64) {
    let options = small_segments(1024, FsyncPolicy::Always);
    let last_segment = segment_files(dir).pop().unwrap();
    let name = last_segment.file_name().unwrap().to_str().unwrap().to_owned();
    let (recovery, logs) = capture_logs(|| recover(dir, &options));
    let recovery = recovery.expect("a torn tail is not an error");
    assert_eq!(recovery.torn_tail_bytes_dropped, bytes_dropped);
    assert_eq!(recovery.last_index, Some(LogIndex(next_index - 1)));
    assert_eq!(fs::metadata(&last_segment).unwrap().len(), offset);
    if bytes_dropped > 0 {
        assert!(logs.contains("WARN"), "{logs}");
        assert!(logs.contains(&name), "{logs}");
        assert!(logs.contains(&format!("offset={offset}")), "{logs}");
        assert!(logs.contains(&format!("bytes_dropped={bytes_dropped}")), "{logs}");
    } else {
        assert!(!logs.contains("WARN"), "{logs}");
    }
    let log = Log::open(dir, &options, &recovery).unwrap();
    assert_eq!(log.append(Epoch(7), 7, NodeId(7), b"after the crash"), LogIndex(next_index));
    log.shutdown().unwrap();
    let records = read_all_from(dir, &options, 1);
    assert_eq!(records.len() as u64, next_index);
    assert_eq!(&records.last().unwrap().payload[..], b"after the crash");
}

#[test]
fn a_record_cut_at_any_byte_is_dropped_alone() {
    let original = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Always);
    let written = append_records(original.path(), &options, &[200, 200, 200, 200, 200, 60]);
    let segment = segment_files(original.path()).pop().unwrap();
    let last = *frames_of(&segment).last().unwrap();
    assert_eq!(last.index, written.len() as u64);
    for cut in last.offset..last.offset + last.bytes {
        let copy = copy_log(original.path());
        let copied_segment = copy.path().join(segment.file_name().unwrap());
        let file = fs::OpenOptions::new().write(true).open(&copied_segment).unwrap();
        file.set_len(cut).unwrap();
        expect_torn_tail_dropped(copy.path(), last.offset, cut - last.offset, last.index);
    }
}

#[test]
fn a_final_record_failing_its_checksum_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Always);
    append_records(dir.path(), &options, &[50, 50, 50]);
    let segment = segment_files(dir.path()).pop().unwrap();
    let last = *frames_of(&segment).last().unwrap();
    flip_byte(&segment, last.offset + last.bytes - 1, 0x01);
    expect_torn_tail_dropped(dir.path(), last.offset, last.bytes, last.index);
}

#[test]
fn zeros_after_the_last_record_are_unwritten_space_that_appending_fills() {
    // What a crash leaves in a preallocated segment; also what a file system may show after
    // power loss when the size grew and the data did not land. Either way no record is there.
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Always);
    append_records(dir.path(), &options, &[50, 50]);
    let segment = segment_files(dir.path()).pop().unwrap();
    let end = fs::metadata(&segment).unwrap().len();
    let mut file = fs::OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0u8; 700]).unwrap();
    drop(file);
    let report = check(dir.path(), &options).unwrap();
    assert!(report.problem.is_none(), "{report}");
    let (recovery, logs) = capture_logs(|| recover(dir.path(), &options));
    let recovery = recovery.unwrap();
    assert_eq!((recovery.torn_tail_bytes_dropped, recovery.last_index), (0, Some(LogIndex(2))));
    assert!(!logs.contains("WARN"), "{logs}");
    assert_eq!(fs::metadata(&segment).unwrap().len(), end + 700, "recovery keeps the space");
    // Without preallocation (so no roll into a new file) the next record goes over the zeros.
    let options = tandem_log::LogOptions { preallocate: false, ..options };
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    assert_eq!(log.append(Epoch(7), 7, NodeId(7), b"over the zeros"), LogIndex(3));
    log.shutdown().unwrap();
    let last = *frames_of(&segment).last().unwrap();
    assert_eq!((last.offset, last.index), (end, 3));
    assert_eq!(fs::metadata(&segment).unwrap().len(), end + last.bytes, "a clean shutdown cuts what is left");
    let records = read_all_from(dir.path(), &options, 1);
    assert_eq!(&records[2].payload[..], b"over the zeros");
}

#[test]
fn a_partial_record_followed_by_zeros_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Always);
    append_records(dir.path(), &options, &[50, 50, 300]);
    let segment = segment_files(dir.path()).pop().unwrap();
    let last = *frames_of(&segment).last().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let keep = (last.offset + 100) as usize;
    bytes[keep..].fill(0);
    fs::write(&segment, &bytes).unwrap();
    expect_torn_tail_dropped(dir.path(), last.offset, last.bytes, last.index);
}

#[test]
fn a_record_cut_short_in_an_older_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Always);
    append_records(dir.path(), &options, &[300; 12]);
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3);
    let middle = &segments[1];
    let frames = frames_of(middle);
    let last = frames.last().unwrap();
    let file = fs::OpenOptions::new().write(true).open(middle).unwrap();
    file.set_len(last.offset + 5).unwrap();
    match recover(dir.path(), &options) {
        Err(LogError::Corrupt { file, offset, .. }) => {
            assert_eq!(&file, middle);
            assert_eq!(offset, last.offset);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}
