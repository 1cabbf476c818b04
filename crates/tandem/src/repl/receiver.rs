//! The standby's side: connects to the active's peer port, asks for the
//! records after its own last index, persists each at the same index and
//! applies it, acknowledges its durable index, and feeds the failure
//! detector with everything the active sends.
//!
//! Two tasks per session: this one reads and applies; the acknowledger
//! waits for the log to make applied records durable (group commit: one
//! fsync covers every record that arrived meanwhile) and sends `Ack`s and
//! heartbeats, so reading never waits for the disk.

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
    let mut backoff_ms = cluster.heartbeat_ms;
    loop {
        if shared.replication.role() == Role::Standby {
            let started = Instant::now();
            let ended = tokio::select! {
                ended = session(&shared) => ended,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            shared.replication.set_link_up(false);
            tracing::warn!(reason = %ended, "replication link to the active down; reconnecting");
            if started.elapsed() > Duration::from_millis(limits::PEER_RECONNECT_MAX_MS) {
                backoff_ms = cluster.heartbeat_ms;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
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
    let from = shared.db.last_index().next();
    let catch_up = Message::CatchUpFrom { epoch: shared.db.epoch(), index: from.0 };
    if let Err(error) = wire::send(&mut write_half, &catch_up, &mut BytesMut::new()).await {
        return error.to_string();
    }
    tracing::info!(active = %active.peer, from = from.0, "connected to the active; catching up");
    shared.replication.reset_detector();
    shared.replication.set_link_up(true);
    let (applied, applied_changes) = watch::channel(shared.db.last_index().0);
    let mut acknowledger: Option<AbortOnDrop> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(cluster.heartbeat_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut write_half = Some(write_half);
    let ended = loop {
        tokio::select! {
            message = reader.next(&mut read_half) => {
                let message = match message {
                    Ok(message) => message,
                    Err(error) => break reject(shared, format!("from the active: {error}")),
                };
                if let Err(reason) = receive(shared, message, &applied) {
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

/// The acknowledger task, stopped when the session ends — also when the session's
/// future is dropped at shutdown, so it never outlives the session holding `Shared`.
struct AbortOnDrop(tokio::task::JoinHandle<String>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Handles one message from the active.
fn receive(shared: &Shared, message: Message, applied: &watch::Sender<u64>) -> Result<(), String> {
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
            let applied_all = shared.replication.while_standby(|| {
                for record in records {
                    let record = tandem_log::Record::from(record);
                    let index = record.index;
                    shared.db.apply_replicated(&record).map_err(|error| error.to_string())?;
                    applied.send_replace(index.0);
                }
                Ok(())
            });
            applied_all.unwrap_or_else(|| Err("this node is no longer a standby".into()))
        }
        Message::Heartbeat { last_index, .. } => {
            shared.replication.set_active_last_index(last_index);
            Ok(())
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
        let message = if target > acknowledged {
            // Durable as appendfsync promises (fsynced under `always`) before it is acknowledged.
            shared.db.acknowledge(LogIndex(target)).await;
            acknowledged = target;
            Message::Ack { epoch: shared.db.epoch(), durable_index: target }
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
