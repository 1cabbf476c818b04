//! Many concurrent appenders waiting on durability all complete, sharing fsyncs; the other
//! policies publish durability when they promise to.

use std::sync::Arc;
use std::time::Duration;

use tandem_log::{recover, Epoch, FsyncPolicy, Log, LogIndex, NodeId};

use crate::common::{read_all_from, small_segments};

const TASKS: u64 = 64;
const APPENDS_PER_TASK: u64 = 40;

#[test]
fn concurrent_appenders_all_become_durable_with_shared_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(64 * 1024, FsyncPolicy::Always);
    let recovery = recover(dir.path(), &options).unwrap();
    let log = Arc::new(Log::open(dir.path(), &options, &recovery).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let log = Arc::clone(&log);
            tasks.push(tokio::spawn(async move {
                let progress = log.progress();
                for sequence in 0..APPENDS_PER_TASK {
                    let payload = format!("{task}:{sequence}");
                    let index = log.append(Epoch(1), sequence, NodeId(task as u32), payload.as_bytes());
                    progress.wait_durable(index).await;
                    assert!(progress.durable() >= index);
                    assert!(progress.acknowledged() >= index);
                }
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(120), task).await.expect("appenders must all complete").unwrap();
        }
    });
    let records = TASKS * APPENDS_PER_TASK;
    let progress = log.progress();
    assert_eq!(log.last_index(), LogIndex(records));
    assert_eq!(progress.written(), LogIndex(records));
    assert_eq!(progress.durable(), LogIndex(records));
    let counters = log.counters();
    assert!(counters.syncs < records, "no batching: {counters:?}");
    Arc::into_inner(log).unwrap().shutdown().unwrap();

    let read = read_all_from(dir.path(), &options, 1);
    assert_eq!(read.len() as u64, records);
    // Each task's records are in its own order (log order == append order).
    for task in 0..TASKS {
        let sequences: Vec<u64> =
            read.iter().filter(|record| record.origin == NodeId(task as u32)).map(|record| record.hlc).collect();
        assert_eq!(sequences, (0..APPENDS_PER_TASK).collect::<Vec<_>>());
    }
}

#[test]
fn everysec_makes_records_durable_within_about_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(64 * 1024, FsyncPolicy::EverySecond);
    let recovery = recover(dir.path(), &options).unwrap();
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    let progress = log.progress();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let index = log.append(Epoch(1), 0, NodeId(0), b"one");
    runtime.block_on(async {
        progress.wait_written(index).await;
        assert_eq!(progress.acknowledged(), index);
        tokio::time::timeout(Duration::from_secs(5), progress.wait_durable(index))
            .await
            .expect("everysec must fsync within the interval");
    });
    log.shutdown().unwrap();
}

#[test]
fn never_leaves_durability_to_segment_rolls_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(512, FsyncPolicy::Never);
    let recovery = recover(dir.path(), &options).unwrap();
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    let progress = log.progress();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let first = log.append(Epoch(1), 0, NodeId(0), &[1; 100]);
    runtime.block_on(progress.wait_written(first));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(progress.durable(), LogIndex(0), "Never must not fsync on its own");
    // Filling the segment closes it, and closing fsyncs it.
    for _ in 0..10 {
        log.append(Epoch(1), 0, NodeId(0), &[2; 100]);
    }
    runtime.block_on(progress.wait_written(log.last_index()));
    assert!(progress.durable() >= first, "a segment roll must publish durable");
    let last = log.last_index();
    log.shutdown().unwrap();
    assert_eq!(progress.durable(), last, "shutdown must fsync everything");
    assert_eq!(read_all_from(dir.path(), &options, 1).len(), 11);
}

#[test]
fn inline_writes_are_written_by_the_caller_and_leftovers_by_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(4096, FsyncPolicy::EverySecond);
    let recovery = recover(dir.path(), &options).unwrap();
    let log = Log::open(dir.path(), &options, &recovery).unwrap();
    log.set_inline_writes(true);
    let progress = log.progress();
    let mut last = LogIndex(0);
    for round in 0..50u8 {
        last = log.append(Epoch(1), 0, NodeId(0), &[round; 200]);
        // The caller's own write publishes `written` at once, across segment rolls.
        assert_eq!(log.write_pending(), last);
        assert_eq!(progress.written(), last);
    }
    assert_eq!(read_all_from(dir.path(), &options, 1).len(), 50);
    // A record nobody writes inline is still written, and fsynced, by the thread.
    let leftover = log.append(Epoch(1), 0, NodeId(0), b"leftover");
    assert!(leftover > last);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), progress.wait_durable(leftover))
            .await
            .expect("the writer thread writes and fsyncs leftovers within about a second");
    });
    log.shutdown().unwrap();
    assert_eq!(read_all_from(dir.path(), &options, 1).len(), 51);
}
