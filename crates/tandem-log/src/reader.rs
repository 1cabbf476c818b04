//! Streaming records in index order from a log directory, also while a writer appends.
//!
//! Invariants:
//! * records come out with contiguous indexes starting at the requested one; any break in
//!   continuity, checksum or framing is an error, never skipped;
//! * reading never modifies the directory.
//!
//! On a live log the reader stops at the end of what was written when it got there (an
//! unfinished frame at the end of the newest segment is the writer's current write, not
//! damage; so are zeros, preallocated space the writer has not reached); a new reader
//! continues from `LogReader::next_index`. A reader of a live log must not ask for records
//! past the writer's published `written` index: in preallocated space a frame being written
//! can show a header before its body, which reads as damage.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::cursor::{Frame, SegmentCursor};
use crate::directory::{list_segments, SegmentFile};
use crate::error::{Corruption, LogError};
use crate::format::{decode_segment_header, SEGMENT_HEADER_BYTES};
use crate::recovery::Recovery;
use crate::types::{Epoch, LogIndex, LogOptions, Record};

/// Returns the records with index >= `start`, in order.
///
/// Fails with `LogError::Unavailable` if records from `start` on were removed behind a
/// checkpoint (the log starts after `start`). Index 0 means "from the beginning".
pub fn read_from(dir: &Path, start: LogIndex, options: &LogOptions) -> Result<LogReader, LogError> {
    options.validate()?;
    let segments = list_segments(dir)?;
    let wanted = start.0.max(1);
    let mut reader = LogReader {
        dir: dir.to_path_buf(),
        record_bytes_max: options.record_bytes_max,
        start: wanted,
        current: None,
        next_index: wanted,
        finished: true,
        failed: false,
    };
    let Some(first) = segments.first() else {
        return Ok(reader);
    };
    if first.first_index > wanted {
        return Err(LogError::Unavailable { requested: start, first_available: LogIndex(first.first_index) });
    }
    // The last segment that starts at or before `wanted` holds it, if anything does.
    let position = segments.partition_point(|segment| segment.first_index <= wanted) - 1;
    let segment = open_segment(&segments[position])?;
    reader.next_index = segment.first_index;
    reader.current = Some(segment);
    reader.finished = false;
    Ok(reader)
}

/// `read_from` on a log `recovery` has just validated: the reader begins at
/// the position recovery kept nearest before `start` (at most
/// 4,096 records before it) instead of at the start of its
/// segment. A position whose frame is not the record it names (the log
/// changed since) is not used.
pub fn read_from_recovered(
    dir: &Path,
    start: LogIndex,
    options: &LogOptions,
    recovery: &Recovery,
) -> Result<LogReader, LogError> {
    let mut reader = read_from(dir, start, options)?;
    let wanted = reader.start;
    let (Some(segment), Some(position)) = (reader.current.as_mut(), recovery.position_before(wanted)) else {
        return Ok(reader);
    };
    if position.segment_first_index != segment.first_index {
        return Ok(reader);
    }
    let frame = segment
        .cursor
        .read_frame_index(position.offset, options.record_bytes_max)
        .map_err(|error| LogError::io("read", &segment.path, error))?;
    if matches!(frame, Frame::Record(index, _) if index == position.index) {
        segment.offset = position.offset;
        reader.next_index = position.index;
    }
    Ok(reader)
}

/// An iterator over log records; see `read_from`.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    record_bytes_max: u32,
    start: u64,
    current: Option<OpenSegment>,
    /// The index of the record at the current offset (before `start` while skipping).
    pub(crate) next_index: u64,
    finished: bool,
    /// Set when a read failed: `resume` must not continue past damage.
    failed: bool,
}

/// The segment being read and the offset of its next frame.
#[derive(Debug)]
struct OpenSegment {
    path: PathBuf,
    first_index: u64,
    cursor: SegmentCursor,
    offset: u64,
}

impl LogReader {
    /// The index of the next record this reader would return; where a later reader resumes.
    pub fn next_index(&self) -> LogIndex {
        LogIndex(self.next_index.max(self.start))
    }

    /// Lets a reader that reached the end of a live log return the records written since:
    /// iteration continues from `next_index()` without rereading the segment (a new
    /// `read_from` would scan its segment from the start). A reader that failed stays done.
    pub fn resume(&mut self) -> Result<(), LogError> {
        if !self.finished {
            return Ok(());
        }
        if self.current.is_none() {
            // The log was empty when this reader started: find the segment now.
            let segments = list_segments(&self.dir)?;
            let wanted = self.next_index();
            let Some(first) = segments.first() else {
                return Ok(());
            };
            if first.first_index > wanted.0 {
                return Err(LogError::Unavailable { requested: wanted, first_available: LogIndex(first.first_index) });
            }
            let position = segments.partition_point(|segment| segment.first_index <= wanted.0) - 1;
            let segment = open_segment(&segments[position])?;
            self.next_index = segment.first_index;
            self.current = Some(segment);
        }
        self.finished = self.failed;
        Ok(())
    }

    /// Reads the next record at or after `start`, moving across segments.
    ///
    /// The records before `start` in its segment are checked like any other
    /// (framing, checksum, index) but not decoded: a restart that loaded a
    /// checkpoint near the end of a 64 MiB segment skips hundreds of
    /// thousands of them, and decoding each (an allocation and a copy) made
    /// that skip most of the time between the checkpoint load and serving.
    fn next_record(&mut self) -> Result<Option<Record>, LogError> {
        loop {
            let Some(segment) = self.current.as_mut() else {
                return Ok(None);
            };
            let offset = segment.offset;
            let read = if self.next_index < self.start {
                segment
                    .cursor
                    .read_frame_index(offset, self.record_bytes_max)
                    .map(|frame| frame.map(|index| (index, None)))
            } else {
                segment
                    .cursor
                    .read_frame(offset, self.record_bytes_max)
                    .map(|frame| frame.map(|record| (record.index.0, Some(record))))
            };
            let frame = read.map_err(|error| LogError::io("read", &segment.path, error))?;
            match frame {
                Frame::Record((index, record), frame_bytes) => {
                    if index != self.next_index {
                        let reason = Corruption::IndexDiscontinuity { expected: self.next_index, found: index };
                        return Err(corrupt(&segment.path, offset, reason));
                    }
                    segment.offset += frame_bytes;
                    self.next_index += 1;
                    if let Some(record) = record {
                        return Ok(Some(record));
                    }
                }
                Frame::Invalid(reason) => return Err(corrupt(&segment.path, offset, reason)),
                Frame::End | Frame::Unwritten | Frame::Incomplete => {
                    if !self.advance()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// At the end of the current segment: moves to the next one if the writer has started
    /// it. Returns false if there is nothing more to read yet.
    fn advance(&mut self) -> Result<bool, LogError> {
        let Some(segment) = self.current.as_mut() else {
            return Ok(false);
        };
        let later = list_segments(&self.dir)?.into_iter().find(|candidate| candidate.first_index > segment.first_index);
        let Some(later) = later else {
            return Ok(false);
        };
        // The writer finishes a segment before it creates the next, so what we saw may have
        // been completed since: look again before judging.
        let frame = segment
            .cursor
            .read_frame(segment.offset, self.record_bytes_max)
            .map_err(|error| LogError::io("read", &segment.path, error))?;
        match frame {
            Frame::Record(..) => Ok(true),
            Frame::Invalid(reason) => Err(corrupt(&segment.path, segment.offset, reason)),
            Frame::Incomplete => Err(corrupt(&segment.path, segment.offset, Corruption::TruncatedRecord)),
            // The writer cuts a segment's preallocated space off before it starts the next, so
            // zeros here are only ever left by a crash in between: nothing more to read.
            Frame::End | Frame::Unwritten => {
                let opened = open_segment(&later)?;
                if opened.first_index != self.next_index {
                    let reason = Corruption::SegmentGap { expected: self.next_index, found: opened.first_index };
                    return Err(corrupt(&later.path, 0, reason));
                }
                self.current = Some(opened);
                Ok(true)
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            match self.next_record() {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => self.finished = true,
                Err(error) => {
                    self.finished = true;
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
        None
    }
}

/// Opens a segment and checks its header against its name.
fn open_segment(segment: &SegmentFile) -> Result<OpenSegment, LogError> {
    let file = File::open(&segment.path).map_err(|error| LogError::io("open", &segment.path, error))?;
    let mut cursor = SegmentCursor::new(file);
    let header =
        cursor.bytes_at(0, SEGMENT_HEADER_BYTES).map_err(|error| LogError::io("read", &segment.path, error))?;
    let header_index = decode_segment_header(header).map_err(|reason| corrupt(&segment.path, 0, reason))?;
    if header_index != segment.first_index {
        let reason = Corruption::NameMismatch { name_index: segment.first_index, header_index };
        return Err(corrupt(&segment.path, 0, reason));
    }
    Ok(OpenSegment {
        path: segment.path.clone(),
        first_index: segment.first_index,
        cursor,
        offset: SEGMENT_HEADER_BYTES as u64,
    })
}

/// A `LogError::Corrupt` for `path` at `offset`.
fn corrupt(path: &Path, offset: u64, reason: Corruption) -> LogError {
    LogError::Corrupt { file: path.to_path_buf(), offset, reason }
}

/// The epoch of the record at `index`, if the log holds it; `Unavailable` if the log starts
/// after it.
pub fn epoch_at(dir: &Path, index: LogIndex, options: &LogOptions) -> Result<Option<Epoch>, LogError> {
    let mut reader = read_from(dir, index, options)?;
    match reader.next() {
        Some(Ok(record)) if record.index == index => Ok(Some(record.epoch)),
        Some(Err(error)) => Err(error),
        _ => Ok(None),
    }
}

/// The last record with an index at most `upper` and an epoch at most `epoch`, as (index,
/// epoch); `None` if no record qualifies and the log starts at index 1. Epochs never decrease
/// along a log, so this is where a log written in epochs up to `epoch` can still agree with
/// this one. Reads the first record of segments from the newest back, then one segment.
/// `Unavailable` when the answer may lie in segments removed behind a checkpoint.
pub fn last_record_with_epoch_at_most(
    dir: &Path,
    epoch: Epoch,
    upper: LogIndex,
    options: &LogOptions,
) -> Result<Option<(LogIndex, Epoch)>, LogError> {
    let segments = list_segments(dir)?;
    let candidates = segments.iter().filter(|segment| segment.first_index <= upper.0);
    for segment in candidates.rev() {
        let mut found = None;
        for record in read_from(dir, LogIndex(segment.first_index), options)? {
            let record = record?;
            if record.index > upper || record.epoch > epoch {
                break;
            }
            found = Some((record.index, record.epoch));
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    match segments.first() {
        Some(first) if first.first_index > 1 => {
            Err(LogError::Unavailable { requested: upper, first_available: LogIndex(first.first_index) })
        }
        _ => Ok(None),
    }
}
