//! Catch-up from a checkpoint, when the active's log no longer reaches back to
//! what the standby needs (removed behind a full checkpoint while the standby
//! was away): the active cuts its keyspace (the same copy-before-write cut as
//! a checkpoint, no stall), writes it as a full checkpoint *for the standby*
//! (its node id in the header), and streams the file; the standby stores it,
//! verifies every checksum, and restarts to install it (`rejoin::prepare`),
//! then follows the log from the checkpoint's index.
//!
//! Invariants:
//! * the standby installs only a file that verified completely, with the
//!   announced size; a broken transfer leaves its data directory untouched;
//! * the file's header epoch is that of the record at its index, so the
//!   standby's next `CatchUpFrom` is compared like any other.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::wire::{self, Message, PeerReader};
use crate::checkpoint::format::{Header, Kind};
use crate::checkpoint::{cli, file};
use crate::db::unix_ms;
use crate::limits;
use crate::server::Shared;
use crate::store::keyspace::BUCKET_COUNT;

/// Where the active writes a snapshot before sending it, and the standby receives one.
pub fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// The file a standby received and verified, waiting to be installed.
pub fn received_path(data_dir: &Path) -> PathBuf {
    directory(data_dir).join("received.ckpt")
}

/// Active: cuts the keyspace, writes it for `standby`, sends it; returns (index, bytes).
pub async fn send(
    shared: &Shared,
    socket: &mut OwnedWriteHalf,
    scratch: &mut BytesMut,
    standby: u32,
) -> Result<(u64, u64), String> {
    let (cut, log_index, record_epoch, _) = shared.db.checkpoint_cut(None);
    let header = Header {
        id: log_index.0.max(1),
        kind: Kind::Full,
        node: standby,
        epoch: record_epoch,
        log_index: log_index.0,
        base_id: None,
        created_unix_ms: unix_ms(),
        bucket_total: BUCKET_COUNT as u32,
        key_count: cut.snapshot.key_count() as u64,
        applied: Vec::new(),
        channels: Vec::new(),
    };
    let dir = directory(&shared.config.data_dir);
    let written = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&dir);
        file::write(&dir, &header, cut.snapshot.into_selected(None), &mut |_| {})
    })
    .await
    .map_err(|error| format!("writing the snapshot failed: {error}"))?
    .map_err(|error| format!("writing the snapshot failed: {error}"))?;
    let (path, _) = written;
    let sent = stream(shared, socket, scratch, &path, log_index.0).await;
    let _ = std::fs::remove_file(&path);
    sent
}

async fn stream(
    shared: &Shared,
    socket: &mut OwnedWriteHalf,
    scratch: &mut BytesMut,
    path: &Path,
    log_index: u64,
) -> Result<(u64, u64), String> {
    let mut file = tokio::fs::File::open(path).await.map_err(|error| format!("opening the snapshot: {error}"))?;
    let bytes = file.metadata().await.map_err(|error| format!("reading the snapshot: {error}"))?.len();
    let epoch = shared.db.epoch();
    let announce = Message::Snapshot { epoch, log_index, bytes };
    wire::send(socket, &announce, scratch).await.map_err(|error| error.to_string())?;
    let mut buffer = vec![0u8; limits::PEER_BATCH_BYTES_SOFT_MAX];
    loop {
        let read = file.read(&mut buffer).await.map_err(|error| format!("reading the snapshot: {error}"))?;
        if read == 0 {
            break;
        }
        let chunk = Message::SnapshotChunk { epoch, bytes: Bytes::copy_from_slice(&buffer[..read]) };
        wire::send(socket, &chunk, scratch).await.map_err(|error| error.to_string())?;
    }
    wire::send(socket, &Message::SnapshotEnd { epoch }, scratch).await.map_err(|error| error.to_string())?;
    Ok((log_index, bytes))
}

/// Standby: receives the `bytes` announced, verifies the file completely, keeps it at
/// [`received_path`]; returns its log index.
pub async fn receive(
    shared: &Shared,
    reader: &mut PeerReader,
    socket: &mut OwnedReadHalf,
    log_index: u64,
    bytes: u64,
) -> Result<u64, String> {
    if bytes > limits::SNAPSHOT_BYTES_MAX {
        return Err(format!("a snapshot of {bytes} bytes is above the limit of {}", limits::SNAPSHOT_BYTES_MAX));
    }
    let dir = directory(&shared.config.data_dir);
    tokio::fs::create_dir_all(&dir).await.map_err(|error| format!("creating {}: {error}", dir.display()))?;
    let temporary = dir.join("receiving.tmp");
    let mut file = tokio::fs::File::create(&temporary)
        .await
        .map_err(|error| format!("creating {}: {error}", temporary.display()))?;
    let mut received = 0u64;
    let timeout = std::time::Duration::from_millis(limits::PEER_CONNECT_TIMEOUT_MS * 5);
    loop {
        let message = match tokio::time::timeout(timeout, reader.next(socket)).await {
            Ok(Ok(message)) => message,
            Ok(Err(error)) => return Err(format!("receiving the snapshot: {error}")),
            Err(_) => return Err("the snapshot transfer stalled".into()),
        };
        match message {
            Message::SnapshotChunk { bytes: chunk, .. } => {
                received += chunk.len() as u64;
                if received > bytes {
                    return Err(format!("the snapshot is longer than the {bytes} bytes announced"));
                }
                file.write_all(&chunk).await.map_err(|error| format!("writing the snapshot: {error}"))?;
            }
            Message::SnapshotEnd { .. } if received == bytes => break,
            Message::SnapshotEnd { .. } => return Err(format!("the snapshot ended after {received} of {bytes} bytes")),
            other => return Err(format!("unexpected {} during the snapshot", other.name())),
        }
        shared.replication.peer_heard();
    }
    file.sync_all().await.map_err(|error| format!("fsync of the snapshot: {error}"))?;
    drop(file);
    let path = received_path(&shared.config.data_dir);
    let node = shared.replication.cluster.as_ref().map_or(0, |cluster| cluster.node_id);
    tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let mut bar = cli::ProgressBar::new("verifying the snapshot", bytes);
        let (header, _) = cli::verify_file(&temporary, &mut bar).map_err(|error| error.to_string())?;
        if header.node != node || header.log_index != log_index || header.kind != Kind::Full {
            return Err(format!(
                "the snapshot's header (node {}, index {}, {}) is not the one announced (node {node}, index {log_index}, full)",
                header.node,
                header.log_index,
                header.kind.as_str()
            ));
        }
        std::fs::rename(&temporary, &path).map_err(|error| format!("keeping the snapshot: {error}"))?;
        file::sync_directory(path.parent().expect("in a directory")).map_err(|error| error.to_string())?;
        Ok(header.log_index)
    })
    .await
    .map_err(|error| format!("verifying the snapshot failed: {error}"))?
}
