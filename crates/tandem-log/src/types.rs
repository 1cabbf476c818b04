//! The log's vocabulary: index, epoch and node newtypes, the record, and the
//! options with their limits.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::format::{BODY_FIXED_BYTES, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};

/// Position of a record in the log; the first record ever written is 1, and 0 means "none yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(pub u64);

impl LogIndex {
    /// The index of the record that follows this one.
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
}

/// Term of one active node's leadership; a record carries the epoch it was written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

/// Identity of the cluster member whose client issued the write a record holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

macro_rules! display_inner {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, formatter)
            }
        }
    )*};
}
display_inner!(LogIndex, Epoch, NodeId);

/// One entry of the log as read back from disk; the payload is opaque to this crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Position in the log, contiguous with its neighbours.
    pub index: LogIndex,
    /// Epoch of the active node that wrote it.
    pub epoch: Epoch,
    /// Hybrid logical clock timestamp of the write.
    pub hlc: u64,
    /// Node whose client issued the write.
    pub origin: NodeId,
    /// The encoded effect, exactly as appended.
    pub payload: Bytes,
}

/// When the writer forces appended records to stable storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FsyncPolicy {
    /// fdatasync after every batch; a reply may wait for `durable` (group commit).
    #[default]
    Always,
    /// fdatasync at most once a second; a crash loses up to a second of writes.
    EverySecond,
    /// Never fsync except when a segment closes and at shutdown; the OS decides.
    Never,
}

impl FsyncPolicy {
    /// The configuration spelling, as Redis spells `appendfsync`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySecond => "everysec",
            FsyncPolicy::Never => "no",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A configuration string that names no fsync policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fsync policy `{0}`: expected `always`, `everysec` or `no`")]
pub struct ParseFsyncPolicyError(pub String);

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySecond),
            "no" => Ok(FsyncPolicy::Never),
            other => Err(ParseFsyncPolicyError(other.to_owned())),
        }
    }
}

/// Default size at which the writer starts a new segment.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest accepted `segment_bytes_max`; tests use small segments to cross many boundaries.
pub const SEGMENT_BYTES_MAX_MIN: u64 = 256;
/// Largest accepted `segment_bytes_max`, so that one segment stays easy to copy and scan.
pub const SEGMENT_BYTES_MAX_MAX: u64 = 64 * 1024 * 1024 * 1024;
/// Default payload limit: Redis' 512 MiB value limit plus room for the effect's framing.
pub const RECORD_BYTES_MAX_DEFAULT: u32 = 512 * 1024 * 1024 + 1024 * 1024;
/// Largest accepted `record_bytes_max`: a whole frame must still be describable by a u32 length.
pub const RECORD_BYTES_MAX_MAX: u32 = u32::MAX - (FRAME_HEADER_BYTES + BODY_FIXED_BYTES) as u32;
/// Pending (appended, not yet written) bytes above which callers should stop taking writes.
///
/// `append` never blocks and never refuses, because it runs under the server's keyspace lock;
/// back-pressure is the caller's job: compare `Log::pending_bytes()` with this.
pub const PENDING_BYTES_SOFT_MAX: u64 = 256 * 1024 * 1024;

const _: () = assert!(RECORD_BYTES_MAX_DEFAULT <= RECORD_BYTES_MAX_MAX);
const _: () = assert!(SEGMENT_BYTES_MAX_MIN > SEGMENT_HEADER_BYTES as u64);
const _: () = assert!(SEGMENT_BYTES_MAX_MIN <= SEGMENT_BYTES_MAX_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_MAX_DEFAULT <= SEGMENT_BYTES_MAX_MAX);
const _: () = assert!(PENDING_BYTES_SOFT_MAX >= SEGMENT_BYTES_MAX_DEFAULT);

/// How the log is laid out and flushed; the same options must be used to write and to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is closed before a record would grow it past this (a larger record gets its own).
    pub segment_bytes_max: u64,
    /// Largest payload `append` accepts and reading tolerates; larger lengths on disk are corruption.
    pub record_bytes_max: u32,
    /// When the writer fsyncs.
    pub fsync: FsyncPolicy,
    /// Write segments into zero-filled files prepared in the background, so that an
    /// fdatasync flushes data only, not the file's growing size (see `preallocate`). Only the
    /// writer uses it; readers accept logs written either way.
    pub preallocate: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            fsync: FsyncPolicy::default(),
            preallocate: true,
        }
    }
}

impl LogOptions {
    /// Checks the options against the limits above; every entry point calls it.
    pub fn validate(&self) -> Result<(), crate::LogError> {
        let segment_range = SEGMENT_BYTES_MAX_MIN..=SEGMENT_BYTES_MAX_MAX;
        if !segment_range.contains(&self.segment_bytes_max) {
            return Err(crate::LogError::InvalidOptions(format!(
                "segment_bytes_max {} is outside {}..={}",
                self.segment_bytes_max, SEGMENT_BYTES_MAX_MIN, SEGMENT_BYTES_MAX_MAX
            )));
        }
        if self.record_bytes_max > RECORD_BYTES_MAX_MAX {
            return Err(crate::LogError::InvalidOptions(format!(
                "record_bytes_max {} is above {}",
                self.record_bytes_max, RECORD_BYTES_MAX_MAX
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_and_displays_config_strings() {
        for policy in [FsyncPolicy::Always, FsyncPolicy::EverySecond, FsyncPolicy::Never] {
            assert_eq!(policy.to_string().parse::<FsyncPolicy>(), Ok(policy));
        }
        assert_eq!("everysec".parse::<FsyncPolicy>(), Ok(FsyncPolicy::EverySecond));
        let error = "sometimes".parse::<FsyncPolicy>().unwrap_err();
        assert!(error.to_string().contains("`sometimes`"), "{error}");
    }

    #[test]
    fn options_outside_limits_are_refused() {
        assert!(LogOptions::default().validate().is_ok());
        let tiny = LogOptions { segment_bytes_max: 10, ..LogOptions::default() };
        assert!(tiny.validate().is_err());
        let huge = LogOptions { record_bytes_max: u32::MAX, ..LogOptions::default() };
        assert!(huge.validate().is_err());
    }

    #[test]
    fn corruption_error_names_file_offset_and_remedy() {
        let error = crate::LogError::Corrupt {
            file: "/x/00000000000000000001.log".into(),
            offset: 4096,
            reason: crate::Corruption::ChecksumMismatch,
        };
        assert_eq!(
            error.to_string(),
            "log corrupted in /x/00000000000000000001.log at byte offset 4096: checksum mismatch; \
             run `tandem log check --repair` to keep the valid prefix"
        );
    }
}
