//! Checkpoint files in `<data_dir>/checkpoints/`: names, listing, and the
//! all-or-nothing write (temporary file, fsync, rename, directory fsync).
//!
//! Invariants:
//! * a file with a checkpoint name was complete and fsynced before it got
//!   that name; a crash leaves at most a `*.tmp` file, removed at startup;
//! * a failed write or fsync removes what it wrote and is returned as an
//!   error — the checkpoint is never retried and never reported as done.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::failpoint;
use super::format::{FileWriter, FormatError, Header, Kind, Totals};
use crate::store::keyspace::BUCKET_COUNT;
use crate::store::Bucket;

/// The checkpoint directory's name inside a data directory.
pub const DIRECTORY: &str = "checkpoints";
const SUFFIX: &str = ".ckpt";
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Where a data directory keeps its checkpoints.
pub fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join(DIRECTORY)
}

/// The file name of checkpoint `id`: the id in 20 digits, so names sort by id.
pub fn file_name(id: u64, kind: Kind) -> String {
    format!("{id:020}.{}{SUFFIX}", kind.as_str())
}

/// The id and kind a checkpoint file name states, if it is one.
pub fn parse_file_name(name: &str) -> Option<(u64, Kind)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (digits, kind) = stem.split_once('.')?;
    let kind = match kind {
        "full" => Kind::Full,
        "incremental" => Kind::Incremental,
        _ => return None,
    };
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, kind))
}

/// A checkpoint file found in the directory (by its name; not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The id its name states.
    pub id: u64,
    /// The kind its name states.
    pub kind: Kind,
    /// Its path.
    pub path: PathBuf,
}

/// The checkpoint files of `dir`, ascending by id (none if `dir` is missing).
pub fn list(dir: &Path) -> Result<Vec<Listed>, FormatError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(FormatError::io("list", dir, error)),
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| FormatError::io("list", dir, error))?;
        let name = entry.file_name();
        if let Some((id, kind)) = name.to_str().and_then(parse_file_name) {
            listed.push(Listed { id, kind, path: entry.path() });
        }
    }
    listed.sort_by_key(|listed| listed.id);
    Ok(listed)
}

/// Deletes the temporary files of writes a crash interrupted; returns their names.
pub fn remove_temporary_files(dir: &Path) -> Result<Vec<String>, FormatError> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(TEMPORARY_SUFFIX) {
            fs::remove_file(entry.path()).map_err(|error| FormatError::io("remove", &entry.path(), error))?;
            removed.push(name);
        }
    }
    if !removed.is_empty() {
        sync_directory(dir)?;
    }
    Ok(removed)
}

/// The file listing the checkpoints adopted from another node: one `<file name> <node>`
/// line each. A rebuild from an archive (`tandem restore --from`, a cold takeover) copies
/// the archived node's checkpoints, whose headers name that node; loading accepts them
/// only when listed here, so a file swapped in from another node by mistake is still
/// refused.
pub const ADOPTED_FILE: &str = "ADOPTED";

/// The adopted checkpoints of `dir`: (file name, node) pairs; none if the list is missing.
pub fn adopted(dir: &Path) -> Vec<(String, u32)> {
    let Ok(text) = fs::read_to_string(dir.join(ADOPTED_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (name, node) = line.trim().rsplit_once(' ')?;
            Some((name.to_string(), node.parse().ok()?))
        })
        .collect()
}

/// Adds `(file name, node)` pairs to the adopted list of `dir`, durably (temporary file,
/// fsync, rename, directory fsync).
pub fn adopt(dir: &Path, files: &[(String, u32)]) -> Result<(), FormatError> {
    let mut all = adopted(dir);
    all.extend(files.iter().cloned());
    all.sort();
    all.dedup();
    let text: String = all.iter().map(|(name, node)| format!("{name} {node}\n")).collect();
    let path = dir.join(ADOPTED_FILE);
    let temporary = dir.join(format!("{ADOPTED_FILE}{TEMPORARY_SUFFIX}"));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
    };
    write().map_err(|error| FormatError::io("write", &path, error))?;
    sync_directory(dir)
}

/// Fsyncs a directory, so that a rename or removal in it survives a crash.
pub fn sync_directory(dir: &Path) -> Result<(), FormatError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(|error| FormatError::io("fsync directory", dir, error))
}

/// Creates the checkpoint directory if missing (and makes its creation durable).
pub fn ensure_directory(dir: &Path) -> Result<(), FormatError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|error| FormatError::io("create directory", dir, error))?;
    if let Some(parent) = dir.parent() {
        sync_directory(parent)?;
    }
    Ok(())
}

/// Writes checkpoint `header.id` into `dir`, all or nothing, from the
/// buckets of its cut (every bucket holding a key for a full checkpoint, the
/// changed ones for an incremental). Each bucket is released as soon as it is written, so
/// a later write to it no longer has to copy it. Calls `progress` with the
/// buckets written so far.
pub fn write(
    dir: &Path,
    header: &Header,
    buckets: Vec<(u32, Arc<Bucket>)>,
    progress: &mut dyn FnMut(u64),
) -> Result<(PathBuf, Totals), FormatError> {
    assert!(buckets.windows(2).all(|pair| pair[0].0 < pair[1].0), "buckets are written in ascending order");
    assert!(buckets.len() <= BUCKET_COUNT);
    ensure_directory(dir)?;
    let path = dir.join(file_name(header.id, header.kind));
    let temporary = dir.join(format!("{}{TEMPORARY_SUFFIX}", file_name(header.id, header.kind)));
    match write_temporary(&temporary, header, buckets, progress)
        .and_then(|totals| publish(dir, &temporary, &path).map(|()| totals))
    {
        Ok(totals) => Ok((path, totals)),
        Err(error) => {
            // Best effort: the error already says the checkpoint failed.
            let _ = fs::remove_file(&temporary);
            Err(error)
        }
    }
}

fn write_temporary(
    temporary: &Path,
    header: &Header,
    buckets: Vec<(u32, Arc<Bucket>)>,
    progress: &mut dyn FnMut(u64),
) -> Result<Totals, FormatError> {
    let file = File::create(temporary).map_err(|error| FormatError::io("create", temporary, error))?;
    let mut writer = FileWriter::start(file, temporary, header)?;
    for (written, (index, bucket)) in buckets.into_iter().enumerate() {
        writer.bucket(index, &bucket)?;
        drop(bucket);
        if written % 1024 == 1023 {
            progress(written as u64 + 1);
        }
    }
    let (file, totals) = writer.finish()?;
    failpoint::crash_if_armed("checkpoint-before-fsync");
    failpoint::error_if_armed("checkpoint-fsync-error")
        .and_then(|()| file.sync_all())
        .map_err(|error| FormatError::io("fsync", temporary, error))?;
    Ok(totals)
}

/// Gives the fsynced file its name and makes the rename durable. If the
/// directory fsync fails the file is removed again: it was never reported.
fn publish(dir: &Path, temporary: &Path, path: &Path) -> Result<(), FormatError> {
    failpoint::crash_if_armed("checkpoint-before-rename");
    fs::rename(temporary, path).map_err(|error| FormatError::io("rename", temporary, error))?;
    failpoint::crash_if_armed("checkpoint-before-dir-fsync");
    if let Err(error) = sync_directory(dir) {
        let _ = fs::remove_file(path);
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_sort_by_id() {
        assert_eq!(file_name(42, Kind::Full), "00000000000000000042.full.ckpt");
        assert_eq!(parse_file_name(&file_name(42, Kind::Incremental)), Some((42, Kind::Incremental)));
        assert_eq!(parse_file_name("00000000000000000042.full.ckpt.tmp"), None);
        assert_eq!(parse_file_name("42.full.ckpt"), None);
        assert_eq!(parse_file_name("0000000000000000004x.full.ckpt"), None);
        assert!(file_name(9, Kind::Full) < file_name(10, Kind::Full));
    }
}
