//! The `[archive]` section: where and how often a data node ships its closed log
//! records and checkpoints to stable storage (`crate::archive`). Errors name the
//! field as `archive.<field>`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, size_field, ConfigError};

/// Default pause between two shipping passes.
pub const ARCHIVE_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Shortest accepted pause between two passes.
pub const ARCHIVE_INTERVAL_MS_MIN: u64 = 10;
/// Longest accepted pause between two passes (an hour: beyond it the archive is not a standby's source).
pub const ARCHIVE_INTERVAL_MS_MAX: u64 = 3_600_000;
/// Default size up to which an archived segment file is extended by later passes.
pub const ARCHIVE_SEGMENT_BYTES_DEFAULT: u64 = 4 * 1024 * 1024;
/// Smallest accepted `archive.segment_size`.
pub const ARCHIVE_SEGMENT_BYTES_MIN: u64 = 64 * 1024;
/// Largest accepted `archive.segment_size`.
pub const ARCHIVE_SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Default number of archived full checkpoints kept, each with its chain and the log after it.
pub const ARCHIVE_RETAIN_FULL_DEFAULT: u32 = 2;

/// The `[archive]` section as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveFile {
    /// The archive directory (typically a mounted network volume); required.
    pub dir: Option<PathBuf>,
    /// How often the shipper looks for new durable records and checkpoints.
    pub interval_ms: Option<u64>,
    /// Size up to which an archived segment file grows across passes.
    pub segment_size: Option<toml::Value>,
    /// Archived full checkpoints kept (with their chains and the log after them); 0 keeps everything.
    pub retain_full: Option<u32>,
}

/// A validated `[archive]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// The archive directory.
    pub dir: PathBuf,
    /// Pause between two shipping passes; the archive lag is about this long under load.
    pub interval_ms: u64,
    /// An archived segment file is rewritten with the new records appended while it is
    /// smaller than this; past it the next records start a new file.
    pub segment_bytes: u64,
    /// Archived full checkpoints kept; 0 keeps every file ever shipped.
    pub retain_full: u32,
}

impl ArchiveFile {
    /// Validates the section, filling in defaults.
    pub fn validate(self) -> Result<ArchiveConfig, ConfigError> {
        let dir = self.dir.ok_or_else(|| invalid("archive.dir", "is required in an [archive] section"))?;
        if dir.as_os_str().is_empty() {
            return Err(invalid("archive.dir", "must not be empty"));
        }
        let interval_ms = self.interval_ms.unwrap_or(ARCHIVE_INTERVAL_MS_DEFAULT);
        if !(ARCHIVE_INTERVAL_MS_MIN..=ARCHIVE_INTERVAL_MS_MAX).contains(&interval_ms) {
            return Err(invalid(
                "archive.interval_ms",
                format!("must be between {ARCHIVE_INTERVAL_MS_MIN} and {ARCHIVE_INTERVAL_MS_MAX}"),
            ));
        }
        let segment_bytes = size_field("archive.segment_size", self.segment_size, ARCHIVE_SEGMENT_BYTES_DEFAULT)?;
        if !(ARCHIVE_SEGMENT_BYTES_MIN..=ARCHIVE_SEGMENT_BYTES_MAX).contains(&segment_bytes) {
            return Err(invalid("archive.segment_size", "must be between 64kb and 1gb"));
        }
        Ok(ArchiveConfig {
            dir,
            interval_ms,
            segment_bytes,
            retain_full: self.retain_full.unwrap_or(ARCHIVE_RETAIN_FULL_DEFAULT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ArchiveConfig, String> {
        let file: ArchiveFile = toml::from_str(text).map_err(|error| error.to_string())?;
        file.validate().map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_fill_in_and_errors_name_the_field() {
        let config = parse("dir = \"/mnt/archive\"").unwrap();
        assert_eq!(config.interval_ms, ARCHIVE_INTERVAL_MS_DEFAULT);
        assert_eq!(config.segment_bytes, ARCHIVE_SEGMENT_BYTES_DEFAULT);
        assert_eq!(config.retain_full, ARCHIVE_RETAIN_FULL_DEFAULT);
        assert!(parse("interval_ms = 5").unwrap_err().contains("`archive.dir`"));
        assert!(parse("dir = \"a\"\ninterval_ms = 1").unwrap_err().contains("`archive.interval_ms`"));
        assert!(parse("dir = \"a\"\nsegment_size = \"1kb\"").unwrap_err().contains("`archive.segment_size`"));
        assert!(parse("dir = \"a\"\nsegment_size = \"8mb\"").unwrap().segment_bytes == 8 * 1024 * 1024);
        assert!(parse("dir = \"a\"\nbogus = 1").unwrap_err().contains("bogus"));
    }
}
