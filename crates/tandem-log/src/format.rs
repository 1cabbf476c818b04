//! On-disk encoding of segment headers and record frames (pure; FORMAT.md is the spec).
//!
//! Invariants:
//! * every integer is little-endian;
//! * a frame is `body_bytes u32 | crc32c(body) u32 | body`, and a body is at least
//!   `BODY_FIXED_BYTES` long;
//! * a segment header is `SEGMENT_HEADER_BYTES` long and checksummed.

use bytes::Bytes;

use crate::error::Corruption;
use crate::types::{Epoch, LogIndex, NodeId, Record};

/// First eight bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"TNDMLOG\0";
/// The segment format this build writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// magic 8 | version 2 | reserved 6 | first_index 8 | crc32c 4.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 28;
/// body_bytes 4 | crc32c 4.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;
/// index 8 | epoch 8 | hlc 8 | origin 4, before the payload.
pub(crate) const BODY_FIXED_BYTES: usize = 28;
/// The smallest possible frame: a header and a body with an empty payload.
pub(crate) const FRAME_BYTES_MIN: usize = FRAME_HEADER_BYTES + BODY_FIXED_BYTES;
/// Suffix of a segment file name.
pub(crate) const SEGMENT_SUFFIX: &str = ".log";
/// Suffix of a segment being created; such a file is never part of the log.
pub(crate) const TEMPORARY_SUFFIX: &str = ".log.tmp";
/// Digits of the first index in a segment file name.
const SEGMENT_NAME_DIGITS: usize = 20;

/// Encodes the header of a segment whose first record has `first_index`.
pub(crate) fn encode_segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    let checksum = crc32c::crc32c(&header[0..24]);
    header[24..28].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// Decodes a segment header, returning the segment's first index.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<u64, Corruption> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(Corruption::HeaderTooShort);
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(Corruption::BadMagic);
    }
    // The version comes before the checksum: a later format may lay its header out differently.
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(Corruption::UnsupportedVersion(version));
    }
    let checksum = u32_at(bytes, 24);
    if crc32c::crc32c(&bytes[0..24]) != checksum {
        return Err(Corruption::HeaderChecksumMismatch);
    }
    if bytes[10..16].iter().any(|&byte| byte != 0) {
        return Err(Corruption::ReservedBytesNotZero);
    }
    Ok(u64_at(bytes, 16))
}

/// The file name of the segment whose first record has `first_index`.
pub(crate) fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_NAME_DIGITS)
}

/// The first index a segment file name encodes, or None for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    let well_formed = digits.len() == SEGMENT_NAME_DIGITS && digits.bytes().all(|byte| byte.is_ascii_digit());
    if !well_formed {
        return None;
    }
    digits.parse().ok()
}

/// Largest body a frame may declare under a payload limit.
pub(crate) fn body_bytes_max(record_bytes_max: u32) -> u32 {
    // LogOptions::validate keeps record_bytes_max low enough for this not to overflow.
    record_bytes_max + BODY_FIXED_BYTES as u32
}

/// Appends the header and fixed body fields of a frame; returns its start for `finish_frame`.
pub(crate) fn begin_frame(buffer: &mut Vec<u8>, index: LogIndex, epoch: Epoch, hlc: u64, origin: NodeId) -> usize {
    let start = buffer.len();
    // Length and checksum are filled in once the payload is known.
    buffer.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    buffer.extend_from_slice(&index.0.to_le_bytes());
    buffer.extend_from_slice(&epoch.0.to_le_bytes());
    buffer.extend_from_slice(&hlc.to_le_bytes());
    buffer.extend_from_slice(&origin.0.to_le_bytes());
    start
}

/// Fills in length and checksum of the frame that starts at `start` and ends at the buffer's end.
pub(crate) fn finish_frame(buffer: &mut [u8], start: usize) {
    let body = &buffer[start + FRAME_HEADER_BYTES..];
    assert!(body.len() >= BODY_FIXED_BYTES, "frame body lost its fixed fields");
    let body_bytes = u32::try_from(body.len()).expect("frame body longer than u32::MAX");
    let checksum = crc32c::crc32c(body);
    buffer[start..start + 4].copy_from_slice(&body_bytes.to_le_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
}

/// Encodes one whole frame (for tests; the writer encodes in place with begin/finish).
#[cfg(test)]
pub(crate) fn encode_frame(index: LogIndex, epoch: Epoch, hlc: u64, origin: NodeId, payload: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(FRAME_BYTES_MIN + payload.len());
    let start = begin_frame(&mut buffer, index, epoch, hlc, origin);
    buffer.extend_from_slice(payload);
    finish_frame(&mut buffer, start);
    buffer
}

/// The two fields in front of every body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Length of the body that follows.
    pub body_bytes: u32,
    /// crc32c of that body.
    pub checksum: u32,
}

/// Decodes a frame header from its first `FRAME_HEADER_BYTES` bytes.
pub(crate) fn decode_frame_header(bytes: &[u8]) -> FrameHeader {
    FrameHeader { body_bytes: u32_at(bytes, 0), checksum: u32_at(bytes, 4) }
}

/// The index field of a body, readable before the checksum is verified (to filter candidates).
pub(crate) fn body_index(body: &[u8]) -> u64 {
    u64_at(body, 0)
}

/// Decodes a body whose checksum has been verified.
pub(crate) fn decode_body(body: &[u8]) -> Record {
    assert!(body.len() >= BODY_FIXED_BYTES, "decode_body on a short body");
    Record {
        index: LogIndex(u64_at(body, 0)),
        epoch: Epoch(u64_at(body, 8)),
        hlc: u64_at(body, 16),
        origin: NodeId(u32_at(body, 24)),
        payload: Bytes::copy_from_slice(&body[BODY_FIXED_BYTES..]),
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(field)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_roundtrips_and_rejects_damage() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header), Ok(42));
        for position in 0..SEGMENT_HEADER_BYTES {
            let mut damaged = header;
            damaged[position] ^= 0x10;
            assert!(decode_segment_header(&damaged).is_err(), "byte {position}");
        }
        assert_eq!(decode_segment_header(&header[..27]), Err(Corruption::HeaderTooShort));
    }

    #[test]
    fn segment_names_roundtrip_and_reject_other_files() {
        let name = segment_file_name(7);
        assert_eq!(name, "00000000000000000007.log");
        assert_eq!(parse_segment_file_name(&name), Some(7));
        for other in ["LOCK", "7.log", "00000000000000000007.log.tmp", "0000000000000000000x.log"] {
            assert_eq!(parse_segment_file_name(other), None, "{other}");
        }
        assert_eq!(parse_segment_file_name(&segment_file_name(u64::MAX)), Some(u64::MAX));
    }

    #[test]
    fn frame_roundtrips() {
        let frame = encode_frame(LogIndex(9), Epoch(3), 77, NodeId(2), b"payload");
        let header = decode_frame_header(&frame);
        assert_eq!(header.body_bytes as usize, frame.len() - FRAME_HEADER_BYTES);
        let body = &frame[FRAME_HEADER_BYTES..];
        assert_eq!(header.checksum, crc32c::crc32c(body));
        assert_eq!(body_index(body), 9);
        let record = decode_body(body);
        assert_eq!(record.index, LogIndex(9));
        assert_eq!(record.epoch, Epoch(3));
        assert_eq!(record.hlc, 77);
        assert_eq!(record.origin, NodeId(2));
        assert_eq!(&record.payload[..], b"payload");
    }
}
