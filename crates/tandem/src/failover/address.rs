//! The service address: the one address clients use whichever node is active.
//! The active binds it as a second client listener; a node that is no longer
//! active, or whose lease lapsed, releases it.
//!
//! This is the loopback form (any 127.0.0.0/8 address, no privileges): two
//! processes cannot bind the same address and port, so the kernel itself
//! refuses a second holder, and a successor binds as soon as the old holder
//! let go (it retries every `ADDRESS_RETRY_MS` meanwhile). The Linux virtual
//! IP form will sit behind the same decision ([`wanted`]).
//!
//! Invariant: the address is held only while this node is active *and* its
//! lease is valid (DESIGN.md invariant 2: released before a successor can be
//! elected).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

use crate::limits;
use crate::repl::Role;
use crate::server::{self, Shared};

/// Whether this node should hold the service address: active, with a valid lease.
pub fn wanted(role: Role, lease_lost: bool) -> bool {
    role == Role::Active && !lease_lost
}

/// Holds the service address while [`wanted`], until shutdown; releases it at the end.
pub async fn hold(shared: Arc<Shared>, address: SocketAddr) {
    let mut events = shared.replication.role_events();
    let mut shutdown = shared.shutdown.subscribe();
    let mut ticker = tokio::time::interval(Duration::from_millis(limits::ADDRESS_RETRY_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held: Option<JoinHandle<()>> = None;
    let mut last_error = String::new();
    loop {
        let replication = &shared.replication;
        let want = wanted(replication.role(), replication.lease_lost());
        match (want, held.is_some()) {
            (true, false) => match bind(address) {
                Ok(listener) => {
                    held = Some(tokio::spawn(server::accept_loop(listener, shared.clone())));
                    replication.service_address.set_bound(true);
                    last_error.clear();
                    tracing::info!(%address, epoch = shared.db.epoch(), "service address bound");
                }
                Err(error) => {
                    let error = error.to_string();
                    if error != last_error {
                        tracing::warn!(%address, %error, "cannot bind the service address yet; retrying");
                        last_error = error;
                    }
                }
            },
            (false, true) => {
                release(&mut held).await;
                replication.service_address.set_bound(false);
                tracing::warn!(%address, role = ?replication.role(), "service address released");
            }
            _ => {}
        }
        tokio::select! {
            _ = ticker.tick() => {}
            changed = events.changed() => if changed.is_err() { break },
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        }
    }
    if held.is_some() {
        release(&mut held).await;
        shared.replication.service_address.set_bound(false);
    }
}

/// Binds with `SO_REUSEADDR`, so a successor binds while the old holder's connections
/// linger in TIME_WAIT.
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(limits::LISTEN_BACKLOG)
}

/// Stops accepting on the address: the listener closes with its task.
async fn release(held: &mut Option<JoinHandle<()>>) {
    if let Some(task) = held.take() {
        task.abort();
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_active_with_a_lease_holds_the_address() {
        assert!(wanted(Role::Active, false));
        assert!(!wanted(Role::Active, true), "a lapsed lease releases the address");
        assert!(!wanted(Role::Standby, false));
        assert!(!wanted(Role::Standalone, false));
    }

    #[tokio::test]
    async fn a_bound_address_refuses_a_second_holder_until_released() {
        let address: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = bind(address).unwrap();
        let taken = first.local_addr().unwrap();
        assert!(bind(taken).is_err(), "two listeners on one address");
        drop(first);
        bind(taken).expect("released addresses can be bound again");
    }
}
