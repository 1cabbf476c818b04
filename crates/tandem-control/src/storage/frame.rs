//! CRC-framed records, the unit of every control-plane file.
//!
//! A record is `length: u32 LE | crc32c(payload): u32 LE | payload`, where the payload
//! is a postcard encoding. A reader distinguishes a *torn tail* (the file ends inside a
//! record: a crash during an append, safe to cut off because the append was never
//! acknowledged) from *corruption* (a complete record whose checksum does not match:
//! refused, never loaded).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The header in front of every record: length and checksum.
pub const HEADER_BYTES: usize = 8;
/// The largest record accepted from disk; bigger lengths mean corruption.
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Encodes `value` as one framed record.
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let payload = postcard::to_allocvec(value).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    assert!(payload.len() <= RECORD_BYTES_MAX, "record of {} bytes is over the limit", payload.len());
    let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// What reading one record at an offset found.
pub enum Decoded<T> {
    /// A whole, verified record and the offset just after it.
    Record(T, usize),
    /// The bytes end inside a record (or exactly at the end: nothing more).
    TornTail,
}

/// Decodes the record starting at `offset`; a checksum or decoding failure is an error.
pub fn decode_at<T: DeserializeOwned>(bytes: &[u8], offset: usize) -> io::Result<Decoded<T>> {
    let rest = &bytes[offset..];
    if rest.len() < HEADER_BYTES {
        return Ok(Decoded::TornTail);
    }
    let length = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let checksum = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if length > RECORD_BYTES_MAX {
        return Err(corrupt(format!("record at offset {offset} claims {length} bytes")));
    }
    if rest.len() < HEADER_BYTES + length {
        return Ok(Decoded::TornTail);
    }
    let payload = &rest[HEADER_BYTES..HEADER_BYTES + length];
    if crc32c::crc32c(payload) != checksum {
        return Err(corrupt(format!("record at offset {offset} fails its checksum")));
    }
    let value =
        postcard::from_bytes(payload).map_err(|error| corrupt(format!("record at offset {offset}: {error}")))?;
    Ok(Decoded::Record(value, offset + HEADER_BYTES + length))
}

fn corrupt(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Replaces `path` with one record holding `value`, durably: write a temporary file,
/// fsync it, rename it over `path`, fsync the directory. A reader sees the old or the
/// new value, never a mix; when this returns the new value survives a power loss.
pub fn write_file_atomically<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let record = encode(value)?;
    let temporary = path.with_extension("tmp");
    {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temporary)?;
        file.write_all(&record)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, path)?;
    sync_directory(path.parent().expect("a file path has a parent"))
}

/// Reads a file written by [`write_file_atomically`]; `None` if it does not exist.
pub fn read_file<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    match decode_at(&bytes, 0) {
        Ok(Decoded::Record(value, end)) if end == bytes.len() => Ok(Some(value)),
        Ok(_) => Err(corrupt(format!("{} is truncated or has trailing bytes", path.display()))),
        Err(error) => Err(io::Error::new(error.kind(), format!("{}: {error}", path.display()))),
    }
}

/// Makes a rename or file creation in `directory` durable.
pub fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_and_corruption_are_told_apart() {
        let record = encode(&(7u64, "seven".to_string())).unwrap();
        for cut in 0..record.len() {
            assert!(matches!(decode_at::<(u64, String)>(&record[..cut], 0), Ok(Decoded::TornTail)));
        }
        let mut flipped = record.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode_at::<(u64, String)>(&flipped, 0).is_err());
        match decode_at::<(u64, String)>(&record, 0).unwrap() {
            Decoded::Record(value, end) => assert_eq!((value, end), ((7, "seven".into()), record.len())),
            Decoded::TornTail => panic!("a whole record reads back"),
        }
    }
}
