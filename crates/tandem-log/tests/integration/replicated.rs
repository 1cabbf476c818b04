//! Replication's use of the log: a standby appends records the active numbered, at the same
//! indexes, and the active's sender tails a live log with one resumable reader.

use bytes::Bytes;
use tandem_log::{read_from, recover, Epoch, FsyncPolicy, Log, LogIndex, NodeId, Record};

use crate::common::{payload, small_segments};

fn record(index: u64) -> Record {
    Record {
        index: LogIndex(index),
        epoch: Epoch(3),
        hlc: 7_000 + index,
        origin: NodeId(2),
        payload: Bytes::from(payload(index, 40 + index as usize % 50)),
    }
}

#[test]
fn replicated_records_keep_their_index_epoch_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(512, FsyncPolicy::Always);
    let log = Log::open(dir.path(), &options, &recover(dir.path(), &options).unwrap()).unwrap();
    let sent: Vec<Record> = (1..=40).map(record).collect();
    for each in &sent {
        assert_eq!(log.append_replicated(each), Ok(each.index));
    }
    assert_eq!(log.last_index(), LogIndex(40));
    log.shutdown().unwrap();
    let read: Vec<Record> = read_from(dir.path(), LogIndex(1), &options).unwrap().map(Result::unwrap).collect();
    assert_eq!(read, sent);
}

#[test]
fn a_gap_or_a_repeat_is_refused_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(4096, FsyncPolicy::Never);
    let log = Log::open(dir.path(), &options, &recover(dir.path(), &options).unwrap()).unwrap();
    assert_eq!(log.append_replicated(&record(2)), Err(LogIndex(1)), "a gap");
    assert_eq!(log.append_replicated(&record(1)), Ok(LogIndex(1)));
    assert_eq!(log.append_replicated(&record(1)), Err(LogIndex(2)), "a repeat");
    assert_eq!(log.last_index(), LogIndex(1));
    // Local appends continue after replicated ones.
    assert_eq!(log.append(Epoch(4), 1, NodeId(1), b"local"), LogIndex(2));
}

#[test]
fn a_resumed_reader_returns_records_written_after_it_ran_dry() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(512, FsyncPolicy::Always);
    let log = Log::open(dir.path(), &options, &recover(dir.path(), &options).unwrap()).unwrap();
    let progress = log.progress();
    let mut reader = read_from(dir.path(), LogIndex(1), &options).unwrap();
    assert!(reader.next().is_none(), "an empty log");
    let mut seen = Vec::new();
    for round in 0..5u64 {
        for each in 0..7 {
            log.append(Epoch(1), round, NodeId(1), &payload(round * 7 + each, 60));
        }
        let target = log.last_index();
        while progress.durable() < target {
            std::thread::yield_now();
        }
        reader.resume().unwrap();
        seen.extend(reader.by_ref().map(|each| each.unwrap().index.0));
        assert_eq!(reader.next_index(), target.next());
    }
    assert_eq!(seen, (1..=35).collect::<Vec<u64>>(), "every record once, in order, across segments");
}
