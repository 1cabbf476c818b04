//! Restore: the newest chain of checkpoints (a full one, then the
//! incrementals that build on it) that fully verifies, loaded into a
//! keyspace; then the log is made to continue right after it.
//!
//! Invariants:
//! * nothing from a file reaches the keyspace before that file verified: a
//!   full checkpoint is streamed into a keyspace that is thrown away if any
//!   later byte is bad; an incremental is decoded whole before it is applied;
//! * a corrupt, truncated, partial or foreign file is skipped with a warning
//!   naming it, and the chain ends at the last good file before it;
//! * after restore, the state is exactly the log's state at the chain's
//!   `log_index`; the log then continues at `log_index + 1`, or the open
//!   fails with a message naming the gap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tandem_log::{LogIndex, LogOptions, Recovery};

use super::file::{self, Listed};
use super::format::{decode_chunk, FileReader, FormatError, Header, Kind, RawChunk, Totals};
use crate::store::keyspace::BUCKET_COUNT;
use crate::store::{Bucket, Keyspace};

/// A checkpoint known to be complete: written by this process or verified while loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its id.
    pub id: u64,
    /// Full or incremental.
    pub kind: Kind,
    /// The log index it is the state of.
    pub log_index: u64,
    /// The epoch of the record at `log_index` (0 if none).
    pub epoch: u64,
    /// The checkpoint it builds on (incrementals).
    pub base_id: Option<u64>,
    /// When the cut was taken, Unix milliseconds.
    pub created_unix_ms: u64,
    /// File size.
    pub bytes: u64,
    /// Keys in the whole state it describes.
    pub key_count: u64,
    /// Its path.
    pub path: PathBuf,
}

impl Verified {
    /// What a header and the totals of a file that verified say about it.
    pub(super) fn new(header: &Header, path: &Path, totals: Totals) -> Verified {
        Verified {
            id: header.id,
            kind: header.kind,
            log_index: header.log_index,
            epoch: header.epoch,
            base_id: header.base_id,
            created_unix_ms: header.created_unix_ms,
            bytes: totals.bytes,
            key_count: header.key_count,
            path: path.to_path_buf(),
        }
    }
}

/// A file restore refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was not used.
    pub reason: String,
}

/// What restore loaded.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The chain loaded, full checkpoint first; empty when none was usable.
    pub chain: Vec<Verified>,
    /// Files refused, with the reason (each also logged as a warning).
    pub skipped: Vec<Skipped>,
    /// The id the next checkpoint gets: above every file in the directory.
    pub next_id: u64,
}

impl Loaded {
    /// The log index the loaded state is at (0 when nothing was loaded).
    pub fn log_index(&self) -> u64 {
        self.chain.last().map_or(0, |tip| tip.log_index)
    }
}

/// Why a node cannot start from its checkpoints and log.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The checkpoint directory could not be read.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The log could not be recovered or trimmed.
    #[error(transparent)]
    Log(#[from] tandem_log::LogError),
    /// Records between the checkpoint and the log are missing.
    #[error(
        "cannot start: the newest usable checkpoint is the state at log index {checkpoint_index}, but the log \
         starts at index {log_first}, so records {}..={} are missing{skipped}. Restore a checkpoint that reaches \
         the log (`tandem checkpoint list`, `tandem checkpoint restore`), or move the log aside to start from the \
         checkpoint alone",
        checkpoint_index + 1, log_first - 1
    )]
    Gap {
        /// The index of the state restored.
        checkpoint_index: u64,
        /// The first record of the log.
        log_first: u64,
        /// The files skipped, for the message.
        skipped: String,
    },
}

/// Reads the header of every checkpoint file, refusing foreign and damaged headers (a
/// checkpoint of another node is foreign unless `adopted` lists it with that node).
fn read_headers(
    listed: &[Listed],
    node: u32,
    adopted: &[(String, u32)],
    skipped: &mut Vec<Skipped>,
) -> Vec<(Header, PathBuf)> {
    let is_adopted = |path: &Path, from: u32| {
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        adopted.iter().any(|(adopted_name, adopted_node)| *adopted_name == name && *adopted_node == from)
    };
    let mut headers = Vec::new();
    for entry in listed {
        let refused = match FileReader::open(&entry.path) {
            Err(error) => Some(error.to_string()),
            Ok(reader) => {
                let header = reader.header().clone();
                if header.node != node && !is_adopted(&entry.path, header.node) {
                    Some(format!("written by node {}, this is node {node}", header.node))
                } else if header.id != entry.id || header.kind != entry.kind {
                    Some(format!("header says {} checkpoint {}, the name disagrees", header.kind.as_str(), header.id))
                } else {
                    headers.push((header, entry.path.clone()));
                    None
                }
            }
        };
        if let Some(reason) = refused {
            skip(skipped, &entry.path, reason);
        }
    }
    headers
}

fn skip(skipped: &mut Vec<Skipped>, path: &Path, reason: String) {
    tracing::warn!(file = %path.display(), %reason, "checkpoint skipped");
    skipped.push(Skipped { path: path.to_path_buf(), reason });
}

/// Loads the newest chain of `dir` that verifies into `keyspace` (which must
/// be empty). `progress` is told the bytes read so far.
pub fn load_newest(
    dir: &Path,
    node: u32,
    keyspace: &mut Keyspace,
    progress: &mut dyn FnMut(u64),
) -> Result<Loaded, FormatError> {
    assert!(keyspace.is_empty(), "restore into an empty keyspace");
    for name in file::remove_temporary_files(dir)? {
        tracing::info!(file = %name, "removed the temporary file of a checkpoint a crash interrupted");
    }
    let listed = file::list(dir)?;
    let mut loaded = Loaded { next_id: listed.last().map_or(1, |last| last.id + 1), ..Loaded::default() };
    let headers = read_headers(&listed, node, &file::adopted(dir), &mut loaded.skipped);
    let mut done_bytes = 0u64;
    for (header, path) in headers.iter().rev().filter(|(header, _)| header.kind == Kind::Full) {
        let mut candidate = Keyspace::new();
        let mut report = |bytes: u64| progress(done_bytes + bytes);
        match load_full(path, header, &mut candidate, &mut report) {
            Ok(full) => {
                done_bytes += full.bytes;
                *keyspace = candidate;
                loaded.chain.push(full);
                break;
            }
            Err(error) => skip(&mut loaded.skipped, path, error.to_string()),
        }
    }
    if loaded.chain.is_empty() {
        return Ok(loaded);
    }
    // Follow the incrementals; where several build on the same checkpoint
    // (one written after a restart that skipped a bad file), the newest that verifies wins.
    loop {
        let tip = loaded.chain.last().expect("a full checkpoint was loaded").id;
        let mut next = None;
        for (header, path) in headers.iter().rev().filter(|(header, _)| header.base_id == Some(tip) && header.id > tip)
        {
            match decode_incremental(path, header, keyspace) {
                Ok((verified, buckets)) => {
                    next = Some((verified, buckets));
                    break;
                }
                Err(error) => skip(&mut loaded.skipped, path, error.to_string()),
            }
        }
        let Some((verified, buckets)) = next else { break };
        for (index, bucket) in buckets {
            keyspace.replace_bucket(index as usize, bucket);
        }
        done_bytes += verified.bytes;
        progress(done_bytes);
        loaded.chain.push(verified);
    }
    Ok(loaded)
}

/// Streams a full checkpoint into `keyspace`; the caller discards it on error.
///
/// Why threads: decoding the bucket records is most of a restore's CPU, and
/// chunks decode independently. One thread reads and checks chunks in file
/// order, `decoder_threads()` decode them, and this thread installs the
/// buckets; bounded channels keep at most a few chunks in memory.
fn load_full(
    path: &Path,
    header: &Header,
    keyspace: &mut Keyspace,
    progress: &mut dyn FnMut(u64),
) -> Result<Verified, FormatError> {
    let reader = FileReader::open(path)?;
    let workers = decoder_threads();
    let mut seen = vec![false; BUCKET_COUNT];
    let totals = std::thread::scope(|scope| -> Result<Totals, FormatError> {
        let (chunk_sender, chunk_receiver) = std::sync::mpsc::sync_channel::<RawChunk>(workers * 2);
        // Shared by the decoders only: when they all stop, the reader's send fails and it stops too.
        let chunk_receiver = Arc::new(Mutex::new(chunk_receiver));
        type Decoded = Result<(u64, Vec<(u32, Bucket)>), FormatError>;
        let (bucket_sender, bucket_receiver) = std::sync::mpsc::sync_channel::<Decoded>(workers * 2);
        // Decoded chunks' payload buffers go back to the reader for reuse.
        let (spare_sender, spare_receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(workers * 4);
        for _ in 0..workers {
            let chunk_receiver = Arc::clone(&chunk_receiver);
            let bucket_sender = bucket_sender.clone();
            let spare_sender = spare_sender.clone();
            scope.spawn(move || loop {
                let next = chunk_receiver.lock().recv();
                let Ok(chunk) = next else { return };
                let end = chunk.offset + chunk.payload.len() as u64;
                let decoded = decode_chunk(path, &chunk).map(|buckets| (end, buckets));
                let _ = spare_sender.try_send(chunk.payload);
                if bucket_sender.send(decoded).is_err() {
                    return;
                }
            });
        }
        drop(chunk_receiver);
        drop(bucket_sender);
        drop(spare_sender);
        let reading = scope.spawn(move || -> Result<FileReader, FormatError> {
            let mut reader = reader;
            while let Some(chunk) = reader.next_chunk_into(spare_receiver.try_recv().unwrap_or_default())? {
                if chunk_sender.send(chunk).is_err() {
                    break; // a decoder failed; its error is reported below
                }
            }
            Ok(reader)
        });
        for decoded in bucket_receiver.iter() {
            let (end, buckets) = decoded?;
            for (index, bucket) in buckets {
                check_first_time(path, &mut seen, index)?;
                keyspace.replace_bucket(index as usize, bucket);
            }
            progress(end);
        }
        let reader = reading.join().expect("the checkpoint reader thread does not panic")?;
        Ok(reader.totals())
    })?;
    check_key_count(path, header, keyspace.len() as u64, totals)?;
    Ok(Verified::new(header, path, totals))
}

/// Threads that decode checkpoint chunks during a restore: the machine's
/// parallelism, at most 4 (beyond that installing buckets is the bottleneck).
fn decoder_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |count| count.get()).clamp(1, 4)
}

/// Decodes and verifies a whole incremental, without applying it.
fn decode_incremental(
    path: &Path,
    header: &Header,
    keyspace: &Keyspace,
) -> Result<(Verified, Vec<(u32, Bucket)>), FormatError> {
    let mut reader = FileReader::open(path)?;
    let mut seen = vec![false; BUCKET_COUNT];
    let mut buckets = Vec::new();
    let snapshot = keyspace.snapshot();
    let mut key_count = keyspace.len() as u64;
    while let Some(chunk) = reader.next_chunk()? {
        for (index, bucket) in decode_chunk(path, &chunk)? {
            check_first_time(path, &mut seen, index)?;
            key_count = key_count - snapshot.bucket(index as usize).len() as u64 + bucket.len() as u64;
            buckets.push((index, bucket));
        }
    }
    check_key_count(path, header, key_count, reader.totals())?;
    Ok((Verified::new(header, path, reader.totals()), buckets))
}

fn check_first_time(path: &Path, seen: &mut [bool], index: u32) -> Result<(), FormatError> {
    if std::mem::replace(&mut seen[index as usize], true) {
        return Err(corrupt(path, &format!("bucket {index} recorded twice")));
    }
    Ok(())
}

fn check_key_count(path: &Path, header: &Header, state_keys: u64, totals: Totals) -> Result<(), FormatError> {
    if state_keys != header.key_count {
        return Err(corrupt(path, &format!("header counts {} keys, the state has {state_keys}", header.key_count)));
    }
    let body_keys = totals.keys;
    if header.kind == Kind::Full && body_keys != state_keys {
        return Err(corrupt(path, &format!("footer counts {body_keys} keys, the body holds {state_keys}")));
    }
    Ok(())
}

fn corrupt(path: &Path, detail: &str) -> FormatError {
    FormatError::Corrupt { path: path.to_path_buf(), detail: detail.to_string() }
}

/// Fits a recovered log (`tandem_log::recover`, which the caller may run
/// while the checkpoint loads) so that it continues right after a checkpoint
/// at `checkpoint_index`: an empty log starts there; a log that ends before it
/// (its records are all in the checkpoint — e.g. `appendfsync no` lost its
/// tail in a crash) is removed and restarted there; a log that starts after
/// `checkpoint_index + 1` is a gap and refuses.
pub fn fit_log_after(
    dir: &Path,
    options: &LogOptions,
    mut recovery: Recovery,
    checkpoint_index: u64,
    skipped: &[Skipped],
) -> Result<Recovery, RestoreError> {
    if checkpoint_index == 0 && recovery.first_index.is_none_or(|first| first.0 <= 1) {
        return Ok(recovery);
    }
    let covered = recovery.last_index.is_none_or(|last| last.0 < checkpoint_index);
    if covered && checkpoint_index > 0 {
        if recovery.segments > 0 {
            tracing::warn!(
                log_last_index = recovery.last_index.map_or(0, |last| last.0),
                checkpoint_index,
                segments = recovery.segments,
                "the log ends before the checkpoint, which holds every record it has; removing it"
            );
            tandem_log::remove_all_segments(dir)?;
            recovery = tandem_log::recover(dir, options)?;
        }
        recovery.start_empty_log_at(LogIndex(checkpoint_index + 1));
        return Ok(recovery);
    }
    let log_first = recovery.first_index.map_or(checkpoint_index + 1, |first| first.0);
    if log_first > checkpoint_index + 1 {
        let skipped = if skipped.is_empty() {
            String::new()
        } else {
            let files: Vec<String> =
                skipped.iter().map(|skip| format!("{} ({})", skip.path.display(), skip.reason)).collect();
            format!("; checkpoints skipped: {}", files.join("; "))
        };
        return Err(RestoreError::Gap { checkpoint_index, log_first, skipped });
    }
    Ok(recovery)
}
