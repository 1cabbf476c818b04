//! The registry of connected clients, for `CLIENT LIST|KILL|INFO`, `INFO
//! clients` and `maxclients`.
//!
//! Each connection owns an `Arc<Client>`; the registry holds another so an
//! operator can list or kill it. Everything a connection updates per
//! command is an atomic, so the hot path takes no lock here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

/// One connected client as others see it.
pub struct Client {
    /// Unique id (`CLIENT ID`).
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Our address on that connection.
    pub local_addr: SocketAddr,
    /// When the connection was accepted.
    pub created: Instant,
    /// Name set by `CLIENT SETNAME` or `HELLO … SETNAME`.
    pub name: Mutex<Option<String>>,
    /// Library name and version from `CLIENT SETINFO`.
    pub library: Mutex<(String, String)>,
    /// Milliseconds since `created` at the last command (for `idle=`).
    pub last_command_ms: AtomicU64,
    /// Index in the command table of the last command (`cmd=`), or usize::MAX.
    pub last_command: AtomicUsize,
    /// Channel and pattern subscription counts.
    pub subscriptions: AtomicUsize,
    /// Pattern subscription count.
    pub pattern_subscriptions: AtomicUsize,
    /// Commands queued in MULTI, or -1 (stored +1 so 0 means "not in MULTI").
    pub multi_plus_one: AtomicUsize,
    /// RESP version (2 or 3).
    pub protocol: AtomicUsize,
    /// Set when the client must go (CLIENT KILL, slow subscriber, demotion).
    killed: AtomicBool,
    /// Wakes the connection task when `killed` is set.
    pub kill_signal: Notify,
    /// Set while the client waits in a blocking command (`flags=b`, `CLIENT UNBLOCK`).
    blocked: AtomicBool,
    /// What `CLIENT UNBLOCK` asked of the blocked command, until it is taken.
    unblock: Mutex<Option<Unblock>>,
    /// Wakes the blocked command when `unblock` is set.
    pub unblock_signal: Notify,
}

/// How `CLIENT UNBLOCK` ends a blocked command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unblock {
    /// As if its timeout had passed.
    Timeout,
    /// With `-UNBLOCKED client unblocked via CLIENT UNBLOCK`.
    Error,
}

impl Client {
    /// Asks the connection to close at its next step.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill_signal.notify_one();
    }

    /// Marks the client blocked (or not); entering, forgets an earlier unblock request.
    pub fn set_blocked(&self, blocked: bool) {
        if blocked {
            self.unblock.lock().take();
        }
        self.blocked.store(blocked, Ordering::Release);
    }

    /// Whether the client waits in a blocking command.
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Acquire)
    }

    /// Ends the client's blocked command (`CLIENT UNBLOCK`); false if it is not blocked.
    pub fn request_unblock(&self, how: Unblock) -> bool {
        if !self.is_blocked() {
            return false;
        }
        *self.unblock.lock() = Some(how);
        self.unblock_signal.notify_one();
        true
    }

    /// The pending `CLIENT UNBLOCK` request, if any.
    pub fn take_unblock(&self) -> Option<Unblock> {
        self.unblock.lock().take()
    }

    /// Whether someone asked this connection to close.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Seconds since the last command.
    pub fn idle_seconds(&self) -> u64 {
        let now_ms = self.created.elapsed().as_millis() as u64;
        now_ms.saturating_sub(self.last_command_ms.load(Ordering::Relaxed)) / 1000
    }

    /// One line of `CLIENT LIST`, in Redis's field order.
    pub fn describe(&self) -> String {
        let last = self.last_command.load(Ordering::Relaxed);
        let command = crate::cmd::COMMANDS.get(last).map_or("NULL", |spec| spec.name);
        let name = self.name.lock().clone().unwrap_or_default();
        let (library_name, library_version) = self.library.lock().clone();
        let multi = self.multi_plus_one.load(Ordering::Relaxed) as i64 - 1;
        let subscriptions = self.subscriptions.load(Ordering::Relaxed);
        let patterns = self.pattern_subscriptions.load(Ordering::Relaxed);
        let flags = if subscriptions + patterns > 0 {
            "P"
        } else if self.is_blocked() {
            "b"
        } else if multi >= 0 {
            "x"
        } else {
            "N"
        };
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db=0 sub={} psub={} ssub=0 multi={} \
             qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r \
             cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.local_addr,
            name,
            self.created.elapsed().as_secs(),
            self.idle_seconds(),
            flags,
            subscriptions,
            patterns,
            multi,
            command,
            self.protocol.load(Ordering::Relaxed),
            library_name,
            library_version,
        )
    }
}

/// All connected clients.
#[derive(Default)]
pub struct Clients {
    by_id: RwLock<BTreeMap<u64, Arc<Client>>>,
    next_id: AtomicU64,
    /// Connections refused because of `maxclients`, since start.
    pub rejected: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
}

impl Clients {
    /// Registers a new connection; `None` if `maxclients` are already connected.
    pub fn register(&self, addr: SocketAddr, local_addr: SocketAddr, maxclients: usize) -> Option<Arc<Client>> {
        let mut by_id = self.by_id.write();
        if by_id.len() >= maxclients {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let client = Arc::new(Client {
            id,
            addr,
            local_addr,
            created: Instant::now(),
            name: Mutex::new(None),
            library: Mutex::new((String::new(), String::new())),
            last_command_ms: AtomicU64::new(0),
            last_command: AtomicUsize::new(usize::MAX),
            subscriptions: AtomicUsize::new(0),
            pattern_subscriptions: AtomicUsize::new(0),
            multi_plus_one: AtomicUsize::new(0),
            protocol: AtomicUsize::new(2),
            killed: AtomicBool::new(false),
            kill_signal: Notify::new(),
            blocked: AtomicBool::new(false),
            unblock: Mutex::new(None),
            unblock_signal: Notify::new(),
        });
        by_id.insert(id, client.clone());
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(client)
    }

    /// Removes a closed connection.
    pub fn unregister(&self, id: u64) {
        self.by_id.write().remove(&id);
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.by_id.read().len()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.by_id.read().is_empty()
    }

    /// A snapshot of all clients, by id.
    pub fn all(&self) -> Vec<Arc<Client>> {
        self.by_id.read().values().cloned().collect()
    }

    /// The client with this id.
    pub fn get(&self, id: u64) -> Option<Arc<Client>> {
        self.by_id.read().get(&id).cloned()
    }

    /// Asks every client to close (shutdown, demotion).
    pub fn kill_all(&self) {
        for client in self.by_id.read().values() {
            client.kill();
        }
    }
}
