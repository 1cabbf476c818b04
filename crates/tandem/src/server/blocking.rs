//! A client blocked in a blocking pop (`BLPOP`, `BZPOPMIN`, …; see
//! `cmd::blocking`): the connection waits here, its later requests left
//! unread in its buffer, as Redis leaves them.
//!
//! The command runs again whenever a write changes one of its keys
//! ([`ReadyKeys`](crate::ready_keys::ReadyKeys)), when the node's role
//! changes (a demoted node answers `-READONLY` instead), and once a second
//! in any case (a lease lost has no event of its own). It ends with the
//! pop's reply, with the null array when its timeout passes (or `CLIENT
//! UNBLOCK` says so; `CLIENT UNBLOCK id ERROR` gives `-UNBLOCKED`), or with
//! the connection when the client goes away, is killed, or the server shuts
//! down. `CLIENT LIST` shows the client with `flags=b` meanwhile.

use std::time::Duration;

use bytes::BytesMut;
use tandem_log::LogIndex;
use tandem_resp::Frame;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::clients::{Client, Unblock};
use super::session::{Blocked, Session};
use super::Shared;

/// How often a blocked command runs again without any signal.
const RECHECK: Duration = Duration::from_secs(1);

/// How a block ended.
pub enum Outcome {
    /// The reply, and the log index it waits for (none for a timeout).
    Reply(Frame, Option<LogIndex>),
    /// The client closed the connection.
    Peer,
    /// Reading from the client failed.
    Io(std::io::Error),
    /// The client sent more than its query buffer holds while blocked.
    QueryBufferLimit,
    /// `CLIENT KILL`.
    Killed,
    /// The server is shutting down.
    Shutdown,
}

/// Clears the client's blocked mark however the wait ends.
struct Unmark<'a>(&'a Client);

impl Drop for Unmark<'_> {
    fn drop(&mut self) {
        self.0.set_blocked(false);
    }
}

/// Waits until `blocked` pops, times out, or its connection ends. Requests
/// that arrive meanwhile are read into `input` and run afterwards.
pub async fn wait(
    shared: &Shared,
    session: &mut Session,
    blocked: Blocked,
    socket: &mut TcpStream,
    input: &mut BytesMut,
    query_buffer_max: usize,
) -> Outcome {
    let deadline = blocked.plan.timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
    let waiter = shared.db.ready_keys().wait_on(&blocked.plan.keys);
    let mut roles = shared.replication.role_events();
    roles.borrow_and_update();
    let mut shutdown = shared.shutdown.subscribe();
    let client = session.client.clone();
    client.set_blocked(true);
    let _unmark = Unmark(&client);
    loop {
        // Registered before this attempt: a write from here on wakes the wait below.
        if let Some((reply, ticket)) = session.retry_blocked(shared, &blocked) {
            return Outcome::Reply(reply, Some(ticket));
        }
        let timeout = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = waiter.changed() => {}
            changed = roles.changed() => if changed.is_err() { return Outcome::Shutdown },
            _ = tokio::time::sleep(RECHECK) => {}
            _ = timeout => return Outcome::Reply(Frame::NullArray, None),
            read = socket.read_buf(input) => match read {
                Ok(0) => return Outcome::Peer,
                Ok(_) if input.len() > query_buffer_max => return Outcome::QueryBufferLimit,
                Ok(_) => {}
                Err(error) => return Outcome::Io(error),
            },
            _ = client.unblock_signal.notified() => match client.take_unblock() {
                Some(Unblock::Timeout) => return Outcome::Reply(Frame::NullArray, None),
                Some(Unblock::Error) => {
                    return Outcome::Reply(Frame::error("UNBLOCKED client unblocked via CLIENT UNBLOCK"), None)
                }
                None => {}
            },
            _ = client.kill_signal.notified() => return Outcome::Killed,
            _ = shutdown.wait_for(|stop| *stop) => return Outcome::Shutdown,
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
    }
}
