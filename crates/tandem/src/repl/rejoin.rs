//! Rejoining after divergence: a node whose log holds records the active's
//! does not (an old active's writes that were never replicated — only their
//! clients' outcome was unknown in sync mode, or they were acknowledged in
//! async mode) saves those records aside and drops them, then follows the
//! active from the common point.
//!
//! The standby finds the common point with the active (`receiver`), writes a
//! marker, and restarts its process (`node::run` returns `Restart`); before
//! the database opens, [`prepare`] carries the marker out. Doing it at start
//! keeps one way of building state (checkpoint + log replay) instead of
//! undoing applied effects in memory.
//!
//! Invariants:
//! * no record is dropped without being written first to
//!   `diverged-<epoch>.log` (fsynced), and no checkpoint past the common
//!   point is deleted: such files move to `diverged-<epoch>/`;
//! * every step is idempotent: a crash part-way through is finished by the
//!   next start, and the marker goes last.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tandem_log::{LogError, LogIndex, LogOptions};

use crate::checkpoint;
use crate::store::effect;

/// The marker's file name in the data directory.
const MARKER_FILE: &str = "rejoin";

/// What the standby agreed with the active: drop everything after `common_index`; `epoch`
/// is the active's, naming the diverged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The last index both logs hold identically.
    pub common_index: u64,
    /// The active's epoch when they compared.
    pub epoch: u64,
    /// The active sent a snapshot (`repl::snapshot`) to install instead: this node's log
    /// and checkpoints are replaced, not cut.
    pub snapshot: bool,
}

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The common point the log now ends at (or before).
    pub common_index: u64,
    /// Records saved to the diverged file.
    pub diverged_records: u64,
    /// The diverged file, if any record was saved.
    pub diverged_file: Option<PathBuf>,
    /// Checkpoints past the common point, moved aside.
    pub checkpoints_moved: usize,
    /// The active's epoch when they compared.
    pub epoch: u64,
    /// The log and checkpoints were replaced by the active's snapshot.
    pub replaced: bool,
}

impl Prepared {
    /// Whether the log lost records or was replaced: an archive of it no longer matches it.
    pub fn rewrote_log(&self) -> bool {
        self.replaced || self.diverged_records > 0 || self.checkpoints_moved > 0
    }
}

/// Writes the marker atomically (temporary file, fsync, rename, directory fsync).
pub fn write_marker(data_dir: &Path, marker: Marker) -> std::io::Result<()> {
    let text = format!(
        "common_index={}\nepoch={}\nsnapshot={}\n",
        marker.common_index,
        marker.epoch,
        u8::from(marker.snapshot)
    );
    write_atomically(&data_dir.join(MARKER_FILE), text.as_bytes())
}

/// Reads the marker, if a rejoin is pending.
pub fn read_marker(data_dir: &Path) -> anyhow::Result<Option<Marker>> {
    let Some(marker) = MarkerText::read(&data_dir.join(MARKER_FILE))? else {
        return Ok(None);
    };
    let field = |name: &str| marker.field(name, "remove it to start without rejoining");
    let text = &marker.text;
    let snapshot = text.lines().any(|line| line.trim() == "snapshot=1");
    Ok(Some(Marker { common_index: field("common_index")?, epoch: field("epoch")?, snapshot }))
}

/// A marker file's `name=value` lines (this module's, and the cold takeover's).
pub(crate) struct MarkerText {
    path: PathBuf,
    text: String,
}

impl MarkerText {
    /// The marker at `path`; `None` if there is none.
    pub(crate) fn read(path: &Path) -> anyhow::Result<Option<MarkerText>> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Some(MarkerText { path: path.to_path_buf(), text })),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The number after `name=`; the error names the file and says what to do (`advice`).
    pub(crate) fn field(&self, name: &str, advice: &str) -> anyhow::Result<u64> {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.trim().parse().ok())
            .with_context(|| format!("{} has no valid `{name}=`; {advice}", self.path.display()))
    }
}

/// Carries out a pending rejoin before the database opens: saves the records after the
/// common point to `diverged-<epoch>.log`, moves checkpoints past it aside, truncates the
/// log, removes the marker. `None` if no rejoin is pending.
pub fn prepare(data_dir: &Path, options: &LogOptions) -> anyhow::Result<Option<Prepared>> {
    let Some(marker) = read_marker(data_dir)? else {
        return Ok(None);
    };
    if marker.snapshot {
        return install_snapshot(data_dir, marker).map(Some);
    }
    let log_dir = crate::db::log_dir(data_dir);
    let diverged_file = data_dir.join(format!("diverged-{}.log", marker.epoch));
    let diverged_records = if diverged_file.exists() {
        // A previous attempt saved them and may have truncated the log since: keep its file.
        count_records(&diverged_file)?
    } else {
        save_diverged(&log_dir, options, marker, &diverged_file)?
    };
    let checkpoints_moved = move_checkpoints_after(data_dir, marker)?;
    tandem_log::truncate_after(&log_dir, LogIndex(marker.common_index), options)
        .with_context(|| format!("truncating the log after index {}", marker.common_index))?;
    let marker_path = data_dir.join(MARKER_FILE);
    fs::remove_file(&marker_path).with_context(|| format!("removing {}", marker_path.display()))?;
    sync_directory(data_dir)?;
    let prepared = Prepared {
        common_index: marker.common_index,
        diverged_records,
        diverged_file: (diverged_records > 0).then_some(diverged_file),
        checkpoints_moved,
        epoch: marker.epoch,
        replaced: false,
    };
    tracing::warn!(
        common_index = prepared.common_index,
        diverged_records,
        file = ?prepared.diverged_file,
        checkpoints_moved,
        "rejoin: records beyond the common point with the active saved aside and dropped"
    );
    Ok(Some(prepared))
}

/// Replaces this node's log and checkpoints with the snapshot the active sent: the old
/// files move to `replaced-<epoch>/` (delete it once the node is in sync again).
fn install_snapshot(data_dir: &Path, marker: Marker) -> anyhow::Result<Prepared> {
    let received = super::snapshot::received_path(data_dir);
    let aside = data_dir.join(format!("replaced-{}", marker.epoch));
    let checkpoints = checkpoint::file::directory(data_dir);
    if received.exists() {
        let reader = checkpoint::format::FileReader::open(&received)
            .with_context(|| format!("reading the received snapshot {}", received.display()))?;
        let header = reader.header().clone();
        drop(reader);
        let log_dir = crate::db::log_dir(data_dir);
        let moved = move_files(&log_dir, &aside.join("log"))? + move_files(&checkpoints, &aside.join("checkpoints"))?;
        checkpoint::file::ensure_directory(&checkpoints)?;
        let name = checkpoint::file::file_name(header.id, header.kind);
        fs::rename(&received, checkpoints.join(&name)).with_context(|| format!("installing {}", received.display()))?;
        sync_directory(&checkpoints)?;
        tracing::warn!(
            log_index = header.log_index,
            replaced_files = moved,
            aside = %aside.display(),
            "rejoin: installed the active's snapshot; this node's previous files moved aside"
        );
    }
    let marker_path = data_dir.join(MARKER_FILE);
    fs::remove_file(&marker_path).with_context(|| format!("removing {}", marker_path.display()))?;
    sync_directory(data_dir)?;
    Ok(Prepared {
        common_index: marker.common_index,
        diverged_records: 0,
        diverged_file: None,
        checkpoints_moved: 0,
        epoch: marker.epoch,
        replaced: true,
    })
}

/// Moves every file of `from` (but the log's lock file) into `to`; returns how many.
pub(crate) fn move_files(from: &Path, to: &Path) -> anyhow::Result<usize> {
    let Ok(entries) = fs::read_dir(from) else {
        return Ok(0);
    };
    let mut moved = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        if entry.file_name() == "LOCK" || !entry.path().is_file() {
            continue;
        }
        fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        fs::rename(entry.path(), to.join(entry.file_name()))
            .with_context(|| format!("moving {}", entry.path().display()))?;
        moved += 1;
    }
    if moved > 0 {
        sync_directory(from)?;
        sync_directory(to)?;
    }
    Ok(moved)
}

/// Writes the log's records after the common point to `path`, one readable block per
/// record; returns how many.
fn save_diverged(log_dir: &Path, options: &LogOptions, marker: Marker, path: &Path) -> anyhow::Result<u64> {
    let mut text = format!(
        "# tandem diverged records: this node held them beyond index {} (the last it shares with the active of \
         epoch {}); they are not in the cluster's data.\n",
        marker.common_index, marker.epoch
    );
    let mut count = 0u64;
    let reader = match tandem_log::read_from(log_dir, LogIndex(marker.common_index + 1), options) {
        Ok(reader) => Some(reader),
        // Removed behind a checkpoint: that checkpoint is moved aside whole instead.
        Err(LogError::Unavailable { .. }) => None,
        Err(error) => return Err(error).context("reading the records to save aside"),
    };
    for record in reader.into_iter().flatten() {
        let record = record.context("reading the records to save aside")?;
        let _ = writeln!(
            text,
            "record index={} epoch={} hlc={} origin={}",
            record.index.0, record.epoch.0, record.hlc, record.origin.0
        );
        match effect::decode(&record.payload) {
            Ok(effects) => effects.iter().for_each(|effect| {
                let _ = writeln!(text, "  {effect:?}");
            }),
            Err(error) => {
                let _ = writeln!(text, "  (payload does not decode: {error})");
            }
        }
        count += 1;
    }
    if count > 0 {
        write_atomically(path, text.as_bytes())?;
    }
    Ok(count)
}

/// Counts the records a diverged file lists.
fn count_records(path: &Path) -> anyhow::Result<u64> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().filter(|line| line.starts_with("record ")).count() as u64)
}

/// Moves checkpoints whose cut lies past the common point into `diverged-<epoch>/`.
fn move_checkpoints_after(data_dir: &Path, marker: Marker) -> anyhow::Result<usize> {
    let dir = checkpoint::file::directory(data_dir);
    let aside = data_dir.join(format!("diverged-{}", marker.epoch));
    let mut moved = 0;
    for listed in checkpoint::file::list(&dir)? {
        // A file that cannot be read is left where it is: restore skips it with a warning.
        let Ok(reader) = checkpoint::format::FileReader::open(&listed.path) else {
            continue;
        };
        if reader.header().log_index <= marker.common_index {
            continue;
        }
        fs::create_dir_all(&aside).with_context(|| format!("creating {}", aside.display()))?;
        let name = listed.path.file_name().expect("listed files have names");
        fs::rename(&listed.path, aside.join(name)).with_context(|| format!("moving {}", listed.path.display()))?;
        moved += 1;
    }
    if moved > 0 {
        sync_directory(&dir)?;
        sync_directory(&aside)?;
    }
    Ok(moved)
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    sync_directory(path.parent().expect("a file in a directory")).map_err(std::io::Error::other)
}

pub(crate) fn sync_directory(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("fsync of directory {}", dir.display()))
}
