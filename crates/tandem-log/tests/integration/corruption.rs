//! Damage inside the log is refused with its file and offset, reported by `check`, and
//! cut away by `repair`, after which recovery succeeds and appending continues.

use std::fs;

use tandem_log::{
    check, recover, repair, Corruption, Epoch, FsyncPolicy, Log, LogError, LogIndex, NodeId, ProblemKind,
};

use crate::common::{append_records, flip_byte, frames_of, read_all_from, segment_files, small_segments};

#[test]
fn a_flipped_byte_mid_log_is_refused_checked_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Always);
    let written = append_records(dir.path(), &options, &[150; 40]);
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 4, "{} segments", segments.len());
    // A segment in the middle with a record after the damaged one (with preallocation the
    // first segment may hold a single record: the writer moves to a prepared file early).
    let position = (1..segments.len() - 1)
        .find(|&position| frames_of(&segments[position]).len() >= 2)
        .expect("a middle segment with two records");
    let damaged_segment = &segments[position];
    let frames = frames_of(damaged_segment);
    let damaged = frames[1];
    flip_byte(damaged_segment, damaged.offset + 40, 0x20);

    let error = recover(dir.path(), &options).expect_err("mid-log damage must be refused");
    let LogError::Corrupt { file, offset, reason } = &error else {
        panic!("expected corruption, got {error:?}");
    };
    assert_eq!((file, *offset), (damaged_segment, damaged.offset));
    assert_eq!(reason, &Corruption::ChecksumMismatch);
    let message = error.to_string();
    let expected_message = format!(
        "log corrupted in {} at byte offset {}: checksum mismatch; run `tandem log check --repair` to keep the valid prefix",
        damaged_segment.display(),
        damaged.offset
    );
    assert_eq!(message, expected_message);

    let report = check(dir.path(), &options).unwrap();
    let problem = report.problem.clone().expect("check must see the damage");
    assert_eq!(problem.kind, ProblemKind::Corruption);
    assert_eq!((&problem.file, problem.offset), (damaged_segment, damaged.offset));
    assert_eq!(report.records, damaged.index - 1);
    assert_eq!(report.last_index, Some(LogIndex(damaged.index - 1)));
    assert!(report.to_string().contains(&expected_message), "{report}");

    let later_bytes: u64 = segments[position + 1..].iter().map(|path| fs::metadata(path).unwrap().len()).sum();
    let repaired = repair(dir.path(), &options).unwrap();
    assert_eq!(repaired.records_kept, damaged.index - 1);
    assert_eq!(repaired.records_dropped, written.len() as u64 - damaged.index);
    assert_eq!(repaired.segments_removed, segments.len() - position - 1);
    let tail_bytes = frames.iter().skip(1).map(|frame| frame.bytes).sum::<u64>();
    assert_eq!(repaired.bytes_dropped, later_bytes + tail_bytes);
    let text = repaired.to_string();
    assert!(text.contains(&format!("kept {} records", damaged.index - 1)), "{text}");
    assert!(text.contains(&format!("dropped {} intact records", written.len() as u64 - damaged.index)), "{text}");

    let recovery = recover(dir.path(), &options).unwrap();
    assert_eq!(recovery.last_index, Some(LogIndex(damaged.index - 1)));
    assert_eq!(read_all_from(dir.path(), &options, 1), written[..damaged.index as usize - 1]);
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    assert_eq!(log.append(Epoch(2), 0, NodeId(0), b"x"), LogIndex(damaged.index));
    log.shutdown().unwrap();
    assert_eq!(check(dir.path(), &options).unwrap().problem, None);
}

#[test]
fn damage_before_intact_records_in_the_last_segment_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(64 * 1024, FsyncPolicy::Always);
    append_records(dir.path(), &options, &[100; 10]);
    let segment = segment_files(dir.path()).pop().unwrap();
    let frames = frames_of(&segment);
    // The length field of record 5 now claims far more bytes than the file holds.
    flip_byte(&segment, frames[4].offset + 1, 0x10);
    let error = recover(dir.path(), &options).expect_err("intact records follow the damage");
    assert!(
        matches!(&error, LogError::Corrupt { offset, reason: Corruption::TruncatedRecord, .. } if *offset == frames[4].offset),
        "{error:?}"
    );
    let repaired = repair(dir.path(), &options).unwrap();
    assert_eq!((repaired.records_kept, repaired.records_dropped), (4, 5));
    assert_eq!(recover(dir.path(), &options).unwrap().last_index, Some(LogIndex(4)));
}

#[test]
fn a_damaged_header_or_a_missing_segment_is_corruption_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Always);
    let written = append_records(dir.path(), &options, &[300; 12]);
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 4);

    flip_byte(&segments[2], 3, 0xFF);
    let error = recover(dir.path(), &options).unwrap_err();
    assert!(
        matches!(&error, LogError::Corrupt { file, offset: 0, reason: Corruption::BadMagic } if file == &segments[2]),
        "{error:?}"
    );
    flip_byte(&segments[2], 3, 0xFF);

    fs::remove_file(&segments[1]).unwrap();
    let error = recover(dir.path(), &options).unwrap_err();
    assert!(
        matches!(&error, LogError::Corrupt { file, offset: 0, reason: Corruption::SegmentGap { .. } } if file == &segments[2]),
        "{error:?}"
    );
    let kept = frames_of(&segments[0]).len();
    let repaired = repair(dir.path(), &options).unwrap();
    assert_eq!(repaired.records_kept, kept as u64);
    assert_eq!(repaired.segments_removed, segments.len() - 2);
    assert_eq!(read_all_from(dir.path(), &options, 1), written[..kept]);
}

#[test]
fn repair_of_a_valid_log_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1024, FsyncPolicy::Always);
    let written = append_records(dir.path(), &options, &[300; 6]);
    let report = repair(dir.path(), &options).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.records_kept, 6);
    assert!(report.to_string().contains("nothing to repair"), "{report}");
    assert_eq!(read_all_from(dir.path(), &options, 1), written);
}

#[test]
fn a_reader_reports_damage_in_the_records_it_skips_to_reach_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(64 * 1024, FsyncPolicy::Never);
    append_records(dir.path(), &options, &[150; 20]);
    let segment = &segment_files(dir.path())[0];
    let frames = frames_of(segment);
    assert!(frames.len() >= 20, "one segment holds every record");
    flip_byte(segment, frames[5].offset + 40, 0x20);
    // Record 6 is damaged; a reader from record 10 walks over it in the same segment.
    let error = tandem_log::read_from(dir.path(), LogIndex(10), &options)
        .unwrap()
        .find_map(Result::err)
        .expect("the damaged record before the start is reported");
    let LogError::Corrupt { file, offset, reason } = error else { panic!("expected corruption, got {error:?}") };
    assert_eq!((&file, offset, reason), (segment, frames[5].offset, Corruption::ChecksumMismatch));
}
