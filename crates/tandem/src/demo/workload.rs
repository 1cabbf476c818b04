//! The demo's client side: writers that `SET` unique keys and record every
//! acknowledged write, and the audit that reads them back.
//!
//! A reply of `OK` is an acknowledged write; an I/O error, a closed connection
//! or a timeout leaves the write's outcome *unknown* (it may or may not have
//! been applied), so it is counted apart and never audited; an error reply
//! (`-READONLY` from a standby, `-TRYAGAIN` while fenced) is retried with the
//! same key and value after a short sleep, which is safe because a key is
//! only ever written with one value.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_resp::Frame;

use crate::client::Client;

/// Deadline of one connection attempt and of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before retrying after a refused connection or an error reply.
const RETRY_PAUSE: Duration = Duration::from_millis(2);
/// Keys per `MGET` of the audit.
const AUDIT_BATCH: usize = 500;
/// Lost keys the audit names (the count covers them all).
const LOST_KEYS_SHOWN: usize = 10;

/// Where writers send their commands.
#[derive(Debug, Clone)]
pub enum Target {
    /// The service address, which the active holds: a reconnect finds the new active.
    ServiceAddress(SocketAddr),
    /// The data nodes' own addresses, tried in turn after an error (used when this
    /// build's nodes do not bind the service address).
    FollowActive(Vec<SocketAddr>),
}

impl Target {
    fn addresses(&self) -> Vec<SocketAddr> {
        match self {
            Target::ServiceAddress(address) => vec![*address],
            Target::FollowActive(addresses) => addresses.clone(),
        }
    }
}

/// What the writers of one round recorded.
#[derive(Default)]
pub struct Ledger {
    acknowledged: Mutex<Vec<(String, String)>>,
    /// Acknowledged writes sent before the fault (served by the old active, whenever their
    /// reply arrived).
    sent_before_fault: AtomicU64,
    unknown: AtomicU64,
    /// The instant of the fault, once it happened.
    fault: Mutex<Option<Instant>>,
    /// The first acknowledgement of a write sent after the fault.
    first_after_fault: Mutex<Option<Instant>>,
}

impl Ledger {
    /// Records the fault's instant: writes sent from now on measure recovery.
    pub fn mark_fault(&self, at: Instant) {
        *self.fault.lock().expect("ledger lock") = Some(at);
    }

    /// Writes acknowledged so far.
    pub fn acknowledged_count(&self) -> u64 {
        self.acknowledged.lock().expect("ledger lock").len() as u64
    }

    /// The first acknowledgement of a write sent after the fault, if any yet.
    pub fn first_write_after_fault(&self) -> Option<Instant> {
        *self.first_after_fault.lock().expect("ledger lock")
    }

    fn acknowledge(&self, key: String, value: String, sent: Instant, acknowledged: Instant) {
        self.acknowledged.lock().expect("ledger lock").push((key, value));
        if self.fault.lock().expect("ledger lock").is_some_and(|fault| sent >= fault) {
            self.first_after_fault.lock().expect("ledger lock").get_or_insert(acknowledged);
        } else {
            self.sent_before_fault.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Acknowledged writes and the count of unknown outcomes of a finished round.
pub struct Tally {
    /// Every acknowledged (key, value).
    pub acknowledged: Vec<(String, String)>,
    /// Writes whose outcome is unknown.
    pub unknown: u64,
    /// Acknowledged writes sent before the fault (some replies arrive after it).
    pub sent_before_fault: u64,
}

/// The running writer tasks of one round.
pub struct Writers {
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// Starts `count` writers of keys `demo:<round>:<writer>:<sequence>`.
    pub fn start(target: &Target, round: u32, count: usize) -> Writers {
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..count)
            .map(|writer| {
                let name = Name { round, writer };
                tokio::spawn(write_until_stopped(target.addresses(), name, ledger.clone(), stop.clone()))
            })
            .collect();
        Writers { ledger, stop, tasks }
    }

    /// The round's ledger (to mark the fault and watch for the first write after it).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Stops the writers (each finishes the call in flight) and returns the tally.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        Tally {
            acknowledged: std::mem::take(&mut *self.ledger.acknowledged.lock().expect("ledger lock")),
            unknown: self.ledger.unknown.load(Ordering::Relaxed),
            sent_before_fault: self.ledger.sent_before_fault.load(Ordering::Relaxed),
        }
    }
}

/// Names one writer's keys.
#[derive(Clone, Copy)]
struct Name {
    round: u32,
    writer: usize,
}

async fn write_until_stopped(addresses: Vec<SocketAddr>, name: Name, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let mut connection: Option<Client> = None;
    let mut next_address = name.writer % addresses.len();
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let client = match connection.as_mut() {
            Some(client) => client,
            None => match Client::connect(addresses[next_address], CALL_TIMEOUT).await {
                Ok(client) => connection.insert(client),
                Err(_) => {
                    next_address = (next_address + 1) % addresses.len();
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        let key = format!("demo:{}:{}:{sequence}", name.round, name.writer);
        let value = format!("v{sequence}-{}", name.writer);
        let sent = Instant::now();
        match client.call(&[b"SET", key.as_bytes(), value.as_bytes()]).await {
            Ok(Frame::Simple(ok)) if &ok[..] == b"OK" => {
                ledger.acknowledge(key, value, sent, Instant::now());
                sequence += 1;
            }
            Ok(Frame::Error(_) | Frame::BulkError(_)) => {
                // Not this node's write to take (a standby, or fenced): try again, and
                // when following the active by its own addresses, try the other node.
                if addresses.len() > 1 {
                    connection = None;
                    next_address = (next_address + 1) % addresses.len();
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Ok(_) | Err(_) => {
                ledger.unknown.fetch_add(1, Ordering::Relaxed);
                sequence += 1;
                connection = None;
                next_address = (next_address + 1) % addresses.len();
            }
        }
    }
}

/// What the audit found.
pub struct Audit {
    /// Acknowledged writes whose value is missing or different.
    pub lost: u64,
    /// The first few lost keys.
    pub lost_keys: Vec<String>,
}

/// Reads every acknowledged key back from `address` (with `MGET` in batches).
pub async fn audit(address: SocketAddr, acknowledged: &[(String, String)]) -> anyhow::Result<Audit> {
    let mut client = Client::connect(address, Duration::from_secs(10)).await?;
    let mut audit = Audit { lost: 0, lost_keys: Vec::new() };
    for batch in acknowledged.chunks(AUDIT_BATCH) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(batch.iter().map(|(key, _)| key.as_bytes()));
        let values = match client.call(&args).await? {
            Frame::Array(values) if values.len() == batch.len() => values,
            other => anyhow::bail!("MGET on {address} answered {other:?}"),
        };
        for ((key, expected), value) in batch.iter().zip(values) {
            if !matches!(value, Frame::Bulk(bytes) if bytes == expected.as_bytes()) {
                audit.lost += 1;
                if audit.lost_keys.len() < LOST_KEYS_SHOWN {
                    audit.lost_keys.push(key.clone());
                }
            }
        }
    }
    Ok(audit)
}

/// Writes `keys` keys (`demo:preload:<n>`, 100-byte values) with `MSET` in batches, then
/// takes a checkpoint so that a restore loads them rather than replaying them.
pub async fn preload(address: SocketAddr, keys: u64) -> anyhow::Result<()> {
    const BATCH: u64 = 1000;
    let mut client = Client::connect(address, Duration::from_secs(30)).await?;
    let value = [b'v'; 100];
    let mut start = 0;
    while start < keys {
        let names: Vec<String> = (start..(start + BATCH).min(keys)).map(|n| format!("demo:preload:{n}")).collect();
        let mut args: Vec<&[u8]> = vec![b"MSET"];
        for name in &names {
            args.push(name.as_bytes());
            args.push(&value);
        }
        match client.call(&args).await? {
            Frame::Simple(ok) if &ok[..] == b"OK" => {}
            other => anyhow::bail!("preloading: MSET on {address} answered {other:?}"),
        }
        start += BATCH;
    }
    match client.call(&[b"CHECKPOINT"]).await? {
        Frame::Error(error) => {
            anyhow::bail!("preloading: CHECKPOINT on {address}: {}", String::from_utf8_lossy(&error))
        }
        _ => Ok(()),
    }
}

/// Whether `address` answers PING now.
pub async fn answers_ping(address: SocketAddr) -> bool {
    let Ok(mut client) = Client::connect(address, Duration::from_millis(500)).await else { return false };
    matches!(client.call(&[b"PING"]).await, Ok(Frame::Simple(pong)) if &pong[..] == b"PONG")
}

/// Whether a `SET` through `address` is acknowledged now.
pub async fn accepts_a_write(address: SocketAddr) -> bool {
    let Ok(mut client) = Client::connect(address, Duration::from_millis(500)).await else { return false };
    matches!(client.call(&[b"SET", b"demo:probe", b"1"]).await, Ok(Frame::Simple(ok)) if &ok[..] == b"OK")
}
