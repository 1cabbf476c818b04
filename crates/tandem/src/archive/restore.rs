//! Rebuilding a data directory from an archive: the newest checkpoint chain at or before
//! the target that verifies, then the archived records after it, cut exactly at the
//! target — the library behind `tandem restore --from` and the cold standby.
//!
//! Invariants:
//! * nothing is written into a data directory that is not empty (restore never merges
//!   with or overwrites a node's data; move the old directory aside first);
//! * every file is checked before it is used, and the copy is checked again; damage ends
//!   the rebuilt log at the last intact record before it (`Rebuilt::stopped` says why),
//!   never later;
//! * the rebuilt log starts right after the chain (or at index 1 without one) and ends at
//!   the target index exactly, unless damage or the archive's end comes first.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use tandem_log::{LogOptions, NodeId};

use super::manifest::{self, Entry, Manifest};
use super::segment;
use super::verify::{self, Plan};

/// How far to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// As far as the archive is consistent.
    Latest,
    /// Exactly the state after the record with this index.
    Index(u64),
    /// The state just before the first archived record stamped later than this time
    /// (Unix ms; a record's stamp is its `hlc` field, the active's wall clock at the write).
    Time(u64),
}

/// What a rebuild produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The last log index the rebuilt directory holds: a node started on it continues after it.
    pub last_index: u64,
    /// The index the target asked for (`None` for `Target::Latest`).
    pub target_index: Option<u64>,
    /// The checkpoint chain copied: (tip id, its index); `None` if the log starts at 1.
    pub checkpoint: Option<(u64, u64)>,
    /// Records copied after the checkpoint.
    pub records: u64,
    /// The node whose data this is (the checkpoints refuse to load as another node).
    pub node: u32,
    /// Why the rebuild stopped before the target (damage, a gap, the archive's end).
    pub stopped: Option<String>,
    /// Damage met and worked around (checkpoints skipped for an older chain).
    pub problems: Vec<String>,
}

/// Why nothing could be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The manifest is missing or damaged.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// The data directory holds files.
    #[error("{} is not empty: restore writes only into an empty or new directory (move the old one aside)", .0.display())]
    NotEmpty(PathBuf),
    /// The archive cannot give the target.
    #[error("{0}")]
    Unusable(String),
    /// Copying failed.
    #[error("{0:#}")]
    Copy(#[from] anyhow::Error),
}

/// Rebuilds `data_dir` (empty or missing) from `archive` up to `target`.
pub fn rebuild(archive: &Path, data_dir: &Path, target: Target) -> Result<Rebuilt, RestoreError> {
    rebuild_with_progress(archive, data_dir, target, &mut |_, _| {})
}

/// `rebuild`, telling `progress` the bytes copied so far and the total.
pub fn rebuild_with_progress(
    archive: &Path,
    data_dir: &Path,
    target: Target,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Rebuilt, RestoreError> {
    ensure_empty(data_dir)?;
    let (manifest, target_index, plan) = plan_on_a_stable_manifest(archive, target)?;
    let total = plan.chain.iter().map(|(entry, _)| entry.bytes).sum::<u64>()
        + plan.segments.iter().map(|(entry, _, _)| entry.bytes).sum::<u64>();
    let mut done = 0u64;
    let checkpoints = crate::checkpoint::file::directory(data_dir);
    let log = crate::db::log_dir(data_dir);
    for dir in [&checkpoints, &log] {
        fs::create_dir_all(dir).map_err(|error| anyhow::anyhow!("create {}: {error}", dir.display()))?;
    }
    for (entry, file) in &plan.chain {
        copy_checkpoint(archive, entry, file, &checkpoints)?;
        done += entry.bytes;
        progress(done, total);
    }
    let records = copy_segments(archive, &plan, &log, &mut |bytes| {
        done += bytes;
        progress(done, total);
    })?;
    for dir in [&checkpoints, &log, &data_dir.to_path_buf()] {
        manifest::sync_directory(dir).map_err(anyhow::Error::from)?;
    }
    Ok(Rebuilt {
        last_index: plan.last_index,
        target_index,
        checkpoint: plan
            .chain
            .last()
            .and_then(|(tip, _)| tip.checkpoint.as_ref().map(|info| (info.id, tip.first_index))),
        records,
        node: manifest.node,
        stopped: plan.stopped.clone(),
        problems: plan.problems.clone(),
    })
}

/// Plans against the archive's manifest; if the plan met missing or damaged files and the
/// manifest changed meanwhile (the shipper replaced files while we read), plans again.
fn plan_on_a_stable_manifest(archive: &Path, target: Target) -> Result<(Manifest, Option<u64>, Plan), RestoreError> {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let manifest = manifest::read(archive)?;
        let target_index = match target {
            Target::Latest => None,
            Target::Index(index) => Some(index),
            Target::Time(unix_ms) => Some(index_at_time(archive, &manifest, unix_ms)?),
        };
        if let Some(index) = target_index.filter(|&index| index > manifest.last_index()) {
            return Err(RestoreError::Unusable(format!(
                "the archive ends at index {}, before the requested index {index}",
                manifest.last_index()
            )));
        }
        let plan = verify::plan(archive, &manifest, target_index).map_err(RestoreError::Unusable)?;
        let clean = plan.stopped.is_none() && plan.problems.is_empty();
        let unchanged = manifest::read(archive).ok().as_ref() == Some(&manifest);
        if clean || unchanged || attempt == ATTEMPTS {
            return Ok((manifest, target_index, plan));
        }
        tracing::info!(attempt, "the archive's manifest changed while restore read it; planning again");
    }
    unreachable!("the last attempt returns")
}

fn ensure_empty(data_dir: &Path) -> Result<(), RestoreError> {
    match fs::read_dir(data_dir) {
        Ok(entries) => match entries.count() {
            0 => Ok(()),
            _ => Err(RestoreError::NotEmpty(data_dir.to_path_buf())),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(anyhow::anyhow!("read {}: {error}", data_dir.display()).into()),
    }
}

fn copy_checkpoint(archive: &Path, entry: &Entry, file: &File, checkpoints: &Path) -> Result<(), RestoreError> {
    let source = entry.path(archive);
    let name = source.file_name().ok_or_else(|| RestoreError::Unusable(format!("bad entry name {}", entry.name)))?;
    let (bytes, crc32c) = super::copy_open_file_durably(file, &source, &checkpoints.join(name))?;
    if bytes != entry.bytes || crc32c != entry.crc32c {
        return Err(RestoreError::Unusable(format!("{} changed while it was being restored", source.display())));
    }
    Ok(())
}

/// Writes the planned records as log segments: one per archived file, starting right
/// after the chain and ending at the plan's last index. Returns the records written.
fn copy_segments(archive: &Path, plan: &Plan, log: &Path, progress: &mut dyn FnMut(u64)) -> Result<u64, RestoreError> {
    let mut next = plan.base_index + 1;
    let mut records = 0u64;
    for (entry, last, file) in &plan.segments {
        let path = entry.path(archive);
        let bytes = super::read_whole(file).map_err(|error| anyhow::anyhow!("read {}: {error}", path.display()))?;
        let parsed = segment::parse(&bytes);
        let frames: Vec<&segment::Frame> =
            parsed.frames.iter().filter(|frame| frame.index >= next && frame.index <= *last).collect();
        let contiguous = frames.first().is_some_and(|first| first.index == next)
            && frames.last().is_some_and(|tip| tip.index == *last);
        if !contiguous || parsed.first_index != entry.first_index {
            return Err(RestoreError::Unusable(format!("{} changed while it was being restored", path.display())));
        }
        let mut output = segment::encode_header(next).to_vec();
        for frame in &frames {
            output.extend_from_slice(&bytes[frame.bytes.clone()]);
        }
        super::write_durably(&log.join(segment::log_file_name(next)), &output)?;
        records += frames.len() as u64;
        next = last + 1;
        progress(entry.bytes);
    }
    Ok(records)
}

/// The index `Target::Time(unix_ms)` means: the last record before the first archived
/// record stamped later than `unix_ms`; at least the newest checkpoint taken by then.
fn index_at_time(archive: &Path, manifest: &Manifest, unix_ms: u64) -> Result<u64, RestoreError> {
    let checkpoint = manifest
        .checkpoints
        .iter()
        .filter(|entry| entry.first_time_unix_ms <= unix_ms)
        .map(|entry| entry.first_index)
        .max();
    let mut from_records = None;
    for entry in &manifest.segments {
        if entry.first_time_unix_ms > unix_ms {
            from_records = Some(entry.first_index - 1);
            break;
        }
        let path = entry.path(archive);
        let bytes = fs::read(&path).map_err(|error| anyhow::anyhow!("read {}: {error}", path.display()))?;
        let parsed = segment::parse(&bytes);
        if let Some(later) = parsed.frames.iter().find(|frame| frame.time_unix_ms > unix_ms) {
            from_records = Some(later.index - 1);
            break;
        }
        from_records = Some(entry.last_index);
        if parsed.problem.is_some() {
            break; // the plan reports the damage; the time cannot be resolved past it
        }
    }
    match (from_records, checkpoint) {
        (None, None) => Err(RestoreError::Unusable(format!("nothing in the archive is as old as {unix_ms} (Unix ms)"))),
        (records, checkpoint) => Ok(records.unwrap_or(0).max(checkpoint.unwrap_or(0))),
    }
}

/// Opens a rebuilt data directory the way the server does (newest checkpoint chain that
/// verifies, then the log after it) and closes it again; returns (last index, keys).
pub fn open_check(data_dir: &Path, node: u32) -> Result<(u64, u64), String> {
    let options = LogOptions { record_bytes_max: crate::limits::LOG_RECORD_BYTES_MAX, ..LogOptions::default() };
    let db = crate::db::Database::open(data_dir, options, NodeId(node)).map_err(|error| error.to_string())?;
    let last_index = db.last_index().0;
    let keys = db.with_keyspace(|keyspace| keyspace.len() as u64);
    db.close().map_err(|error| error.to_string())?;
    Ok((last_index, keys))
}
