//! `WAIT numreplicas timeout`: replies how many replicas hold every write this
//! connection made, waiting up to `timeout` ms (0: without end) until at
//! least `numreplicas` do, as Redis does.
//!
//! tandem has at most one replica, the standby. It holds a connection's writes
//! once its acknowledged durable index reaches the connection's last write. In
//! `sync` mode a write's reply already waited for that, so `WAIT` answers at
//! once; in `async` and `semi-sync` (after a timeout) it waits for the standby
//! to catch up. Inside `MULTI` it runs at once (it is not queued), where Redis
//! would run it at `EXEC` without blocking.

use std::time::Duration;

use bytes::Bytes;
use tandem_log::LogIndex;
use tandem_resp::Frame;

use super::session::DeferredReply;
use super::Shared;
use crate::cmd::{args, CommandError};
use crate::repl::Role;

/// `WAIT numreplicas timeout`, for a connection whose last write is `last_write`: the
/// reply, ready at once when nothing needs waiting for.
pub fn wait(shared: &Shared, last_write: LogIndex, args: &[Bytes]) -> Result<DeferredReply, CommandError> {
    let wanted = args::integer(&args[1])?;
    let timeout_ms =
        args::parse_integer(&args[2]).ok_or_else(|| CommandError::err("timeout is not an integer or out of range"))?;
    if timeout_ms < 0 {
        return Err(CommandError::err("timeout is negative"));
    }
    let replication = &shared.replication;
    if replication.role() == Role::Standby {
        return Err(CommandError::err(
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is \
             configured to be writable (which is not the default) writes to replicas are just local and are not \
             propagated.",
        ));
    }
    let has_standby = replication.cluster.is_some() && replication.role() == Role::Active;
    // Acknowledged already: nothing to wait for. It counts while the standby is connected,
    // as Redis counts its connected replicas; a standby that went away after acknowledging
    // is not waited for (Redis would wait for a replica to come back until the timeout).
    let acknowledged = has_standby && replication.replicated_index() >= last_write;
    let now = (acknowledged && replication.standby_connected()) as i64;
    if now >= wanted || acknowledged {
        return Ok(Box::pin(std::future::ready(Frame::Integer(now))));
    }
    // Only an active with a standby ever gets an acknowledgement; the others wait out the timeout.
    let acknowledgement = has_standby.then(|| replication.wait_replicated(last_write));
    Ok(Box::pin(async move {
        let reached = async {
            match acknowledgement {
                Some(acknowledgement) => acknowledgement.await,
                None => std::future::pending().await,
            }
        };
        let caught_up = match timeout_ms {
            0 => {
                reached.await;
                true
            }
            ms => tokio::time::timeout(Duration::from_millis(ms as u64), reached).await.is_ok(),
        };
        Frame::Integer(caught_up as i64)
    }))
}
