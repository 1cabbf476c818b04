//! Errors: operating errors the caller handles, and the kinds of damage a log file can show.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::types::LogIndex;

/// Everything that can go wrong in the log that is not a programmer error.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A segment holds bytes that are not a valid prefix of the log; only an operator may drop them.
    #[error(
        "log corrupted in {} at byte offset {offset}: {reason}; run `tandem log check --repair` to keep the valid prefix",
        file.display()
    )]
    Corrupt {
        /// The damaged segment file.
        file: PathBuf,
        /// Byte offset of the first damaged frame (0 for a damaged segment header).
        offset: u64,
        /// What was found there.
        reason: Corruption,
    },
    /// A system call on a log file or the log directory failed.
    #[error("log I/O failed: {operation} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "fdatasync".
        operation: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Log` in this one) holds the log directory.
    #[error("log directory {} is in use by another process (lock held on its LOCK file)", dir.display())]
    Locked {
        /// The log directory.
        dir: PathBuf,
    },
    /// Records a reader asked for were removed behind a checkpoint.
    #[error("log records from index {requested} are no longer available: the log starts at index {first_available}")]
    Unavailable {
        /// The first index asked for.
        requested: LogIndex,
        /// The first index still on disk.
        first_available: LogIndex,
    },
    /// The directory changed between `recover` and `Log::open`, so the recovery no longer describes it.
    #[error("log directory {} changed after recovery: {detail}", dir.display())]
    Stale {
        /// The log directory.
        dir: PathBuf,
        /// What no longer matches.
        detail: String,
    },
    /// `LogOptions` outside their limits.
    #[error("invalid log options: {0}")]
    InvalidOptions(String),
    /// The writer thread died from a panic (a bug); nothing after its last publication is safe.
    #[error("log writer thread panicked")]
    WriterPanicked,
}

impl LogError {
    /// Wraps an I/O error with the operation and path that produced it.
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io { operation, path: path.into(), source }
    }
}

/// The kind of damage found in a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The file is shorter than a segment header.
    HeaderTooShort,
    /// The file does not start with the segment magic.
    BadMagic,
    /// The header names a format version this build cannot read.
    UnsupportedVersion(u16),
    /// The header's reserved bytes are not zero.
    ReservedBytesNotZero,
    /// The header's checksum does not match its bytes.
    HeaderChecksumMismatch,
    /// The file name and the header disagree on the segment's first index.
    NameMismatch {
        /// First index from the file name.
        name_index: u64,
        /// First index from the header.
        header_index: u64,
    },
    /// This segment does not start right after the previous one ends.
    SegmentGap {
        /// The index the previous segment implies.
        expected: u64,
        /// The first index this segment declares.
        found: u64,
    },
    /// A frame declares a body length outside what the options allow.
    RecordLengthOutOfBounds {
        /// The declared body length in bytes.
        body_bytes: u32,
    },
    /// A frame's body does not match its checksum.
    ChecksumMismatch,
    /// A frame declares more bytes than its segment holds, where that cannot be a torn write.
    TruncatedRecord,
    /// An intact record carries the wrong index.
    IndexDiscontinuity {
        /// The index that should follow.
        expected: u64,
        /// The index the record carries.
        found: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::HeaderTooShort => write!(formatter, "file shorter than a segment header"),
            Corruption::BadMagic => write!(formatter, "not a tandem log segment (bad magic)"),
            Corruption::UnsupportedVersion(version) => {
                write!(formatter, "unsupported segment format version {version}")
            }
            Corruption::ReservedBytesNotZero => {
                write!(formatter, "segment header reserved bytes are not zero")
            }
            Corruption::HeaderChecksumMismatch => {
                write!(formatter, "segment header checksum mismatch")
            }
            Corruption::NameMismatch { name_index, header_index } => {
                write!(formatter, "file name says first index {name_index} but the header says {header_index}")
            }
            Corruption::SegmentGap { expected, found } => {
                write!(formatter, "segment starts at index {found} but the previous segment ends before {expected}")
            }
            Corruption::RecordLengthOutOfBounds { body_bytes } => {
                write!(formatter, "record length {body_bytes} bytes out of bounds")
            }
            Corruption::ChecksumMismatch => write!(formatter, "checksum mismatch"),
            Corruption::TruncatedRecord => {
                write!(formatter, "record runs past the end of its segment file")
            }
            Corruption::IndexDiscontinuity { expected, found } => {
                write!(formatter, "record has index {found} where {expected} was expected")
            }
        }
    }
}
