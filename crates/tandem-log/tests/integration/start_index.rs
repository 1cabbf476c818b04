//! A log that starts after a checkpoint: an empty log opened at a chosen first index, and a
//! log that a newer checkpoint replaces entirely.

use tandem_log::{
    epoch_at, last_record_with_epoch_at_most, read_from, recover, remove_all_segments, truncate_after, Epoch,
    FsyncPolicy, Log, LogIndex, NodeId,
};

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

#[test]
fn truncating_after_an_index_keeps_exactly_the_prefix_and_the_log_continues_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(256, FsyncPolicy::Never);
    append_records(dir.path(), &options, &[40; 30]);
    assert!(segment_files(dir.path()).len() > 3);
    for keep in [25u64, 17, 17, 3] {
        assert_eq!(truncate_after(dir.path(), LogIndex(keep), &options).unwrap(), Some(LogIndex(keep)));
        let records = read_all_from(dir.path(), &options, 1);
        assert_eq!(records.iter().map(|record| record.index.0).collect::<Vec<_>>(), (1..=keep).collect::<Vec<_>>());
    }
    // Past the end: nothing to remove.
    assert_eq!(truncate_after(dir.path(), LogIndex(90), &options).unwrap(), Some(LogIndex(3)));
    let recovery = recover(dir.path(), &options).unwrap();
    assert_eq!(recovery.last_index, Some(LogIndex(3)));
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    assert_eq!(log.append(Epoch(2), 0, NodeId(2), b"after"), LogIndex(4));
    log.shutdown().unwrap();
    assert_eq!(truncate_after(dir.path(), LogIndex(0), &options).unwrap(), None, "everything removed");
    assert!(read_all_from(dir.path(), &options, 1).is_empty());
}

#[test]
fn the_last_record_of_an_epoch_is_found_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(256, FsyncPolicy::Never);
    let recovery = recover(dir.path(), &options).unwrap();
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    // Epoch 1: 1..=20, epoch 3: 21..=30, epoch 4: 31..=40.
    for index in 1..=40u64 {
        let epoch = match index {
            1..=20 => 1,
            21..=30 => 3,
            _ => 4,
        };
        assert_eq!(log.append(Epoch(epoch), 0, NodeId(1), &[7; 40]), LogIndex(index));
    }
    log.shutdown().unwrap();
    assert!(segment_files(dir.path()).len() > 3);
    let find = |epoch, upper| last_record_with_epoch_at_most(dir.path(), Epoch(epoch), LogIndex(upper), &options);
    assert_eq!(find(1, 40).unwrap(), Some((LogIndex(20), Epoch(1))));
    assert_eq!(find(2, 40).unwrap(), Some((LogIndex(20), Epoch(1))));
    assert_eq!(find(3, 40).unwrap(), Some((LogIndex(30), Epoch(3))));
    assert_eq!(find(3, 25).unwrap(), Some((LogIndex(25), Epoch(3))));
    assert_eq!(find(9, 99).unwrap(), Some((LogIndex(40), Epoch(4))));
    assert_eq!(find(0, 40).unwrap(), None, "no record of epoch 0: nothing in common");
    assert_eq!(epoch_at(dir.path(), LogIndex(31), &options).unwrap(), Some(Epoch(4)));
    assert_eq!(epoch_at(dir.path(), LogIndex(41), &options).unwrap(), None);
}
