//! tandem's append-only log: CRC-framed records in segment files, fsynced with group commit,
//! replayed and checked at startup, repaired by an operator when damaged.
//!
//! A write flows: the server applies a command under its keyspace lock and, under that same
//! lock, calls `Log::append` (memory only) so that log order is apply order; batches are
//! written to the segment by the writer thread or, with inline writes, by the server's event
//! loop once per turn (`Log::write_pending`); the writer thread fsyncs per `FsyncPolicy`;
//! client replies wait on `Progress`.
//! At startup `recover` validates the directory and drops a torn tail (keeping where every
//! 4,096th record starts), `read_from_recovered` replays from one of those positions, and
//! `Log::open` continues at the next index.
//!
//! Layout:
//! * `types`       — `LogIndex`, `Epoch`, `NodeId`, `Record`, `FsyncPolicy`, `LogOptions`, limits
//! * `error`       — `LogError` and the kinds of `Corruption`
//! * `format`      — on-disk encoding of segment headers and frames (spec: FORMAT.md)
//! * `directory`   — segment files, atomic creation, the directory lock, the file-operation seam
//! * `cursor`      — reading frames from one segment; searching damage for intact frames
//! * `scan`        — validating a whole directory; the torn-tail rule; kept record positions
//! * `recovery`    — `recover` at startup
//! * `maintenance` — `check`, `repair`, `remove_segments_before`, `remove_all_segments`
//! * `preallocate` — zero-filled files for the next segments, prepared in the background
//! * `reader`      — `read_from`, `read_from_recovered`: streaming records, also from a live log
//! * `writer`      — `Log`: append, the writer thread, group commit, fatal errors
//! * `progress`    — `Progress`: written/durable indexes and async waits
//!
//! Invariants of the log as a whole:
//! 1. Indexes are contiguous: every record's index is the previous one's plus one, across
//!    segments; a segment's name and header carry the index of its first record.
//! 2. Log order is append order; a record is never split across segments.
//! 3. `durable <= written <= last_index`; each is published only after the write/fdatasync
//!    that covers it succeeded; a failed write or fsync is fatal and nothing advances after it.
//! 4. Damage is never silently accepted: a record is returned only if its checksum matches;
//!    recovery drops only a torn tail (see `scan`), everything else needs `repair`.
//! 5. Only the newest segment is ever written; a segment is fsynced before the next is
//!    created, and segments appear atomically (temporary file, fsync, rename, fsync dir).

#![warn(missing_docs)]

mod cursor;
mod directory;
mod error;
mod format;
mod maintenance;
mod preallocate;
mod progress;
mod reader;
#[cfg(test)]
mod reader_tests;
mod recovery;
mod scan;
mod types;
mod writer;
#[cfg(test)]
mod writer_tests;

pub use directory::DirectoryLock;
pub use error::{Corruption, LogError};
pub use maintenance::{
    check, remove_all_segments, remove_segments_before, repair, truncate_after, CheckReport, Problem, ProblemKind,
    RepairReport,
};
pub use progress::Progress;
pub use reader::{epoch_at, last_record_with_epoch_at_most, read_from, read_from_recovered, LogReader};
pub use recovery::{recover, Recovery};
pub use types::{
    Epoch, FsyncPolicy, LogIndex, LogOptions, NodeId, ParseFsyncPolicyError, Record, PENDING_BYTES_SOFT_MAX,
    RECORD_BYTES_MAX_DEFAULT, RECORD_BYTES_MAX_MAX, SEGMENT_BYTES_MAX_DEFAULT, SEGMENT_BYTES_MAX_MAX,
    SEGMENT_BYTES_MAX_MIN,
};
pub use writer::{exit_on_fatal_error, FatalHandler, Log, PayloadWriter, SyncObserver, WriterCounters};
