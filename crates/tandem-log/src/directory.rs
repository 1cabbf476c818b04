//! The log directory: listing segments, creating them atomically, the directory lock, fsync.
//!
//! Invariants:
//! * a file named like a segment always has a complete, fsynced header: segments are created
//!   as `*.log.tmp`, fsynced, renamed, and the directory fsynced;
//! * at most one process modifies a log directory at a time (an `flock` on `LOCK`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::LogError;
use crate::format::{encode_segment_header, parse_segment_file_name, segment_file_name, TEMPORARY_SUFFIX};
use crate::preallocate::PREPARED_FILE_PREFIX;

/// Name of the lock file inside the log directory.
const LOCK_FILE_NAME: &str = "LOCK";

/// A segment file found in the directory, known by its name only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    /// Full path of the file.
    pub path: PathBuf,
    /// First index, from the file name.
    pub first_index: u64,
}

/// Lists the segment files of `dir` in index order; other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let entries = fs::read_dir(dir).map_err(|error| LogError::io("read directory", dir, error))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| LogError::io("read directory", dir, error))?;
        let name = entry.file_name();
        let Some(first_index) = name.to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        segments.push(SegmentFile { path: entry.path(), first_index });
    }
    segments.sort_by_key(|segment| segment.first_index);
    Ok(segments)
}

/// Deletes segments that were being created when the process stopped, and files prepared
/// for segments that never used them.
pub(crate) fn remove_temporary_files(dir: &Path) -> Result<usize, LogError> {
    let entries = fs::read_dir(dir).map_err(|error| LogError::io("read directory", dir, error))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|error| LogError::io("read directory", dir, error))?;
        let is_temporary = entry.file_name().to_str().is_some_and(|name| name.ends_with(TEMPORARY_SUFFIX));
        if is_temporary {
            let path = entry.path();
            fs::remove_file(&path).map_err(|error| LogError::io("remove", &path, error))?;
            if entry.file_name().to_str().is_some_and(|name| name.starts_with(PREPARED_FILE_PREFIX)) {
                tracing::debug!(file = %path.display(), "removed a preallocated file no segment used");
            } else {
                tracing::info!(file = %path.display(), "removed an unfinished log segment");
            }
            removed += 1;
        }
    }
    Ok(removed)
}

/// fsyncs a directory so that creations, renames and deletions in it survive a crash.
pub(crate) fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The writer's file operations: a seam through which tests inject write and fsync failures.
///
/// To ensure correctness an implementation must either complete the operation or return the
/// error of the system call, and must never retry a failed fsync: after a failed fsync the
/// kernel may have dropped the dirty pages, so a later successful fsync proves nothing.
pub(crate) trait FileOperations: Send + Sync {
    /// Writes all of `bytes` at the file's current position.
    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()>;
    /// fdatasync: the file's data (and the size needed to read it) reaches stable storage.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// fsync of a directory: creations and renames in it reach stable storage.
    fn sync_directory(&self, dir: &Path) -> io::Result<()>;
}

/// The real system calls.
#[derive(Debug, Default)]
pub(crate) struct SystemFiles;

impl FileOperations for SystemFiles {
    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_directory(&self, dir: &Path) -> io::Result<()> {
        sync_directory(dir)
    }
}

/// Creates the segment that starts at `first_index`, atomically; returns it open for appending.
pub(crate) fn create_segment(
    dir: &Path,
    first_index: u64,
    files: &dyn FileOperations,
) -> Result<(File, PathBuf), LogError> {
    let temporary = dir.join(segment_file_name(first_index)).with_extension("log.tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(|error| LogError::io("create", &temporary, error))?;
    install_segment(dir, first_index, file, &temporary, files)
}

/// Makes the temporary file `temporary` (new, or preallocated zeros) the segment that starts
/// at `first_index`: header written at its start and fdatasynced, renamed, directory
/// fsynced. Returns it open for writing after the header.
pub(crate) fn install_segment(
    dir: &Path,
    first_index: u64,
    mut file: File,
    temporary: &Path,
    files: &dyn FileOperations,
) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(segment_file_name(first_index));
    file.seek(SeekFrom::Start(0)).map_err(|error| LogError::io("seek", temporary, error))?;
    files
        .write_all(&mut file, &encode_segment_header(first_index))
        .map_err(|error| LogError::io("write segment header", temporary, error))?;
    files.sync_data(&file).map_err(|error| LogError::io("fdatasync", temporary, error))?;
    // The writer never rolls an empty segment, so a segment with this name cannot exist.
    assert!(!path.exists(), "segment {} already exists", path.display());
    fs::rename(temporary, &path).map_err(|error| LogError::io("rename", temporary, error))?;
    files.sync_directory(dir).map_err(|error| LogError::io("fsync directory", dir, error))?;
    Ok((file, path))
}

/// An exclusive `flock` on the directory's LOCK file, released when dropped: one process
/// at a time in a log directory (or in any directory that uses it, such as an archive).
#[derive(Debug)]
pub struct DirectoryLock {
    // Holding the open file holds the lock.
    _file: File,
}

impl DirectoryLock {
    /// Takes the lock without waiting; `LogError::Locked` if someone holds it.
    pub fn acquire(dir: &Path) -> Result<DirectoryLock, LogError> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| LogError::io("open", &path, error))?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if result == 0 {
            return Ok(DirectoryLock { _file: file });
        }
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            return Err(LogError::Locked { dir: dir.to_path_buf() });
        }
        Err(LogError::io("flock", &path, error))
    }
}

/// Creates the directory (and parents) if missing, durably.
pub(crate) fn ensure_directory(dir: &Path) -> Result<(), LogError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|error| LogError::io("create directory", dir, error))?;
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        sync_directory(parent).map_err(|error| LogError::io("fsync directory", parent, error))?;
    }
    Ok(())
}
