//! Startup recovery: validate the directory, drop a torn tail, refuse corruption.
//!
//! Invariants:
//! * only a torn tail (see `scan` for the rule) is ever removed without an operator;
//! * after `recover` returns, every record it reports is fsynced, so the writer may start
//!   with `durable == last_index`.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::directory::{ensure_directory, remove_temporary_files, sync_directory, DirectoryLock, SegmentFile};
use crate::error::LogError;
use crate::scan::{scan_log, FoundProblem, LogScan, Position};
use crate::types::{LogIndex, LogOptions};

/// What `recover` found; pass it to `Log::open`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Index of the first record on disk, if any.
    pub first_index: Option<LogIndex>,
    /// Index of the last record on disk, if any.
    pub last_index: Option<LogIndex>,
    /// Bytes of an unfinished final write that were truncated away.
    pub torn_tail_bytes_dropped: u64,
    /// Segment files in the directory.
    pub segments: usize,
    /// The last segment as recovery left it, so `Log::open` can detect later changes.
    pub(crate) tail: Option<TailSegment>,
    /// Where `Log::open` starts a log that has no segment yet (1 unless `start_empty_log_at`).
    pub(crate) empty_log_first_index: u64,
    /// Where every `POSITION_STRIDE`th record of each segment starts, in index order.
    pub(crate) positions: Vec<Position>,
}

impl Recovery {
    /// Makes `Log::open` start this empty log at `first` instead of 1: a node restored from a
    /// checkpoint at index `first - 1` continues the index sequence after it.
    ///
    /// Panics if the log has a segment (its name already fixes where the log continues) or
    /// if `first` is 0; both are programmer errors.
    pub fn start_empty_log_at(&mut self, first: LogIndex) {
        assert!(self.segments == 0 && self.tail.is_none(), "start_empty_log_at on a log that has segments");
        assert!(first.0 >= 1, "log indexes start at 1");
        self.empty_log_first_index = first.0;
    }

    /// The kept position nearest before `index` in the segment that holds it.
    pub(crate) fn position_before(&self, index: u64) -> Option<Position> {
        let after = self.positions.partition_point(|position| position.index <= index);
        after.checked_sub(1).map(|before| self.positions[before])
    }
}

/// The segment the writer will append to, as recovery left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TailSegment {
    /// First index, from its name.
    pub first_index: u64,
    /// File length after any truncation.
    pub file_bytes: u64,
    /// Where its records end: the next record is written here (before `file_bytes` when the
    /// rest is preallocated zeros).
    pub valid_bytes: u64,
}

/// Validates the log in `dir` (creating it if missing), drops a torn tail, and fsyncs.
///
/// Corruption anywhere but a torn tail returns `LogError::Corrupt` and changes nothing.
pub fn recover(dir: &Path, options: &LogOptions) -> Result<Recovery, LogError> {
    options.validate()?;
    ensure_directory(dir)?;
    let _lock = DirectoryLock::acquire(dir)?;
    remove_temporary_files(dir)?;
    let scan = scan_log(dir, options)?;
    let mut torn_tail_bytes_dropped = 0;
    if let Some(problem) = &scan.problem {
        if !problem.torn_tail {
            return Err(scan.corrupt_error(problem));
        }
        torn_tail_bytes_dropped = truncate_torn_tail(&scan, problem)?;
    }
    if let Some(last) = scan.segments.last() {
        // A crashed process may have left written but unsynced records in the page cache;
        // the writer publishes them as durable from the start, so make that true.
        sync_file(last)?;
    }
    sync_directory(dir).map_err(|error| LogError::io("fsync directory", dir, error))?;
    let tail = match (scan.segments.last(), scan.scanned.last()) {
        (Some(segment), Some(scanned)) => Some(TailSegment {
            first_index: segment.first_index,
            file_bytes: scanned.file_bytes - torn_tail_bytes_dropped,
            valid_bytes: scanned.valid_bytes,
        }),
        _ => None,
    };
    Ok(Recovery {
        first_index: scan.first_index().map(LogIndex),
        last_index: scan.last_index().map(LogIndex),
        torn_tail_bytes_dropped,
        segments: scan.segments.len(),
        tail,
        empty_log_first_index: 1,
        positions: scan.positions,
    })
}

/// Truncates the last segment at the torn tail and fsyncs it; returns the bytes dropped.
fn truncate_torn_tail(scan: &LogScan, problem: &FoundProblem) -> Result<u64, LogError> {
    let path = scan.problem_file(problem);
    let file_bytes = scan.scanned[problem.segment].file_bytes;
    let bytes_dropped = file_bytes - problem.offset;
    let file = OpenOptions::new().write(true).open(&path).map_err(|error| LogError::io("open", &path, error))?;
    file.set_len(problem.offset).map_err(|error| LogError::io("truncate", &path, error))?;
    file.sync_all().map_err(|error| LogError::io("fsync", &path, error))?;
    tracing::warn!(
        file = %path.display(),
        offset = problem.offset,
        bytes_dropped,
        reason = %problem.reason,
        "dropped the torn tail of the log (a write unfinished at a crash)"
    );
    Ok(bytes_dropped)
}

/// fdatasyncs one segment file.
fn sync_file(segment: &SegmentFile) -> Result<(), LogError> {
    let file = File::open(&segment.path).map_err(|error| LogError::io("open", &segment.path, error))?;
    file.sync_data().map_err(|error| LogError::io("fdatasync", &segment.path, error))
}
