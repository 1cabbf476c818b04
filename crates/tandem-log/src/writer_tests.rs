//! Writer tests that need the file-operation seam: injected write and fsync failures, a slow
//! disk for group commit, and payload closures that fail or panic.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::directory::{FileOperations, SystemFiles};
use crate::{read_from, recover, Epoch, FsyncPolicy, Log, LogError, LogIndex, LogOptions, NodeId};

/// Real file operations with switchable failures and an optional fsync delay.
#[derive(Clone, Default)]
struct FaultyFiles {
    /// fdatasync calls that succeed before every later one fails.
    syncs_allowed: Arc<AtomicUsize>,
    fail_writes: Arc<AtomicBool>,
    sync_delay: Duration,
    /// While set, every fdatasync waits (a disk that has not answered yet).
    hold_syncs: Arc<AtomicBool>,
}

impl FaultyFiles {
    fn allowing_syncs(count: usize) -> FaultyFiles {
        let files = FaultyFiles::default();
        files.syncs_allowed.store(count, Ordering::SeqCst);
        files
    }
}

impl FileOperations for FaultyFiles {
    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        SystemFiles.write_all(file, bytes)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        let allowed = self.syncs_allowed.load(Ordering::SeqCst);
        if allowed == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.syncs_allowed.store(allowed - 1, Ordering::SeqCst);
        while self.hold_syncs.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(self.sync_delay);
        SystemFiles.sync_data(file)
    }

    fn sync_directory(&self, dir: &Path) -> io::Result<()> {
        SystemFiles.sync_directory(dir)
    }
}

fn options(fsync: FsyncPolicy) -> LogOptions {
    LogOptions { segment_bytes_max: 64 * 1024, record_bytes_max: 1024, fsync, preallocate: false }
}

/// Opens a fresh log on `dir` with `files`; the fatal handler's calls land in the vector.
fn open_faulty(dir: &Path, fsync: FsyncPolicy, files: FaultyFiles) -> (Log, Arc<Mutex<Vec<String>>>) {
    let options = options(fsync);
    let recovery = recover(dir, &options).unwrap();
    let fatal_errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&fatal_errors);
    let handler = Box::new(move |error: &LogError| seen.lock().unwrap().push(error.to_string()));
    let log = Log::open_with_files(dir, &options, &recovery, handler, Box::new(files)).unwrap();
    (log, fatal_errors)
}

fn wait_until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_failed_fsync_is_fatal_and_never_published() {
    let dir = tempfile::tempdir().unwrap();
    // One fdatasync for the first segment's header, one for the first record; then EIO.
    let (log, fatal_errors) = open_faulty(dir.path(), FsyncPolicy::Always, FaultyFiles::allowing_syncs(2));
    let progress = log.progress();
    log.append(Epoch(1), 0, NodeId(0), b"one");
    wait_until(|| progress.durable() == LogIndex(1));
    log.append(Epoch(1), 0, NodeId(0), b"two");
    wait_until(|| progress.failed());

    let errors = fatal_errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("fdatasync"), "{errors:?}");
    assert_eq!(progress.written(), LogIndex(2), "the write itself succeeded");
    assert_eq!(progress.durable(), LogIndex(1), "a failed fsync must not publish durable");
    assert_eq!(log.append(Epoch(1), 0, NodeId(0), b"three"), LogIndex(3));
    assert_eq!(log.pending_bytes(), 0, "appends after the failure are dropped");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let waited = runtime
        .block_on(async { tokio::time::timeout(Duration::from_millis(200), progress.wait_durable(LogIndex(2))).await });
    assert!(waited.is_err(), "wait_durable must not resolve past a failed fsync");
    assert_eq!(progress.written(), LogIndex(2));
    let shutdown = log.shutdown();
    assert!(matches!(shutdown, Err(LogError::Io { operation: "fdatasync", .. })), "{shutdown:?}");
    assert_eq!(fatal_errors.lock().unwrap().len(), 1, "the handler runs once");
}

#[test]
fn a_failed_write_is_fatal_and_never_published() {
    let dir = tempfile::tempdir().unwrap();
    let files = FaultyFiles::allowing_syncs(usize::MAX);
    let fail_writes = Arc::clone(&files.fail_writes);
    let (log, fatal_errors) = open_faulty(dir.path(), FsyncPolicy::Never, files);
    let progress = log.progress();
    log.append(Epoch(1), 0, NodeId(0), b"one");
    wait_until(|| progress.written() == LogIndex(1));
    fail_writes.store(true, Ordering::SeqCst);
    log.append(Epoch(1), 0, NodeId(0), b"two");
    wait_until(|| progress.failed());
    fail_writes.store(false, Ordering::SeqCst);
    log.append(Epoch(1), 0, NodeId(0), b"three");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(progress.written(), LogIndex(1));
    assert!(fatal_errors.lock().unwrap()[0].contains("write"));
    assert!(log.shutdown().is_err());
    // Only the record written before the failure is on disk.
    let records: Vec<_> =
        read_from(dir.path(), LogIndex(1), &options(FsyncPolicy::Never)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 1);
}

#[test]
fn records_arriving_during_an_fsync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = FaultyFiles::allowing_syncs(usize::MAX);
    files.sync_delay = Duration::from_millis(10);
    let (log, _) = open_faulty(dir.path(), FsyncPolicy::Always, files);
    let log = Arc::new(log);
    let threads = 16;
    let appends_per_thread = 20;
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let progress = log.progress();
                for sequence in 0..appends_per_thread {
                    let index = log.append(Epoch(1), sequence, NodeId(thread), b"payload");
                    wait_until(|| progress.durable() >= index);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let records = u64::from(threads) * appends_per_thread;
    let counters = log.counters();
    assert_eq!(log.progress().durable(), LogIndex(records));
    // One fsync per record would be `records`; group commit needs far fewer.
    assert!(counters.syncs * 4 < records, "{counters:?}");
    assert!(counters.batches * 4 < records, "{counters:?}");
    Arc::into_inner(log).unwrap().shutdown().unwrap();
}

#[test]
fn a_failing_or_panicking_payload_closure_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open_faulty(dir.path(), FsyncPolicy::Always, FaultyFiles::allowing_syncs(usize::MAX));
    assert_eq!(log.append(Epoch(1), 0, NodeId(0), b"first"), LogIndex(1));
    let failed = log.append_with(Epoch(1), 0, NodeId(0), |payload| {
        payload.extend_from_slice(b"half of a payload");
        Err("serialization failed")
    });
    assert_eq!(failed, Err("serialization failed"));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        log.append_with(Epoch(1), 0, NodeId(0), |payload| -> Result<(), ()> {
            payload.extend_from_slice(b"half of a payload");
            panic!("serializer bug");
        })
    }));
    assert!(panicked.is_err());
    let too_long = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        log.append_with(Epoch(1), 0, NodeId(0), |payload| {
            payload.extend_from_slice(&[0; 1025]);
            Ok::<(), ()>(())
        })
    }));
    assert!(too_long.is_err(), "a payload over record_bytes_max must panic");
    let written = log.append_with(Epoch(2), 5, NodeId(1), |payload| {
        use std::io::Write;
        let place = "place";
        write!(payload, "written in {place}").map_err(|_| ())
    });
    assert_eq!(written, Ok(LogIndex(2)));
    log.shutdown().unwrap();
    let records: Vec<_> =
        read_from(dir.path(), LogIndex(1), &options(FsyncPolicy::Always)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(&records[1].payload[..], b"written in place");
}

#[test]
fn dropping_the_log_without_shutdown_still_writes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open_faulty(dir.path(), FsyncPolicy::Never, FaultyFiles::allowing_syncs(usize::MAX));
    for _ in 0..100 {
        log.append(Epoch(1), 0, NodeId(0), b"x");
    }
    drop(log);
    let recovery = recover(dir.path(), &options(FsyncPolicy::Never)).unwrap();
    assert_eq!(recovery.last_index, Some(LogIndex(100)));
}

#[test]
fn under_always_inline_writes_are_readable_before_the_thread_fsyncs_them() {
    let dir = tempfile::tempdir().unwrap();
    let files = FaultyFiles::allowing_syncs(usize::MAX);
    let hold_syncs = Arc::clone(&files.hold_syncs);
    let (log, _) = open_faulty(dir.path(), FsyncPolicy::Always, files);
    log.set_inline_writes(true);
    let progress = log.progress();
    hold_syncs.store(true, Ordering::SeqCst);
    let index = log.append(Epoch(1), 0, NodeId(0), b"one");
    // Returns while the disk holds the fsync back: the caller never waits for it.
    assert_eq!(log.write_pending(), index, "written on the calling thread");
    assert!(progress.durable() < index, "durable only once an fsync covered it");
    let records: Vec<_> =
        read_from(dir.path(), LogIndex(1), &options(FsyncPolicy::Always)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 1, "a log reader sees the record before it is durable");
    // The writer thread fsyncs what callers wrote.
    hold_syncs.store(false, Ordering::SeqCst);
    wait_until(|| progress.durable() == index);
    log.shutdown().unwrap();
}

#[test]
fn persist_pending_writes_and_fsyncs_on_the_calling_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open_faulty(dir.path(), FsyncPolicy::Always, FaultyFiles::allowing_syncs(usize::MAX));
    log.set_inline_writes(true);
    let progress = log.progress();
    for round in 0..3u8 {
        let syncs_before = log.counters().syncs;
        let mut last = LogIndex(0);
        for _ in 0..10 {
            last = log.append(Epoch(1), 0, NodeId(0), &[round; 100]);
        }
        assert_eq!(log.persist_pending(), last);
        assert_eq!(progress.durable(), last, "durable on return, not later");
        assert!(log.counters().syncs > syncs_before);
    }
    // Nothing pending: returns at once with what is durable.
    assert_eq!(log.persist_pending(), LogIndex(30));
    log.shutdown().unwrap();
}

#[test]
fn persist_pending_after_a_failed_fsync_reports_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // One fdatasync for the first segment's header, then EIO.
    let (log, fatal_errors) = open_faulty(dir.path(), FsyncPolicy::Always, FaultyFiles::allowing_syncs(1));
    log.set_inline_writes(true);
    log.append(Epoch(1), 0, NodeId(0), b"one");
    assert_eq!(log.persist_pending(), LogIndex(0), "not durable");
    assert!(log.progress().failed());
    let errors = fatal_errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("fdatasync"), "{errors:?}");
    log.append(Epoch(1), 0, NodeId(0), b"two");
    assert_eq!(log.pending_bytes(), 0, "appends after the failure are dropped");
    assert_eq!(log.persist_pending(), LogIndex(0));
    assert_eq!(fatal_errors.lock().unwrap().len(), 1, "the handler runs once");
}

#[test]
fn under_everysec_persist_pending_writes_without_fsyncing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open_faulty(dir.path(), FsyncPolicy::EverySecond, FaultyFiles::allowing_syncs(usize::MAX));
    log.set_inline_writes(true);
    let syncs_before = log.counters().syncs;
    let index = log.append(Epoch(1), 0, NodeId(0), b"one");
    assert_eq!(log.persist_pending(), index, "written is what everysec acknowledges");
    assert_eq!(log.counters().syncs, syncs_before, "no fsync on the calling thread");
    log.shutdown().unwrap();
}
