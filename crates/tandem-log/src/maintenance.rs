//! Operator tools and housekeeping: `check` (read-only), `repair` (keep the longest valid
//! prefix), `remove_segments_before` (truncation behind a checkpoint) and `remove_all_segments`
//! (a checkpoint newer than the whole log replaces it), `truncate_after` (a node that
//! rejoins drops the records it had beyond the common point with the new active).
//!
//! Invariants:
//! * `check` never modifies the directory;
//! * `repair` only ever removes a suffix of the log, so what remains is a valid prefix;
//! * `remove_segments_before` only ever removes a prefix of closed segments, never the last;
//! * `remove_all_segments` and `truncate_after` run only on a log no process has open (they
//!   take the lock); `truncate_after` only ever removes a suffix.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::cursor::{Frame, SegmentCursor};
use crate::directory::{list_segments, remove_temporary_files, sync_directory, DirectoryLock};
use crate::error::{Corruption, LogError};
use crate::format::SEGMENT_HEADER_BYTES;
use crate::scan::{count_intact_records, scan_log, LogScan};
use crate::types::{LogIndex, LogOptions};

/// Whether a problem is a crash artefact recovery handles or damage that needs an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// An unfinished final write; `recover` drops these bytes on its own.
    TornTail {
        /// Bytes from the problem to the end of the file.
        bytes: u64,
    },
    /// Damage inside the log; only `repair` (dropping everything after it) gets past it.
    Corruption,
}

/// The first problem in a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The segment file it is in.
    pub file: PathBuf,
    /// Byte offset in that file.
    pub offset: u64,
    /// What was found there.
    pub reason: Corruption,
    /// Torn tail or corruption.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.kind {
            ProblemKind::TornTail { bytes } => write!(
                formatter,
                "torn tail in {file} at byte offset {}: {bytes} bytes of a write unfinished at a crash ({}); startup drops them",
                self.offset, self.reason
            ),
            ProblemKind::Corruption => write!(
                formatter,
                "log corrupted in {file} at byte offset {}: {}; run `tandem log check --repair` to keep the valid prefix",
                self.offset, self.reason
            ),
        }
    }
}

/// What `check` found; its Display is what `tandem log check` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The log directory.
    pub dir: PathBuf,
    /// Segment files found.
    pub segments: usize,
    /// Intact records before the first problem (all of them if there is none).
    pub records: u64,
    /// Index of the first record, if any.
    pub first_index: Option<LogIndex>,
    /// Index of the last intact record before the first problem, if any.
    pub last_index: Option<LogIndex>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "log {}: {} segments, {} {}records{}",
            self.dir.display(),
            self.segments,
            self.records,
            if self.problem.is_some() { "valid " } else { "" },
            index_range(self.first_index, self.last_index),
        )?;
        match &self.problem {
            None => write!(formatter, "; no problems"),
            Some(problem) => write!(formatter, " before the first problem\n{problem}"),
        }
    }
}

/// What `repair` did; its Display is what `tandem log check --repair` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// The log directory.
    pub dir: PathBuf,
    /// The problem repaired, or None if the log was already valid.
    pub problem: Option<Problem>,
    /// Records left in the log.
    pub records_kept: u64,
    /// Index of the last record left, if any.
    pub last_index: Option<LogIndex>,
    /// Intact records found after the damage and removed with it (the damaged ones are not counted).
    pub records_dropped: u64,
    /// All bytes removed: the damage, the records after it, and the headers of removed segments.
    pub bytes_dropped: u64,
    /// Whole segment files deleted.
    pub segments_removed: usize,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(problem) = &self.problem else {
            return write!(
                formatter,
                "log {}: nothing to repair; {} records{}",
                self.dir.display(),
                self.records_kept,
                index_range(None, self.last_index)
            );
        };
        write!(
            formatter,
            "repaired log {}: {} in {} at byte offset {} ({})\nkept {} records{}; dropped {} intact records after the damage, {} bytes in all; removed {} segment files",
            self.dir.display(),
            match problem.kind {
                ProblemKind::TornTail { .. } => "torn tail",
                ProblemKind::Corruption => "corruption",
            },
            problem.file.display(),
            problem.offset,
            problem.reason,
            self.records_kept,
            index_range(None, self.last_index),
            self.records_dropped,
            self.bytes_dropped,
            self.segments_removed,
        )
    }
}

/// Formats " (indexes a..=b)" or " (up to index b)", or nothing for an empty log.
fn index_range(first: Option<LogIndex>, last: Option<LogIndex>) -> String {
    match (first, last) {
        (Some(first), Some(last)) => format!(" (indexes {first}..={last})"),
        (None, Some(last)) => format!(" (up to index {last})"),
        _ => String::new(),
    }
}

/// Validates the log in `dir` without modifying anything.
///
/// On a log a writer is appending to, the unfinished end of the current write may show as a
/// torn tail.
pub fn check(dir: &Path, options: &LogOptions) -> Result<CheckReport, LogError> {
    options.validate()?;
    let scan = scan_log(dir, options)?;
    Ok(CheckReport {
        dir: dir.to_path_buf(),
        segments: scan.segments.len(),
        records: scan.records(),
        first_index: scan.first_index().map(LogIndex),
        last_index: scan.last_index().map(LogIndex),
        problem: problem_of(&scan),
    })
}

/// The scan's problem in public form.
fn problem_of(scan: &LogScan) -> Option<Problem> {
    let found = scan.problem.as_ref()?;
    let kind = if found.torn_tail {
        ProblemKind::TornTail { bytes: scan.scanned[found.segment].file_bytes - found.offset }
    } else {
        ProblemKind::Corruption
    };
    Some(Problem { file: scan.problem_file(found), offset: found.offset, reason: found.reason.clone(), kind })
}

/// Keeps the longest valid prefix of the log: truncates at the first problem, deletes later
/// segments, and fsyncs. Refuses (`LogError::Locked`) while a server holds the directory.
pub fn repair(dir: &Path, options: &LogOptions) -> Result<RepairReport, LogError> {
    options.validate()?;
    let _lock = DirectoryLock::acquire(dir)?;
    remove_temporary_files(dir)?;
    let scan = scan_log(dir, options)?;
    let mut report = RepairReport {
        dir: dir.to_path_buf(),
        problem: problem_of(&scan),
        records_kept: scan.records(),
        last_index: scan.last_index().map(LogIndex),
        records_dropped: 0,
        bytes_dropped: 0,
        segments_removed: 0,
    };
    let Some(found) = &scan.problem else {
        return Ok(report);
    };
    let damaged = &scan.segments[found.segment..];
    let kept_index = scan.last_index().unwrap_or(damaged[0].first_index.saturating_sub(1));
    report.records_dropped = count_intact_records(damaged, found.offset, kept_index, options)?;
    // Later segments go first: a crash part-way leaves a log that repair can finish.
    for segment in scan.segments[found.segment + 1..].iter().rev() {
        let bytes = fs::metadata(&segment.path).map_or(0, |metadata| metadata.len());
        fs::remove_file(&segment.path).map_err(|error| LogError::io("remove", &segment.path, error))?;
        report.bytes_dropped += bytes;
        report.segments_removed += 1;
    }
    let path = &damaged[0].path;
    let file_bytes = scan.scanned[found.segment].file_bytes;
    report.bytes_dropped += file_bytes - found.offset;
    if found.offset == 0 {
        // A bad header or a gap: nothing in this file can be trusted or placed.
        fs::remove_file(path).map_err(|error| LogError::io("remove", path, error))?;
        report.segments_removed += 1;
    } else {
        truncate(path, found.offset)?;
    }
    sync_directory(dir).map_err(|error| LogError::io("fsync directory", dir, error))?;
    tracing::warn!(dir = %dir.display(), "{report}");
    Ok(report)
}

/// Truncates a file to `length` bytes and fsyncs it.
fn truncate(path: &Path, length: u64) -> Result<(), LogError> {
    let file = OpenOptions::new().write(true).open(path).map_err(|error| LogError::io("open", path, error))?;
    file.set_len(length).map_err(|error| LogError::io("truncate", path, error))?;
    file.sync_all().map_err(|error| LogError::io("fsync", path, error))
}

/// Deletes closed segments whose records all have an index below `index`; returns how many.
///
/// Never deletes the last segment (the one the writer appends to), and only deletes from
/// the front, so the log stays contiguous. Safe to call while a `Log` is open on `dir`.
pub fn remove_segments_before(dir: &Path, index: LogIndex) -> Result<usize, LogError> {
    let segments = list_segments(dir)?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        // Every record of pair[0] is below pair[1].first_index.
        if pair[1].first_index > index.0 {
            break;
        }
        fs::remove_file(&pair[0].path).map_err(|error| LogError::io("remove", &pair[0].path, error))?;
        removed += 1;
    }
    if removed > 0 {
        sync_directory(dir).map_err(|error| LogError::io("fsync directory", dir, error))?;
    }
    Ok(removed)
}

/// Deletes every segment of a log that no process has open, oldest first, and fsyncs the
/// directory; returns how many were deleted.
///
/// For a caller that holds a checkpoint at or past the log's last record: the log adds
/// nothing to it, and keeping it would make the next record's index collide with the
/// checkpoint's. A crash part-way leaves a suffix of the log, which the same call removes.
pub fn remove_all_segments(dir: &Path) -> Result<usize, LogError> {
    let _lock = DirectoryLock::acquire(dir)?;
    let segments = list_segments(dir)?;
    for segment in &segments {
        fs::remove_file(&segment.path).map_err(|error| LogError::io("remove", &segment.path, error))?;
    }
    if !segments.is_empty() {
        sync_directory(dir).map_err(|error| LogError::io("fsync directory", dir, error))?;
    }
    Ok(segments.len())
}

/// Removes every record after `index` from a log no process has open: later segments are
/// deleted newest first, the segment holding `index + 1` is cut just before that record's
/// frame, and the directory is fsynced. A crash part-way leaves a shorter suffix to remove,
/// which the same call finishes. Returns the last index the log keeps (`index`, or lower if
/// the log ended before it).
pub fn truncate_after(dir: &Path, index: LogIndex, options: &LogOptions) -> Result<Option<LogIndex>, LogError> {
    options.validate()?;
    let _lock = DirectoryLock::acquire(dir)?;
    remove_temporary_files(dir)?;
    let segments = list_segments(dir)?;
    let first_removed = index.0 + 1;
    // Segments that start after `index` hold nothing to keep.
    for segment in segments.iter().rev().take_while(|segment| segment.first_index >= first_removed) {
        fs::remove_file(&segment.path).map_err(|error| LogError::io("remove", &segment.path, error))?;
    }
    let kept = segments.iter().rfind(|segment| segment.first_index < first_removed);
    let mut last_kept = None;
    if let Some(segment) = kept {
        let file = fs::File::open(&segment.path).map_err(|error| LogError::io("open", &segment.path, error))?;
        let mut cursor = SegmentCursor::new(file);
        let mut offset = SEGMENT_HEADER_BYTES as u64;
        loop {
            let frame = cursor
                .read_frame(offset, options.record_bytes_max)
                .map_err(|error| LogError::io("read", &segment.path, error))?;
            match frame {
                Frame::Record(record, _) if record.index.0 >= first_removed => {
                    truncate(&segment.path, offset)?;
                    break;
                }
                Frame::Record(record, bytes) => {
                    last_kept = Some(record.index);
                    offset += bytes;
                }
                // The log ends at or before `index` (a torn tail is for `recover` to judge).
                Frame::End | Frame::Unwritten | Frame::Incomplete | Frame::Invalid(_) => break,
            }
        }
    }
    sync_directory(dir).map_err(|error| LogError::io("fsync directory", dir, error))?;
    Ok(last_kept)
}
