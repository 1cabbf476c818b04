//! Segments written into preallocated space: a background thread fills the next segment's
//! file with zeros and fsyncs it before the writer needs it.
//!
//! Why: appending to a file makes every fdatasync write metadata too (the new size, the
//! blocks just allocated) besides the data and the cache flush. Overwriting zeros that are
//! already on disk needs only the data. On this project's test machine (ext4, a virtual
//! disk) an fdatasync after a 35 KB write took 185–200 µs and 77–87 µs of CPU appending,
//! 100–115 µs and 42–51 µs overwriting zeros; a single node under `appendfsync always`
//! served 14% more `SET`s at `-P 1` and 17–22% more at `-P 16`. (`fallocate` alone is not
//! enough: the first write to an allocated-but-unwritten extent is a metadata change too.)
//! PostgreSQL's WAL segments are zero-filled for the same reason.
//!
//! How (the writer's side is in `writer`):
//! * the file is prepared as `preallocated-N.log.tmp` (a temporary name: never part of the
//!   log, removed by recovery if a crash leaves it; a new N each time, so the next file is
//!   never confused with the one the writer is still renaming), zero-filled and fsynced whole;
//! * the writer takes it when it rolls: writes the segment header into it, fdatasyncs,
//!   renames it to the segment's name and fsyncs the directory, as for a new segment;
//! * before its first write after the log opens, the writer gives the segment it continues
//!   `FIRST_BYTES` of zeros after its records (a few milliseconds), so the first writes
//!   need no roll; nothing is zeroed while a restarting node restores its state;
//! * a file is prepared only once the writer asks (`request`): when its segment is half
//!   through its zeros, or has none;
//! * prepared files grow fourfold from there up to the segment size (at most `BYTES_MAX`),
//!   so a log that receives little never writes 64 MiB of zeros (writeback is started a
//!   MiB at a time, and the file fsynced once); a segment that outgrows its
//!   zeros rolls into the next prepared file as soon as that is ready (so the first segments
//!   of a busy log are about 1, 4 and 16 MiB);
//! * the writer cuts the zeros off a segment it closes, and off the last one at a clean
//!   shutdown, so only the newest segment of a running (or crashed) log ends in zeros;
//! * a failure (a full disk, say) only ends preallocation: it is logged, and the writer
//!   goes on creating segments as before.
//!
//! Readers and recovery treat a zero frame header followed by nothing but zeros as the end
//! of the log (`scan`, `cursor`); FORMAT.md states it.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::format::TEMPORARY_SUFFIX;

/// How the names of prepared files start.
pub(crate) const PREPARED_FILE_PREFIX: &str = "preallocated-";

/// Name of the `number`th file prepared (ends in the temporary suffix, so recovery removes it).
pub(crate) fn prepared_file_name(number: u64) -> String {
    format!("{PREPARED_FILE_PREFIX}{number}{TEMPORARY_SUFFIX}")
}

/// Zeros given to the segment the log continues, before its first write; the first file
/// prepared after that is four times larger.
pub(crate) const FIRST_BYTES: u64 = 1024 * 1024;
/// Largest file prepared; a larger segment grows past it by appending.
pub(crate) const BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Zeros written per call.
const CHUNK_BYTES: usize = 1024 * 1024;

/// A zero-filled, fsynced file ready to become the next segment.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub file: File,
    pub path: PathBuf,
    /// Its length: the segment's preallocated capacity, header included.
    pub bytes: u64,
}

/// The background preparer of one log directory; dropping it stops the thread and removes
/// a prepared file nobody took.
#[derive(Debug)]
pub(crate) struct Preallocator {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Mirrors `state.ready.is_some()`, for the writer's check before each batch.
    ready: AtomicBool,
    /// The writer asked for a file and has not taken one since (set and cleared under
    /// `state`'s lock, so the thread's wait cannot miss it; read without it by `request`).
    requested: AtomicBool,
    stop: AtomicBool,
}

#[derive(Debug)]
struct State {
    ready: Option<Prepared>,
    /// Size of the next file to prepare; 0 once preallocation failed.
    next_bytes: u64,
}

impl Preallocator {
    /// Starts preparing files of up to `segment_bytes_max` bytes in `dir`.
    pub(crate) fn start(dir: &Path, segment_bytes_max: u64) -> std::io::Result<Preallocator> {
        let limit = segment_bytes_max.min(BYTES_MAX);
        let shared = Arc::new(Shared {
            state: Mutex::new(State { ready: None, next_bytes: (FIRST_BYTES * 4).min(limit) }),
            wake: Condvar::new(),
            ready: AtomicBool::new(false),
            requested: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let thread_shared = Arc::clone(&shared);
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("tandem-log-prealloc".to_owned())
            .spawn(move || run(&thread_shared, &dir, limit))?;
        Ok(Preallocator { shared, thread: Some(thread) })
    }

    /// Asks for the next file to be prepared, if it is not already (cheap to repeat).
    pub(crate) fn request(&self) {
        if self.shared.requested.load(Ordering::Acquire) {
            return;
        }
        let _state = self.shared.state.lock();
        self.shared.requested.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }

    /// True if a prepared file is waiting (one atomic load).
    pub(crate) fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The prepared file, if one is ready; the next is prepared once `request`ed.
    pub(crate) fn take(&self) -> Option<Prepared> {
        let mut state = self.shared.state.lock();
        let prepared = state.ready.take()?;
        self.shared.ready.store(false, Ordering::Release);
        self.shared.requested.store(false, Ordering::Release);
        Some(prepared)
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _state = self.shared.state.lock();
            self.shared.wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(prepared) = self.shared.state.lock().ready.take() {
            let _ = fs::remove_file(&prepared.path);
        }
    }
}

fn run(shared: &Shared, dir: &Path, limit: u64) {
    for number in 1.. {
        let path = &dir.join(prepared_file_name(number));
        let bytes = {
            let mut state = shared.state.lock();
            while !shared.stop.load(Ordering::Acquire)
                && (state.ready.is_some() || !shared.requested.load(Ordering::Acquire) || state.next_bytes == 0)
            {
                shared.wake.wait(&mut state);
            }
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            state.next_bytes
        };
        match prepare(path, bytes, &shared.stop) {
            Ok(Some(file)) => {
                let mut state = shared.state.lock();
                state.ready = Some(Prepared { file, path: path.to_path_buf(), bytes });
                state.next_bytes = (bytes * 4).min(limit);
                shared.ready.store(true, Ordering::Release);
            }
            Ok(None) => {
                let _ = fs::remove_file(path);
                return;
            }
            Err(error) => {
                let _ = fs::remove_file(path);
                tracing::warn!(
                    file = %path.display(),
                    %error,
                    "cannot preallocate the next log segment; segments grow by appending from now on"
                );
                shared.state.lock().next_bytes = 0;
            }
        }
    }
}

/// Writes zeros over `from..to` of `file` (past its records) and fsyncs it, size included.
pub(crate) fn extend_with_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    write_zeros(file, from, to, &AtomicBool::new(false))?;
    file.sync_all()
}

/// Writes `bytes` zeros to a new file at `path` and fsyncs it; `None` if stopped meanwhile.
fn prepare(path: &Path, bytes: u64, stop: &AtomicBool) -> std::io::Result<Option<File>> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    if !write_zeros(&file, 0, bytes, stop)? {
        return Ok(None);
    }
    // The size and the allocated blocks too, so that writes over them need no metadata.
    file.sync_all()?;
    Ok(Some(file))
}

/// Writes zeros over `from..to` of `file` a chunk at a time, starting each chunk's writeback;
/// false if `stop` was set meanwhile.
fn write_zeros(file: &File, from: u64, to: u64, stop: &AtomicBool) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; CHUNK_BYTES];
    let mut position = from;
    while position < to {
        if stop.load(Ordering::Acquire) {
            return Ok(false);
        }
        let length = (to - position).min(CHUNK_BYTES as u64);
        file.write_all_at(&zeros[..length as usize], position)?;
        start_writeback(file, position, length)?;
        position += length;
    }
    Ok(true)
}

/// Starts writing `offset..offset + length` of `file` to disk without waiting or flushing
/// the disk's cache: a chunk at a time, the log's own fdatasyncs on the same disk never queue
/// behind tens of megabytes of zeros, and there is one cache flush per file, not one a chunk.
fn start_writeback(file: &File, offset: u64, length: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `file` is open; sync_file_range reads no memory of ours.
    let result =
        unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, length as i64, libc::SYNC_FILE_RANGE_WRITE) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    fn wait_ready(preallocator: &Preallocator) -> Prepared {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(prepared) = preallocator.take() {
                return prepared;
            }
            assert!(Instant::now() < deadline, "no file was prepared");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn files_are_zero_filled_and_grow_fourfold_up_to_the_segment_size() {
        let dir = tempfile::tempdir().unwrap();
        let preallocator = Preallocator::start(dir.path(), 10 * 1024 * 1024).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!preallocator.is_ready(), "nothing is prepared before the writer asks");
        let mut sizes = Vec::new();
        for _ in 0..4 {
            preallocator.request();
            let prepared = wait_ready(&preallocator);
            assert_eq!(prepared.file.metadata().unwrap().len(), prepared.bytes);
            let mut contents = Vec::new();
            File::open(&prepared.path).unwrap().read_to_end(&mut contents).unwrap();
            assert!(contents.iter().all(|&byte| byte == 0));
            sizes.push(prepared.bytes);
            assert_eq!(prepared.path, dir.path().join(prepared_file_name(sizes.len() as u64)));
        }
        assert_eq!(sizes, [4 * FIRST_BYTES, 10 * 1024 * 1024, 10 * 1024 * 1024, 10 * 1024 * 1024]);
    }

    #[test]
    fn dropping_removes_a_file_nobody_took() {
        let dir = tempfile::tempdir().unwrap();
        let preallocator = Preallocator::start(dir.path(), 1024 * 1024).unwrap();
        preallocator.request();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !preallocator.is_ready() {
            assert!(Instant::now() < deadline, "no file was prepared");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(dir.path().join(prepared_file_name(1)).exists());
        drop(preallocator);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
