//! Shipping to stable storage: a data node copies its durable log records and its
//! checkpoints into an archive directory (typically a mounted network volume), from
//! which `tandem restore --from` — and the cold standby — rebuild a data directory.
//!
//! Follow a shipped record:
//! * [`shipper`] — the background task: every `archive.interval_ms` it copies new
//!   checkpoints and the records that became durable since the last pass into archive
//!   files (temporary file, fsync, rename, directory fsync, read back and checked), then
//!   rewrites the manifest; errors are counted, reported and retried with backoff, never
//!   seen by clients. [`Status`] is what INFO, `/metrics` and `tandem status` show.
//! * [`segment`] — archived segment files: the log's own segment format (pure).
//! * [`manifest`] — the list of archived files, written atomically and always last.
//! * [`verify`] — `tandem archive verify`: every checksum, the manifest's continuity,
//!   the last consistent index.
//! * [`restore`] — `tandem restore --from`: rebuilds a data directory from the archive,
//!   up to the newest consistent point or exactly to a given index or time.
//! * [`cli`] — the two commands' output and progress bar.
//!
//! Invariants (each one is tested in `tests/archive.rs`):
//! * the archive is always a restorable prefix: the manifest names only files that were
//!   complete, durable and checked before it was written;
//! * only durable records are shipped, so the archive never holds a record a crash of the
//!   node could take back;
//! * a damaged archive file is detected by its checksum; restore stops at the last
//!   consistent point and says so, never loads it.

pub mod cli;
pub mod manifest;
pub mod restore;
pub mod segment;
pub mod shipper;
pub mod verify;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub use manifest::Manifest;
pub use restore::{rebuild, Rebuilt, Target};

/// What the shipper has done, shared with INFO, `/metrics` and `/status`.
#[derive(Debug, Default)]
pub struct Status {
    /// The newest log index the archive's manifest holds.
    pub last_shipped_index: AtomicU64,
    /// When the shipper last had every record that was durable at the start of its pass
    /// archived (Unix ms); the lag in seconds counts from here.
    pub caught_up_unix_ms: AtomicU64,
    /// Failed passes since start.
    pub errors: AtomicU64,
    /// The last pass's error, if it failed.
    pub last_error: Mutex<Option<String>>,
}

/// A consistent reading of [`Status`] against the log's last index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The newest log index archived.
    pub last_index: u64,
    /// Records in the log and not yet in the archive (the cold-standby recovery point).
    pub lag_records: u64,
    /// Seconds since the archive last held everything durable (0 when nothing lags).
    pub lag_seconds: u64,
    /// Failed passes since start.
    pub errors: u64,
    /// `ok`, or `err: <the last error>`.
    pub status: String,
}

impl Status {
    /// The status as of `now_ms`, with the log at `log_last_index`.
    pub fn snapshot(&self, log_last_index: u64, now_ms: u64) -> Snapshot {
        let last_index = self.last_shipped_index.load(Ordering::Acquire);
        let lag_records = log_last_index.saturating_sub(last_index);
        let caught_up = self.caught_up_unix_ms.load(Ordering::Acquire);
        let lag_seconds = if lag_records == 0 { 0 } else { now_ms.saturating_sub(caught_up) / 1000 };
        let status = match &*self.last_error.lock() {
            None => "ok".to_string(),
            Some(error) => format!("err: {error}"),
        };
        Snapshot { last_index, lag_records, lag_seconds, errors: self.errors.load(Ordering::Relaxed), status }
    }
}

/// The running shipper's status. A process runs at most one node, hence one shipper;
/// a process-wide slot lets INFO and `/status` find it without a field in `Shared`.
static CURRENT: Mutex<Option<Arc<Status>>> = Mutex::new(None);

/// The status of this process's shipper, if one runs.
pub fn current() -> Option<Arc<Status>> {
    CURRENT.lock().clone()
}

/// Makes `status` the one `current` returns.
pub(crate) fn install(status: Arc<Status>) {
    *CURRENT.lock() = Some(status);
}

/// Sets the archive gauges from the shipper's status and the log's last index (at scrape time).
pub fn publish_metrics(log_last_index: u64) {
    let Some(status) = current() else { return };
    let snapshot = status.snapshot(log_last_index, crate::db::unix_ms());
    metrics::gauge!("tandem_archive_last_shipped_index").set(snapshot.last_index as f64);
    metrics::gauge!("tandem_archive_lag_records").set(snapshot.lag_records as f64);
    metrics::gauge!("tandem_archive_lag_seconds").set(snapshot.lag_seconds as f64);
    metrics::counter!("tandem_archive_errors_total").absolute(snapshot.errors);
}

/// INFO persistence fields: `archive_last_index`, `archive_lag_records`,
/// `archive_lag_seconds`, `archive_errors`, `archive_status` (none without a shipper).
pub fn info_fields(log_last_index: u64) -> Vec<(&'static str, String)> {
    let Some(status) = current() else { return Vec::new() };
    let snapshot = status.snapshot(log_last_index, crate::db::unix_ms());
    vec![
        ("archive_last_index", snapshot.last_index.to_string()),
        ("archive_lag_records", snapshot.lag_records.to_string()),
        ("archive_lag_seconds", snapshot.lag_seconds.to_string()),
        ("archive_errors", snapshot.errors.to_string()),
        ("archive_status", snapshot.status.replace(['\r', '\n'], " ")),
    ]
}

/// Size of the buffer files are copied and checksummed through.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// Copies `source` to `destination` durably: into `destination.tmp`, fsync, rename,
/// fsync of the directory; then reads the copy back and checks its CRC32C against the
/// bytes read from `source`. Returns (bytes, crc32c).
pub fn copy_durably(source: &Path, destination: &Path) -> anyhow::Result<(u64, u32)> {
    let file = File::open(source).map_err(|error| anyhow::anyhow!("open {}: {error}", source.display()))?;
    copy_open_file_durably(&file, source, destination)
}

/// `copy_durably` from a file already open (`source` names it in errors).
pub fn copy_open_file_durably(file: &File, source: &Path, destination: &Path) -> anyhow::Result<(u64, u32)> {
    use anyhow::Context;
    use std::os::unix::fs::FileExt;
    let temporary = temporary_path(destination);
    let copied = (|| -> anyhow::Result<(u64, u32)> {
        let mut output = File::create(&temporary).with_context(|| format!("create {}", temporary.display()))?;
        let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
        let (mut bytes, mut checksum) = (0u64, 0u32);
        loop {
            let read = file.read_at(&mut buffer, bytes).with_context(|| format!("read {}", source.display()))?;
            if read == 0 {
                break;
            }
            output.write_all(&buffer[..read]).with_context(|| format!("write {}", temporary.display()))?;
            checksum = crc32c::crc32c_append(checksum, &buffer[..read]);
            bytes += read as u64;
        }
        output.sync_all().with_context(|| format!("fsync {}", temporary.display()))?;
        Ok((bytes, checksum))
    })();
    let published = copied.and_then(|copied| publish(&temporary, destination).map(|()| copied));
    let (bytes, checksum) = match published {
        Ok(copied) => copied,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    check_copy(destination, bytes, checksum)?;
    Ok((bytes, checksum))
}

/// The whole contents of an open file, read from its start.
pub fn read_whole(file: &File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let length = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// Room a pass leaves free on the archive's disk beyond the manifest's own size: the
/// manifest naming the files written is written last, beside the previous one, and must fit.
const MANIFEST_ROOM_MARGIN: u64 = 64 * 1024;

/// An upper bound of a manifest's encoded size while a pass adds entries to it, from one
/// encoding at the pass's start (rather than one before each file it writes).
pub struct ManifestSize {
    encoded: u64,
    entries: usize,
}

impl ManifestSize {
    /// The size of `manifest` as it is.
    pub fn of(manifest: &Manifest) -> ManifestSize {
        ManifestSize { encoded: manifest::encode(manifest).len() as u64, entries: manifest.entries() }
    }

    /// At most the encoded size of `grown`: the measured manifest with entries added.
    pub fn bound(&self, grown: &Manifest) -> u64 {
        let added = grown.entries().saturating_sub(self.entries) as u64;
        self.encoded + added * manifest::ENTRY_ENCODED_BYTES_MAX
    }
}

/// Refuses to write a `bytes`-byte file into `dir` unless the manifest that will name it
/// (`manifest_bytes` now) still fits after it. Without this a nearly full disk took every
/// file a pass wrote, the manifest could not be written, the files were removed again, and
/// the next pass did the same: nothing was ever recorded.
pub fn ensure_room(dir: &Path, manifest_bytes: u64, bytes: u64) -> anyhow::Result<()> {
    let needed = bytes + 2 * manifest_bytes + MANIFEST_ROOM_MARGIN;
    let free = free_bytes(dir)?;
    anyhow::ensure!(
        free >= needed,
        "the archive's disk is full: {free} bytes free in {}, a {bytes}-byte file and the manifest need {needed}",
        dir.display()
    );
    Ok(())
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string; statvfs fills `stats` when it returns 0.
    if unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        let error = std::io::Error::last_os_error();
        anyhow::bail!("statvfs {}: {error}", dir.display());
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    Ok(stats.f_bavail * stats.f_frsize)
}

/// Writes `bytes` to `destination` durably (temporary, fsync, rename, directory fsync),
/// then reads it back and checks it. Returns its CRC32C.
pub fn write_durably(destination: &Path, bytes: &[u8]) -> anyhow::Result<u32> {
    let temporary = temporary_path(destination);
    let written = manifest::write_durably(&temporary, bytes)
        .map_err(anyhow::Error::from)
        .and_then(|()| publish(&temporary, destination));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    let checksum = crc32c::crc32c(bytes);
    check_copy(destination, bytes.len() as u64, checksum)?;
    Ok(checksum)
}

fn temporary_path(destination: &Path) -> std::path::PathBuf {
    let mut name = destination.file_name().unwrap_or_default().to_os_string();
    name.push(manifest::TEMPORARY_SUFFIX);
    destination.with_file_name(name)
}

fn publish(temporary: &Path, destination: &Path) -> anyhow::Result<()> {
    std::fs::rename(temporary, destination)
        .map_err(|error| anyhow::anyhow!("rename {}: {error}", temporary.display()))?;
    let dir = destination.parent().unwrap_or(Path::new("."));
    manifest::sync_directory(dir)?;
    Ok(())
}

/// Reads `path` back and checks its size and CRC32C.
fn check_copy(path: &Path, bytes: u64, checksum: u32) -> anyhow::Result<()> {
    let (found_bytes, found) = file_checksum(path)?;
    anyhow::ensure!(
        found_bytes == bytes && found == checksum,
        "the copy {} reads back as {found_bytes} bytes with crc32c {found:08x}, expected {bytes} bytes with {checksum:08x}",
        path.display()
    );
    Ok(())
}

/// The size and CRC32C of a whole file.
pub fn file_checksum(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut input = File::open(path)?;
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let (mut bytes, mut checksum) = (0u64, 0u32);
    loop {
        let read = input.read(&mut buffer)?;
        if read == 0 {
            return Ok((bytes, checksum));
        }
        checksum = crc32c::crc32c_append(checksum, &buffer[..read]);
        bytes += read as u64;
    }
}

/// Reads every chunk and the footer of a checkpoint file (all checksums); returns its header.
pub fn check_checkpoint(
    path: &Path,
) -> Result<crate::checkpoint::format::Header, crate::checkpoint::format::FormatError> {
    let mut reader = crate::checkpoint::format::FileReader::open(path)?;
    while reader.next_chunk()?.is_some() {}
    Ok(reader.header().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_refused_when_the_manifest_would_not_fit_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = Manifest::empty(1);
        let manifest = ManifestSize::of(&empty).bound(&empty);
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > MANIFEST_ROOM_MARGIN, "the test needs a little free space");
        ensure_room(dir.path(), manifest, 0).expect("an empty file and the manifest fit");
        let error = ensure_room(dir.path(), manifest, free).unwrap_err().to_string();
        assert!(error.contains("the archive's disk is full"), "{error}");
        let error = free_bytes(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(error.contains("statvfs"), "{error}");
    }
}
