//! Cold standby takeover (`standby = "cold"`): the standby holds no stream, only
//! heartbeats (`Message::Watch`). When the control plane makes it active over a
//! dead peer, it rebuilds its data from the peer's archive before it serves:
//! [`takeover`] decides whether a rebuild is needed, writes a marker and asks for
//! a restart; [`prepare`] carries the marker out at the next start, before the
//! database opens — the same one way of building state (checkpoint + log
//! replay) as every start.
//!
//! Each data node ships to `<archive.dir>/node-<id>/`, so the two archives never mix
//! and a node takes over from its peer's.
//!
//! Invariants:
//! * a cold node never serves as active with data older than its peer's archive: the
//!   role stays standby until its log holds the archive's last record;
//! * nothing is deleted: the files it replaces move to `replaced-<epoch>/`;
//! * the lost writes are reported, never hidden: at takeover as "at least" the active's
//!   last index heard in its heartbeats minus the restored index; exactly, when the old
//!   active returns (its records past the common point go to its diverged file).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use tandem_log::LogIndex;

use crate::archive;
use crate::config::Config;
use crate::repl::rejoin;
use crate::server::Shared;

/// The marker's file name in the data directory.
const MARKER_FILE: &str = "cold-restore";

/// The archive a node ships to: `<dir>/node-<id>`.
pub fn archive_of(dir: &Path, node_id: u32) -> PathBuf {
    dir.join(format!("node-{node_id}"))
}

/// The peer's archive, as this node reaches it; `None` without an `[archive]` section.
pub fn peer_archive(config: &Config) -> Option<PathBuf> {
    let cluster = config.cluster.as_ref()?;
    let archive = config.archive.as_ref()?;
    Some(archive_of(&archive.dir, cluster.peer_data_member().id))
}

/// What a cold node handed the active role does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Its log holds everything the peer archived: serve.
    Ready,
    /// A rebuild from the archive is under way (the node restarts to carry it out).
    Restoring,
}

/// Decides, for a cold node the control plane just made active in `epoch`, whether its
/// data must first be rebuilt from the peer's archive; if so, marks the rebuild and asks
/// for a restart.
pub fn takeover(shared: &Shared, epoch: u64) -> Takeover {
    if shared.restart_requested() {
        return Takeover::Restoring;
    }
    if shared.replication.cold_restore().is_some_and(|restored| restored.epoch == epoch) {
        // This process started from the rebuild for this very epoch: its data is the archive.
        return Takeover::Ready;
    }
    let archive = peer_archive(&shared.config).expect("validated: a cold standby has an [archive] section");
    let manifest = match archive::manifest::read(&archive) {
        Ok(manifest) => manifest,
        Err(archive::manifest::ManifestError::Missing(_)) => {
            tracing::warn!(archive = %archive.display(), "the peer never shipped anything; serving with this node's data");
            return Takeover::Ready;
        }
        Err(error) => {
            // Unreadable now (a volume not mounted, say): retry at the next tick rather than
            // serve without data that may exist.
            tracing::error!(archive = %archive.display(), %error, "cannot read the peer's archive; retrying");
            return Takeover::Restoring;
        }
    };
    if holds_archive_end(shared, &archive, &manifest) {
        tracing::info!(archived_index = manifest.last_index(), "this log holds the peer's whole archive; serving");
        return Takeover::Ready;
    }
    let marker = Marker {
        epoch,
        heard_index: shared.replication.active_last_index(),
        detected_unix_ms: shared.replication.pending_detection_unix_ms().unwrap_or(0),
    };
    if let Err(error) = write_marker(&shared.config.data_dir, marker) {
        tracing::error!(%error, "cannot mark the restore from the archive; retrying");
        return Takeover::Restoring;
    }
    tracing::warn!(
        epoch,
        archived_index = manifest.last_index(),
        own_index = shared.db.last_index().0,
        heard_index = marker.heard_index,
        "cold takeover: restarting to rebuild this node's data from the peer's archive"
    );
    shared.request_restart();
    Takeover::Restoring
}

/// Whether this node's log holds the archive's last record itself: then it has everything
/// the peer archived. Compared by index and epoch (one writer per epoch: the same index
/// and epoch is the same record), whether the archive ends with a record or a checkpoint.
fn holds_archive_end(shared: &Shared, archive: &Path, manifest: &archive::manifest::Manifest) -> bool {
    let last = manifest.last_index();
    if last == 0 {
        return true;
    }
    if shared.db.last_index().0 < last {
        return false;
    }
    let own_epoch = if shared.db.last_index().0 == last {
        Some(shared.db.last_record().1)
    } else {
        let dir = crate::db::log_dir(&shared.config.data_dir);
        tandem_log::epoch_at(&dir, LogIndex(last), &shared.config.log_options()).ok().flatten().map(|epoch| epoch.0)
    };
    own_epoch.is_some() && own_epoch == archived_epoch(archive, manifest)
}

/// The epoch of the archive's last record: from the last archived segment's last frame, or
/// from the header of the checkpoint the archive ends with.
fn archived_epoch(archive: &Path, manifest: &archive::manifest::Manifest) -> Option<u64> {
    let last = manifest.last_index();
    if let Some(segment) = manifest.segments.last().filter(|segment| segment.last_index == last) {
        let bytes = std::fs::read(segment.path(archive)).ok()?;
        let frame = archive::segment::parse(&bytes).frames.pop()?;
        return (frame.index == last).then_some(frame.epoch);
    }
    let checkpoint = manifest.checkpoints.iter().rfind(|entry| entry.last_index == last)?;
    let reader = crate::checkpoint::format::FileReader::open(&checkpoint.path(archive)).ok()?;
    Some(reader.header().epoch)
}

/// A pending rebuild: the epoch this node was made active in, and the active's last index
/// this node heard of before it died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    epoch: u64,
    heard_index: u64,
    /// When this node's detector declared the active dead (0: not known).
    detected_unix_ms: u64,
}

fn write_marker(data_dir: &Path, marker: Marker) -> std::io::Result<()> {
    let text = format!(
        "epoch={}\nheard_index={}\ndetected_unix_ms={}\n",
        marker.epoch, marker.heard_index, marker.detected_unix_ms
    );
    rejoin::write_atomically(&data_dir.join(MARKER_FILE), text.as_bytes())
}

fn read_marker(data_dir: &Path) -> anyhow::Result<Option<Marker>> {
    let Some(marker) = rejoin::MarkerText::read(&data_dir.join(MARKER_FILE))? else {
        return Ok(None);
    };
    let field = |name: &str| marker.field(name, "remove it to start without the cold takeover's rebuild");
    Ok(Some(Marker {
        epoch: field("epoch")?,
        heard_index: field("heard_index")?,
        detected_unix_ms: field("detected_unix_ms").unwrap_or(0),
    }))
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The last index rebuilt from the archive.
    pub restored_index: u64,
    /// The old active's last index this node heard of.
    pub heard_index: u64,
    /// Acknowledged writes lost, at least: `heard_index - restored_index` (the old active may
    /// have written more after its last heartbeat).
    pub lost_records_at_least: u64,
    /// How long the rebuild took.
    pub elapsed_ms: u64,
    /// When this node's detector had declared the active dead, before the restart (0: not known).
    pub detected_unix_ms: u64,
    /// The epoch this node was made active in.
    pub epoch: u64,
}

/// Carries out a pending rebuild before the database opens: the peer's archive is rebuilt
/// into a fresh directory, this node's log and checkpoints move to `replaced-<epoch>/`, the
/// rebuilt ones move into place, and the marker goes last. `None` if none is pending.
pub fn prepare(config: &Config) -> anyhow::Result<Option<Restored>> {
    let data_dir = &config.data_dir;
    let Some(marker) = read_marker(data_dir)? else {
        return Ok(None);
    };
    let archive = peer_archive(config).context("a cold restore is pending, but [archive] is not configured")?;
    let started = Instant::now();
    let staging = data_dir.join(format!("cold-restore-{}.tmp", marker.epoch));
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    let rebuilt = archive::restore::rebuild(&archive, &staging, archive::restore::Target::Latest)
        .with_context(|| format!("rebuilding from the archive {}", archive.display()))?;
    if let Some(reason) = &rebuilt.stopped {
        tracing::warn!(%reason, last_index = rebuilt.last_index, "the peer's archive is usable only up to here");
    }
    adopt_checkpoints(&staging)?;
    let aside = data_dir.join(format!("replaced-{}", marker.epoch));
    let log_dir = crate::db::log_dir(data_dir);
    let checkpoints = crate::checkpoint::file::directory(data_dir);
    let moved = rejoin::move_files(&log_dir, &aside.join("log"))?
        + rejoin::move_files(&checkpoints, &aside.join("checkpoints"))?;
    rejoin::move_files(&crate::db::log_dir(&staging), &log_dir)?;
    rejoin::move_files(&crate::checkpoint::file::directory(&staging), &checkpoints)?;
    fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    set_aside_own_archive(config, marker.epoch)?;
    let marker_path = data_dir.join(MARKER_FILE);
    fs::remove_file(&marker_path).with_context(|| format!("removing {}", marker_path.display()))?;
    rejoin::sync_directory(data_dir)?;
    let restored = Restored {
        restored_index: rebuilt.last_index,
        heard_index: marker.heard_index,
        lost_records_at_least: marker.heard_index.saturating_sub(rebuilt.last_index),
        elapsed_ms: started.elapsed().as_millis() as u64,
        detected_unix_ms: marker.detected_unix_ms,
        epoch: marker.epoch,
    };
    tracing::warn!(
        restored_index = restored.restored_index,
        heard_index = restored.heard_index,
        lost_records_at_least = restored.lost_records_at_least,
        replaced_files = moved,
        aside = %aside.display(),
        elapsed_ms = restored.elapsed_ms,
        "cold takeover: rebuilt from the peer's archive; writes it had not shipped are lost"
    );
    Ok(Some(restored))
}

/// Lists every checkpoint of the rebuilt directory as adopted from the node that wrote it,
/// so that this node loads them (`checkpoint::file::ADOPTED_FILE`).
fn adopt_checkpoints(rebuilt: &Path) -> anyhow::Result<()> {
    let dir = crate::checkpoint::file::directory(rebuilt);
    let mut adopted = Vec::new();
    for listed in crate::checkpoint::file::list(&dir)? {
        let reader = crate::checkpoint::format::FileReader::open(&listed.path)?;
        let name = listed.path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        adopted.push((name, reader.header().node));
    }
    if !adopted.is_empty() {
        crate::checkpoint::file::adopt(&dir, &adopted)?;
    }
    Ok(())
}

/// Moves this node's own archive to `node-<id>.replaced-<epoch>` once its log was replaced
/// or cut below the archive's end (a cold rebuild, a rejoin): that archive no longer
/// describes this log, and shipping starts a new one when the node is next active.
pub fn set_aside_own_archive(config: &Config, epoch: u64) -> anyhow::Result<()> {
    let (Some(cluster), Some(archive)) = (&config.cluster, &config.archive) else {
        return Ok(());
    };
    let own = archive_of(&archive.dir, cluster.node_id);
    if !own.exists() {
        return Ok(());
    }
    let aside = archive.dir.join(format!("node-{}.replaced-{epoch}-{}", cluster.node_id, crate::db::unix_ms()));
    fs::rename(&own, &aside).with_context(|| format!("moving the superseded archive {} aside", own.display()))?;
    rejoin::sync_directory(&archive.dir)?;
    tracing::warn!(from = %own.display(), to = %aside.display(), "this node's log was replaced; its old archive moved aside");
    Ok(())
}
