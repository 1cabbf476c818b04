//! Archived segment files: the log's own segment format (`crates/tandem-log/FORMAT.md`:
//! a 28-byte header naming the first index, then `body_len | crc32c(body) | body` frames),
//! so that restore can hand them to the log unchanged. This module encodes and checks
//! them; it is pure (bytes in, records or the first problem out).
//!
//! Invariants:
//! * a parse returns only records whose checksum matched, with contiguous indexes
//!   starting at the header's first index; it stops at the first problem and says where.

use std::ops::Range;

use tandem_log::Record;

const MAGIC: [u8; 8] = *b"TNDMLOG\0";
const FORMAT_VERSION: u16 = 1;
/// Bytes of a segment header.
pub const HEADER_BYTES: usize = 28;
const FRAME_HEADER_BYTES: usize = 8;
const BODY_FIXED_BYTES: usize = 28;

/// The file name of the archived segment whose records run from `first` to `last`.
pub fn file_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}.log")
}

/// The log's name for a segment starting at `first` (20 digits, `.log`).
pub fn log_file_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// A segment header for a file whose first record is `first_index`.
pub fn encode_header(first_index: u64) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    let checksum = crc32c::crc32c(&header[0..24]);
    header[24..28].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// Appends `record` as one frame, exactly as the log writes it; returns the body's CRC32C.
pub fn encode_frame(buffer: &mut Vec<u8>, record: &Record) -> u32 {
    let body_bytes = (BODY_FIXED_BYTES + record.payload.len()) as u32;
    let start = buffer.len() + FRAME_HEADER_BYTES;
    buffer.extend_from_slice(&body_bytes.to_le_bytes());
    buffer.extend_from_slice(&[0u8; 4]);
    buffer.extend_from_slice(&record.index.0.to_le_bytes());
    buffer.extend_from_slice(&record.epoch.0.to_le_bytes());
    buffer.extend_from_slice(&record.hlc.to_le_bytes());
    buffer.extend_from_slice(&record.origin.0.to_le_bytes());
    buffer.extend_from_slice(&record.payload);
    let checksum = crc32c::crc32c(&buffer[start..]);
    buffer[start - 4..start].copy_from_slice(&checksum.to_le_bytes());
    checksum
}

/// One intact record found in a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its index.
    pub index: u64,
    /// The epoch it was written in.
    pub epoch: u64,
    /// Its timestamp, Unix ms (the log's `hlc` field).
    pub time_unix_ms: u64,
    /// CRC32C of its body.
    pub body_crc32c: u32,
    /// Where the whole frame lies in the file.
    pub bytes: Range<usize>,
}

/// What a segment file holds up to its first problem.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// The first index the header states (0 if the header is bad).
    pub first_index: u64,
    /// The intact records, in order.
    pub frames: Vec<Frame>,
    /// The first problem, with its byte offset; `None` if the whole file is intact.
    pub problem: Option<(u64, String)>,
}

/// Checks a whole segment file: header, every frame's length and checksum, contiguous indexes.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    match decode_header(bytes) {
        Ok(first) => parsed.first_index = first,
        Err(problem) => {
            parsed.problem = Some((0, problem));
            return parsed;
        }
    }
    let mut offset = HEADER_BYTES;
    let mut expected = parsed.first_index;
    while offset < bytes.len() {
        match decode_frame(bytes, offset, expected) {
            Ok(frame) => {
                offset = frame.bytes.end;
                expected += 1;
                parsed.frames.push(frame);
            }
            Err(problem) => {
                parsed.problem = Some((offset as u64, problem));
                break;
            }
        }
    }
    parsed
}

fn decode_header(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("header cut short ({} bytes)", bytes.len()));
    }
    if bytes[0..8] != MAGIC {
        return Err("not a log segment (bad magic)".into());
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(format!("segment format version {version}"));
    }
    if crc32c::crc32c(&bytes[0..24]) != u32_at(bytes, 24) {
        return Err("header checksum mismatch".into());
    }
    Ok(u64_at(bytes, 16))
}

fn decode_frame(bytes: &[u8], offset: usize, expected: u64) -> Result<Frame, String> {
    if bytes.len() - offset < FRAME_HEADER_BYTES {
        return Err("record cut short (truncated file)".into());
    }
    let body_bytes = u32_at(bytes, offset) as usize;
    let stored = u32_at(bytes, offset + 4);
    let body_start = offset + FRAME_HEADER_BYTES;
    if body_bytes < BODY_FIXED_BYTES {
        return Err(format!("impossible record length {body_bytes}"));
    }
    if bytes.len() - body_start < body_bytes {
        return Err("record cut short (truncated file)".into());
    }
    let body = &bytes[body_start..body_start + body_bytes];
    if crc32c::crc32c(body) != stored {
        return Err("record checksum mismatch".into());
    }
    let index = u64_at(body, 0);
    if index != expected {
        return Err(format!("record index {index} where {expected} was expected"));
    }
    Ok(Frame {
        index,
        epoch: u64_at(body, 8),
        time_unix_ms: u64_at(body, 16),
        body_crc32c: stored,
        bytes: offset..body_start + body_bytes,
    })
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tandem_log::{Epoch, LogIndex, NodeId};

    fn file(first: u64, count: u64) -> Vec<u8> {
        let mut bytes = encode_header(first).to_vec();
        for index in first..first + count {
            let record = Record {
                index: LogIndex(index),
                epoch: Epoch(1),
                hlc: 1000 + index,
                origin: NodeId(1),
                payload: Bytes::from_static(b"abc"),
            };
            encode_frame(&mut bytes, &record);
        }
        bytes
    }

    #[test]
    fn parses_intact_files_and_stops_at_damage() {
        let bytes = file(5, 3);
        let parsed = parse(&bytes);
        assert_eq!(parsed.problem, None);
        assert_eq!(parsed.frames.iter().map(|frame| frame.index).collect::<Vec<_>>(), vec![5, 6, 7]);
        assert_eq!(parsed.frames[2].time_unix_ms, 1007);
        let truncated = parse(&bytes[..bytes.len() - 2]);
        assert_eq!(truncated.frames.len(), 2);
        assert!(truncated.problem.unwrap().1.contains("cut short"));
        let mut flipped = bytes.clone();
        let second = parsed.frames[1].bytes.start + 20;
        flipped[second] ^= 1;
        let damaged = parse(&flipped);
        assert_eq!(damaged.frames.len(), 1);
        assert!(damaged.problem.unwrap().1.contains("checksum"));
    }
}
