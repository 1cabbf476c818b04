//! The checkpoint file format (spec: `docs/checkpoint-format.md`): a
//! versioned header, bucket records in CRC32C-checked chunks, and a footer
//! with counts and a whole-file CRC32C.
//!
//! Invariants:
//! * a reader returns a bucket only from a chunk whose checksum matched, and
//!   declares a file good only after the footer's counts and whole-file
//!   checksum matched and nothing follows the footer;
//! * every key read back lies in the bucket it is recorded under (asserted
//!   as a check, not trusted), buckets come in ascending order, and no
//!   aggregate is empty — so a restored keyspace keeps its own invariants.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::buckets::{bucket_among, BUCKET_COUNT};
use crate::store::value::{Blob, HashValue, Key, ListValue, SetValue, SortedSet};
use crate::store::{Bucket, Entry, Value};

/// First bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"TNDMCKPT";
/// The format version this build writes. Version 2 leaves empty buckets out
/// of full checkpoints; version 1 files, which recorded them, are still read.
/// A file written with fewer buckets than this build is read by splitting
/// each of its buckets into the buckets of this build that cover it.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this build reads.
pub const FORMAT_VERSION_OLDEST: u16 = 1;
/// A chunk is closed once its payload reaches this size (a bucket is never split).
pub const CHUNK_TARGET_BYTES: usize = 1024 * 1024;
/// Bytes the writer hands the kernel in one `write` call, yielding the CPU
/// after each (`sched_yield`).
///
/// Why: a client request that wakes the event loop on the CPU where the
/// writer is copying bytes into the page cache waited for that CPU until the
/// scheduler's next tick (4 ms here: the writer's time slice is protected,
/// and this kernel does not preempt inside a system call; traced with
/// `perf record -e sched:sched_switch`). With 1 MiB writes and no yield, 19
/// of 120 cuts at 1M keys kept a client waiting over 1 ms; with 128 KiB
/// writes and a yield after each, 3 of 120 (README, *Checkpoints*). Neither
/// alone helped. A yield with nothing else runnable returns at once.
///
/// A yield also makes the writer less urgent to the scheduler for about a
/// time slice, so on a CPU kept busy by others each one can cost a slice
/// (1M keys beside two CPU spinners: 12 s instead of 1.7 s when it always
/// yielded). So it yields only while the yields so far took at most as long
/// as everything else it did ([`may_yield`]): politeness at most doubles a
/// checkpoint's time (beside the spinners: 1.9–2.2 s; the cuts over 1 ms at
/// 1M keys: 6 of 140 against 12 of 140 without yields, 7 of 200 always
/// yielding).
const WRITE_SLICE_BYTES: usize = 128 * 1024;

/// Whether the writer yields after its next slice: only while the time it spent
/// yielding (`yielded`) is at most the rest of the `elapsed` time since it started.
fn may_yield(yielded: Duration, elapsed: Duration) -> bool {
    yielded * 2 <= elapsed
}

/// Largest header accepted when reading (it holds the applied vector and channel state).
pub const HEADER_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// While writing, each time this many more bytes were written the writer starts their
/// writeback and waits for the previous stretch's, so that dirty pages never pile up: a
/// pile would make the kernel throttle every writer, the log writer included (Redis's
/// `rdb-save-incremental-fsync` has the same aim). The stretches go to disk with
/// `sync_file_range`, without a journal commit each (see `FileWriter::write_back`).
pub const SYNC_EVERY_BYTES: u64 = 8 * 1024 * 1024;
/// Largest chunk payload accepted when reading: one bucket may hold a few huge values.
pub const CHUNK_BYTES_MAX: u32 = u32::MAX - 1;

const CHUNK_TAG: u8 = b'C';
const FOOTER_TAG: u8 = b'F';
/// magic, version, reserved, header length.
const PREFIX_BYTES: usize = 8 + 2 + 2 + 4;
/// tag, chunk count, bucket count, key count, file checksum.
const FOOTER_BYTES: usize = 1 + 8 + 8 + 8 + 4;

/// Which level a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Every bucket holding a key.
    Full,
    /// The buckets changed since the base checkpoint, each whole.
    Incremental,
}

impl Kind {
    /// The word used in file names and replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
        }
    }
}

/// The messages recorded on one incoming replication channel during a
/// cluster checkpoint (Chandy–Lamport channel state). Empty for local checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// The node the channel comes from.
    pub from_node: u32,
    /// The encoded log records that arrived before that channel's marker.
    pub records: Vec<Vec<u8>>,
}

/// The header of a checkpoint file (postcard-encoded after a fixed prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The checkpoint's id: unique and increasing within a data directory.
    pub id: u64,
    /// Full or incremental.
    pub kind: Kind,
    /// The node that wrote it; another node's file is refused.
    pub node: u32,
    /// The epoch at the cut.
    pub epoch: u64,
    /// The state is exactly the effect of log records `1..=log_index`.
    pub log_index: u64,
    /// For an incremental: the checkpoint it applies on top of.
    pub base_id: Option<u64>,
    /// When the cut was taken, Unix milliseconds.
    pub created_unix_ms: u64,
    /// The writer's bucket count; buckets mean nothing under another count.
    pub bucket_total: u32,
    /// Keys in the whole state at the cut (after applying this file, for an incremental).
    pub key_count: u64,
    /// Per origin node, the last index applied (active-active); empty for now.
    pub applied: Vec<(u32, u64)>,
    /// Channel state of a cluster checkpoint; empty for now.
    pub channels: Vec<ChannelState>,
}

/// Why a checkpoint file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A system call failed.
    #[error("checkpoint I/O failed: {operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not a complete, intact checkpoint.
    #[error("checkpoint {} is corrupt or incomplete: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte offset where known.
        detail: String,
    },
}

impl FormatError {
    pub(crate) fn io(operation: &'static str, path: &Path, source: io::Error) -> FormatError {
        FormatError::Io { operation, path: path.to_path_buf(), source }
    }

    fn corrupt(path: &Path, detail: impl Into<String>) -> FormatError {
        FormatError::Corrupt { path: path.to_path_buf(), detail: detail.into() }
    }
}

/// Counts a finished file reports (and its footer holds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Chunks in the body.
    pub chunks: u64,
    /// Bucket records in the body.
    pub buckets: u64,
    /// Keys in the body.
    pub keys: u64,
    /// Bytes of the whole file.
    pub bytes: u64,
}

/// Writes one checkpoint file body to an open file, chunk by chunk.
pub struct FileWriter {
    out: BufWriter<File>,
    path: PathBuf,
    checksum: u32,
    chunk: Vec<u8>,
    chunk_buckets: u32,
    totals: Totals,
    /// When the file was started, and how long the writer has spent yielding since
    /// (see [`WRITE_SLICE_BYTES`]).
    started: Instant,
    yielded: Duration,
    /// Bytes whose writeback was started (`write_back`).
    writeback_started_to: u64,
    /// Where the stretch whose writeback started last begins.
    writing_back_from: u64,
}

impl FileWriter {
    /// Starts a file: writes the prefix and the header.
    pub fn start(file: File, path: &Path, header: &Header) -> Result<FileWriter, FormatError> {
        FileWriter::start_version(file, path, header, FORMAT_VERSION)
    }

    /// Starts a file stating format `version` (tests write older versions' files).
    fn start_version(file: File, path: &Path, header: &Header, version: u16) -> Result<FileWriter, FormatError> {
        let mut writer = FileWriter {
            out: BufWriter::with_capacity(WRITE_SLICE_BYTES, file),
            path: path.to_path_buf(),
            checksum: 0,
            chunk: Vec::with_capacity(CHUNK_TARGET_BYTES + 64 * 1024),
            chunk_buckets: 0,
            totals: Totals::default(),
            started: Instant::now(),
            yielded: Duration::ZERO,
            writeback_started_to: 0,
            writing_back_from: 0,
        };
        let encoded = postcard::to_stdvec(header).expect("the header always serializes");
        let mut prefix = Vec::with_capacity(PREFIX_BYTES + encoded.len());
        prefix.extend_from_slice(&MAGIC);
        prefix.extend_from_slice(&version.to_le_bytes());
        prefix.extend_from_slice(&0u16.to_le_bytes());
        prefix.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        prefix.extend_from_slice(&encoded);
        let header_checksum = crc32c::crc32c(&prefix);
        writer.write(&prefix)?;
        writer.write(&header_checksum.to_le_bytes())?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        let checksum = crc32c::crc32c(bytes);
        self.write_checksummed(bytes, checksum)
    }

    /// Writes `bytes` whose CRC32C the caller already has: the whole-file checksum takes it
    /// in by combination, without a second pass over the bytes.
    fn write_checksummed(&mut self, bytes: &[u8], checksum: u32) -> Result<(), FormatError> {
        self.checksum = crc32c::crc32c_combine(self.checksum, checksum, bytes.len());
        self.totals.bytes += bytes.len() as u64;
        for slice in bytes.chunks(WRITE_SLICE_BYTES) {
            self.out.write_all(slice).map_err(|error| FormatError::io("write", &self.path, error))?;
            if may_yield(self.yielded, self.started.elapsed()) {
                // See `WRITE_SLICE_BYTES`.
                let yielding = Instant::now();
                std::thread::yield_now();
                self.yielded += yielding.elapsed();
            }
        }
        Ok(())
    }

    /// Adds one bucket record; closes the chunk when it is large enough.
    pub fn bucket(&mut self, index: u32, bucket: &Bucket) -> Result<(), FormatError> {
        encode_bucket(index, bucket, &mut self.chunk);
        self.chunk_buckets += 1;
        self.totals.buckets += 1;
        self.totals.keys += bucket.len() as u64;
        if self.chunk.len() >= CHUNK_TARGET_BYTES {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<(), FormatError> {
        if self.chunk_buckets == 0 {
            return Ok(());
        }
        assert!(self.chunk.len() <= CHUNK_BYTES_MAX as usize, "a bucket larger than a chunk may be");
        let mut frame = [0u8; 13];
        frame[0] = CHUNK_TAG;
        frame[1..5].copy_from_slice(&(self.chunk.len() as u32).to_le_bytes());
        frame[5..9].copy_from_slice(&self.chunk_buckets.to_le_bytes());
        let chunk_checksum = crc32c::crc32c(&self.chunk);
        frame[9..13].copy_from_slice(&chunk_checksum.to_le_bytes());
        self.write(&frame)?;
        let chunk = std::mem::take(&mut self.chunk);
        let written = self.write_checksummed(&chunk, chunk_checksum);
        self.chunk = chunk;
        self.chunk.clear();
        self.chunk_buckets = 0;
        self.totals.chunks += 1;
        written?;
        if self.totals.bytes - self.writeback_started_to >= SYNC_EVERY_BYTES {
            self.out.flush().map_err(|error| FormatError::io("write", &self.path, error))?;
            self.write_back()?;
        }
        Ok(())
    }

    /// Waits until the previous stretch is on disk and starts the writeback of the one
    /// written since, with `sync_file_range`: data only, no journal commit. An `fdatasync`
    /// here (as before) committed the filesystem journal every few megabytes, and each
    /// commit held up the log's appends (client writes) for milliseconds. The file is
    /// still fsynced whole before its rename; this only keeps the dirty pages few.
    fn write_back(&mut self) -> Result<(), FormatError> {
        use std::os::fd::AsRawFd;
        let fd = self.out.get_ref().as_raw_fd();
        let previous = (self.writing_back_from, self.writeback_started_to - self.writing_back_from);
        let started = (self.writeback_started_to, self.totals.bytes - self.writeback_started_to);
        let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        for ((offset, length), flags) in [(previous, wait), (started, libc::SYNC_FILE_RANGE_WRITE)] {
            if length == 0 {
                continue;
            }
            // SAFETY: `fd` is this writer's open file; sync_file_range reads no memory of ours.
            let result = unsafe { libc::sync_file_range(fd, offset as i64, length as i64, flags) };
            if result != 0 {
                return Err(FormatError::io("sync_file_range", &self.path, io::Error::last_os_error()));
            }
        }
        self.writing_back_from = self.writeback_started_to;
        self.writeback_started_to = self.totals.bytes;
        Ok(())
    }

    /// Writes the last chunk and the footer, and flushes; returns the file
    /// (for the caller to fsync) and the totals.
    pub fn finish(mut self) -> Result<(File, Totals), FormatError> {
        self.flush_chunk()?;
        let mut footer = Vec::with_capacity(FOOTER_BYTES);
        footer.push(FOOTER_TAG);
        footer.extend_from_slice(&self.totals.chunks.to_le_bytes());
        footer.extend_from_slice(&self.totals.buckets.to_le_bytes());
        footer.extend_from_slice(&self.totals.keys.to_le_bytes());
        self.write(&footer)?;
        let checksum = self.checksum;
        self.write(&checksum.to_le_bytes())?;
        let totals = self.totals;
        let path = self.path.clone();
        let file = self.out.into_inner().map_err(|error| FormatError::io("write", &path, error.into_error()))?;
        Ok((file, totals))
    }
}

/// A chunk read from a file, checksum verified, not yet decoded.
pub struct RawChunk {
    /// Bucket records in the payload.
    pub bucket_count: u32,
    /// How many buckets the file's writer had: the numbering of its records.
    pub bucket_total: u32,
    /// The payload.
    pub payload: Vec<u8>,
    /// Byte offset of the chunk in the file (for messages).
    pub offset: u64,
}

/// Reads a checkpoint file: header first, then chunks, then the footer.
pub struct FileReader {
    input: BufReader<File>,
    path: PathBuf,
    checksum: u32,
    offset: u64,
    file_bytes: u64,
    totals: Totals,
    header: Header,
    finished: bool,
}

impl FileReader {
    /// Opens a file and reads and checks its header.
    pub fn open(path: &Path) -> Result<FileReader, FormatError> {
        let file = File::open(path).map_err(|error| FormatError::io("open", path, error))?;
        let file_bytes = file.metadata().map_err(|error| FormatError::io("stat", path, error))?.len();
        let mut input = BufReader::with_capacity(CHUNK_TARGET_BYTES + 64 * 1024, file);
        let mut prefix = [0u8; PREFIX_BYTES];
        read_exact(&mut input, &mut prefix, path, 0, "header")?;
        if prefix[..8] != MAGIC {
            return Err(FormatError::corrupt(path, "not a tandem checkpoint (bad magic)"));
        }
        let version = u16::from_le_bytes([prefix[8], prefix[9]]);
        if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::corrupt(
                path,
                format!(
                    "format version {version}, this build reads versions {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION}"
                ),
            ));
        }
        let header_bytes = u32::from_le_bytes(prefix[12..16].try_into().expect("4 bytes"));
        if header_bytes > HEADER_BYTES_MAX || header_bytes as u64 + PREFIX_BYTES as u64 + 4 > file_bytes {
            return Err(FormatError::corrupt(path, format!("impossible header length {header_bytes}")));
        }
        let mut encoded = vec![0u8; header_bytes as usize + 4];
        read_exact(&mut input, &mut encoded, path, PREFIX_BYTES as u64, "header")?;
        let (encoded, stored) = encoded.split_at(header_bytes as usize);
        let mut checksum = crc32c::crc32c_append(crc32c::crc32c(&prefix), encoded);
        if checksum != u32::from_le_bytes(stored.try_into().expect("4 bytes")) {
            return Err(FormatError::corrupt(path, "header checksum mismatch"));
        }
        let header: Header = postcard::from_bytes(encoded)
            .map_err(|error| FormatError::corrupt(path, format!("header does not decode: {error}")))?;
        let total = header.bucket_total as usize;
        if !total.is_power_of_two() || total > BUCKET_COUNT {
            return Err(FormatError::corrupt(
                path,
                format!("written with {total} buckets; this build reads a power of two up to {BUCKET_COUNT}"),
            ));
        }
        checksum = crc32c::crc32c_append(checksum, stored);
        let offset = (PREFIX_BYTES + encoded.len() + 4) as u64;
        Ok(FileReader {
            input,
            path: path.to_path_buf(),
            checksum,
            offset,
            file_bytes,
            totals: Totals::default(),
            header,
            finished: false,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file's size in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Bytes consumed so far (for progress).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next chunk, checksum verified; `None` after a verified footer.
    pub fn next_chunk(&mut self) -> Result<Option<RawChunk>, FormatError> {
        self.next_chunk_into(Vec::new())
    }

    /// [`FileReader::next_chunk`], reading the payload into `buffer` (a
    /// consumed chunk's, handed back): a restore then reuses a few buffers
    /// instead of allocating, zeroing and page-faulting a fresh one per chunk.
    pub fn next_chunk_into(&mut self, buffer: Vec<u8>) -> Result<Option<RawChunk>, FormatError> {
        if self.finished {
            return Ok(None);
        }
        let offset = self.offset;
        let mut tag = [0u8; 1];
        self.read(&mut tag, "chunk or footer")?;
        match tag[0] {
            CHUNK_TAG => self.read_chunk(offset, buffer).map(Some),
            FOOTER_TAG => {
                self.read_footer(offset)?;
                Ok(None)
            }
            other => Err(FormatError::corrupt(&self.path, format!("unknown frame tag {other:#04x} at byte {offset}"))),
        }
    }

    fn read(&mut self, buffer: &mut [u8], what: &str) -> Result<(), FormatError> {
        read_exact(&mut self.input, buffer, &self.path, self.offset, what)?;
        self.checksum = crc32c::crc32c_append(self.checksum, buffer);
        self.offset += buffer.len() as u64;
        Ok(())
    }

    fn read_chunk(&mut self, offset: u64, mut payload: Vec<u8>) -> Result<RawChunk, FormatError> {
        let mut frame = [0u8; 12];
        self.read(&mut frame, "chunk header")?;
        let payload_bytes = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes"));
        let bucket_count = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
        let stored = u32::from_le_bytes(frame[8..12].try_into().expect("4 bytes"));
        if payload_bytes as u64 > self.file_bytes.saturating_sub(self.offset) || bucket_count > self.header.bucket_total
        {
            return Err(FormatError::corrupt(
                &self.path,
                format!("chunk at byte {offset} claims {payload_bytes} bytes and {bucket_count} buckets"),
            ));
        }
        payload.clear();
        payload.reserve_exact(payload_bytes as usize);
        // Reads into the spare capacity without zeroing it first.
        let read = (&mut self.input)
            .take(payload_bytes as u64)
            .read_to_end(&mut payload)
            .map_err(|error| FormatError::io("read", &self.path, error))?;
        if read != payload_bytes as usize {
            return Err(FormatError::corrupt(
                &self.path,
                format!("file ends inside the chunk at byte {}", self.offset),
            ));
        }
        self.offset += payload.len() as u64;
        // One pass over the payload: its checksum also goes into the whole-file one.
        let checksum = crc32c::crc32c(&payload);
        if checksum != stored {
            return Err(FormatError::corrupt(&self.path, format!("chunk at byte {offset}: checksum mismatch")));
        }
        self.checksum = crc32c::crc32c_combine(self.checksum, checksum, payload.len());
        self.totals.chunks += 1;
        self.totals.buckets += bucket_count as u64;
        Ok(RawChunk { bucket_count, bucket_total: self.header.bucket_total, payload, offset })
    }

    fn read_footer(&mut self, offset: u64) -> Result<(), FormatError> {
        let mut counts = [0u8; 24];
        self.read(&mut counts, "footer")?;
        let expected = self.checksum;
        let mut stored = [0u8; 4];
        read_exact(&mut self.input, &mut stored, &self.path, self.offset, "footer")?;
        self.offset += 4;
        let field = |at: usize| u64::from_le_bytes(counts[at..at + 8].try_into().expect("8 bytes"));
        let (chunks, buckets, keys) = (field(0), field(8), field(16));
        if u32::from_le_bytes(stored) != expected {
            return Err(FormatError::corrupt(&self.path, "whole-file checksum mismatch"));
        }
        if chunks != self.totals.chunks || buckets != self.totals.buckets {
            return Err(FormatError::corrupt(
                &self.path,
                format!(
                    "footer at byte {offset} counts {chunks} chunks and {buckets} buckets, the file holds {} and {}",
                    self.totals.chunks, self.totals.buckets
                ),
            ));
        }
        if self.offset != self.file_bytes {
            return Err(FormatError::corrupt(
                &self.path,
                format!("{} bytes after the footer", self.file_bytes - self.offset),
            ));
        }
        self.totals.keys = keys;
        self.totals.bytes = self.file_bytes;
        self.finished = true;
        Ok(())
    }

    /// The counts of a fully read file (valid once `next_chunk` returned `None`).
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_exact(
    input: &mut impl Read,
    buffer: &mut [u8],
    path: &Path,
    offset: u64,
    what: &str,
) -> Result<(), FormatError> {
    input.read_exact(buffer).map_err(|error| match error.kind() {
        io::ErrorKind::UnexpectedEof => {
            FormatError::corrupt(path, format!("file ends inside the {what} at byte {offset}"))
        }
        _ => FormatError::io("read", path, error),
    })
}

/// Decodes a verified chunk into its buckets, numbered as in this build: a
/// bucket of a file written with fewer buckets comes back as every bucket
/// that covers it (see [`Bucket::split`]).
pub fn decode_chunk(path: &Path, chunk: &RawChunk) -> Result<Vec<(u32, Bucket)>, FormatError> {
    let mut cursor = Cursor { bytes: &chunk.payload, at: 0 };
    let total = chunk.bucket_total as usize;
    let mut buckets = Vec::with_capacity(chunk.bucket_count as usize);
    for _ in 0..chunk.bucket_count {
        let (index, bucket) = decode_bucket(&mut cursor, total).map_err(|detail| {
            FormatError::corrupt(path, format!("chunk at byte {}: {detail} (payload byte {})", chunk.offset, cursor.at))
        })?;
        if total == BUCKET_COUNT {
            buckets.push((index, bucket));
        } else {
            buckets.extend(bucket.split(index as usize, total).into_iter().map(|(index, part)| (index as u32, part)));
        }
    }
    if cursor.at != chunk.payload.len() {
        return Err(FormatError::corrupt(path, format!("chunk at byte {}: bytes after its buckets", chunk.offset)));
    }
    Ok(buckets)
}

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_HASH: u8 = 3;
const TYPE_SORTED_SET: u8 = 4;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// How many entries ahead of the one being encoded its value is prefetched.
const PREFETCH_AHEAD: usize = 8;

/// Appends one bucket record: index, key count, then each key's entry.
fn encode_bucket(index: u32, bucket: &Bucket, out: &mut Vec<u8>) {
    put_varint(out, index as u64);
    put_varint(out, bucket.len() as u64);
    // Each value is its own allocation, cold in the cache: copying them one
    // after another waited for one memory access at a time, three quarters of
    // the writer's time at 5M keys. Loads asked for `PREFETCH_AHEAD` entries
    // early overlap: a second pass over the bucket runs that far ahead.
    let mut ahead = bucket.entries();
    ahead.by_ref().take(PREFETCH_AHEAD).for_each(|(_, entry)| entry.value.prefetch());
    for (key, entry) in bucket.entries() {
        if let Some((_, coming)) = ahead.next() {
            coming.value.prefetch();
        }
        put_bytes(out, key);
        put_varint(out, entry.expire_at_ms);
        encode_value(&entry.value, out);
    }
}

/// Appends a value as a checkpoint records it: its type, then its contents.
fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(bytes) => {
            out.push(TYPE_STRING);
            put_bytes(out, bytes);
        }
        Value::List(list) => {
            out.push(TYPE_LIST);
            put_varint(out, list.len() as u64);
            list.iter().for_each(|item| put_bytes(out, item));
        }
        Value::Set(set) => {
            out.push(TYPE_SET);
            put_varint(out, set.len() as u64);
            set.iter().for_each(|member| put_bytes(out, member));
        }
        Value::SortedSet(zset) => {
            out.push(TYPE_SORTED_SET);
            put_varint(out, zset.len() as u64);
            for (member, score) in zset.iter(false) {
                put_bytes(out, member);
                out.extend_from_slice(&score.to_bits().to_le_bytes());
            }
        }
        Value::Hash(hash) => {
            out.push(TYPE_HASH);
            put_varint(out, hash.len() as u64);
            for (field, value) in hash.iter() {
                put_bytes(out, field);
                put_bytes(out, value);
            }
        }
    }
}

/// A value in the checkpoint's encoding (`DUMP`'s payload carries it).
pub(crate) fn value_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(value, &mut out);
    out
}

/// The value `bytes` encode (as `value_bytes` writes them), all of them; an
/// empty aggregate is refused as a checkpoint refuses it.
pub(crate) fn value_from_bytes(bytes: &[u8]) -> Result<Value, &'static str> {
    let mut cursor = Cursor { bytes, at: 0 };
    let value = decode_value(&mut cursor)?;
    if cursor.at != bytes.len() {
        return Err("bytes after the value");
    }
    if value.is_empty_aggregate() {
        return Err("an empty aggregate");
    }
    Ok(value)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or("record cut short")?;
            self.at += 1;
            value |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes")
    }

    /// A count of items that each take at least one byte, so it cannot exceed what is left.
    fn count(&mut self) -> Result<usize, &'static str> {
        let count = self.varint()?;
        if count > (self.bytes.len() - self.at) as u64 {
            return Err("count larger than the chunk");
        }
        Ok(count as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let length = self.varint()?;
        if length > (self.bytes.len() - self.at) as u64 {
            return Err("length past the end of the chunk");
        }
        let start = self.at;
        self.at += length as usize;
        Ok(&self.bytes[start..self.at])
    }

    fn blob(&mut self) -> Result<Blob, &'static str> {
        self.bytes().map(Box::from)
    }

    fn key(&mut self) -> Result<Key, &'static str> {
        self.bytes().map(Key::from)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let bytes = self.bytes.get(self.at..self.at + N).ok_or("record cut short")?;
        self.at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn byte(&mut self) -> Result<u8, &'static str> {
        let byte = *self.bytes.get(self.at).ok_or("record cut short")?;
        self.at += 1;
        Ok(byte)
    }
}

fn decode_bucket(cursor: &mut Cursor<'_>, total: usize) -> Result<(u32, Bucket), String> {
    let index = cursor.varint()?;
    if index >= total as u64 {
        return Err(format!("bucket index {index} out of range"));
    }
    let count = cursor.count()?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let key = cursor.key()?;
        if bucket_among(&key, total) != index as usize {
            return Err(format!("a key of bucket {} is recorded in bucket {index}", bucket_among(&key, total)));
        }
        let expire_at_ms = cursor.varint()?;
        let value = decode_value(cursor)?;
        if value.is_empty_aggregate() {
            return Err("an empty aggregate".to_string());
        }
        entries.push((key, Entry { value, expire_at_ms }));
    }
    let bucket = Bucket::from_entries(entries);
    if bucket.len() != count {
        return Err("a key recorded twice".to_string());
    }
    Ok((index as u32, bucket))
}

fn decode_value(cursor: &mut Cursor<'_>) -> Result<Value, &'static str> {
    Ok(match cursor.byte()? {
        TYPE_STRING => Value::String(cursor.blob()?),
        TYPE_LIST => {
            let count = cursor.count()?;
            let mut list = ListValue::with_capacity(count);
            for _ in 0..count {
                list.push_back(cursor.blob()?);
            }
            Value::List(list.into())
        }
        TYPE_SET => {
            let count = cursor.count()?;
            let mut set = SetValue::with_capacity_and_hasher(count, Default::default());
            for _ in 0..count {
                if !set.insert(cursor.key()?) {
                    return Err("a set member recorded twice");
                }
            }
            Value::Set(set.into())
        }
        TYPE_HASH => {
            let count = cursor.count()?;
            let mut hash = HashValue::with_capacity_and_hasher(count, Default::default());
            for _ in 0..count {
                let field = cursor.key()?;
                if hash.insert(field, cursor.blob()?).is_some() {
                    return Err("a hash field recorded twice");
                }
            }
            Value::Hash(hash.into())
        }
        TYPE_SORTED_SET => {
            let count = cursor.count()?;
            let mut zset = SortedSet::default();
            for _ in 0..count {
                let member = cursor.bytes()?;
                let score = f64::from_bits(u64::from_le_bytes(cursor.array()?));
                if score.is_nan() {
                    return Err("a NaN score");
                }
                if !zset.insert(member, score) {
                    return Err("a sorted set member recorded twice");
                }
            }
            Value::SortedSet(zset.into())
        }
        _ => return Err("unknown value type"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::effect::{Effect, Ttl};
    use crate::store::Keyspace;
    use bytes::Bytes;

    fn sample() -> Keyspace {
        let mut keyspace = Keyspace::new();
        let b = |text: String| Bytes::from(text);
        for index in 0..2_000u64 {
            let key = b(format!("k{index}"));
            let effect = match index % 5 {
                0 => Effect::Set { key, value: b(format!("v{index}")), ttl: Ttl::At(10_000 + index) },
                1 => Effect::ListPush { key, left: false, values: vec![b("a".into()), b("b".into())] },
                2 => Effect::SetAdd { key, members: vec![b("x".into()), b(format!("m{index}"))] },
                3 => Effect::SortedSetAdd {
                    key,
                    members: vec![(b("x".into()), -0.0), (b(format!("m{index}")), index as f64 / 3.0)],
                },
                _ => Effect::HashSet { key, pairs: vec![(b("f".into()), b(format!("{index}")))] },
            };
            keyspace.apply(&effect);
        }
        keyspace
    }

    fn header(kind: Kind) -> Header {
        Header {
            id: 7,
            kind,
            node: 1,
            epoch: 2,
            log_index: 2_000,
            base_id: None,
            created_unix_ms: 1,
            bucket_total: BUCKET_COUNT as u32,
            key_count: 2_000,
            applied: vec![(1, 2_000)],
            channels: vec![ChannelState { from_node: 2, records: vec![vec![1, 2, 3]] }],
        }
    }

    fn write(path: &Path, keyspace: &Keyspace) -> Totals {
        let file = File::create(path).unwrap();
        let mut writer = FileWriter::start(file, path, &header(Kind::Full)).unwrap();
        for (index, bucket) in keyspace.snapshot().into_selected(None) {
            writer.bucket(index, &bucket).unwrap();
        }
        writer.finish().unwrap().1
    }

    fn read(path: &Path) -> Result<Keyspace, FormatError> {
        let mut reader = FileReader::open(path)?;
        assert_eq!(reader.header(), &header(Kind::Full));
        let mut keyspace = Keyspace::new();
        // Each chunk is read into the previous one's buffer, stale bytes and all, as a restore does.
        let mut spare = Vec::new();
        while let Some(chunk) = reader.next_chunk_into(spare)? {
            for (index, bucket) in decode_chunk(path, &chunk)? {
                keyspace.replace_bucket(index as usize, bucket);
            }
            spare = chunk.payload;
        }
        Ok(keyspace)
    }

    #[test]
    fn a_file_reads_back_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let original = sample();
        let totals = write(&path, &original);
        assert_eq!(totals.keys, 2_000);
        assert_eq!(totals.buckets, original.snapshot().buckets().filter(|bucket| !bucket.is_empty()).count() as u64);
        assert_eq!(totals.bytes, std::fs::metadata(&path).unwrap().len());
        let restored = read(&path).unwrap();
        restored.check_counts();
        assert_eq!(restored.digest(), original.digest());
        assert_eq!(restored.expiring_len(), original.expiring_len());
        // The footer's checksum is the CRC32C of every byte before it, as the spec says,
        // although writer and reader take the chunks' checksums in by combination.
        let bytes = std::fs::read(&path).unwrap();
        let (body, stored) = bytes.split_at(bytes.len() - 4);
        assert_eq!(crc32c::crc32c(body), u32::from_le_bytes(stored.try_into().unwrap()));
    }

    /// Writes `original` as a full checkpoint of format `version` numbered among `total`
    /// buckets, every bucket recorded (as version 1 did); returns the buckets' entries.
    fn write_every_bucket(path: &Path, original: &Keyspace, version: u16, total: usize) -> Vec<Vec<(Key, Entry)>> {
        let mut groups: Vec<Vec<(Key, Entry)>> = vec![Vec::new(); total];
        for bucket in original.snapshot().buckets() {
            for (key, entry) in bucket.entries() {
                groups[bucket_among(key, total)].push((Key::from(key), entry.clone()));
            }
        }
        let header = Header { bucket_total: total as u32, ..header(Kind::Full) };
        let mut writer = FileWriter::start_version(File::create(path).unwrap(), path, &header, version).unwrap();
        for (index, entries) in groups.iter().enumerate() {
            writer.bucket(index as u32, &Bucket::from_entries(entries.iter().cloned())).unwrap();
        }
        writer.finish().unwrap();
        groups
    }

    /// Version 1 recorded every bucket, empty ones too; a file with fewer buckets than
    /// this build (a later build with more buckets reading today's files) is split.
    #[test]
    fn version_1_files_and_files_with_fewer_buckets_read_back_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let original = sample();
        for (version, total) in [(1, BUCKET_COUNT), (FORMAT_VERSION, BUCKET_COUNT / 4)] {
            let path = dir.path().join(format!("c{version}"));
            let groups = write_every_bucket(&path, &original, version, total);
            let mut reader = FileReader::open(&path).unwrap();
            assert_eq!(reader.header().bucket_total as usize, total);
            let mut restored = Keyspace::new();
            let mut seen = std::collections::HashSet::new();
            while let Some(chunk) = reader.next_chunk().unwrap() {
                for (index, bucket) in decode_chunk(&path, &chunk).unwrap() {
                    assert!(seen.insert(index), "bucket {index} came back twice");
                    restored.replace_bucket(index as usize, bucket);
                }
            }
            assert_eq!(seen.len(), BUCKET_COUNT, "each recorded bucket stands for all the buckets that cover it");
            restored.check_counts();
            assert_eq!(restored.digest(), original.digest(), "version {version}, {total} buckets");

            // An incremental's bucket replaces all the buckets it covers: a key deleted since
            // its base goes.
            let gone = b"k5";
            let old_index = bucket_among(gone, total);
            let kept = groups[old_index].iter().filter(|(key, _)| &key[..] != gone).cloned();
            let parts = if total == BUCKET_COUNT {
                vec![(old_index, Bucket::from_entries(kept))]
            } else {
                Bucket::from_entries(kept).split(old_index, total)
            };
            for (index, part) in parts {
                restored.replace_bucket(index, part);
            }
            restored.check_counts();
            assert!(restored.get(gone, 0).is_none());
            assert_eq!(restored.len(), original.len() - 1);
        }
    }

    #[test]
    fn a_bucket_count_this_build_cannot_number_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for total in [3u32, 2 * BUCKET_COUNT as u32] {
            let path = dir.path().join(format!("c{total}"));
            let header = Header { bucket_total: total, ..header(Kind::Full) };
            FileWriter::start(File::create(&path).unwrap(), &path, &header).unwrap().finish().unwrap();
            let error = FileReader::open(&path).err().expect("refused").to_string();
            assert!(error.contains(&format!("written with {total} buckets")), "{error}");
        }
    }

    #[test]
    fn chunks_read_into_reused_buffers_give_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let mut original = Keyspace::new();
        for index in 0..2_000u32 {
            // Values of varied sizes make chunks of varied sizes, so a buffer
            // is reused for both a longer and a shorter chunk than its last.
            let value = Bytes::from(vec![b'a' + (index % 26) as u8; 1 + (index as usize * 37) % 4_000]);
            original.apply(&Effect::Set { key: Bytes::from(format!("k{index}")), value, ttl: Ttl::Keep });
        }
        let totals = write(&path, &original);
        assert!(totals.chunks >= 3, "the sample spans several chunks: {totals:?}");
        let restored = read(&path).unwrap();
        assert_eq!(restored.digest(), original.digest());
    }

    #[test]
    fn a_file_larger_than_several_writeback_stretches_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let mut original = Keyspace::new();
        let stretches = 3;
        let keys = stretches * SYNC_EVERY_BYTES as usize / 4_096 + 1;
        for index in 0..keys {
            let value = Bytes::from(vec![(index % 251) as u8; 4_096]);
            original.apply(&Effect::Set { key: Bytes::from(format!("k{index}")), value, ttl: Ttl::Keep });
        }
        let totals = write(&path, &original);
        assert!(totals.bytes > stretches as u64 * SYNC_EVERY_BYTES, "{totals:?}");
        assert_eq!(read(&path).unwrap().digest(), original.digest());
    }

    #[test]
    fn the_writer_yields_only_while_its_yields_took_at_most_half_its_time() {
        let ms = Duration::from_millis;
        assert!(may_yield(Duration::ZERO, Duration::ZERO));
        assert!(may_yield(ms(5), ms(10)), "exactly half");
        assert!(may_yield(ms(1), ms(100)));
        assert!(!may_yield(ms(6), ms(10)), "a writer the yields slowed down writes on without them");
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        write(&path, &sample());
        let good = std::fs::read(&path).unwrap();
        let step = (good.len() / 200).max(1);
        for at in (0..good.len()).step_by(step).chain([good.len() - 1]) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(read(&path).is_err(), "flip at byte {at} not detected");
        }
        for length in (0..good.len()).step_by(step) {
            std::fs::write(&path, &good[..length]).unwrap();
            assert!(read(&path).is_err(), "truncation at {length} not detected");
        }
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(read(&path).is_err(), "trailing byte not detected");
    }
}
