//! The active's side: accepts the standby on the peer port, then streams
//! its log from the index the standby asks for, tracking acknowledgements.
//!
//! One session at a time: a standby that reconnects (after a half-open
//! connection, say) replaces its previous session, which stops at its next
//! wake-up. A node that is not active refuses sessions, so that a standby
//! never follows another standby.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tandem_log::{Epoch, LogError, LogIndex, LogOptions, LogReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::handshake;
use super::wire::{self, Message, PeerReader, WireRecord};
use super::Role;
use crate::db::unix_ms;
use crate::failover::detector::Verdict;
use crate::limits;
use crate::server::Shared;

/// Accepts peers until shutdown, one task each.
pub async fn listen(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok((socket, addr)) => {
                let shared = shared.clone();
                tokio::spawn(async move { serve_peer(socket, addr, shared).await });
            }
            Err(error) => {
                tracing::warn!(%error, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a session ended; logged with the peer's address.
type Ended = String;

async fn serve_peer(mut socket: TcpStream, addr: SocketAddr, shared: Arc<Shared>) {
    let _ = socket.set_nodelay(true);
    let Some(cluster) = shared.replication.cluster.as_ref() else {
        return;
    };
    let mut reader = PeerReader::new(limits::PEER_HANDSHAKE_FRAME_BYTES_MAX);
    let timeout = Duration::from_millis(limits::PEER_CONNECT_TIMEOUT_MS);
    let caller = match tokio::time::timeout(timeout, handshake::accept(&mut socket, &mut reader, cluster)).await {
        Ok(Ok(caller)) => caller,
        Ok(Err(error)) => {
            shared.replication.count_rejected_peer();
            tracing::warn!(peer = %addr, %error, "replication peer refused");
            return;
        }
        Err(_) => {
            shared.replication.count_rejected_peer();
            tracing::warn!(peer = %addr, "replication peer refused: handshake timed out");
            return;
        }
    };
    if shared.replication.role() != Role::Active {
        let reason = "this node is not the active; follow the active instead".to_string();
        let _ = wire::send(&mut socket, &Message::Refused { reason }, &mut BytesMut::new()).await;
        tracing::info!(peer = %addr, node = caller.node_id, "refused a standby session: not the active");
        return;
    }
    reader.limit = limits::PEER_FRAME_BYTES_MAX;
    let generation = shared.replication.new_session();
    let (read_half, write_half) = socket.into_split();
    let mut session = Session {
        shared: &shared,
        standby: caller.node_id,
        reader,
        read_half,
        write_half,
        scratch: BytesMut::new(),
        generation,
        next: LogIndex(0),
        log: None,
        watch: false,
    };
    let ended = session.run().await;
    if shared.replication.is_current_session(generation) {
        shared.replication.set_standby_connected(false);
        shared.db.set_early_writes(false);
    }
    tracing::warn!(peer = %addr, node = caller.node_id, reason = %ended, "standby session ended");
}

/// One standby session, after the handshake.
struct Session<'a> {
    shared: &'a Shared,
    /// The standby's member id.
    standby: u32,
    reader: PeerReader,
    read_half: OwnedReadHalf,
    write_half: OwnedWriteHalf,
    scratch: BytesMut,
    generation: u64,
    /// The next index to send.
    next: LogIndex,
    /// The log reader positioned at `next`, once opened.
    log: Option<LogReader>,
    /// A cold standby's session (`Watch`): heartbeats only, no records.
    watch: bool,
}

impl Session<'_> {
    async fn run(&mut self) -> Ended {
        let replication = &self.shared.replication;
        let start = match self.agree_on_start().await {
            Ok(start) => start,
            Err(ended) => return ended,
        };
        let last = self.shared.db.last_index();
        self.next = LogIndex(start.max(1));
        replication.reset_detector();
        if self.watch {
            tracing::info!(last = last.0, "cold standby session: heartbeats only");
        } else {
            tracing::info!(from = self.next.0, last = last.0, "standby session: catching up");
            replication.set_standby_connected(true);
            self.shared.db.set_early_writes(true);
        }
        let heartbeat = Duration::from_millis(self.heartbeat_ms());
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.shared.shutdown.subscribe();
        if let Err(error) = self.send_heartbeat().await {
            return error;
        }
        loop {
            let progress = self.shared.db.progress().clone();
            let next = self.next;
            tokio::select! {
                message = self.reader.next(&mut self.read_half) => match message {
                    Ok(message) => {
                        if let Err(reason) = self.receive(message).await {
                            return reason;
                        }
                    }
                    Err(error) => return self.rejected(error.to_string()),
                },
                _ = progress.wait_written(next), if !self.watch => {
                    if let Err(reason) = self.ship().await {
                        return reason;
                    }
                }
                _ = ticker.tick() => {
                    if !replication.is_current_session(self.generation) {
                        return "replaced by a newer session of the standby".into();
                    }
                    if replication.role() != Role::Active {
                        return self.reject("this node is no longer the active".into()).await;
                    }
                    if replication.peer_verdict() == Some(Verdict::Dead) {
                        return "the standby is silent (detector: dead)".into();
                    }
                    if let Err(error) = self.send_heartbeat().await {
                        return error;
                    }
                }
                // Mapped to (): the guard `wait_for` returns must not live across the awaits above.
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return "shutting down".into(),
            }
        }
    }

    /// Reads `CatchUpFrom` (or a cold standby's `Watch`) until the standby asks from an
    /// index where both logs agree (answering `Diverged` to the others); returns that index.
    async fn agree_on_start(&mut self) -> Result<u64, Ended> {
        let timeout = Duration::from_millis(limits::PEER_CONNECT_TIMEOUT_MS);
        for _ in 0..limits::DIVERGENCE_PROBES_MAX {
            let (index, prev_epoch) = match tokio::time::timeout(timeout, self.reader.next(&mut self.read_half)).await {
                Ok(Ok(Message::CatchUpFrom { epoch, .. } | Message::Watch { epoch, .. }))
                    if epoch > self.shared.db.epoch() =>
                {
                    // This node was paused or cut off while the standby moved on: it is stale.
                    let reason =
                        format!("the standby is at epoch {epoch}, ahead of this node's {}", self.shared.db.epoch());
                    return Err(self.reject(reason).await);
                }
                Ok(Ok(Message::CatchUpFrom { index, prev_epoch, .. })) => (index.max(1), prev_epoch),
                Ok(Ok(Message::Watch { index, prev_epoch, .. })) => {
                    self.watch = true;
                    (index.max(1), prev_epoch)
                }
                Ok(Ok(other)) => return Err(self.reject(format!("expected CatchUpFrom, got {}", other.name())).await),
                Ok(Err(error)) => return Err(self.rejected(error.to_string())),
                Err(_) => return Err("no CatchUpFrom after the handshake".into()),
            };
            let dir = crate::db::log_dir(&self.shared.config.data_dir);
            let options = self.shared.config.log_options();
            let last = self.shared.db.progress().written();
            let compared =
                tokio::task::spawn_blocking(move || compare(&dir, &options, last, LogIndex(index - 1), prev_epoch))
                    .await
                    .map_err(|error| format!("comparing logs failed: {error}"))?;
            match compared {
                Ok(Agreement::Agree) => return Ok(index),
                Ok(Agreement::Differ { index: agree_at, epoch }) => {
                    tracing::warn!(
                        asked = index,
                        prev_epoch,
                        candidate = agree_at,
                        "the standby's log differs from this one; telling it where they can still agree"
                    );
                    let message =
                        Message::Diverged { epoch: self.shared.db.epoch(), index: agree_at, index_epoch: epoch };
                    wire::send(&mut self.write_half, &message, &mut self.scratch)
                        .await
                        .map_err(|error| error.to_string())?;
                }
                Err(error) if self.watch => {
                    // A cold standby receives no records: nothing to catch up, and no way to
                    // compare below this log's start. It restores from the archive if promoted.
                    tracing::warn!(%error, asked = index, "cannot compare the cold standby's log with this one");
                    return Ok(index);
                }
                Err(error) => return Err(self.unavailable(error).await),
            }
        }
        Err(self
            .reject(format!("no common point with the standby after {} probes", limits::DIVERGENCE_PROBES_MAX))
            .await)
    }

    fn heartbeat_ms(&self) -> u64 {
        self.shared.replication.cluster.as_ref().map_or(limits::HEARTBEAT_MS_DEFAULT, |cluster| cluster.heartbeat_ms)
    }

    /// Handles one message from the standby.
    async fn receive(&mut self, message: Message) -> Result<(), Ended> {
        let replication = &self.shared.replication;
        let epoch = self.shared.db.epoch();
        if let Some(theirs) = message.epoch() {
            if theirs < epoch {
                return Err(self
                    .reject(format!("stale epoch {theirs} in {}; this node is at {epoch}", message.name()))
                    .await);
            }
            if theirs > epoch {
                // This node was replaced: its lease already keeps it from writing, and the
                // control state it follows demotes it.
                tracing::error!(theirs, ours = epoch, "the standby reports a higher epoch: this active is stale");
                return Err(self.reject(format!("epoch {theirs} is ahead of this node's {epoch}")).await);
            }
        }
        replication.peer_heard();
        match message {
            // A cold standby's acknowledgements say only that it is alive.
            Message::Ack { .. } if self.watch => Ok(()),
            Message::Ack { durable_index, .. } => {
                if durable_index >= self.next.0 {
                    let reason = format!("acknowledges index {durable_index}, but only {} were sent", self.next.0 - 1);
                    return Err(self.reject(reason).await);
                }
                replication.acknowledged(durable_index, self.shared.db.last_index().0);
                self.shared.checkpoints.hold_log_from(durable_index + 1);
                Ok(())
            }
            // Liveness only: its last_index is appended, not necessarily durable.
            Message::Heartbeat { .. } => Ok(()),
            Message::Refused { reason } => Err(format!("the standby closed the session: {reason}")),
            other => Err(self.reject(format!("unexpected {} from the standby", other.name())).await),
        }
    }

    /// Sends the records written from `next` on, at most one batch.
    ///
    /// The reads are page-cache reads of what the writer just wrote, bounded by
    /// `PEER_BATCH_BYTES_SOFT_MAX` per batch, so they run on the event loop.
    async fn ship(&mut self) -> Result<(), Ended> {
        let options = self.shared.config.log_options();
        let reader = match &mut self.log {
            Some(reader) => reader,
            None => {
                let dir = crate::db::log_dir(&self.shared.config.data_dir);
                match tandem_log::read_from(&dir, self.next, &options) {
                    Ok(reader) => self.log.insert(reader),
                    Err(error) => return Err(self.unavailable(error).await),
                }
            }
        };
        if let Err(error) = reader.resume() {
            return Err(self.unavailable(error).await);
        }
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let mut failure = None;
        // Not past what the writer published: reading on would probe the end of the file
        // (and list the log's directory) for records that are not there yet.
        let written = self.shared.db.progress().written();
        while bytes < limits::PEER_BATCH_BYTES_SOFT_MAX && reader.next_index() <= written {
            match reader.next() {
                Some(Ok(record)) => {
                    bytes += record.payload.len();
                    records.push(WireRecord::from(record));
                }
                Some(Err(error)) => {
                    failure = Some(error);
                    break;
                }
                None => break,
            }
        }
        if let Some(error) = failure {
            tracing::error!(%error, "cannot read the log to replicate it");
            return Err(format!("reading the log failed: {error}"));
        }
        let Some(last) = records.last() else {
            // Written but not yet readable (a frame being written): try again shortly.
            tokio::time::sleep(Duration::from_millis(1)).await;
            return Ok(());
        };
        let last_index = last.index;
        debug_assert_eq!(records[0].index, self.next.0, "the reader returns contiguous records from next");
        let message = Message::Records { epoch: self.shared.db.epoch(), records };
        wire::send(&mut self.write_half, &message, &mut self.scratch).await.map_err(|error| error.to_string())?;
        self.next = LogIndex(last_index + 1);
        Ok(())
    }

    async fn send_heartbeat(&mut self) -> Result<(), Ended> {
        let message = Message::Heartbeat {
            epoch: self.shared.db.epoch(),
            sent_at_ms: unix_ms(),
            last_index: self.shared.db.last_index().0,
        };
        wire::send(&mut self.write_half, &message, &mut self.scratch).await.map_err(|error| error.to_string())
    }

    /// The log no longer reaches back to `next`, or cannot be read.
    /// The log no longer reaches back to `next` (catch up from a snapshot instead), or
    /// cannot be read.
    async fn unavailable(&mut self, error: LogError) -> Ended {
        let LogError::Unavailable { requested, first_available } = error else {
            let reason = format!("cannot read the log: {error}");
            tracing::error!(%reason, "cannot catch the standby up");
            return self.reject(reason).await;
        };
        tracing::warn!(
            requested = requested.0,
            first_available = first_available.0,
            "the log no longer reaches back to what the standby needs; sending it a snapshot"
        );
        match super::snapshot::send(self.shared, &mut self.write_half, &mut self.scratch, self.standby).await {
            Ok((index, bytes)) => {
                self.shared.checkpoints.hold_log_from(index + 1);
                tracing::info!(index, bytes, "snapshot sent; the standby installs it and reconnects");
                format!("sent a snapshot at index {index} ({bytes} bytes)")
            }
            Err(reason) => {
                tracing::error!(%reason, "cannot send the standby a snapshot");
                self.reject(reason).await
            }
        }
    }

    /// Closes the session, telling the standby why.
    async fn reject(&mut self, reason: String) -> Ended {
        self.shared.replication.count_rejected_peer();
        let _ = wire::send(&mut self.write_half, &Message::Refused { reason: reason.clone() }, &mut self.scratch).await;
        reason
    }

    /// The standby's bytes were bad or its socket failed.
    fn rejected(&self, reason: String) -> Ended {
        if !reason.starts_with("peer closed") && !reason.starts_with("socket error") {
            self.shared.replication.count_rejected_peer();
        }
        reason
    }
}

/// Whether the standby, whose record `prev` has epoch `prev_epoch`, agrees with this log.
#[derive(Debug, PartialEq, Eq)]
enum Agreement {
    /// Both logs hold the same records up to `prev`.
    Agree,
    /// They do not; this log's last record that can still agree is `index` (0: none).
    Differ { index: u64, epoch: u64 },
}

/// Compares the standby's claim about record `prev` with this log (written up to `last`).
/// Records of one epoch come from one writer, so equal epochs at an index mean equal logs
/// up to it (Raft's log matching).
fn compare(
    dir: &Path,
    options: &LogOptions,
    last: LogIndex,
    prev: LogIndex,
    prev_epoch: u64,
) -> Result<Agreement, LogError> {
    if prev.0 == 0 {
        return Ok(Agreement::Agree);
    }
    if prev <= last && tandem_log::epoch_at(dir, prev, options)? == Some(Epoch(prev_epoch)) {
        return Ok(Agreement::Agree);
    }
    let upper = LogIndex(prev.0.min(last.0));
    Ok(match tandem_log::last_record_with_epoch_at_most(dir, Epoch(prev_epoch), upper, options)? {
        Some((index, epoch)) => Agreement::Differ { index: index.0, epoch: epoch.0 },
        None => Agreement::Differ { index: 0, epoch: 0 },
    })
}
