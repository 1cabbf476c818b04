//! The archive's manifest: the list of files that make up the archive, with what each
//! holds and its checksum. It is the archive's single point of truth: a file the manifest
//! does not name is not part of the archive.
//!
//! Invariants:
//! * the manifest is written last: every file it names was complete, fsynced and
//!   checked before the manifest naming it was renamed into place;
//! * it is replaced atomically (`MANIFEST.tmp`, fsync, rename, directory fsync), so a
//!   crash or a full disk leaves the previous manifest or the new one, never a mixture;
//! * its body carries a CRC32C in a trailer line, so a flipped byte is detected;
//! * entries are sorted: checkpoints by id, segments by first index; segment entries
//!   never overlap.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifest's file name inside the archive directory.
pub const FILE_NAME: &str = "MANIFEST";
/// The manifest format this build writes and reads.
pub const VERSION: u32 = 1;
/// Folder of archived log segments.
pub const SEGMENTS_DIRECTORY: &str = "segments";
/// Folder of archived checkpoints.
pub const CHECKPOINTS_DIRECTORY: &str = "checkpoints";
/// Suffix of a file being written; never part of the archive.
pub const TEMPORARY_SUFFIX: &str = ".tmp";
const TRAILER_PREFIX: &str = "crc32c ";

/// What an archived file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// Log records, as a log segment file (header + frames) starting at `first_index`.
    Segment,
    /// A byte copy of a checkpoint file (full or incremental).
    Checkpoint,
}

/// Checkpoint details of a checkpoint entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The checkpoint's id.
    pub id: u64,
    /// `full` or `incremental`.
    pub level: String,
    /// The checkpoint an incremental builds on.
    pub base_id: Option<u64>,
}

/// One archived file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Segment or checkpoint.
    pub kind: FileKind,
    /// Path relative to the archive directory.
    pub name: String,
    /// Segment: index of its first record; checkpoint: the log index it is the state of.
    pub first_index: u64,
    /// Segment: index of its last record; checkpoint: same as `first_index`.
    pub last_index: u64,
    /// Segment: the first record's timestamp (Unix ms); checkpoint: when its cut was taken.
    pub first_time_unix_ms: u64,
    /// Segment: the last record's timestamp (Unix ms); checkpoint: when its cut was taken.
    pub last_time_unix_ms: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
    /// Segment: CRC32C of the last record's body, to notice a log rewritten under the archive.
    pub last_record_crc32c: Option<u32>,
    /// Checkpoint details.
    pub checkpoint: Option<CheckpointInfo>,
}

impl Entry {
    /// The path of the file in `archive`.
    pub fn path(&self, archive: &Path) -> PathBuf {
        archive.join(&self.name)
    }

    /// Whether this is a full checkpoint.
    pub fn is_full_checkpoint(&self) -> bool {
        self.checkpoint.as_ref().is_some_and(|checkpoint| checkpoint.level == "full")
    }
}

/// The most one entry adds to an encoded manifest, for the file names this
/// archive writes (a test checks it with every field at its largest).
pub const ENTRY_ENCODED_BYTES_MAX: u64 = 1024;

/// The list of archived files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version, `VERSION`.
    pub version: u32,
    /// The node whose log and checkpoints these are.
    pub node: u32,
    /// When this manifest was written, Unix ms.
    pub written_unix_ms: u64,
    /// Archived checkpoints, by id.
    pub checkpoints: Vec<Entry>,
    /// Archived segments, by first index.
    pub segments: Vec<Entry>,
}

impl Manifest {
    /// An empty manifest for `node`.
    pub fn empty(node: u32) -> Manifest {
        Manifest { version: VERSION, node, written_unix_ms: 0, checkpoints: Vec::new(), segments: Vec::new() }
    }

    /// The newest log index the archive holds: the last archived record, or the newest
    /// checkpoint if that is later (0 for an empty archive). Restorable up to here if
    /// `verify` finds no damage.
    pub fn last_index(&self) -> u64 {
        let segments = self.segments.last().map_or(0, |segment| segment.last_index);
        let checkpoints = self.checkpoints.iter().map(|checkpoint| checkpoint.last_index).max().unwrap_or(0);
        segments.max(checkpoints)
    }

    /// The index the next archived record must have to continue the archived log.
    pub fn next_segment_index(&self) -> Option<u64> {
        self.segments.last().map(|segment| segment.last_index + 1)
    }

    /// How many files it names.
    pub fn entries(&self) -> usize {
        self.checkpoints.len() + self.segments.len()
    }

    /// The highest archived checkpoint id (0 if none).
    pub fn last_checkpoint_id(&self) -> u64 {
        self.checkpoints.iter().filter_map(|entry| entry.checkpoint.as_ref()).map(|info| info.id).max().unwrap_or(0)
    }

    /// The archived checkpoint with id `id`.
    pub fn checkpoint(&self, id: u64) -> Option<&Entry> {
        self.checkpoints.iter().find(|entry| entry.checkpoint.as_ref().is_some_and(|info| info.id == id))
    }

    /// The chain (full first) that ends at the full checkpoint `full` and follows its
    /// incrementals, each step the newest incremental on the previous tip.
    pub fn chain_from(&self, full: &Entry) -> Vec<Entry> {
        let mut chain = vec![full.clone()];
        loop {
            let tip = chain.last().and_then(|entry| entry.checkpoint.as_ref()).map_or(0, |info| info.id);
            let next =
                self.checkpoints.iter().rev().find(|entry| {
                    entry.checkpoint.as_ref().is_some_and(|info| info.base_id == Some(tip) && info.id > tip)
                });
            match next {
                Some(entry) => chain.push(entry.clone()),
                None => return chain,
            }
        }
    }

    /// Keeps the entries sorted (see the invariants).
    pub fn sort(&mut self) {
        self.checkpoints.sort_by_key(|entry| entry.checkpoint.as_ref().map_or(0, |info| info.id));
        self.segments.sort_by_key(|entry| entry.first_index);
    }
}

/// Why a manifest could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No manifest: an empty or not-yet-written archive.
    #[error("no manifest in {0}: not an archive, or nothing was shipped yet")]
    Missing(PathBuf),
    /// An I/O error.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The manifest is damaged or of another version.
    #[error("manifest {path} is damaged: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn io_error<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ManifestError + 'a {
    move |source| ManifestError::Io { operation, path: path.to_path_buf(), source }
}

/// Reads and checks the manifest of `archive`.
pub fn read(archive: &Path) -> Result<Manifest, ManifestError> {
    let path = archive.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(ManifestError::Missing(path)),
        Err(error) => return Err(io_error("read", &path)(error)),
    };
    decode(&bytes).map_err(|detail| ManifestError::Corrupt { path, detail })
}

/// The manifest's bytes: the JSON body, then a line with its CRC32C.
pub fn encode(manifest: &Manifest) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    bytes.push(b'\n');
    let checksum = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(format!("{TRAILER_PREFIX}{checksum:08x}\n").as_bytes());
    bytes
}

/// Parses and checks manifest bytes.
pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let body_end = text.trim_end_matches('\n').rfind('\n').map(|position| position + 1).ok_or("no checksum line")?;
    let (body, trailer) = text.split_at(body_end);
    let stored = trailer
        .trim_end()
        .strip_prefix(TRAILER_PREFIX)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("no checksum line")?;
    let computed = crc32c::crc32c(body.as_bytes());
    if stored != computed {
        return Err(format!("checksum mismatch (stored {stored:08x}, computed {computed:08x})"));
    }
    let manifest: Manifest = serde_json::from_str(body).map_err(|error| error.to_string())?;
    if manifest.version != VERSION {
        return Err(format!("version {} (this build reads {VERSION})", manifest.version));
    }
    Ok(manifest)
}

/// Replaces the manifest of `archive` atomically and durably. Call only after every file
/// it names is durable.
pub fn write(archive: &Path, manifest: &Manifest) -> Result<(), ManifestError> {
    let path = archive.join(FILE_NAME);
    let temporary = archive.join(format!("{FILE_NAME}{TEMPORARY_SUFFIX}"));
    let result = write_durably(&temporary, &encode(manifest)).and_then(|()| {
        fs::rename(&temporary, &path).map_err(io_error("rename", &temporary))?;
        sync_directory(archive)
    });
    if result.is_err() {
        // Best effort: the previous manifest is still in place and names only complete files.
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Writes `bytes` to a new file at `path` and fsyncs it.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    let mut file = File::create(path).map_err(io_error("create", path))?;
    file.write_all(bytes).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("fsync", path))
}

/// fsyncs a directory so that creations, renames and removals in it survive a crash.
pub fn sync_directory(dir: &Path) -> Result<(), ManifestError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(io_error("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut manifest = Manifest::empty(7);
        manifest.segments.push(Entry {
            kind: FileKind::Segment,
            name: "segments/a.log".into(),
            first_index: 1,
            last_index: 10,
            first_time_unix_ms: 5,
            last_time_unix_ms: 6,
            bytes: 100,
            crc32c: 42,
            last_record_crc32c: Some(1),
            checkpoint: None,
        });
        manifest
    }

    #[test]
    fn an_entry_adds_at_most_its_bound_to_the_encoded_manifest() {
        use crate::checkpoint::file::file_name;
        use crate::checkpoint::format::Kind;
        let largest = |kind, name: String, checkpoint| Entry {
            kind,
            name,
            first_index: u64::MAX,
            last_index: u64::MAX,
            first_time_unix_ms: u64::MAX,
            last_time_unix_ms: u64::MAX,
            bytes: u64::MAX,
            crc32c: u32::MAX,
            last_record_crc32c: Some(u32::MAX),
            checkpoint,
        };
        let info = CheckpointInfo { id: u64::MAX, level: "incremental".into(), base_id: Some(u64::MAX) };
        let segment = format!("segments/{}", crate::archive::segment::file_name(u64::MAX, u64::MAX));
        let checkpoint = format!("checkpoints/{}", file_name(u64::MAX, Kind::Incremental));
        let mut manifest = sample();
        let before = encode(&manifest).len() as u64;
        manifest.segments.push(largest(FileKind::Segment, segment, None));
        let one = encode(&manifest).len() as u64;
        manifest.checkpoints.push(largest(FileKind::Checkpoint, checkpoint, Some(info)));
        let two = encode(&manifest).len() as u64;
        assert!(one - before <= ENTRY_ENCODED_BYTES_MAX, "a segment entry adds {}", one - before);
        assert!(two - one <= ENTRY_ENCODED_BYTES_MAX, "a checkpoint entry adds {}", two - one);
    }

    #[test]
    fn roundtrips_and_detects_every_flipped_byte() {
        let bytes = encode(&sample());
        assert_eq!(decode(&bytes).unwrap(), sample());
        assert_eq!(decode(&bytes).unwrap().last_index(), 10);
        for position in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x04;
            assert!(decode(&damaged).is_err(), "flip at {position} went unnoticed");
        }
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
