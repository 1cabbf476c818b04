//! The client plane: accept loop, per-connection task, sessions, pub/sub.
//!
//! * [`connection`] — reads requests, runs them, waits for durability,
//!   writes replies; one task per client.
//! * [`pipeline`] — the requests a connection parsed ahead, whose keys it
//!   prefetches together before running them.
//! * [`session`] — a connection's state (protocol, auth, MULTI, subscriptions)
//!   and the connection/server commands.
//! * [`blocking`] — a client blocked in `BLPOP` and the like: waits for its
//!   keys, its timeout, a kill, a role change or the client going away.
//! * [`clients`] — the registry behind `CLIENT LIST|KILL` and `maxclients`.
//! * [`pubsub`] — channels and patterns with bounded subscriber queues.
//! * [`info`] — `INFO` sections and `CONFIG GET`.

pub mod blocking;
pub mod clients;
pub mod connection;
pub mod info;
pub mod pipeline;
pub mod pubsub;
pub mod session;
pub mod wait;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::metrics::Metrics;
use crate::config::Config;
use crate::db::Database;

/// Settings `CONFIG SET` may change while running.
pub struct Runtime {
    /// `maxmemory` in bytes; 0 = none.
    pub maxmemory_bytes: AtomicU64,
    /// `maxclients`.
    pub maxclients: AtomicU64,
    /// Idle timeout in seconds; 0 = none.
    pub timeout_seconds: AtomicU64,
}

/// State shared by every connection and background task.
pub struct Shared {
    /// The configuration the server started with.
    pub config: Config,
    /// Settings changeable at run time.
    pub runtime: Runtime,
    /// The data.
    pub db: Database,
    /// Role, epoch and the standby's progress: what replies wait for.
    pub replication: crate::repl::Replication,
    /// Takes checkpoints of `db` (commands, policy, INFO).
    pub checkpoints: Arc<crate::checkpoint::Checkpointer>,
    /// Connected clients.
    pub clients: clients::Clients,
    /// Pub/sub broker.
    pub broker: pubsub::Broker,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Bytes allocated, refreshed by a background task (jemalloc `stats.allocated`).
    pub used_memory_bytes: AtomicU64,
    /// Peak of `used_memory_bytes`.
    pub used_memory_peak_bytes: AtomicU64,
    /// When the server started.
    pub started: Instant,
    /// Wall-clock start time.
    pub started_wall: SystemTime,
    /// The client address actually bound (port 0 resolves here).
    pub local_addr: SocketAddr,
    /// Set to true to shut the server down.
    pub shutdown: watch::Sender<bool>,
    /// Set with `shutdown` when the node must start again at once (a pending rejoin).
    pub restart: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Whether writes must be refused for memory (`maxmemory` exceeded).
    pub fn over_maxmemory(&self) -> bool {
        let limit = self.runtime.maxmemory_bytes.load(Ordering::Relaxed);
        limit != 0 && self.used_memory_bytes.load(Ordering::Relaxed) > limit
    }

    /// Asks the whole server to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Asks the node to stop and start again in the same process slot (`node::run`
    /// returns `Outcome::Restart`; `main` re-executes itself).
    pub fn request_restart(&self) {
        self.restart.store(true, Ordering::Release);
        self.request_shutdown();
    }

    /// Whether a restart was asked for (the node is on its way down).
    pub fn restart_requested(&self) -> bool {
        self.restart.load(Ordering::Acquire)
    }
}

/// Accepts clients until shutdown, one task each.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (socket, addr) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move { connection::run(socket, addr, shared).await });
    }
}
