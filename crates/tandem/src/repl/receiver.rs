//! The standby's side: connects to the active's peer port, asks for the
//! records after its own last index, persists each at the same index and
//! applies it, acknowledges its durable index, and feeds the failure
//! detector with everything the active sends.
//!
//! Two tasks per session, on the replication plane's thread: this one reads
//! a message, applies it and every message that already arrived behind it,
//! then writes and fsyncs them all at once (group commit: one fsync per
//! group, on this thread); the acknowledger sends `Ack` for what is durable,
//! and heartbeats. Messages that arrive during an fsync wait in the socket
//! and form the next group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tandem_log::LogIndex;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::handshake;
use super::wire::{self, Message, PeerReader};
use super::Role;
use crate::config::StandbyKind;
use crate::db::unix_ms;
use crate::failover::detector::Verdict;
use crate::limits;
use crate::server::Shared;

/// Follows the active while this node is a standby, reconnecting with backoff.
pub async fn follow(shared: Arc<Shared>) {
    let Some(cluster) = shared.replication.cluster.as_ref() else {
        return;
    };
    let mut shutdown = shared.shutdown.subscribe();
    let mut roles = shared.replication.role_events();
    // Quick at first: right after a switchover the new active may apply it a moment after
    // this node did, and refuse the first attempt; while it writes, it waits for this node.
    let first_ms = limits::PEER_RECONNECT_FIRST_MS.min(cluster.heartbeat_ms);
    let mut backoff_ms = first_ms;
    // The active gets one detector timeout from this node's start to be heard from: a
    // standby that restarts while the active is down must still see it dead and take over.
    shared.replication.reset_detector();
    loop {
        roles.borrow_and_update();
        if shared.replication.role() != Role::Standby {
            // Not a standby: follow as soon as a demotion (a switchover) makes it one.
            tokio::select! {
                changed = roles.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            backoff_ms = first_ms;
            continue;
        }
        let started = Instant::now();
        let ended = tokio::select! {
            ended = session(&shared) => ended,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        shared.replication.set_link_up(false);
        tracing::warn!(reason = %ended, "replication link to the active down; reconnecting");
        if started.elapsed() > Duration::from_millis(limits::PEER_RECONNECT_MAX_MS) {
            backoff_ms = first_ms;
        }
        roles.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
            // A new epoch names the active anew (it refused sessions until it took the
            // role): try it at once, and quickly again.
            changed = roles.changed() => {
                if changed.is_err() { return }
                backoff_ms = first_ms;
                continue;
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        backoff_ms = (backoff_ms * 2).min(limits::PEER_RECONNECT_MAX_MS);
    }
}

/// One session with the active; returns why it ended.
async fn session(shared: &Arc<Shared>) -> String {
    let cluster = shared.replication.cluster.as_ref().expect("follow runs only in a cluster");
    let active = cluster.peer_data_member();
    let timeout = Duration::from_millis(limits::PEER_CONNECT_TIMEOUT_MS);
    let mut socket = match tokio::time::timeout(timeout, TcpStream::connect(active.peer)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(error)) => return format!("cannot connect to {}: {error}", active.peer),
        Err(_) => return format!("connecting to {} timed out", active.peer),
    };
    let _ = socket.set_nodelay(true);
    let mut reader = PeerReader::new(limits::PEER_HANDSHAKE_FRAME_BYTES_MAX);
    match tokio::time::timeout(timeout, handshake::connect(&mut socket, &mut reader, cluster, active.id)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            shared.replication.count_rejected_peer();
            return format!("handshake with {} failed: {error}", active.peer);
        }
        Err(_) => return format!("handshake with {} timed out", active.peer),
    }
    reader.limit = limits::PEER_FRAME_BYTES_MAX;
    let (mut read_half, mut write_half) = socket.into_split();
    let first = match agree_on_start(shared, &mut reader, &mut read_half, &mut write_half).await {
        Ok(first) => first,
        Err(ended) => return ended,
    };
    tracing::info!(active = %active.peer, from = shared.db.last_index().0 + 1, "connected to the active; catching up");
    shared.replication.reset_detector();
    shared.replication.set_link_up(true);
    let (applied, applied_changes) = watch::channel(shared.db.last_index().0);
    let mut acknowledger: Option<AbortOnDrop> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(cluster.heartbeat_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut write_half = Some(write_half);
    let mut first = Some(first);
    let ended = loop {
        tokio::select! {
            message = async { match first.take() { Some(first) => Ok(first), None => reader.next(&mut read_half).await } } => {
                let message = match message {
                    Ok(message) => message,
                    Err(error) => break reject(shared, format!("from the active: {error}")),
                };
                if let Message::Snapshot { epoch, log_index, bytes } = message {
                    break install_snapshot(shared, &mut reader, &mut read_half, epoch, log_index, bytes).await;
                }
                let mut last_applied = match receive(shared, message) {
                    Ok(last) => last,
                    Err(reason) => break reject(shared, reason),
                };
                // Records that already arrived join this batch, so that one fsync covers them.
                let mut refused = None;
                while let Some(message) = reader.try_next(&mut read_half).transpose() {
                    match message {
                        Ok(message @ Message::Records { .. }) => match receive(shared, message) {
                            Ok(last) => last_applied = last.or(last_applied),
                            Err(reason) => {
                                refused = Some(reason);
                                break;
                            }
                        },
                        Ok(other) => {
                            first = Some(other);
                            break;
                        }
                        Err(error) => {
                            refused = Some(format!("from the active: {error}"));
                            break;
                        }
                    }
                }
                if let Some(last) = last_applied {
                    // Persisted here, on the replication plane's thread, then acknowledged.
                    shared.db.persist_replicated();
                    applied.send_replace(last.0);
                }
                if let Some(reason) = refused {
                    break reject(shared, reason);
                }
                // The acknowledger starts once the active's first message set the epoch.
                if let Some(write_half) = write_half.take() {
                    let shared = Arc::clone(shared);
                    acknowledger = Some(AbortOnDrop(tokio::spawn(acknowledge(shared, write_half, applied_changes.clone()))));
                }
            }
            _ = ticker.tick() => {
                if shared.replication.role() != Role::Standby {
                    break "this node is no longer a standby".into();
                }
                if shared.replication.peer_verdict() == Some(Verdict::Dead) {
                    let silence = shared.replication.peer_silence_ms().unwrap_or(0);
                    break format!("the active is silent for {silence} ms (detector: dead)");
                }
                if acknowledger.as_ref().is_some_and(|task| task.0.is_finished()) {
                    let mut task = acknowledger.take().expect("checked");
                    break (&mut task.0).await.unwrap_or_else(|error| format!("acknowledger failed: {error}"));
                }
            }
        }
    };
    drop(acknowledger);
    ended
}

/// Asks the active for the records after this log's end, probing lower while the active
/// answers `Diverged`; returns the active's first message of the stream. If the logs agree
/// only up to an index below this log's end, writes the rejoin marker and asks for a
/// restart (`rejoin`), returning why the session ended.
async fn agree_on_start(
    shared: &Shared,
    reader: &mut PeerReader,
    read_half: &mut tokio::net::tcp::OwnedReadHalf,
    write_half: &mut OwnedWriteHalf,
) -> Result<Message, String> {
    let dir = crate::db::log_dir(&shared.config.data_dir);
    let options = shared.config.log_options();
    let last = shared.db.last_index();
    // Probing reads the log's files: let the writer finish what was appended.
    shared.db.wait_written(last).await;
    let timeout = Duration::from_millis(limits::PEER_CONNECT_TIMEOUT_MS);
    let last_epoch = shared.db.last_record().1;
    // The epoch of this node's record `index`; the last one is known even when a checkpoint
    // holds it and the log does not.
    let epoch_of = |index: u64| match index {
        0 => Some(0),
        index if index == last.0 => Some(last_epoch),
        index => own_epoch(&dir, &options, index).ok(),
    };
    let mut probe = last.0;
    for _ in 0..limits::DIVERGENCE_PROBES_MAX {
        let prev_epoch = epoch_of(probe).unwrap_or_else(|| {
            // The log no longer holds it: nothing below can be compared; start from nothing.
            tracing::warn!(probe, "this log no longer holds the record to compare; asking from the start");
            probe = 0;
            0
        });
        let (epoch, index) = (shared.db.epoch(), probe + 1);
        let catch_up = if shared.replication.standby_kind() == StandbyKind::Cold {
            Message::Watch { epoch, index, prev_epoch }
        } else {
            Message::CatchUpFrom { epoch, index, prev_epoch }
        };
        wire::send(write_half, &catch_up, &mut BytesMut::new()).await.map_err(|error| error.to_string())?;
        let reply = match tokio::time::timeout(timeout, reader.next(read_half)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => return Err(format!("from the active: {error}")),
            Err(_) => return Err("the active did not answer CatchUpFrom".into()),
        };
        if let Message::Snapshot { epoch, log_index, bytes } = reply {
            return Err(install_snapshot(shared, reader, read_half, epoch, log_index, bytes).await);
        }
        if reply.epoch().is_some_and(|theirs| theirs < shared.db.epoch()) {
            // A paused old active answering a session from before this node's promotion.
            return Err(format!(
                "stale epoch {} in {} from the peer; this node is at {}",
                reply.epoch().unwrap_or(0),
                reply.name(),
                shared.db.epoch()
            ));
        }
        let Message::Diverged { epoch, index, index_epoch } = reply else {
            if probe == last.0 {
                return Ok(reply);
            }
            // The active agrees up to `probe`, below this log's end.
            return Err(diverged(shared, probe, reply.epoch().unwrap_or(shared.db.epoch())));
        };
        if index == 0 || (index <= probe && epoch_of(index) == Some(index_epoch)) {
            return Err(diverged(shared, index.min(probe), epoch));
        }
        probe = index.min(probe) - 1;
    }
    Err(format!("no common point with the active after {} probes", limits::DIVERGENCE_PROBES_MAX))
}

/// Receives and verifies the active's snapshot, then restarts to install it.
async fn install_snapshot(
    shared: &Shared,
    reader: &mut PeerReader,
    read_half: &mut tokio::net::tcp::OwnedReadHalf,
    epoch: u64,
    log_index: u64,
    bytes: u64,
) -> String {
    tracing::warn!(log_index, bytes, "the active's log no longer reaches back to this node's; receiving a snapshot");
    if let Err(reason) = super::snapshot::receive(shared, reader, read_half, log_index, bytes).await {
        return format!("snapshot transfer failed: {reason}");
    }
    let marker = super::rejoin::Marker { common_index: shared.db.last_index().0, epoch, snapshot: true };
    if let Err(error) = super::rejoin::write_marker(&shared.config.data_dir, marker) {
        return format!("the snapshot arrived, but the rejoin marker cannot be written: {error}");
    }
    shared.request_restart();
    format!("received a snapshot at index {log_index}; restarting to install it")
}

/// The epoch of this log's record `index` (0 for index 0).
fn own_epoch(dir: &std::path::Path, options: &tandem_log::LogOptions, index: u64) -> Result<u64, String> {
    if index == 0 {
        return Ok(0);
    }
    match tandem_log::epoch_at(dir, LogIndex(index), options) {
        Ok(Some(epoch)) => Ok(epoch.0),
        Ok(None) => Err(format!("this log has no record {index} to compare")),
        Err(error) => Err(format!("reading this log to compare it with the active's: {error}")),
    }
}

/// This log holds records after `common_index` that the active (at `epoch`) does not: mark
/// the rejoin and restart the node to carry it out before the database opens again.
fn diverged(shared: &Shared, common_index: u64, epoch: u64) -> String {
    let last = shared.db.last_index().0;
    let marker = super::rejoin::Marker { common_index, epoch, snapshot: false };
    // Only a standby, told by a peer at least as new as itself, ever drops records: never a
    // node promoted meanwhile, whatever a stale peer says.
    let written = shared.replication.while_standby(|| {
        if epoch < shared.db.epoch() {
            return Err(format!("a peer at epoch {epoch} reported divergence; this node is at {}", shared.db.epoch()));
        }
        super::rejoin::write_marker(&shared.config.data_dir, marker).map_err(|error| error.to_string())
    });
    let written = written.unwrap_or_else(|| Err("this node is no longer a standby".into()));
    if let Err(error) = written {
        return format!("not rejoining after index {common_index}: {error}");
    }
    tracing::warn!(
        common_index,
        last_index = last,
        diverged_records = last.saturating_sub(common_index),
        "this log holds records the active does not have; restarting to save them aside and rejoin"
    );
    shared.request_restart();
    format!("diverged from the active after index {common_index}; restarting to rejoin")
}

/// The acknowledger task, stopped when the session ends — also when the session's
/// future is dropped at shutdown, so it never outlives the session holding `Shared`.
struct AbortOnDrop(tokio::task::JoinHandle<String>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Handles one message from the active; returns the last index of the records it applied.
fn receive(shared: &Shared, message: Message) -> Result<Option<LogIndex>, String> {
    let epoch = shared.db.epoch();
    if let Some(theirs) = message.epoch() {
        if theirs < epoch {
            return Err(format!("stale epoch {theirs} in {} from the active; this node is at {epoch}", message.name()));
        }
        if theirs > epoch {
            // The active moved to a newer epoch (later: told by the control plane); follow it.
            tracing::info!(from = epoch, to = theirs, "the active is at a newer epoch; adopting it");
            shared.replication.set_role(&shared.db, Role::Standby, theirs);
        }
    }
    shared.replication.peer_heard();
    match message {
        Message::Records { records, .. } => {
            let records: Vec<tandem_log::Record> = records.into_iter().map(tandem_log::Record::from).collect();
            let applied = shared.replication.while_standby(|| shared.db.apply_replicated(&records));
            match applied {
                Some(Ok(last)) => Ok(last),
                Some(Err(error)) => Err(error.to_string()),
                None => Err("this node is no longer a standby".into()),
            }
        }
        Message::Heartbeat { last_index, .. } => {
            shared.replication.set_active_last_index(last_index);
            Ok(None)
        }
        Message::Refused { reason } => Err(format!("the active closed the session: {reason}")),
        other => Err(format!("unexpected {} from the active", other.name())),
    }
}

fn reject(shared: &Shared, reason: String) -> String {
    if !reason.contains("peer closed") && !reason.contains("socket error") {
        shared.replication.count_rejected_peer();
        tracing::warn!(%reason, "closing the replication link");
    }
    reason
}

/// Sends `Ack` whenever more applied records are durable, and a heartbeat
/// when nothing was sent for `heartbeat_ms`. Returns why it stopped.
async fn acknowledge(shared: Arc<Shared>, mut socket: OwnedWriteHalf, mut applied: watch::Receiver<u64>) -> String {
    let heartbeat = Duration::from_millis(shared.replication.cluster.as_ref().map_or(100, |c| c.heartbeat_ms));
    let mut scratch = BytesMut::new();
    let mut acknowledged = 0u64;
    let mut last_sent = Instant::now() - heartbeat;
    loop {
        let target = *applied.borrow_and_update();
        // Durable as appendfsync promises (fsynced under `always`) before it is acknowledged;
        // acknowledged as far as it is, so that the active's replies follow each fsync rather
        // than the end of a whole batch.
        let durable = shared.db.acknowledgeable().0.min(target);
        let message = if durable > acknowledged {
            acknowledged = durable;
            Message::Ack { epoch: shared.db.epoch(), durable_index: durable }
        } else if target > acknowledged {
            shared.db.acknowledge(LogIndex(acknowledged + 1)).await;
            continue;
        } else if last_sent.elapsed() >= heartbeat {
            Message::Heartbeat { epoch: shared.db.epoch(), sent_at_ms: unix_ms(), last_index: target }
        } else {
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return "session over".into() },
                _ = tokio::time::sleep(heartbeat.saturating_sub(last_sent.elapsed())) => {}
            }
            continue;
        };
        if let Err(error) = wire::send(&mut socket, &message, &mut scratch).await {
            return format!("sending to the active: {error}");
        }
        last_sent = Instant::now();
    }
}
