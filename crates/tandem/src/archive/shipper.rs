//! The shipper: a background task that keeps the archive a recent, restorable prefix of
//! this node's log and checkpoints.
//!
//! One pass (on a blocking thread, every `archive.interval_ms`):
//! 1. new checkpoints — a byte copy of every checkpoint newer than the archived ones (an
//!    empty archive starts at the newest full one), each copied durably and read back;
//! 2. new records — the records that became durable since the last pass, appended to the
//!    archive as segment files in the log's own format. The last archived file is
//!    extended (rewritten under a new name with the new records after the old ones) while
//!    it is under `archive.segment_size`, so the open log segment's records are shipped
//!    within one interval without many tiny files, and no archived file is ever modified;
//! 3. the manifest is rewritten (atomically, last), then superseded files and files past
//!    retention are removed.
//!
//! Invariants:
//! * the manifest names only files that are complete, fsynced and read back;
//! * only records at or below the log's durable index are shipped;
//! * an error ends the pass: the manifest then names the files completed before it and
//!   nothing else, files it does not name are removed (on a full disk they take the space
//!   the retry needs), and the next pass starts again from what the manifest says
//!   (exponential backoff from `interval_ms`, at most `RETRY_BACKOFF_MAX`);
//! * a replaced file leaves the manifest only once its replacement is durable, and is
//!   removed only after the manifest without it is;
//! * clients never wait for the shipper: it runs on a blocking thread and reads the log
//!   files, never the log's locks.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tandem_log::{LogIndex, LogOptions, LogReader, Record};

use super::manifest::{self, CheckpointInfo, Entry, FileKind, Manifest, CHECKPOINTS_DIRECTORY, SEGMENTS_DIRECTORY};
use super::{segment, Status};
use crate::checkpoint::{self, Kind};
use crate::config::ArchiveConfig;
use crate::server::Shared;

/// Longest pause between two attempts after failures.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Most record bytes one pass reads into memory; the rest waits for the next pass.
const PASS_RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Runs the shipper for the node in `shared` until the task is aborted at shutdown.
pub async fn run(shared: Arc<Shared>, config: ArchiveConfig) {
    let status = Arc::new(Status::default());
    status.caught_up_unix_ms.store(crate::db::unix_ms(), Ordering::Release);
    super::install(Arc::clone(&status));
    let interval = Duration::from_millis(config.interval_ms);
    let mut shipper = Some(Shipper::new(config, &shared, Arc::clone(&status)));
    let mut failures = 0u32;
    let mut next_attempt = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        super::publish_metrics(shared.db.last_index().0);
        if Instant::now() < next_attempt {
            continue;
        }
        if shared.config.cluster.is_some() && shared.replication.role() != crate::repl::Role::Active {
            // In a cluster only the active ships: a standby's log is the active's (hot) or
            // stale (cold), and a returning old active must not ship the records it is about
            // to save aside as diverged.
            continue;
        }
        let durable = shared.db.progress().durable().0;
        let mut taken = shipper.take().expect("the shipper is back after each pass");
        let joined = tokio::task::spawn_blocking(move || {
            let result = taken.pass(durable);
            (taken, result)
        })
        .await;
        let Ok((returned, result)) = joined else {
            tracing::error!("the archive shipper's pass panicked; archiving stops");
            return;
        };
        shipper = Some(returned);
        match result {
            Ok(()) => {
                failures = 0;
                *status.last_error.lock() = None;
                next_attempt = Instant::now();
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                status.errors.fetch_add(1, Ordering::Relaxed);
                let message = format!("{error:#}");
                tracing::warn!(error = %message, failures, "archive pass failed; retrying with backoff");
                *status.last_error.lock() = Some(message);
                next_attempt = Instant::now() + backoff(interval, failures);
            }
        }
        super::publish_metrics(shared.db.last_index().0);
    }
}

/// The pause after `failures` consecutive failed passes: doubling from `interval`.
fn backoff(interval: Duration, failures: u32) -> Duration {
    interval.saturating_mul(1u32 << failures.min(16)).min(RETRY_BACKOFF_MAX).max(interval)
}

/// The shipper's state between passes.
pub struct Shipper {
    config: ArchiveConfig,
    data_dir: PathBuf,
    log_options: LogOptions,
    node: u32,
    status: Arc<Status>,
    /// The manifest as it is on disk; `None` until the archive was opened.
    manifest: Option<Manifest>,
    /// Reads the log from the manifest's end on; dropped after any error.
    reader: Option<LogReader>,
    /// A record read past the durable index, shipped by a later pass.
    held: Option<Record>,
    /// Holds the archive's lock while open.
    lock: Option<tandem_log::DirectoryLock>,
}

impl Shipper {
    /// A shipper for the node whose configuration and database `shared` holds.
    pub fn new(config: ArchiveConfig, shared: &Shared, status: Arc<Status>) -> Shipper {
        Shipper {
            config,
            data_dir: shared.config.data_dir.clone(),
            log_options: shared.config.log_options(),
            node: shared.config.node_id,
            status,
            manifest: None,
            reader: None,
            held: None,
            lock: None,
        }
    }

    /// One pass: ships new checkpoints and the records durable up to `durable`.
    pub fn pass(&mut self, durable: u64) -> anyhow::Result<()> {
        let started_ms = crate::db::unix_ms();
        let result = self.ship(durable);
        if result.is_err() {
            self.reader = None;
            self.held = None;
        }
        if let Some(manifest) = &self.manifest {
            self.status.last_shipped_index.store(manifest.last_index(), Ordering::Release);
            if result.is_ok() && manifest.last_index() >= durable {
                self.status.caught_up_unix_ms.store(started_ms, Ordering::Release);
            }
        }
        result
    }

    fn ship(&mut self, durable: u64) -> anyhow::Result<()> {
        if self.manifest.is_none() {
            self.manifest = Some(self.open_archive()?);
        }
        let on_disk = self.manifest.clone().expect("opened above");
        let mut next = on_disk.clone();
        let mut superseded = Vec::new();
        // Files completed before an error are still recorded: a full disk keeps what fitted.
        // A checkpoint that cannot be copied does not hold the records back (they are the
        // recovery point), and the other way round.
        let size = super::ManifestSize::of(&on_disk);
        let checkpoints = self.ship_checkpoints(&mut next, &size);
        let shipped = self.ship_records(&mut next, &size, durable, &mut superseded).and(checkpoints);
        let expired = if shipped.is_ok() { retain(&mut next, self.config.retain_full) } else { Vec::new() };
        if next != on_disk {
            next.sort();
            next.written_unix_ms = crate::db::unix_ms();
            if let Err(error) = manifest::write(&self.config.dir, &next) {
                remove_unnamed_files(&self.config.dir, &on_disk);
                return Err(shipped.err().unwrap_or_else(|| error.into()));
            }
            self.manifest = Some(next);
        }
        remove_files(&self.config.dir, superseded.iter().chain(expired.iter()));
        if shipped.is_err() {
            // What a failed write left takes space the next attempt needs.
            remove_unnamed_files(&self.config.dir, self.manifest.as_ref().expect("opened above"));
        }
        shipped
    }

    /// Creates the archive's folders, takes its lock, removes unfinished files, reads the
    /// manifest (an empty one for a new archive).
    fn open_archive(&mut self) -> anyhow::Result<Manifest> {
        let dir = &self.config.dir;
        for sub in [SEGMENTS_DIRECTORY, CHECKPOINTS_DIRECTORY] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("create {}", dir.join(sub).display()))?;
        }
        self.lock = Some(lock_archive(dir)?);
        remove_temporary_files(dir);
        let manifest = match manifest::read(dir) {
            Ok(manifest) => manifest,
            Err(manifest::ManifestError::Missing(_)) => Manifest::empty(self.node),
            Err(error) => {
                self.lock = None;
                return Err(error)
                    .context("the archive's manifest cannot be read; shipping stops until it is repaired");
            }
        };
        if manifest.node != self.node {
            self.lock = None;
            anyhow::bail!(
                "the archive {} holds node {}'s files, this is node {}",
                dir.display(),
                manifest.node,
                self.node
            );
        }
        remove_unnamed_files(dir, &manifest);
        Ok(manifest)
    }

    /// Copies every checkpoint newer than the archived ones (see the module docs).
    fn ship_checkpoints(&self, manifest: &mut Manifest, size: &super::ManifestSize) -> anyhow::Result<()> {
        let listed = checkpoint::file::list(&checkpoint::file::directory(&self.data_dir))?;
        let newest_full = listed.iter().rev().find(|listed| listed.kind == Kind::Full).map(|listed| listed.id);
        for candidate in listed {
            let has_full = manifest.checkpoints.iter().any(Entry::is_full_checkpoint);
            let older = candidate.id <= manifest.last_checkpoint_id();
            let before_start = !has_full && Some(candidate.id) < newest_full;
            if older || before_start || (candidate.kind == Kind::Incremental && !has_full) {
                continue;
            }
            let name = format!("{CHECKPOINTS_DIRECTORY}/{}", checkpoint::file::file_name(candidate.id, candidate.kind));
            let destination = self.config.dir.join(&name);
            let Ok(file_bytes) = fs::metadata(&candidate.path).map(|metadata| metadata.len()) else {
                continue; // retention removed it since the listing: a newer one replaces it
            };
            super::ensure_room(&self.config.dir, size.bound(manifest), file_bytes)?;
            let (bytes, crc32c) = match super::copy_durably(&candidate.path, &destination) {
                Ok(copied) => copied,
                // Retention removed it since the listing: a newer one replaces it.
                Err(_) if !candidate.path.exists() => continue,
                Err(error) => return Err(error),
            };
            let header = super::check_checkpoint(&destination)?;
            if header.kind == Kind::Incremental && header.base_id.is_none_or(|base| manifest.checkpoint(base).is_none())
            {
                // Its base is not archived: useless for a restore.
                let _ = fs::remove_file(&destination);
                continue;
            }
            manifest.checkpoints.push(Entry {
                kind: FileKind::Checkpoint,
                name,
                first_index: header.log_index,
                last_index: header.log_index,
                first_time_unix_ms: header.created_unix_ms,
                last_time_unix_ms: header.created_unix_ms,
                bytes,
                crc32c,
                last_record_crc32c: None,
                checkpoint: Some(CheckpointInfo {
                    id: header.id,
                    level: header.kind.as_str().to_string(),
                    base_id: header.base_id,
                }),
            });
            tracing::info!(id = header.id, index = header.log_index, "checkpoint archived");
        }
        Ok(())
    }

    /// Appends the records durable up to `durable` to the archive; adds to `superseded` the
    /// files the new ones replace (removed once the manifest no longer names them).
    fn ship_records(
        &mut self,
        manifest: &mut Manifest,
        size: &super::ManifestSize,
        durable: u64,
        superseded: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let records = self.read_durable(manifest, durable)?;
        let Some(first) = records.first() else { return Ok(()) };
        let archived_end = manifest.segments.last().map_or(0, |last| last.last_index);
        anyhow::ensure!(first.index.0 > archived_end, "record {} is already archived", first.index.0);
        let mut bytes = Vec::new();
        let mut extended = None;
        if let Some(last) = manifest.segments.last() {
            if last.last_index + 1 == first.index.0 && last.bytes < self.config.segment_bytes {
                if let Ok(old) = read_checked(&last.path(&self.config.dir), last) {
                    bytes = old;
                    extended = Some(last.clone());
                }
            }
        }
        let mut pending = records.into_iter().peekable();
        while pending.peek().is_some() {
            let mut first_record = None;
            let mut last_record = None;
            if extended.is_none() {
                bytes = segment::encode_header(pending.peek().expect("checked").index.0).to_vec();
            }
            while let Some(record) = pending.next_if(|_| bytes.len() < self.config.segment_bytes as usize) {
                let body_crc32c = segment::encode_frame(&mut bytes, &record);
                first_record.get_or_insert((record.index.0, record.hlc));
                last_record = Some((record.index.0, record.hlc, body_crc32c));
            }
            let (mut first_index, mut first_time) = first_record.expect("at least one record per file");
            let (last_index, last_time, last_crc) = last_record.expect("at least one record per file");
            let replaced = extended.take();
            if let Some(old) = &replaced {
                (first_index, first_time) = (old.first_index, old.first_time_unix_ms);
            }
            let name = format!("{SEGMENTS_DIRECTORY}/{}", segment::file_name(first_index, last_index));
            super::ensure_room(&self.config.dir, size.bound(manifest), bytes.len() as u64)?;
            let crc32c = super::write_durably(&self.config.dir.join(&name), &bytes)?;
            // Only now, with its replacement durable, may the old file leave the manifest.
            if let Some(old) = replaced {
                manifest.segments.pop();
                superseded.push(old.name);
            }
            manifest.segments.push(Entry {
                kind: FileKind::Segment,
                name,
                first_index,
                last_index,
                first_time_unix_ms: first_time,
                last_time_unix_ms: last_time,
                bytes: bytes.len() as u64,
                crc32c,
                last_record_crc32c: Some(last_crc),
                checkpoint: None,
            });
        }
        Ok(())
    }

    /// The records after the manifest's end, up to `durable` (and at most a pass's worth).
    fn read_durable(&mut self, manifest: &Manifest, durable: u64) -> anyhow::Result<Vec<Record>> {
        if self.reader.is_none() {
            self.reader = Some(self.open_reader(manifest)?);
        }
        let reader = self.reader.as_mut().expect("opened above");
        reader.resume()?;
        let mut records = Vec::new();
        let mut bytes = 0usize;
        loop {
            // Not past `durable`: a frame after it may be half written, and in a preallocated
            // segment that reads as damage, not as the end.
            if self.held.is_none() && reader.next_index().0 > durable {
                break;
            }
            let record = match self.held.take() {
                Some(record) => record,
                None => match reader.next() {
                    None => break,
                    Some(record) => record?,
                },
            };
            if record.index.0 > durable || bytes > PASS_RECORD_BYTES_MAX {
                self.held = Some(record);
                break;
            }
            bytes += record.payload.len();
            records.push(record);
        }
        Ok(records)
    }

    /// A reader at the manifest's end, after checking that the log still holds, at the
    /// archive's last record, the record the archive holds (the log was not rewritten).
    fn open_reader(&self, manifest: &Manifest) -> anyhow::Result<LogReader> {
        let log_dir = crate::db::log_dir(&self.data_dir);
        let Some(last) = manifest.segments.last() else {
            return match tandem_log::read_from(&log_dir, LogIndex(0), &self.log_options) {
                Ok(reader) => Ok(reader),
                Err(tandem_log::LogError::Unavailable { first_available, .. }) => {
                    Ok(tandem_log::read_from(&log_dir, first_available, &self.log_options)?)
                }
                Err(error) => Err(error.into()),
            };
        };
        match tandem_log::read_from(&log_dir, LogIndex(last.last_index), &self.log_options) {
            Ok(mut reader) => {
                let Some(record) = reader.next() else {
                    anyhow::bail!(
                        "the log ends before the archive's last record {}: the data directory was replaced or \
                         rewritten; move the archive aside to start a new one",
                        last.last_index
                    );
                };
                let crc = segment::encode_frame(&mut Vec::new(), &record?);
                anyhow::ensure!(
                    Some(crc) == last.last_record_crc32c,
                    "the log's record {} differs from the archived one: the log was rewritten (a rejoin?); \
                     move the archive aside to start a new one",
                    last.last_index
                );
                Ok(reader)
            }
            Err(tandem_log::LogError::Unavailable { first_available, .. }) => {
                // A gap only if records between the archive's end and the log's start are gone.
                (first_available.0 > last.last_index + 1).then(|| {
                    tracing::warn!(
                        archived_up_to = last.last_index,
                        log_starts_at = first_available.0,
                        "the log was truncated behind a checkpoint before these records were archived; \
                     the archive continues from the newer checkpoint"
                    )
                });
                Ok(tandem_log::read_from(&log_dir, first_available, &self.log_options)?)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Reads an archived file whole and checks it against its manifest entry.
fn read_checked(path: &Path, entry: &Entry) -> anyhow::Result<Vec<u8>> {
    let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 == entry.bytes && crc32c::crc32c(&bytes) == entry.crc32c,
        "{} does not match its manifest entry",
        path.display()
    );
    Ok(bytes)
}

/// Drops from the manifest what retention lets go: with `retain_full` > 0, the archived
/// full checkpoints before the `retain_full` newest, their incrementals, and the segments
/// wholly before the oldest kept one. Returns the files to remove once the manifest is written.
fn retain(manifest: &mut Manifest, retain_full: u32) -> Vec<String> {
    let fulls: Vec<&Entry> = manifest.checkpoints.iter().filter(|entry| entry.is_full_checkpoint()).collect();
    if retain_full == 0 || fulls.len() <= retain_full as usize {
        return Vec::new();
    }
    let oldest_kept = fulls[fulls.len() - retain_full as usize];
    let (kept_id, kept_index) = (oldest_kept.checkpoint.as_ref().map_or(0, |info| info.id), oldest_kept.first_index);
    let mut removed = Vec::new();
    manifest.checkpoints.retain(|entry| {
        let keep = entry.checkpoint.as_ref().is_some_and(|info| info.id >= kept_id);
        if !keep {
            removed.push(entry.name.clone());
        }
        keep
    });
    manifest.segments.retain(|entry| {
        let keep = entry.last_index > kept_index;
        if !keep {
            removed.push(entry.name.clone());
        }
        keep
    });
    removed
}

/// Removes archive files the manifest no longer names; a failure only leaves an orphan.
fn remove_files<'a>(archive: &Path, names: impl Iterator<Item = &'a String>) {
    let mut removed = false;
    for name in names {
        let path = archive.join(name);
        match fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot remove an archive file no longer needed")
            }
        }
    }
    if removed {
        for sub in [SEGMENTS_DIRECTORY, CHECKPOINTS_DIRECTORY] {
            let _ = manifest::sync_directory(&archive.join(sub));
        }
    }
}

/// Removes the segment and checkpoint files `manifest` (the one on disk) does not name:
/// left by a failed pass, they are not part of the archive.
fn remove_unnamed_files(archive: &Path, manifest: &Manifest) {
    let named: std::collections::HashSet<&str> =
        manifest.checkpoints.iter().chain(manifest.segments.iter()).map(|entry| entry.name.as_str()).collect();
    for sub in [SEGMENTS_DIRECTORY, CHECKPOINTS_DIRECTORY] {
        let Ok(entries) = fs::read_dir(archive.join(sub)) else { continue };
        for entry in entries.flatten() {
            let name = format!("{sub}/{}", entry.file_name().to_string_lossy());
            if !named.contains(name.as_str()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Removes the temporary files of passes a crash or an error interrupted.
fn remove_temporary_files(archive: &Path) {
    for dir in [archive.to_path_buf(), archive.join(SEGMENTS_DIRECTORY), archive.join(CHECKPOINTS_DIRECTORY)] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(manifest::TEMPORARY_SUFFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Takes the archive's `flock`, so that two nodes never ship into one archive at once.
fn lock_archive(archive: &Path) -> anyhow::Result<tandem_log::DirectoryLock> {
    tandem_log::DirectoryLock::acquire(archive).map_err(|error| match error {
        tandem_log::LogError::Locked { .. } => {
            anyhow::anyhow!("another process ships into the archive {} (its LOCK is held)", archive.display())
        }
        other => other.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: FileKind, name: &str, first: u64, last: u64, checkpoint: Option<(u64, &str)>) -> Entry {
        Entry {
            kind,
            name: name.into(),
            first_index: first,
            last_index: last,
            first_time_unix_ms: 0,
            last_time_unix_ms: 0,
            bytes: 1,
            crc32c: 0,
            last_record_crc32c: None,
            checkpoint: checkpoint.map(|(id, level)| CheckpointInfo {
                id,
                level: level.into(),
                base_id: (level == "incremental").then(|| id - 1),
            }),
        }
    }

    #[test]
    fn retention_keeps_the_newest_full_chains_and_the_log_after_the_oldest_kept() {
        let mut manifest = Manifest::empty(1);
        manifest.checkpoints = vec![
            entry(FileKind::Checkpoint, "c1", 10, 10, Some((1, "full"))),
            entry(FileKind::Checkpoint, "c2", 20, 20, Some((2, "incremental"))),
            entry(FileKind::Checkpoint, "c3", 30, 30, Some((3, "full"))),
            entry(FileKind::Checkpoint, "c4", 40, 40, Some((4, "full"))),
        ];
        manifest.segments = vec![
            entry(FileKind::Segment, "s1", 1, 25, None),
            entry(FileKind::Segment, "s2", 26, 30, None),
            entry(FileKind::Segment, "s3", 31, 50, None),
        ];
        let mut everything = manifest.clone();
        assert!(retain(&mut everything, 0).is_empty(), "0 keeps everything");
        let removed = retain(&mut manifest, 2);
        assert_eq!(removed, vec!["c1", "c2", "s1", "s2"]);
        assert_eq!(manifest.checkpoints.len(), 2);
        assert_eq!(manifest.segments.len(), 1);
    }

    #[test]
    fn backoff_doubles_from_the_interval_up_to_the_cap() {
        let interval = Duration::from_millis(100);
        assert_eq!(backoff(interval, 1), Duration::from_millis(200));
        assert_eq!(backoff(interval, 3), Duration::from_millis(800));
        assert_eq!(backoff(interval, 40), RETRY_BACKOFF_MAX);
    }
}
