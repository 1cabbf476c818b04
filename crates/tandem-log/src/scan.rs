//! Validation of a whole log directory: headers, frames, index continuity, and the torn-tail
//! rule. `recover`, `check` and `repair` all act on the result of `scan_log`.
//!
//! The torn-tail rule: let `offset` be the first frame of the LAST segment that is not an
//! intact record (cut short, impossible length, or checksum mismatch). The bytes from
//! `offset` to the end of the file are a torn tail — an unfinished write at a crash — if and
//! only if no intact frame carrying a plausible later index starts anywhere after `offset` in
//! that file. An unfinished write leaves a prefix of the batch, possibly followed by zeros,
//! never an intact record after the damage; so anything intact after it means the damage is in
//! the middle of the log (bit rot, a misdirected write), and that is reported as corruption
//! for an operator to repair. Damage anywhere else (a header, a segment that is not the last,
//! a gap between segments, an intact record with the wrong index) is always corruption.
//!
//! Zeros are not damage when nothing but zeros follows them: that is space the writer
//! preallocated and has not reached (see `preallocate`). A segment's records end there.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::cursor::{Frame, SegmentCursor};
use crate::directory::{list_segments, SegmentFile};
use crate::error::{Corruption, LogError};
use crate::format::{decode_segment_header, FRAME_BYTES_MIN, SEGMENT_HEADER_BYTES};
use crate::types::LogOptions;

/// The result of validating every segment up to the first problem.
#[derive(Debug)]
pub(crate) struct LogScan {
    /// Every segment file in index order, including any after the problem.
    pub segments: Vec<SegmentFile>,
    /// The valid part of each segment scanned, in order; the problem's segment is the last.
    pub scanned: Vec<ScannedSegment>,
    /// The first problem, if any; scanning stops there.
    pub problem: Option<FoundProblem>,
    /// Where every `POSITION_STRIDE`th intact record of each segment starts.
    pub positions: Vec<Position>,
}

/// A record's place in the log: which segment, at which byte. Recovery
/// keeps one every `POSITION_STRIDE` records, so that a reader starting
/// past the beginning of a segment begins near its record instead of
/// checking every record before it (`read_from_recovered`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// The record's index.
    pub(crate) index: u64,
    /// The first index of its segment (the segment's name).
    pub(crate) segment_first_index: u64,
    /// Where its frame starts in that segment.
    pub(crate) offset: u64,
}

/// Records between two kept positions: at about 150 bytes a record, a
/// reader skips at most about 600 KiB, and a million records keep 245 positions.
pub(crate) const POSITION_STRIDE: u64 = 4096;

/// The valid prefix of one segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScannedSegment {
    /// Intact records in the valid prefix.
    pub records: u64,
    /// Bytes of header and intact records (0 if the header itself is bad); where the next
    /// record goes, before any preallocated zeros that follow.
    pub valid_bytes: u64,
    /// Length of the file.
    pub file_bytes: u64,
}

/// Where scanning stopped and why.
#[derive(Clone, Debug)]
pub(crate) struct FoundProblem {
    /// Position of the damaged segment in `LogScan::segments`.
    pub segment: usize,
    /// Byte offset of the damage in that file.
    pub offset: u64,
    /// What was found.
    pub reason: Corruption,
    /// True if this is an unfinished final write that recovery may drop.
    pub torn_tail: bool,
}

impl LogScan {
    /// Intact records before the problem.
    pub(crate) fn records(&self) -> u64 {
        self.scanned.iter().map(|segment| segment.records).sum()
    }

    /// Index of the first intact record, if any.
    pub(crate) fn first_index(&self) -> Option<u64> {
        let first = self.segments.first()?;
        (self.records() > 0).then_some(first.first_index)
    }

    /// Index of the last intact record before the problem, if any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        Some(self.first_index()? + self.records() - 1)
    }

    /// Path of the segment the problem is in.
    pub(crate) fn problem_file(&self, problem: &FoundProblem) -> PathBuf {
        self.segments[problem.segment].path.clone()
    }

    /// The problem as a `LogError::Corrupt`.
    pub(crate) fn corrupt_error(&self, problem: &FoundProblem) -> LogError {
        LogError::Corrupt { file: self.problem_file(problem), offset: problem.offset, reason: problem.reason.clone() }
    }
}

/// Validates every segment of `dir` without modifying anything.
pub(crate) fn scan_log(dir: &Path, options: &LogOptions) -> Result<LogScan, LogError> {
    let segments = list_segments(dir)?;
    let mut scanned = Vec::with_capacity(segments.len());
    let mut problem = None;
    let mut expected_first = None;
    let mut positions = Vec::new();
    for (position, segment) in segments.iter().enumerate() {
        let is_last = position + 1 == segments.len();
        let (valid, damage) = scan_segment(segment, expected_first, is_last, options, &mut positions)?;
        scanned.push(valid);
        if let Some((offset, reason, torn_tail)) = damage {
            problem = Some(FoundProblem { segment: position, offset, reason, torn_tail });
            break;
        }
        expected_first = Some(segment.first_index + valid.records);
    }
    Ok(LogScan { segments, scanned, problem, positions })
}

/// Damage found in a segment: offset, reason, and whether it is a torn tail.
type Damage = (u64, Corruption, bool);

/// Validates one segment; `expected_first` is the index the previous segment
/// implies. Adds the position of every `POSITION_STRIDE`th intact record to `positions`.
fn scan_segment(
    segment: &SegmentFile,
    expected_first: Option<u64>,
    is_last: bool,
    options: &LogOptions,
    positions: &mut Vec<Position>,
) -> Result<(ScannedSegment, Option<Damage>), LogError> {
    let file = File::open(&segment.path).map_err(|error| LogError::io("open", &segment.path, error))?;
    let read_error = |error| LogError::io("read", &segment.path, error);
    let mut cursor = SegmentCursor::new(file);
    let file_bytes = cursor.file_bytes().map_err(read_error)?;
    let mut valid = ScannedSegment { records: 0, valid_bytes: 0, file_bytes };
    let header = cursor.bytes_at(0, SEGMENT_HEADER_BYTES).map_err(read_error)?;
    if let Err(reason) = check_header(header, segment.first_index, expected_first) {
        return Ok((valid, Some((0, reason, false))));
    }
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    let mut next_index = segment.first_index;
    let reason = loop {
        valid.valid_bytes = offset;
        match cursor.read_frame_index(offset, options.record_bytes_max).map_err(read_error)? {
            Frame::Record(index, frame_bytes) => {
                if index != next_index {
                    let found = index;
                    let reason = Corruption::IndexDiscontinuity { expected: next_index, found };
                    return Ok((valid, Some((offset, reason, false))));
                }
                if valid.records.is_multiple_of(POSITION_STRIDE) {
                    positions.push(Position { index, segment_first_index: segment.first_index, offset });
                }
                valid.records += 1;
                next_index += 1;
                offset += frame_bytes;
            }
            Frame::End => return Ok((valid, None)),
            Frame::Unwritten => {
                if cursor.zeros_to_end(offset).map_err(read_error)? {
                    return Ok((valid, None));
                }
                break Corruption::RecordLengthOutOfBounds { body_bytes: 0 };
            }
            Frame::Incomplete => break Corruption::TruncatedRecord,
            Frame::Invalid(reason) => break reason,
        }
    };
    if !is_last {
        return Ok((valid, Some((offset, reason, false))));
    }
    let torn_tail = !intact_frame_follows(&mut cursor, offset, file_bytes, next_index, options).map_err(read_error)?;
    Ok((valid, Some((offset, reason, torn_tail))))
}

/// Checks a segment header against the file name and the previous segment.
fn check_header(header: &[u8], name_index: u64, expected_first: Option<u64>) -> Result<(), Corruption> {
    let header_index = decode_segment_header(header)?;
    if header_index != name_index {
        return Err(Corruption::NameMismatch { name_index, header_index });
    }
    match expected_first {
        Some(expected) if expected != header_index => Err(Corruption::SegmentGap { expected, found: header_index }),
        _ => Ok(()),
    }
}

/// True if an intact frame with a plausible later index starts after the damage at `offset`.
fn intact_frame_follows(
    cursor: &mut SegmentCursor,
    offset: u64,
    file_bytes: u64,
    damaged_index: u64,
    options: &LogOptions,
) -> std::io::Result<bool> {
    // At most this many frames fit after the damage; a later index beyond that is not ours.
    let frames_max = (file_bytes - offset) / FRAME_BYTES_MIN as u64;
    let indexes = damaged_index..=damaged_index.saturating_add(frames_max);
    let found = cursor.find_intact_frame(offset + 1, file_bytes, indexes, options.record_bytes_max)?;
    Ok(found.is_some())
}

/// Counts intact records from `from` in `segment` onward, resynchronising after damage.
///
/// Used by repair to say how many records the valid prefix loses; `after_index` is the last
/// intact index kept, and only frames with a plausible later index are counted.
pub(crate) fn count_intact_records(
    segments: &[SegmentFile],
    from: u64,
    after_index: u64,
    options: &LogOptions,
) -> Result<u64, LogError> {
    let total_bytes: u64 =
        segments.iter().map(|segment| std::fs::metadata(&segment.path).map_or(0, |metadata| metadata.len())).sum();
    let index_max = after_index.saturating_add(1 + total_bytes / FRAME_BYTES_MIN as u64);
    let mut counted = 0;
    for (position, segment) in segments.iter().enumerate() {
        let start = if position == 0 { from } else { 0 };
        let file = File::open(&segment.path).map_err(|error| LogError::io("open", &segment.path, error))?;
        let mut cursor = SegmentCursor::new(file);
        counted += count_in_segment(&mut cursor, start, after_index + 1..=index_max, options)
            .map_err(|error| LogError::io("read", &segment.path, error))?;
    }
    Ok(counted)
}

/// Counts intact frames in one file from `start`, skipping damaged stretches.
fn count_in_segment(
    cursor: &mut SegmentCursor,
    start: u64,
    indexes: std::ops::RangeInclusive<u64>,
    options: &LogOptions,
) -> std::io::Result<u64> {
    let file_bytes = cursor.file_bytes()?;
    let mut counted = 0;
    let mut search_from = start;
    let record_bytes_max = options.record_bytes_max;
    while let Some(mut offset) = cursor.find_intact_frame(search_from, file_bytes, indexes.clone(), record_bytes_max)? {
        loop {
            match cursor.read_frame_index(offset, record_bytes_max)? {
                Frame::Record(_, frame_bytes) => {
                    counted += 1;
                    offset += frame_bytes;
                }
                Frame::End => return Ok(counted),
                Frame::Unwritten | Frame::Incomplete | Frame::Invalid(_) => break,
            }
        }
        search_from = offset + 1;
    }
    Ok(counted)
}
