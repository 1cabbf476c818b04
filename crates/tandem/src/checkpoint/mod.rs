//! Checkpoints: the keyspace saved to stable storage at several intervals,
//! so that a node restarts from the newest checkpoint plus the log tail.
//!
//! Follow a checkpoint:
//! * [`policy`] — pure: given the schedule, what happened and `now`, is a
//!   full or an incremental checkpoint due?
//! * [`service`] — the [`Checkpointer`]: takes the *cut* under the keyspace
//!   lock (`Database::checkpoint_cut`: shares the root of the bucket tree,
//!   one pointer copy), writes in the background on idle CPU time, then
//!   retention and log truncation.
//! * [`writer_thread`] — the long-lived thread, at nice 10, that writes them.
//! * [`format`](mod@format) — the file: versioned header, CRC32C-checked chunks of
//!   bucket records, footer with counts and whole-file CRC32C
//!   (spec: `docs/checkpoint-format.md`).
//! * [`file`](mod@file) — names, and the all-or-nothing write: temporary file, fsync,
//!   rename, directory fsync; [`failpoint`] crashes it on demand for tests.
//! * [`restore`] — at start: the newest chain (full + incrementals) that
//!   verifies, then the log continues at its index + 1.
//! * [`commands`] — `CHECKPOINT`, `BGSAVE`, `SAVE`, `LASTSAVE`, INFO fields.
//! * [`cli`] — `tandem checkpoint list | inspect | verify | restore`.
//!
//! Invariants (each one is tested):
//! * a checkpoint is the state exactly as of one log index — never half a
//!   `MULTI`/`EXEC`;
//! * a checkpoint is complete and verified, or it is not used: never a
//!   partial file, never a file another node wrote;
//! * restoring a chain and replaying the log after it gives the state that
//!   replaying the whole log gives;
//! * an incremental holds every bucket written since its base, whole, so
//!   applying it also applies deletions.

pub mod cli;
pub mod commands;
pub mod failpoint;
pub mod file;
pub mod format;
pub mod policy;
pub mod restore;
pub mod service;
pub mod writer_thread;

pub use format::Kind;
pub use restore::{Loaded, RestoreError, Skipped, Verified};
pub use service::{Checkpointer, Outcome, Requested, Settings};

/// What a node restored at start, handed from `Database::open` to the checkpointer.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The chain loaded and the files skipped.
    pub loaded: Loaded,
    /// The keyspace generation of the loaded state (the next incremental's base).
    pub base_generation: u64,
    /// Log records replayed after the chain.
    pub replayed: u64,
}
