//! Reading frames from one segment file through a window buffer, and searching damaged
//! regions for intact frames (the evidence that tells a torn tail from corruption).
//!
//! Invariants:
//! * a `Frame::Record` is returned only if its body matches its checksum;
//! * no allocation is sized by an unverified length beyond what the file actually holds;
//! * a frame is judged anything but intact only on bytes read from the file for that
//!   judgement: the newest segment may be preallocated, so a window read earlier can hold
//!   zeros where the writer has since written records.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;

use crate::error::Corruption;
use crate::format::{
    body_bytes_max, body_index, decode_body, decode_frame_header, BODY_FIXED_BYTES, FRAME_BYTES_MIN, FRAME_HEADER_BYTES,
};
use crate::types::Record;

/// How much a cursor reads at once.
const WINDOW_BYTES: usize = 1024 * 1024;
/// How much a cursor reads when it looks again at a frame its window did not show intact:
/// in a preallocated segment a full window would mostly be zeros read for nothing.
const RECHECK_WINDOW_BYTES: usize = 64 * 1024;
/// How far the search for intact frames looks ahead for a run of zeros to skip.
const ZERO_RUN_LOOK_BYTES: usize = 4096;

/// What lies at an offset of a segment; `R` is what is decoded from an
/// intact body (the whole record, or only its index for a scan).
#[derive(Debug)]
pub(crate) enum Frame<R = Record> {
    /// An intact record and the bytes its frame occupies.
    Record(R, u64),
    /// The file ends exactly here.
    End,
    /// A zero frame header: space preallocated for records not written (yet). The end of
    /// the log if every later byte of the file is zero too (see `zeros_to_end`).
    Unwritten,
    /// The file ends inside a frame whose declared length is plausible.
    Incomplete,
    /// The bytes here cannot be a frame.
    Invalid(Corruption),
}

impl<R> Frame<R> {
    /// The same frame with what was decoded from an intact body passed through `decode`.
    pub(crate) fn map<S>(self, decode: impl FnOnce(R) -> S) -> Frame<S> {
        match self {
            Frame::Record(decoded, frame_bytes) => Frame::Record(decode(decoded), frame_bytes),
            Frame::End => Frame::End,
            Frame::Unwritten => Frame::Unwritten,
            Frame::Incomplete => Frame::Incomplete,
            Frame::Invalid(reason) => Frame::Invalid(reason),
        }
    }
}

/// Positional reads of one segment through a window buffer; works on a file still growing.
#[derive(Debug)]
pub(crate) struct SegmentCursor {
    file: File,
    /// The buffer; zeroed once when it grows, then reused: only its first
    /// `window_bytes` hold what was read at `window_offset`.
    window: Vec<u8>,
    window_bytes: usize,
    window_offset: u64,
}

impl SegmentCursor {
    /// Wraps an open segment file.
    pub(crate) fn new(file: File) -> SegmentCursor {
        SegmentCursor { file, window: Vec::new(), window_bytes: 0, window_offset: 0 }
    }

    /// Up to `length` bytes at `offset`; fewer only where the file ends.
    pub(crate) fn bytes_at(&mut self, offset: u64, length: usize) -> io::Result<&[u8]> {
        let window_end = self.window_offset + self.window_bytes as u64;
        if offset >= self.window_offset && offset + length as u64 <= window_end {
            let start = (offset - self.window_offset) as usize;
            return Ok(&self.window[start..start + length]);
        }
        self.fill(offset, length, WINDOW_BYTES)
    }

    /// Reads the window afresh at `offset`, at least `length` bytes and about `window_bytes`.
    fn fill(&mut self, offset: u64, length: usize, window_bytes: usize) -> io::Result<&[u8]> {
        let file_bytes = self.file_bytes()?;
        let available = file_bytes.saturating_sub(offset);
        let wanted = (length.max(window_bytes) as u64).min(available) as usize;
        if self.window.len() > 4 * WINDOW_BYTES && wanted <= WINDOW_BYTES {
            // A huge record passed; do not keep its memory for the rest of the scan.
            self.window = Vec::new();
        }
        if self.window.len() < wanted {
            self.window.resize(wanted, 0);
        }
        let read = read_at_most(&self.file, &mut self.window[..wanted], offset)?;
        self.window_bytes = read;
        self.window_offset = offset;
        Ok(&self.window[..length.min(read)])
    }

    /// Length of the file now.
    ///
    /// Asked with `lseek` rather than `fstat`: a stat that returns the timestamps marks
    /// them as seen, and the filesystem then gives the segment's next write a new
    /// fine-grained mtime (Linux's multigrain timestamps), which makes the writer's next
    /// `fdatasync` write the inode too. The active reads its newest segment after every
    /// write it replicates, so its log wrote the inode at nearly every sync.
    pub(crate) fn file_bytes(&self) -> io::Result<u64> {
        (&self.file).seek(SeekFrom::End(0))
    }

    /// True if every byte from `offset` to the end of the file is zero (unwritten space).
    pub(crate) fn zeros_to_end(&mut self, offset: u64) -> io::Result<bool> {
        let file_bytes = self.file_bytes()?;
        let mut position = offset;
        while position < file_bytes {
            let length = ((file_bytes - position) as usize).min(WINDOW_BYTES);
            let bytes = self.fill(position, length, length)?;
            if bytes.is_empty() {
                // The file shrank meanwhile: what is left of it was checked.
                return Ok(true);
            }
            if !all_zero(bytes) {
                return Ok(false);
            }
            position += bytes.len() as u64;
        }
        Ok(true)
    }

    /// Reads the frame at `offset`, verifying its length bound and checksum.
    pub(crate) fn read_frame(&mut self, offset: u64, record_bytes_max: u32) -> io::Result<Frame> {
        self.check_frame(offset, record_bytes_max, decode_body)
    }

    /// Verifies the frame at `offset` like [`SegmentCursor::read_frame`] but
    /// returns only the record's index: a scan neither allocates nor copies payloads.
    pub(crate) fn read_frame_index(&mut self, offset: u64, record_bytes_max: u32) -> io::Result<Frame<u64>> {
        self.check_frame(offset, record_bytes_max, body_index)
    }

    /// Checks the frame at `offset` in the window; a frame that is not intact there is looked
    /// at again in bytes read now, since the window may predate a write into preallocated space.
    fn check_frame<R>(
        &mut self,
        offset: u64,
        record_bytes_max: u32,
        decode: impl Fn(&[u8]) -> R,
    ) -> io::Result<Frame<R>> {
        let frame = self.check_frame_in_window(offset, record_bytes_max, &decode)?;
        if matches!(frame, Frame::Record(..)) {
            return Ok(frame);
        }
        self.fill(offset, FRAME_HEADER_BYTES, RECHECK_WINDOW_BYTES)?;
        self.check_frame_in_window(offset, record_bytes_max, &decode)
    }

    fn check_frame_in_window<R>(
        &mut self,
        offset: u64,
        record_bytes_max: u32,
        decode: &impl Fn(&[u8]) -> R,
    ) -> io::Result<Frame<R>> {
        let header = self.bytes_at(offset, FRAME_HEADER_BYTES)?;
        if header.is_empty() {
            return Ok(Frame::End);
        }
        if header.len() < FRAME_HEADER_BYTES {
            return Ok(Frame::Incomplete);
        }
        if header.iter().all(|&byte| byte == 0) {
            return Ok(Frame::Unwritten);
        }
        let header = decode_frame_header(header);
        let plausible = BODY_FIXED_BYTES as u32..=body_bytes_max(record_bytes_max);
        if !plausible.contains(&header.body_bytes) {
            return Ok(Frame::Invalid(Corruption::RecordLengthOutOfBounds { body_bytes: header.body_bytes }));
        }
        let body_offset = offset + FRAME_HEADER_BYTES as u64;
        let body_bytes = header.body_bytes as usize;
        let body = self.bytes_at(body_offset, body_bytes)?;
        if body.len() < body_bytes {
            return Ok(Frame::Incomplete);
        }
        if crc32c::crc32c(body) != header.checksum {
            return Ok(Frame::Invalid(Corruption::ChecksumMismatch));
        }
        let frame_bytes = (FRAME_HEADER_BYTES + body_bytes) as u64;
        Ok(Frame::Record(decode(body), frame_bytes))
    }

    /// Offset of the first intact frame starting in `from..end` whose index is in `indexes`.
    ///
    /// The index filter keeps the search cheap and rules out stale or unrelated bytes; a frame
    /// found here proves that the damage before it is not an unfinished final write.
    pub(crate) fn find_intact_frame(
        &mut self,
        from: u64,
        end: u64,
        indexes: RangeInclusive<u64>,
        record_bytes_max: u32,
    ) -> io::Result<Option<u64>> {
        let probe_bytes = FRAME_HEADER_BYTES + 8;
        let plausible = BODY_FIXED_BYTES as u32..=body_bytes_max(record_bytes_max);
        let mut offset = from;
        while offset + FRAME_BYTES_MIN as u64 <= end {
            // No frame starts at four zero bytes (a body is at least BODY_FIXED_BYTES long):
            // step over runs of zeros, such as preallocated space after a torn write.
            let look = self.bytes_at(offset, ZERO_RUN_LOOK_BYTES.min((end - offset) as usize))?;
            let zeros = look.iter().take_while(|&&byte| byte == 0).count();
            if zeros >= 4 {
                offset += (zeros - 3) as u64;
                continue;
            }
            let probe = self.bytes_at(offset, probe_bytes)?;
            if probe.len() < probe_bytes {
                return Ok(None);
            }
            let header = decode_frame_header(probe);
            let fits = offset + (FRAME_HEADER_BYTES as u64) + u64::from(header.body_bytes) <= end;
            let candidate = plausible.contains(&header.body_bytes)
                && fits
                && indexes.contains(&body_index(&probe[FRAME_HEADER_BYTES..]));
            if candidate {
                if let Frame::Record(..) = self.read_frame_index(offset, record_bytes_max)? {
                    return Ok(Some(offset));
                }
            }
            offset += 1;
        }
        Ok(None)
    }
}

/// Whether every byte is zero. ORs fixed-size chunks (which the compiler vectorises) rather
/// than testing byte by byte: recovery checks up to a whole preallocated segment this way.
fn all_zero(bytes: &[u8]) -> bool {
    bytes.chunks(4096).all(|chunk| chunk.iter().fold(0u8, |folded, &byte| folded | byte) == 0)
}

/// Fills `buffer` from `offset` until it is full or the file ends; returns the bytes read.
fn read_at_most(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
