//! Helpers shared by the integration tests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tandem_log::{read_from, recover, Epoch, FsyncPolicy, Log, LogIndex, LogOptions, NodeId, Record};

/// Options with small segments, so that tests cross many segment boundaries.
pub fn small_segments(segment_bytes_max: u64, fsync: FsyncPolicy) -> LogOptions {
    LogOptions { segment_bytes_max, record_bytes_max: 64 * 1024, fsync, preallocate: true }
}

/// A deterministic payload of `size` bytes that differs per `seed`.
pub fn payload(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Appends one record per size to the log in `dir` (recovering it first) and shuts down;
/// returns the records as they should read back.
pub fn append_records(dir: &Path, options: &LogOptions, sizes: &[usize]) -> Vec<Record> {
    let recovery = recover(dir, options).expect("recover");
    let log = Log::open(dir, options, &recovery).expect("open");
    let mut expected = Vec::new();
    for (position, &size) in sizes.iter().enumerate() {
        let seed = log.last_index().0 + 1;
        let body = payload(seed, size);
        let epoch = Epoch(1 + position as u64 / 10);
        let origin = NodeId(position as u32 % 3);
        let hlc = 1_000 + seed;
        let index = log.append(epoch, hlc, origin, &body);
        assert_eq!(index, LogIndex(seed));
        expected.push(Record { index, epoch, hlc, origin, payload: body.into() });
    }
    log.shutdown().expect("shutdown");
    expected
}

/// Every record from `start`, panicking on any error.
pub fn read_all_from(dir: &Path, options: &LogOptions, start: u64) -> Vec<Record> {
    read_from(dir, LogIndex(start), options).expect("read_from").collect::<Result<Vec<_>, _>>().expect("read record")
}

/// Segment files of `dir` in order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    files.sort();
    files
}

/// One frame in a segment file: where it starts, how long it is, and its index.
#[derive(Clone, Copy, Debug)]
pub struct FrameLocation {
    pub offset: u64,
    pub bytes: u64,
    pub index: u64,
}

/// Walks the frames of an intact segment file by their length fields.
pub fn frames_of(path: &Path) -> Vec<FrameLocation> {
    let bytes = fs::read(path).expect("read segment");
    let mut frames = Vec::new();
    let mut offset = 28usize;
    while offset + 8 <= bytes.len() {
        let body_bytes = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let index = u64::from_le_bytes(bytes[offset + 8..offset + 16].try_into().unwrap());
        frames.push(FrameLocation { offset: offset as u64, bytes: (8 + body_bytes) as u64, index });
        offset += 8 + body_bytes;
    }
    assert_eq!(offset, bytes.len(), "segment {} is not intact", path.display());
    frames
}

/// XORs one byte of a file with `mask`.
pub fn flip_byte(path: &Path, offset: u64, mask: u8) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize] ^= mask;
    fs::write(path, bytes).expect("write");
}

/// Copies the files of a log directory (not the lock) into a fresh temporary directory.
pub fn copy_log(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    for entry in fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|name| name != "LOCK") {
            fs::copy(&path, to.path().join(path.file_name().unwrap())).expect("copy");
        }
    }
    to
}

/// Runs `action` with tracing output captured; returns its result and the text logged.
pub fn capture_logs<T>(action: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let result = tracing::subscriber::with_default(subscriber, action);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).expect("utf-8 logs");
    (result, text)
}
