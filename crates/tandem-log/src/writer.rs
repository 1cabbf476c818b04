//! The append path: `Log::append` encodes into an in-memory pending buffer under a short
//! mutex (no I/O, so the server can call it under its keyspace lock). Batches move to the
//! current segment either on the writer thread or, with inline writes, on the caller's thread
//! (`Log::write_pending`, once per turn of an event loop); the writer thread fsyncs per the
//! policy (group commit: one fsync covers whatever was written while the previous one ran).
//!
//! Invariants:
//! * log order == append order: an index is assigned and its frame appended under one lock;
//! * the pending buffer holds only whole frames, also if a payload closure fails or panics;
//! * a record is never split across segments, and only the last segment is ever written;
//! * a segment is fdatasynced before the next one is created, and cut to its records first
//!   if it was preallocated: only the newest segment ever ends in zeros (`preallocate`);
//! * a failed write or fsync is fatal: never retried, never published; the writer stops.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::directory::{
    create_segment, install_segment, list_segments, DirectoryLock, FileOperations, SegmentFile, SystemFiles,
};
use crate::error::LogError;
use crate::format::{
    begin_frame, body_index, decode_frame_header, finish_frame, FRAME_BYTES_MIN, FRAME_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::preallocate::{self, Preallocator};
use crate::progress::{Progress, ProgressState};
use crate::recovery::{Recovery, TailSegment};
use crate::types::{Epoch, FsyncPolicy, LogIndex, LogOptions, NodeId, Record};

/// How often `FsyncPolicy::EverySecond` fsyncs, and how long the idle writer sleeps.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// A batch buffer larger than this is freed after use rather than kept for the next batch.
const BUFFER_RETAINED_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Called once, from the writer thread, when a write or fsync fails; then the writer stops.
pub type FatalHandler = Box<dyn Fn(&LogError) + Send + Sync>;

/// The default fatal handler: log the error and end the process with status 1.
///
/// Continuing after a failed fsync risks acknowledging writes the disk does not hold; the
/// process restarts, recovers from what is on disk, and peers fill in the rest.
pub fn exit_on_fatal_error(error: &LogError) {
    tracing::error!(%error, "log write failed; exiting so that no lost write is acknowledged");
    std::process::exit(1);
}

/// Called from the writer thread with the duration of every successful fdatasync (metrics).
pub type SyncObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// Counts of the writer's work, for metrics and for tests of batching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterCounters {
    /// Batches taken from the pending buffer.
    pub batches: u64,
    /// fdatasync calls on segments.
    pub syncs: u64,
    /// Record bytes handed to write().
    pub bytes_written: u64,
    /// Segments created (including the first one of an empty log).
    pub segments_created: u64,
    /// Segments written in preallocated, zero-filled space: those that started in a prepared
    /// file, and the one the log continued at open if it was given zeros then.
    pub segments_preallocated: u64,
}

/// State shared by the appenders and the writer thread.
struct Shared {
    /// The pending frames and the next index; held only to append or to swap buffers.
    pending: Mutex<Pending>,
    /// Signalled when the pending buffer becomes non-empty or a stop is requested.
    wake: Condvar,
    /// Copy of the last assigned index, readable without the lock.
    last_index: AtomicU64,
    /// Copy of the pending buffer's length, readable without the lock.
    pending_bytes: AtomicU64,
    progress: Arc<ProgressState>,
    batches: AtomicU64,
    syncs: AtomicU64,
    bytes_written: AtomicU64,
    segments_created: AtomicU64,
    segments_preallocated: AtomicU64,
    /// Told the duration of each fdatasync; set by `observe_syncs`.
    sync_observer: Mutex<Option<SyncObserver>>,
    /// Appends do not wake the writer thread (see `Log::set_inline_writes`).
    inline_writes: AtomicBool,
    /// Called once on the first fatal error, from whichever thread met it.
    on_fatal: FatalHandler,
}

/// What the appenders have produced and the writer has not yet taken.
struct Pending {
    /// Whole encoded frames, in index order.
    buffer: Vec<u8>,
    /// The index the next append gets.
    next_index: u64,
    /// Set by shutdown: write what is pending, fsync, stop.
    stop: bool,
    /// Set after a fatal error: appends are dropped, since they can never be written.
    failed: bool,
}

/// The open log: appends records and runs the writer thread. See the module docs.
pub struct Log {
    shared: Arc<Shared>,
    /// The segment being written and what was written; shared by the writer thread and
    /// `write_pending`. Lock order: `writer`, then `shared.pending`.
    writer: Arc<Mutex<Writer>>,
    thread: Option<JoinHandle<Result<(), LogError>>>,
    options: LogOptions,
    // Declared last so that it is released only after the writer thread has been joined.
    _lock: DirectoryLock,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Log")
            .field("options", &self.options)
            .field("last_index", &self.last_index())
            .field("pending_bytes", &self.pending_bytes())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens the log `recover` just validated and starts the writer thread; a fatal write or
    /// fsync error ends the process (`exit_on_fatal_error`).
    pub fn open(dir: &Path, options: &LogOptions, recovery: &Recovery) -> Result<Log, LogError> {
        Log::open_with_fatal_handler(dir, options, recovery, Box::new(exit_on_fatal_error))
    }

    /// Like `open`, with the handler called (once, from the writer thread) on a fatal error.
    ///
    /// The handler must make sure no further write is acknowledged, typically by ending the
    /// process; `Progress` waits never resolve past the failure.
    pub fn open_with_fatal_handler(
        dir: &Path,
        options: &LogOptions,
        recovery: &Recovery,
        on_fatal: FatalHandler,
    ) -> Result<Log, LogError> {
        Log::open_with_files(dir, options, recovery, on_fatal, Box::new(SystemFiles))
    }

    /// `open` with the writer's file operations supplied (tests inject failures here).
    pub(crate) fn open_with_files(
        dir: &Path,
        options: &LogOptions,
        recovery: &Recovery,
        on_fatal: FatalHandler,
        files: Box<dyn FileOperations>,
    ) -> Result<Log, LogError> {
        options.validate()?;
        let lock = DirectoryLock::acquire(dir)?;
        let segments = list_segments(dir)?;
        check_unchanged_since_recovery(dir, &segments, recovery)?;
        let next_index = match (recovery.last_index, segments.last()) {
            (Some(last), _) => last.0 + 1,
            (None, Some(segment)) => segment.first_index,
            (None, None) => recovery.empty_log_first_index,
        };
        let (segment, created) = match (segments.last(), recovery.tail) {
            (Some(segment), Some(tail)) => (open_active_segment(segment, tail)?, false),
            _ => {
                let (file, path) = create_segment(dir, next_index, files.as_ref())?;
                let bytes = SEGMENT_HEADER_BYTES as u64;
                (ActiveSegment { file, path, bytes, preallocated: 0 }, true)
            }
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending { buffer: Vec::new(), next_index, stop: false, failed: false }),
            wake: Condvar::new(),
            last_index: AtomicU64::new(next_index - 1),
            pending_bytes: AtomicU64::new(0),
            progress: Arc::new(ProgressState::new(next_index - 1)),
            batches: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            segments_created: AtomicU64::new(u64::from(created)),
            segments_preallocated: AtomicU64::new(0),
            sync_observer: Mutex::new(None),
            inline_writes: AtomicBool::new(false),
            on_fatal,
        });
        let preallocator = if options.preallocate {
            match Preallocator::start(dir, options.segment_bytes_max) {
                Ok(preallocator) => Some(preallocator),
                Err(error) => {
                    tracing::warn!(%error, "cannot start the log's preallocation thread; segments grow by appending");
                    None
                }
            }
        } else {
            None
        };
        let writer = Arc::new(Mutex::new(Writer {
            shared: Arc::clone(&shared),
            dir: dir.to_path_buf(),
            options: options.clone(),
            files: Arc::from(files),
            segment,
            preallocator,
            zeros_given: false,
            batch: Vec::new(),
            written: next_index - 1,
            durable: next_index - 1,
        }));
        let thread_writer = Arc::clone(&writer);
        let thread_shared = Arc::clone(&shared);
        let fsync = options.fsync;
        let handle = std::thread::Builder::new()
            .name("tandem-log-writer".to_owned())
            .spawn(move || run_until_stopped(&thread_writer, &thread_shared, fsync))
            .map_err(|error| LogError::io("spawn writer thread", dir, error))?;
        Ok(Log { shared, writer, thread: Some(handle), options: options.clone(), _lock: lock })
    }

    /// With `true`, appends no longer wake the writer thread: the caller writes pending
    /// records itself with [`Log::write_pending`] before waiting for them (a write is a
    /// page-cache copy). Under `Always` the writer thread then only fsyncs what callers
    /// wrote (group commit: one fsync covers every write made while the previous one ran),
    /// so a record is written, and readable by a log reader, without waiting for an fsync
    /// in progress. Records nobody writes this way are still written by the thread within
    /// a second.
    pub fn set_inline_writes(&self, inline: bool) {
        self.shared.inline_writes.store(inline, Ordering::Relaxed);
    }

    /// Writes every pending record to the segment on the calling thread (no fsync) and
    /// publishes `written`; returns the written index. Under `Always` the writer thread is
    /// woken to fsync it. A failure is fatal, as on the writer thread.
    pub fn write_pending(&self) -> LogIndex {
        let Some((written, unsynced)) = self.write_here() else {
            return self.progress().written();
        };
        if self.options.fsync == FsyncPolicy::Always && unsynced {
            // The thread checks for unsynced records under the pending lock: taking it
            // orders this wake-up after any check that missed the write (no lost wake-up).
            drop(self.shared.pending.lock());
            self.shared.wake.notify_one();
        }
        written
    }

    /// Writes every pending record and, under `Always`, fdatasyncs it, all on the calling
    /// thread; returns the index a reply may now wait no longer for (durable under `Always`,
    /// written otherwise). For a caller that must not wait for another thread and may block
    /// on the disk: a standby persisting what it received before acknowledging it. A failure
    /// is fatal, as on the writer thread.
    pub fn persist_pending(&self) -> LogIndex {
        if self.write_here().is_none() {
            return self.acknowledgeable();
        }
        if self.options.fsync == FsyncPolicy::Always {
            if let Err(error) = sync_written(&self.writer) {
                fail(&self.shared, &error);
            }
        }
        self.acknowledgeable()
    }

    /// Writes the pending records; returns the written index and whether it is unsynced, or
    /// None if the log failed (now or before).
    fn write_here(&self) -> Option<(LogIndex, bool)> {
        let mut writer = self.writer.lock();
        if self.shared.progress.failed() {
            return None;
        }
        if let Err(error) = writer.write_taken_batch() {
            drop(writer);
            fail(&self.shared, &error);
            return None;
        }
        Some((LogIndex(writer.written), writer.durable < writer.written))
    }

    /// The highest index a reply may be sent for without waiting: durable under `Always`,
    /// written otherwise.
    pub fn acknowledgeable(&self) -> LogIndex {
        LogIndex(match self.options.fsync {
            FsyncPolicy::Always => self.shared.progress.durable_index(),
            _ => self.shared.progress.written_index(),
        })
    }

    /// Appends a record and returns its index; no I/O, never blocks on the disk.
    ///
    /// Panics if `payload` is longer than `record_bytes_max` (callers enforce their own,
    /// smaller limits on client input first).
    pub fn append(&self, epoch: Epoch, hlc: u64, origin: NodeId, payload: &[u8]) -> LogIndex {
        self.assert_payload_fits(payload.len());
        let appended = self.append_with(epoch, hlc, origin, |writer| {
            writer.extend_from_slice(payload);
            Ok::<(), Infallible>(())
        });
        match appended {
            Ok(index) => index,
            Err(never) => match never {},
        }
    }

    /// Appends a record whose payload `write_payload` writes in place (no intermediate copy).
    ///
    /// Contract: the closure runs under the log's internal mutex, so it must be short and must
    /// not call back into this `Log`. If it returns an error (or panics) nothing is appended
    /// and no index is used. Panics if the payload exceeds `record_bytes_max`.
    pub fn append_with<E>(
        &self,
        epoch: Epoch,
        hlc: u64,
        origin: NodeId,
        write_payload: impl FnOnce(&mut PayloadWriter<'_>) -> Result<(), E>,
    ) -> Result<LogIndex, E> {
        match self.append_at(None, epoch, hlc, origin, write_payload)? {
            Ok(index) => Ok(index),
            Err(_) => unreachable!("an append without an expected index always gets the next one"),
        }
    }

    /// Appends a record another log already numbered (replication: a standby keeps every
    /// record at the index the active gave it), so that both logs are the same sequence.
    ///
    /// Returns `Err(next)`, appending nothing, unless `record.index` is exactly the index
    /// this log assigns next (`last_index() + 1`): a gap or a repeat is the sender's error,
    /// never silently renumbered. Panics if the payload exceeds `record_bytes_max`.
    pub fn append_replicated(&self, record: &Record) -> Result<LogIndex, LogIndex> {
        self.assert_payload_fits(record.payload.len());
        let appended = self.append_at(Some(record.index), record.epoch, record.hlc, record.origin, |writer| {
            writer.extend_from_slice(&record.payload);
            Ok::<(), Infallible>(())
        });
        match appended {
            Ok(result) => result,
            Err(never) => match never {},
        }
    }

    /// `append_with`, refusing (inner `Err(next)`) when `expected` is not the next index.
    fn append_at<E>(
        &self,
        expected: Option<LogIndex>,
        epoch: Epoch,
        hlc: u64,
        origin: NodeId,
        write_payload: impl FnOnce(&mut PayloadWriter<'_>) -> Result<(), E>,
    ) -> Result<Result<LogIndex, LogIndex>, E> {
        let mut pending = self.shared.pending.lock();
        let index = LogIndex(pending.next_index);
        if expected.is_some_and(|expected| expected != index) {
            return Ok(Err(index));
        }
        let was_empty = pending.buffer.is_empty();
        let start = begin_frame(&mut pending.buffer, index, epoch, hlc, origin);
        let frame = UnfinishedFrame { buffer: &mut pending.buffer, start };
        write_payload(&mut PayloadWriter { buffer: &mut *frame.buffer })?;
        self.assert_payload_fits(frame.buffer.len() - start - FRAME_BYTES_MIN);
        finish_frame(&mut *frame.buffer, start);
        frame.keep();
        if pending.failed {
            // Nothing will ever write it; keeping it would only grow memory.
            pending.buffer.clear();
        }
        pending.next_index += 1;
        self.shared.last_index.store(index.0, Ordering::Release);
        let pending_bytes = pending.buffer.len() as u64;
        self.shared.pending_bytes.store(pending_bytes, Ordering::Relaxed);
        drop(pending);
        // The writer only waits when the buffer is empty, so only the first append wakes it.
        if was_empty && !self.shared.inline_writes.load(Ordering::Relaxed) {
            self.shared.wake.notify_one();
        }
        Ok(Ok(index))
    }

    fn assert_payload_fits(&self, payload_bytes: usize) {
        let limit = self.options.record_bytes_max as usize;
        assert!(payload_bytes <= limit, "log payload of {payload_bytes} bytes exceeds record_bytes_max {limit}");
    }

    /// The index of the last record appended (0 if none ever was).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.shared.last_index.load(Ordering::Acquire))
    }

    /// Bytes appended but not yet taken by the writer.
    ///
    /// `append` never blocks or refuses, so a disk slower than the clients shows up here;
    /// callers stop accepting writes while this exceeds `PENDING_BYTES_SOFT_MAX`.
    pub fn pending_bytes(&self) -> u64 {
        self.shared.pending_bytes.load(Ordering::Relaxed)
    }

    /// A handle on how far the writer has got, for the tasks that reply to clients.
    pub fn progress(&self) -> Progress {
        Progress::new(Arc::clone(&self.shared.progress), self.options.fsync)
    }

    /// Reports the duration of every later fdatasync to `observer` (e.g. a latency histogram).
    pub fn observe_syncs(&self, observer: SyncObserver) {
        *self.shared.sync_observer.lock() = Some(observer);
    }

    /// Counts of the writer's work so far.
    pub fn counters(&self) -> WriterCounters {
        let shared = &self.shared;
        WriterCounters {
            batches: shared.batches.load(Ordering::Relaxed),
            syncs: shared.syncs.load(Ordering::Relaxed),
            bytes_written: shared.bytes_written.load(Ordering::Relaxed),
            segments_created: shared.segments_created.load(Ordering::Relaxed),
            segments_preallocated: shared.segments_preallocated.load(Ordering::Relaxed),
        }
    }

    /// Writes everything appended, fsyncs, and stops the writer thread.
    ///
    /// Returns the fatal error if the writer had failed, in which case records after
    /// `progress().durable()` may be missing.
    pub fn shutdown(mut self) -> Result<(), LogError> {
        self.stop_writer()
    }

    fn stop_writer(&mut self) -> Result<(), LogError> {
        let Some(handle) = self.thread.take() else {
            return Ok(());
        };
        self.shared.pending.lock().stop = true;
        self.shared.wake.notify_one();
        match handle.join() {
            Ok(result) => result,
            Err(_) => Err(LogError::WriterPanicked),
        }
    }
}

impl Drop for Log {
    /// Dropping without `shutdown` still writes and fsyncs everything appended.
    fn drop(&mut self) {
        if let Err(error) = self.stop_writer() {
            tracing::error!(%error, "log writer failed before the log was dropped");
        }
    }
}

/// Lets `append_with`'s closure write a payload in place; it can only append to it.
pub struct PayloadWriter<'a> {
    buffer: &'a mut Vec<u8>,
}

impl PayloadWriter<'_> {
    /// Appends bytes to the payload.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }
}

impl io::Write for PayloadWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Removes a half-built frame from the pending buffer unless `keep` is called, so that an
/// error or panic in a payload closure cannot leave a broken frame for the writer.
struct UnfinishedFrame<'a> {
    buffer: &'a mut Vec<u8>,
    start: usize,
}

impl UnfinishedFrame<'_> {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for UnfinishedFrame<'_> {
    fn drop(&mut self) {
        self.buffer.truncate(self.start);
    }
}

/// Checks that the directory still looks as `recover` left it.
fn check_unchanged_since_recovery(dir: &Path, segments: &[SegmentFile], recovery: &Recovery) -> Result<(), LogError> {
    let stale = |detail: String| LogError::Stale { dir: dir.to_path_buf(), detail };
    let (Some(segment), Some(tail)) = (segments.last(), recovery.tail) else {
        if segments.is_empty() && recovery.tail.is_none() {
            return Ok(());
        }
        return Err(stale("segments were added or removed".to_owned()));
    };
    if segment.first_index != tail.first_index {
        return Err(stale(format!(
            "the last segment is {} but recovery ended in the one starting at index {}",
            segment.path.display(),
            tail.first_index
        )));
    }
    let file_bytes =
        std::fs::metadata(&segment.path).map_err(|error| LogError::io("stat", &segment.path, error))?.len();
    if file_bytes != tail.file_bytes {
        return Err(stale(format!(
            "{} is {file_bytes} bytes, recovery left {} bytes",
            segment.path.display(),
            tail.file_bytes
        )));
    }
    Ok(())
}

/// Opens the last segment for appending after its last record (before any preallocated zeros).
fn open_active_segment(segment: &SegmentFile, tail: TailSegment) -> Result<ActiveSegment, LogError> {
    let path = segment.path.clone();
    let mut file = OpenOptions::new().write(true).open(&path).map_err(|error| LogError::io("open", &path, error))?;
    let bytes = file.seek(SeekFrom::Start(tail.valid_bytes)).map_err(|error| LogError::io("seek", &path, error))?;
    let preallocated = if tail.file_bytes > tail.valid_bytes { tail.file_bytes } else { 0 };
    Ok(ActiveSegment { file, path, bytes, preallocated })
}

/// The segment the writer appends to.
struct ActiveSegment {
    file: File,
    path: PathBuf,
    /// Bytes of header and records: where the next record goes.
    bytes: u64,
    /// Length of the zero-filled file this segment started as; 0 if it was not preallocated.
    /// Writes within it need no metadata at fdatasync.
    preallocated: u64,
}

/// What the writer thread does next.
enum Step {
    /// Records are pending: write them (and fsync under `Always`).
    Write,
    /// Records were written unsynced: inline under `Always`, or the interval passed under
    /// `EverySecond`.
    Sync,
    /// Shutdown was requested: write what is pending, fsync, stop.
    Stop,
}

/// Runs the writer thread; on a fatal error or panic marks the log failed and calls the
/// fatal handler (unless another thread already did).
fn run_until_stopped(writer: &Mutex<Writer>, shared: &Shared, fsync: FsyncPolicy) -> Result<(), LogError> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(writer, shared, fsync)));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            fail(shared, &error);
            Err(error)
        }
        Err(panic) => {
            fail(shared, &LogError::WriterPanicked);
            std::panic::resume_unwind(panic);
        }
    }
}

fn run(writer: &Mutex<Writer>, shared: &Shared, fsync: FsyncPolicy) -> Result<(), LogError> {
    let mut timers = Timers { last_sync: Instant::now(), last_write: Instant::now() };
    loop {
        if shared.progress.failed() {
            return Ok(()); // a `write_pending` caller met the error and reported it
        }
        match next_step(shared, fsync, &timers) {
            Step::Write => {
                writer.lock().write_taken_batch()?;
                if fsync == FsyncPolicy::Always {
                    sync_written(writer)?;
                }
                timers.last_write = Instant::now();
                if fsync == FsyncPolicy::EverySecond && timers.last_sync.elapsed() >= SYNC_INTERVAL {
                    sync_written(writer)?;
                    timers.last_sync = Instant::now();
                }
            }
            Step::Sync => {
                sync_written(writer)?;
                timers.last_sync = Instant::now();
            }
            Step::Stop => {
                let mut locked = writer.lock();
                locked.write_taken_batch()?;
                return locked.close();
            }
        }
    }
}

/// When the writer thread last wrote and last fsynced.
struct Timers {
    last_sync: Instant,
    last_write: Instant,
}

/// Waits for work. Holds only the pending lock, never the writer's (lock order).
fn next_step(shared: &Shared, fsync: FsyncPolicy, timers: &Timers) -> Step {
    let mut pending = shared.pending.lock();
    loop {
        if pending.stop {
            return Step::Stop;
        }
        let now = Instant::now();
        let inline = shared.inline_writes.load(Ordering::Relaxed);
        // Inline writers write their own records; the thread picks up leftovers once a second.
        let write_deadline = if inline { timers.last_write + SYNC_INTERVAL } else { now };
        if !pending.buffer.is_empty() && now >= write_deadline {
            return Step::Write;
        }
        let unsynced = shared.progress.durable_index() < shared.progress.written_index();
        if fsync == FsyncPolicy::Always && unsynced {
            return Step::Sync; // written inline
        }
        let sync_deadline = timers.last_sync + SYNC_INTERVAL;
        if fsync == FsyncPolicy::EverySecond && unsynced && now >= sync_deadline {
            return Step::Sync;
        }
        let mut deadline = now + SYNC_INTERVAL;
        if !pending.buffer.is_empty() {
            deadline = deadline.min(write_deadline);
        }
        if fsync == FsyncPolicy::EverySecond && unsynced {
            deadline = deadline.min(sync_deadline);
        }
        shared.wake.wait_for(&mut pending, deadline.saturating_duration_since(now).max(Duration::from_millis(1)));
    }
}

/// The fsync of written records, done on a duplicate of the segment's file handle without
/// holding the writer lock, so inline writers are never held up by the disk.
fn sync_written(writer: &Mutex<Writer>) -> Result<(), LogError> {
    let (file, path, upto, files, shared) = {
        let writer = writer.lock();
        if writer.durable == writer.written {
            return Ok(());
        }
        let file = writer.segment.file.try_clone().map_err(|error| LogError::io("dup", &writer.segment.path, error))?;
        (file, writer.segment.path.clone(), writer.written, Arc::clone(&writer.files), Arc::clone(&writer.shared))
    };
    timed_sync(files.as_ref(), &file, &path, &shared)?;
    let mut writer = writer.lock();
    // A roll in the meantime fsynced the old segment itself and may have moved durable on.
    if upto > writer.durable {
        writer.durable = upto;
        shared.progress.publish_durable(upto);
    }
    Ok(())
}

/// fdatasyncs a segment file, counting it and telling the sync observer how long it took.
fn timed_sync(files: &dyn FileOperations, file: &File, path: &Path, shared: &Shared) -> Result<(), LogError> {
    let started = Instant::now();
    files.sync_data(file).map_err(|error| LogError::io("fdatasync", path, error))?;
    if let Some(observer) = shared.sync_observer.lock().clone() {
        observer(started.elapsed());
    }
    shared.syncs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Marks the log failed and calls the fatal handler, once.
fn fail(shared: &Shared, error: &LogError) {
    if shared.progress.failed() {
        return;
    }
    mark_failed(shared);
    (shared.on_fatal)(error);
}

/// The segment file and what has been written to it.
struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    options: LogOptions,
    files: Arc<dyn FileOperations>,
    segment: ActiveSegment,
    /// Prepares the next segment's zero-filled file; `None` without preallocation.
    preallocator: Option<Preallocator>,
    /// Whether `give_zeros_once` ran.
    zeros_given: bool,
    /// The batch being written; swapped with the pending buffer to avoid reallocating.
    batch: Vec<u8>,
    written: u64,
    durable: u64,
}

impl Writer {
    /// Takes the pending buffer (under the pending lock, while this writer lock is held, so
    /// batches reach the file in index order) and writes it; publishes `written`.
    fn write_taken_batch(&mut self) -> Result<(), LogError> {
        let last_index = {
            let mut pending = self.shared.pending.lock();
            if pending.buffer.is_empty() {
                return Ok(());
            }
            std::mem::swap(&mut pending.buffer, &mut self.batch);
            self.shared.pending_bytes.store(0, Ordering::Relaxed);
            pending.next_index - 1
        };
        self.write_batch()?;
        self.publish_written(last_index);
        Ok(())
    }

    /// Writes the batch, rolling to new segments so that no record is split.
    fn write_batch(&mut self) -> Result<(), LogError> {
        let batch = std::mem::take(&mut self.batch);
        let result = self.write_frames(&batch);
        self.batch = batch;
        if self.batch.capacity() > BUFFER_RETAINED_BYTES_MAX {
            self.batch = Vec::new();
        }
        self.batch.clear();
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn write_frames(&mut self, batch: &[u8]) -> Result<(), LogError> {
        self.give_zeros_once();
        let mut run_start = 0;
        let mut position = 0;
        while position < batch.len() {
            let header = decode_frame_header(&batch[position..]);
            let frame_bytes = FRAME_HEADER_BYTES + header.body_bytes as usize;
            let run_bytes = (position - run_start) as u64;
            let segment_has_records = self.segment.bytes > SEGMENT_HEADER_BYTES as u64 || run_bytes > 0;
            let segment_bytes = self.segment.bytes + run_bytes + frame_bytes as u64;
            let full = segment_bytes > self.options.segment_bytes_max;
            // Into a prepared file as soon as one is ready once this segment outgrew its
            // zeros (or had none: giving them failed, or it was already near full).
            let prepared_waits = segment_bytes > self.segment.preallocated
                && self.preallocator.as_ref().is_some_and(Preallocator::is_ready);
            if segment_has_records && (full || prepared_waits) {
                self.write(&batch[run_start..position])?;
                self.roll(body_index(&batch[position + FRAME_HEADER_BYTES..]))?;
                run_start = position;
            }
            position += frame_bytes;
        }
        assert_eq!(position, batch.len(), "pending buffer holds a partial frame");
        self.write(&batch[run_start..])?;
        // The next file is prepared while this segment's second half of zeros fills.
        if let Some(preallocator) = &self.preallocator {
            if self.segment.bytes >= self.segment.preallocated / 2 {
                preallocator.request();
            }
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let segment = &mut self.segment;
        self.files.write_all(&mut segment.file, bytes).map_err(|error| LogError::io("write", &segment.path, error))?;
        segment.bytes += bytes.len() as u64;
        self.shared.bytes_written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the current segment (cut to its records, fdatasync) and starts one whose first
    /// record is `first_index`, in a preallocated file if one is ready.
    fn roll(&mut self, first_index: u64) -> Result<(), LogError> {
        self.cut_preallocated_space()?;
        timed_sync(self.files.as_ref(), &self.segment.file, &self.segment.path, &self.shared)?;
        // Everything before `first_index` is in the closed segment, written and synced.
        self.publish_written(first_index - 1);
        self.durable = first_index - 1;
        self.shared.progress.publish_durable(self.durable);
        let files = self.files.as_ref();
        let (file, path, preallocated) = match self.preallocator.as_ref().and_then(Preallocator::take) {
            Some(prepared) => {
                let (file, path) = install_segment(&self.dir, first_index, prepared.file, &prepared.path, files)?;
                self.shared.segments_preallocated.fetch_add(1, Ordering::Relaxed);
                (file, path, prepared.bytes)
            }
            None => {
                let (file, path) = create_segment(&self.dir, first_index, files)?;
                (file, path, 0)
            }
        };
        self.segment = ActiveSegment { file, path, bytes: SEGMENT_HEADER_BYTES as u64, preallocated };
        self.shared.segments_created.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// With preallocation, before the first write: gives the segment the log continues
    /// `preallocate::FIRST_BYTES` of zeros after its records (at most up to the segment size),
    /// unless it has zeros already (a crash left them). Not in `Log::open`: a restarting node
    /// restores its state and serves reads without waiting for them. Best effort: without
    /// them the writer appends, as it would without preallocation.
    fn give_zeros_once(&mut self) {
        if self.zeros_given || self.preallocator.is_none() {
            return;
        }
        self.zeros_given = true;
        let segment = &mut self.segment;
        if segment.preallocated > segment.bytes {
            self.shared.segments_preallocated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let to = (segment.bytes + preallocate::FIRST_BYTES).min(self.options.segment_bytes_max);
        if to <= segment.bytes {
            return;
        }
        match preallocate::extend_with_zeros(&segment.file, segment.bytes, to) {
            Ok(()) => {
                segment.preallocated = to;
                self.shared.segments_preallocated.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(file = %segment.path.display(), %error, "cannot preallocate space in the log segment");
                // Zeros written before the failure would be harmless, but a clean file is simpler.
                let _ = segment.file.set_len(segment.bytes);
            }
        }
    }

    /// Cuts the zeros after the records off a preallocated segment (the caller fsyncs);
    /// returns whether there were any.
    fn cut_preallocated_space(&mut self) -> Result<bool, LogError> {
        let segment = &mut self.segment;
        if segment.preallocated <= segment.bytes {
            return Ok(false);
        }
        segment.file.set_len(segment.bytes).map_err(|error| LogError::io("truncate", &segment.path, error))?;
        segment.preallocated = 0;
        Ok(true)
    }

    /// At shutdown: fsyncs, and leaves the last segment ending at its last record, as a log
    /// closed cleanly always does (only a crash leaves zeros after the records). The new
    /// length is fsynced even if every record already was.
    fn close(&mut self) -> Result<(), LogError> {
        if self.cut_preallocated_space()? {
            self.sync_now()
        } else {
            self.sync()
        }
    }

    fn publish_written(&mut self, index: u64) {
        self.written = index;
        self.shared.progress.publish_written(index);
    }

    /// fdatasyncs the current segment if it holds unsynced records, and publishes durable.
    fn sync(&mut self) -> Result<(), LogError> {
        if self.durable == self.written {
            return Ok(());
        }
        self.sync_now()
    }

    /// fdatasyncs the current segment and publishes durable.
    fn sync_now(&mut self) -> Result<(), LogError> {
        timed_sync(self.files.as_ref(), &self.segment.file, &self.segment.path, &self.shared)?;
        self.durable = self.written;
        self.shared.progress.publish_durable(self.durable);
        Ok(())
    }
}

/// Stops the log for good after a fatal error: drops pending records, freezes progress.
fn mark_failed(shared: &Shared) {
    let mut pending = shared.pending.lock();
    pending.failed = true;
    pending.buffer = Vec::new();
    shared.pending_bytes.store(0, Ordering::Relaxed);
    shared.progress.mark_failed();
}
