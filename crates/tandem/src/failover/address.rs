//! The service address: the one address clients use whichever node is active.
//! The active holds it; a node that is no longer active, or whose lease
//! lapsed, releases it. One hold loop ([`hold`]) decides, behind one decision
//! ([`wanted`]), for two forms that carry it out ([`AddressTakeover`]):
//!
//! * [`Loopback`] — any 127.0.0.0/8 address, no privileges: two processes
//!   cannot bind the same address and port, so the kernel itself refuses a
//!   second holder, and a successor binds as soon as the old holder let go
//!   (it retries every `ADDRESS_RETRY_MS` meanwhile).
//! * `failover::vip::VirtualIp` — the Linux virtual IP: the address is added
//!   to an interface, then listened on, then announced by gratuitous ARP.
//!
//! Holding is: claim the address, bind a client listener on it, announce it.
//! Releasing is the reverse: stop the listener, surrender the address.
//!
//! Invariant: the address is held only while this node is active *and* its
//! lease is valid (DESIGN.md invariant 2: released before a successor can be
//! elected).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

use crate::limits;
use crate::repl::Role;
use crate::server::{self, Shared};

/// Whether this node should hold the service address: active, with a valid lease.
pub fn wanted(role: Role, lease_lost: bool) -> bool {
    role == Role::Active && !lease_lost
}

/// How one form of the service address is taken and given up on this host: the hold
/// loop decides when, an `AddressTakeover` does it.
///
/// To ensure correctness: after `claim` returns `Ok`, a listener bound on [`address`]
/// receives the address's connections on this host; after `surrender` returns `Ok`, this
/// host no longer holds the address, so a successor can take it. Both are idempotent
/// (claiming a held address, or surrendering one not held, succeeds) because the loop
/// retries them. `announce` returns at once: it may start background work, which
/// `surrender` stops.
///
/// [`address`]: AddressTakeover::address
pub trait AddressTakeover: Send {
    /// The `ip:port` clients connect to.
    fn address(&self) -> SocketAddr;
    /// Makes the address this host's.
    fn claim(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Tells the network that this host holds the address now (again).
    fn announce(&mut self);
    /// Gives the address up; called after the listener stopped.
    fn surrender(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// How often to announce again while holding; `None`: only on events.
    fn refresh_interval(&self) -> Option<Duration>;
    /// Whether a node listening on all addresses (`bind = "0.0.0.0"`) at the same port
    /// already serves the address once claimed (true where only the holder has it).
    fn served_by_wildcard_listener(&self) -> bool;
}

/// The loopback form: the listener alone holds the address; nothing to claim or announce.
pub struct Loopback(pub SocketAddr);

impl AddressTakeover for Loopback {
    fn address(&self) -> SocketAddr {
        self.0
    }

    async fn claim(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn announce(&mut self) {}

    async fn surrender(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn refresh_interval(&self) -> Option<Duration> {
        None
    }

    fn served_by_wildcard_listener(&self) -> bool {
        // Every node's wildcard listener would answer a loopback address: only a listener
        // of its own makes the kernel refuse a second holder.
        false
    }
}

/// What this node holds of the address now.
#[derive(Default)]
struct Holding {
    /// `claim` succeeded and no `surrender` since.
    claimed: bool,
    /// Clients reach this node on the address.
    serving: bool,
    /// The listener's accept loop (`None` while serving through the node's own listener).
    listener: Option<JoinHandle<()>>,
    /// When to announce again.
    reannounce: Reannounce,
}

/// When a held address is announced again (pure: facts and `now` in, a decision out):
/// after a role event, when the standby connects again (a healed partition: hosts may
/// have learnt another holder meanwhile), and every refresh interval, if there is one.
#[derive(Debug, Default)]
struct Reannounce {
    /// The standby was connected at the last look.
    peer_connected: bool,
    /// When the next periodic announcement is due.
    refresh_at: Option<Instant>,
}

impl Reannounce {
    /// Right after the address was taken (and announced) at `now`.
    fn started(now: Instant, peer_connected: bool, interval: Option<Duration>) -> Reannounce {
        Reannounce { peer_connected, refresh_at: interval.map(|interval| now + interval) }
    }

    /// Whether to announce now; schedules the next periodic announcement when it is one.
    fn due(&mut self, now: Instant, peer_connected: bool, role_changed: bool, interval: Option<Duration>) -> bool {
        let reconnected = peer_connected && !self.peer_connected;
        self.peer_connected = peer_connected;
        let refresh_due = self.refresh_at.is_some_and(|at| now >= at);
        if refresh_due {
            self.refresh_at = interval.map(|interval| now + interval);
        }
        role_changed || reconnected || refresh_due
    }
}

/// Holds the service address while [`wanted`], until shutdown; releases it at the end.
pub async fn hold(shared: Arc<Shared>, mut form: impl AddressTakeover) {
    let mut events = shared.replication.role_events();
    let mut shutdown = shared.shutdown.subscribe();
    let mut ticker = tokio::time::interval(Duration::from_millis(limits::ADDRESS_RETRY_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut holding = Holding::default();
    let mut last_error = String::new();
    let mut role_changed = false;
    loop {
        let replication = &shared.replication;
        let want = wanted(replication.role(), replication.lease_lost());
        if want && !holding.serving {
            take(&shared, &mut form, &mut holding, &mut last_error).await;
        } else if !want && holding.claimed {
            give_up(&shared, &mut form, &mut holding, &mut last_error).await;
        } else if want {
            announce_if_due(&shared, &mut form, &mut holding, role_changed);
        }
        role_changed = false;
        tokio::select! {
            _ = ticker.tick() => {}
            changed = events.changed() => if changed.is_err() { break } else { role_changed = true },
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        }
    }
    if holding.claimed {
        give_up(&shared, &mut form, &mut holding, &mut last_error).await;
    }
}

/// Claims the address, listens on it and announces it; on an error, logs it (once per
/// distinct error) and leaves the rest for the next tick.
async fn take(shared: &Arc<Shared>, form: &mut impl AddressTakeover, holding: &mut Holding, last_error: &mut String) {
    let address = form.address();
    let taken = async {
        form.claim().await?;
        holding.claimed = true;
        if form.served_by_wildcard_listener() && covered_by_own_listener(shared, address) {
            return Ok(None);
        }
        bind(address).map(Some)
    };
    match taken.await {
        Ok(listener) => {
            holding.listener = listener.map(|listener| tokio::spawn(server::accept_loop(listener, shared.clone())));
            holding.serving = true;
            let connected = shared.replication.standby_connected();
            holding.reannounce = Reannounce::started(Instant::now(), connected, form.refresh_interval());
            form.announce();
            shared.replication.note_address_bound();
            last_error.clear();
            tracing::info!(%address, epoch = shared.db.epoch(), "service address bound");
        }
        Err(error) => log_once(last_error, &error, address, "cannot take the service address yet; retrying"),
    }
}

/// Stops the listener and surrenders the address.
async fn give_up(shared: &Shared, form: &mut impl AddressTakeover, holding: &mut Holding, last_error: &mut String) {
    let address = form.address();
    if let Some(task) = holding.listener.take() {
        task.abort();
        let _ = task.await;
    }
    if std::mem::take(&mut holding.serving) {
        shared.replication.service_address.set_bound(false);
        tracing::warn!(%address, role = ?shared.replication.role(), "service address released");
    }
    match form.surrender().await {
        Ok(()) => {
            holding.claimed = false;
            last_error.clear();
        }
        Err(error) => log_once(last_error, &error, address, "cannot surrender the service address; retrying"),
    }
}

/// While held: announces again when [`Reannounce`] says so.
fn announce_if_due(shared: &Shared, form: &mut impl AddressTakeover, holding: &mut Holding, role_changed: bool) {
    let connected = shared.replication.standby_connected();
    if holding.reannounce.due(Instant::now(), connected, role_changed, form.refresh_interval()) {
        tracing::debug!(address = %form.address(), role_changed, connected, "announcing the service address again");
        form.announce();
    }
}

/// Whether the node's own client listener, on all addresses at the same port, already
/// accepts connections to `address` (binding it again would fail: address in use).
fn covered_by_own_listener(shared: &Shared, address: SocketAddr) -> bool {
    shared.local_addr.ip().is_unspecified() && shared.local_addr.port() == address.port()
}

fn log_once(last_error: &mut String, error: &io::Error, address: SocketAddr, message: &str) {
    let error = error.to_string();
    if error != *last_error {
        tracing::warn!(%address, %error, "{message}");
        *last_error = error;
    }
}

/// Binds with `SO_REUSEADDR`, so a successor binds while the old holder's connections
/// linger in TIME_WAIT.
fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(limits::LISTEN_BACKLOG)
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

    #[test]
    fn a_reconnected_standby_or_a_role_event_reannounces_once() {
        let start = Instant::now();
        let mut reannounce = Reannounce::started(start, true, None);
        assert!(!reannounce.due(start, true, false, None), "nothing happened");
        assert!(!reannounce.due(start, false, false, None), "losing the standby announces nothing");
        assert!(reannounce.due(start, true, false, None), "the standby is back: the partition healed");
        assert!(!reannounce.due(start, true, false, None), "once per reconnection");
        assert!(reannounce.due(start, true, true, None), "a role event");
    }

    #[test]
    fn the_periodic_refresh_fires_every_interval_and_only_when_on() {
        let start = Instant::now();
        let interval = Some(Duration::from_millis(1000));
        let mut reannounce = Reannounce::started(start, false, interval);
        assert!(!reannounce.due(start + Duration::from_millis(999), false, false, interval));
        assert!(reannounce.due(start + Duration::from_millis(1000), false, false, interval));
        assert!(!reannounce.due(start + Duration::from_millis(1500), false, false, interval), "rescheduled");
        assert!(reannounce.due(start + Duration::from_millis(2000), false, false, interval));
        let mut off = Reannounce::started(start, false, None);
        assert!(!off.due(start + Duration::from_secs(3600), false, false, None));
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
