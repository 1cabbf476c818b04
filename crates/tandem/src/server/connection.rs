//! One client connection: read requests, run them, wait until their effects
//! are acknowledged by the log, write the replies.
//!
//! Pipelined requests that arrive together run one after another and their
//! replies leave together after a single wait for the highest ticket — that
//! is what makes `appendfsync always` cost one fsync per batch, not per
//! command (group commit).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tandem_log::LogIndex;
use tandem_resp::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::blocking::Outcome;
use super::pipeline::{Next, Pipeline};
use super::session::Session;
use super::Shared;
use crate::limits;

/// Why a connection ended, for the log.
#[derive(Debug)]
enum Closed {
    Peer,
    Quit,
    Killed,
    Shutdown,
    Protocol(String),
    QueryBufferLimit,
    Idle,
    Io(std::io::Error),
}

/// Serves one client until it leaves, is killed, or the server stops.
pub async fn run(socket: TcpStream, addr: SocketAddr, shared: Arc<Shared>) {
    let _ = socket.set_nodelay(true);
    let local_addr = socket.local_addr().unwrap_or(shared.local_addr);
    let maxclients = shared.runtime.maxclients.load(Ordering::Relaxed) as usize;
    let Some(client) = shared.clients.register(addr, local_addr, maxclients) else {
        let mut socket = socket;
        let _ = socket.write_all(b"-ERR max number of clients reached\r\n").await;
        return;
    };
    shared.metrics.connected_clients.increment(1);
    let (sender, receiver) = mpsc::channel(limits::SUBSCRIBER_QUEUE_MESSAGES_MAX);
    let authenticated = shared.config.requirepass.is_none();
    let mut session = Session::new(client.clone(), authenticated, sender);
    let closed = serve(socket, &shared, &mut session, receiver).await;
    session.close(&shared);
    shared.clients.unregister(client.id);
    shared.metrics.connected_clients.decrement(1);
    match closed {
        Closed::Protocol(ref message) => tracing::info!(client = client.id, %addr, "closed: {message}"),
        Closed::Io(ref error) => tracing::debug!(client = client.id, %addr, %error, "closed: socket error"),
        ref other => tracing::debug!(client = client.id, %addr, reason = ?other, "closed"),
    }
}

async fn serve(
    mut socket: TcpStream,
    shared: &Shared,
    session: &mut Session,
    mut messages: mpsc::Receiver<Frame>,
) -> Closed {
    let limits = shared.config.resp_limits();
    let query_buffer_max = shared.config.client_query_buffer_limit as usize;
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut shutdown = shared.shutdown.subscribe();
    let mut pipeline = Pipeline::default();
    // A blocked command's reply, encoded into `output` last turn, waits for this.
    let mut carried: Option<LogIndex> = None;
    loop {
        let mut ticket: Option<LogIndex> = carried.take();
        let mut close: Option<Closed> = None;
        let mut blocked = None;
        let mut needs_input = false;
        let client = &session.client;
        client.last_command_ms.store(client.created.elapsed().as_millis() as u64, Ordering::Relaxed);
        // Run every complete request already buffered, bounded by the reply buffer and by
        // the log's backlog (a pipeline of large writes waits for the disk between batches).
        parse_ahead(&mut pipeline, &mut input, &limits, shared, session);
        while output.len() < limits::REPLY_BUFFER_BYTES_SOFT_MAX
            && shared.db.log_backlog_bytes() < limits::LOG_BACKLOG_BYTES_SOFT_MAX
        {
            match pipeline.next_step() {
                Next::Request(args) => {
                    let flow = session.handle(shared, args, &mut output);
                    ticket = ticket.max(flow.ticket);
                    if let Some(reply) = flow.deferred {
                        // CHECKPOINT / SAVE: their reply comes before any later one.
                        reply.await.encode(session.protocol, &mut output);
                    }
                    if flow.close {
                        close = Some(Closed::Quit);
                        break;
                    }
                    if flow.blocked.is_some() {
                        // The replies so far go out first; nothing after it runs until it ends.
                        blocked = flow.blocked;
                        break;
                    }
                }
                Next::NeedsInput => {
                    needs_input = true;
                    break;
                }
                Next::ParseMore => parse_ahead(&mut pipeline, &mut input, &limits, shared, session),
                Next::Malformed(error) => {
                    Frame::error(format!("ERR {error}")).encode(session.protocol, &mut output);
                    close = Some(Closed::Protocol(error.to_string()));
                    break;
                }
            }
        }
        if !needs_input && close.is_none() && shared.db.log_backlog_bytes() >= limits::LOG_BACKLOG_BYTES_SOFT_MAX {
            // Stopped for the backlog: wait for everything appended so far, then go on.
            ticket = ticket.max(Some(shared.db.last_index()));
        }
        if let Some(ticket) = ticket {
            if shared.replication.must_wait(ticket) {
                // The standby's acknowledgement usually comes after the local fsync: waiting for
                // it first wakes this task once, not twice. The records must be written to be
                // shipped, so that is asked for first.
                shared.db.write_soon();
                // sync: until the standby persisted the ticket, however long (a client that gives
                // up sees a timeout, an unknown outcome); killable and stopped by shutdown.
                tokio::select! {
                    _ = shared.replication.wait_for_reply(ticket) => {}
                    _ = session.client.kill_signal.notified() => return Closed::Killed,
                    _ = shutdown.wait_for(|stop| *stop) => return Closed::Shutdown,
                }
            }
            if !shared.db.is_acknowledged(ticket) {
                shared.db.acknowledge(ticket).await;
            }
        }
        if !output.is_empty() {
            // A client that does not read must still be killable and must not hold up shutdown.
            tokio::select! {
                written = socket.write_all(&output) => {
                    if let Err(error) = written {
                        return Closed::Io(error);
                    }
                }
                _ = session.client.kill_signal.notified() => return Closed::Killed,
                _ = shutdown.wait_for(|stop| *stop) => return Closed::Shutdown,
            }
            output.clear();
        }
        if let Some(reason) = close {
            return reason;
        }
        if let Some(blocked) = blocked {
            match super::blocking::wait(shared, session, blocked, &mut socket, &mut input, query_buffer_max).await {
                Outcome::Reply(reply, ticket) => {
                    reply.encode(session.protocol, &mut output);
                    carried = ticket;
                    continue;
                }
                Outcome::Peer => return Closed::Peer,
                Outcome::Io(error) => return Closed::Io(error),
                Outcome::QueryBufferLimit => return Closed::QueryBufferLimit,
                Outcome::Killed => return Closed::Killed,
                Outcome::Shutdown => return Closed::Shutdown,
            }
        }
        if session.client.is_killed() {
            return Closed::Killed;
        }
        if input.len() > query_buffer_max {
            return Closed::QueryBufferLimit;
        }
        if !needs_input {
            continue; // the batch was cut by the reply-buffer bound: run the rest first
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        let idle_seconds = shared.runtime.timeout_seconds.load(Ordering::Relaxed);
        let idle = async {
            if idle_seconds == 0 || session.is_subscribed() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
        };
        tokio::select! {
            read = socket.read_buf(&mut input) => match read {
                Ok(0) => return Closed::Peer,
                Ok(_) => {}
                Err(error) => return Closed::Io(error),
            },
            Some(message) = messages.recv() => {
                message.encode(session.protocol, &mut output);
                while let Ok(message) = messages.try_recv() {
                    message.encode(session.protocol, &mut output);
                    if output.len() > limits::REPLY_BUFFER_BYTES_SOFT_MAX {
                        break;
                    }
                }
            }
            _ = session.client.kill_signal.notified() => return Closed::Killed,
            _ = shutdown.wait_for(|stop| *stop) => return Closed::Shutdown,
            _ = idle => return Closed::Idle,
        }
    }
}

/// Parses the next buffered requests and prefetches their keys together. Not before
/// `AUTH`: a client that may not read the keyspace does not get to time lookups in it.
fn parse_ahead(
    pipeline: &mut Pipeline,
    input: &mut BytesMut,
    limits: &tandem_resp::Limits,
    shared: &Shared,
    session: &Session,
) {
    // One key alone gains nothing: its command's own lookup takes the same misses.
    if pipeline.parse_ahead(input, limits) && session.is_authenticated() && pipeline.keys().nth(1).is_some() {
        shared.db.prefetch(pipeline.keys());
    }
}
