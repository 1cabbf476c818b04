//! A log that starts after a checkpoint: an empty log opened at a chosen first index, and a
//! log that a newer checkpoint replaces entirely.

use tandem_log::{read_from, recover, remove_all_segments, Epoch, FsyncPolicy, Log, LogIndex, NodeId};

use crate::common::{append_records, read_all_from, segment_files, small_segments};

#[test]
fn an_empty_log_starts_at_the_chosen_index_and_keeps_it_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(512, FsyncPolicy::Always);
    let mut recovery = recover(dir.path(), &options).unwrap();
    recovery.start_empty_log_at(LogIndex(1_001));
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    assert_eq!(log.last_index(), LogIndex(1_000));
    assert_eq!(log.append(Epoch(1), 0, NodeId(1), b"first"), LogIndex(1_001));
    assert_eq!(log.append(Epoch(1), 0, NodeId(1), b"second"), LogIndex(1_002));
    log.shutdown().unwrap();

    let recovery = recover(dir.path(), &options).unwrap();
    assert_eq!(recovery.first_index, Some(LogIndex(1_001)));
    assert_eq!(recovery.last_index, Some(LogIndex(1_002)));
    let records = read_all_from(dir.path(), &options, 1_001);
    assert_eq!(records.iter().map(|record| record.index.0).collect::<Vec<_>>(), [1_001, 1_002]);
    // Index 1 was never written here: asking for it says where the log starts.
    assert!(read_from(dir.path(), LogIndex(1), &options).is_err());
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    assert_eq!(log.append(Epoch(1), 0, NodeId(1), b"third"), LogIndex(1_003));
    log.shutdown().unwrap();
}

#[test]
#[should_panic(expected = "has segments")]
fn a_log_with_segments_cannot_be_moved() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(512, FsyncPolicy::Never);
    append_records(dir.path(), &options, &[10]);
    let mut recovery = recover(dir.path(), &options).unwrap();
    recovery.start_empty_log_at(LogIndex(50));
}

#[test]
fn removing_every_segment_leaves_an_empty_log_that_restarts_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(256, FsyncPolicy::Never);
    append_records(dir.path(), &options, &[100; 20]);
    let before = segment_files(dir.path()).len();
    assert!(before > 3, "only {before} segments");
    assert_eq!(remove_all_segments(dir.path()).unwrap(), before);
    assert!(segment_files(dir.path()).is_empty());
    let mut recovery = recover(dir.path(), &options).unwrap();
    assert_eq!(recovery.last_index, None);
    recovery.start_empty_log_at(LogIndex(21));
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    assert_eq!(log.append(Epoch(1), 0, NodeId(1), b"after"), LogIndex(21));
    log.shutdown().unwrap();
    assert_eq!(remove_all_segments(dir.path()).unwrap(), 1);
}
