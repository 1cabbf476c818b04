//! The database: the keyspace under its lock, the log it writes, and the
//! execution of data commands and transactions.
//!
//! Invariants:
//! * log order is apply order: a command's effects are applied and appended
//!   while the keyspace lock is held, so replaying the log in index order
//!   rebuilds exactly the state clients saw;
//! * one command, or one `EXEC`, is one log record — never half of one;
//! * no reply leaves before the state it reflects is as durable as
//!   `appendfsync` promises: every reply waits for its *ticket*, the log
//!   index of its own record or, for a read, the last index it could see.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tandem_log::{Epoch, FsyncPolicy, Log, LogIndex, LogOptions, NodeId, Progress, Record};
use tandem_resp::Frame;

use crate::cmd::{CommandError, CommandSpec, DataContext, Handler};
use crate::limits;
use crate::store::{effect, Cut, Effect, Keyspace};

/// What a command execution hands back: the reply, and the log index that
/// must be acknowledged before the reply may be sent.
pub struct Executed {
    /// The reply frame.
    pub reply: Frame,
    /// Log index the reply depends on.
    pub ticket: LogIndex,
}

/// A command queued in `MULTI`.
pub struct Queued {
    /// The command's spec.
    pub spec: &'static CommandSpec,
    /// Its arguments, name first.
    pub args: Vec<Bytes>,
}

/// State guarded by the keyspace lock.
struct Locked {
    keyspace: Keyspace,
    /// The epoch of the last record in the log (of the checkpoint's, if none after it):
    /// with its index, what a standby compares with the active (`repl`).
    last_record_epoch: u64,
    /// Reused buffers: effects of the running command and its encoded payload.
    effects: Vec<Effect>,
    payload: Vec<u8>,
    rng: SmallRng,
}

/// The node's data: keyspace, log, and counters about both.
pub struct Database {
    locked: Mutex<Locked>,
    log: Log,
    progress: Progress,
    fsync: FsyncPolicy,
    node: NodeId,
    /// The epoch new records are stamped with; set by the replication plane.
    epoch: AtomicU64,
    /// False on a standby: its records come only from the active (`apply_replicated`),
    /// so nothing local — a client write, active expiry — may append to its log.
    writable: AtomicBool,
    /// Keys changed since start (INFO `rdb_changes_since_last_save` analogue).
    changes: AtomicU64,
    /// Bytes of payload appended to the log since start.
    log_bytes: AtomicU64,
    /// The checkpoint chain restored at open, for the checkpointer.
    restored: crate::checkpoint::Restored,
    /// Asks the flusher task to write pending records (everysec / no).
    flush_wanted: tokio::sync::Notify,
    /// See `set_early_writes`.
    early_writes: AtomicBool,
    /// `Progress::acknowledged` republished on the event loop (see `relay_acknowledged`).
    acknowledged: crate::relay::Relay,
    /// Keys that blocked clients wait on; every commit signals the keys it changed.
    ready: crate::ready_keys::ReadyKeys,
}

/// Where a data directory keeps its log.
pub fn log_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("log")
}

/// The current Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Why the database could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The log could not be recovered.
    #[error(transparent)]
    Log(#[from] tandem_log::LogError),
    /// A record's payload does not decode as effects.
    #[error(
        "log record {index} does not decode as effects ({reason}); the log was written by another program or version"
    )]
    BadPayload { index: LogIndex, reason: String },
    /// The checkpoints and the log do not make a state to start from.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::RestoreError),
}

/// Why a replicated record was refused (`Database::apply_replicated`).
#[derive(Debug, thiserror::Error)]
pub enum ReplicatedError {
    /// Not the index this log assigns next: a gap or a repeat.
    #[error("record {found} is not the next index {expected}")]
    NotNext { expected: LogIndex, found: LogIndex },
    /// The payload exceeds the log's record limit.
    #[error("record {index} has a payload of {bytes} bytes, above the record limit")]
    TooLarge { index: LogIndex, bytes: usize },
    /// The payload does not decode as effects.
    #[error("record {index} does not decode as effects: {reason}")]
    BadPayload { index: LogIndex, reason: String },
}

impl Database {
    /// Loads the newest checkpoint chain of `data_dir` that verifies,
    /// recovers the log, replays its records after the checkpoint, and opens
    /// the log for appending right after them.
    pub fn open(data_dir: &Path, options: LogOptions, node: NodeId) -> Result<Database, OpenError> {
        let dir = &log_dir(data_dir);
        let fsync = options.fsync;
        let mut keyspace = Keyspace::new();
        let checkpoints = crate::checkpoint::file::directory(data_dir);
        // The log's validation and the checkpoint's load read different files:
        // they run side by side, and the log is fitted to the checkpoint after.
        let (loaded, recovery) = std::thread::scope(|scope| {
            let recovering = std::thread::Builder::new()
                .name("tandem-log-recovery".into())
                .spawn_scoped(scope, || tandem_log::recover(dir, &options));
            let loaded = crate::checkpoint::restore::load_newest(&checkpoints, node.0, &mut keyspace, &mut |_| {});
            let recovery = match recovering {
                Ok(recovering) => recovering.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => tandem_log::recover(dir, &options),
            };
            (loaded, recovery)
        });
        let loaded = loaded.map_err(crate::checkpoint::RestoreError::from)?;
        let base_generation = keyspace.advance_generation();
        let recovery = crate::checkpoint::restore::fit_log_after(
            dir,
            &options,
            recovery.map_err(crate::checkpoint::RestoreError::from)?,
            loaded.log_index(),
            &loaded.skipped,
        )?;
        let mut replayed = 0u64;
        let mut last_record_epoch = loaded.chain.last().map_or(0, |tip| tip.epoch);
        for record in tandem_log::read_from_recovered(dir, LogIndex(loaded.log_index() + 1), &options, &recovery)? {
            let record = record?;
            last_record_epoch = record.epoch.0;
            let effects = effect::decode(&record.payload)
                .map_err(|error| OpenError::BadPayload { index: record.index, reason: error.to_string() })?;
            for effect in &effects {
                keyspace.apply(effect);
            }
            replayed += 1;
        }
        tracing::info!(
            checkpoint = loaded.chain.last().map_or(0, |tip| tip.id),
            checkpoint_index = loaded.log_index(),
            records = replayed,
            keys = keyspace.len(),
            "restored the checkpoint and replayed the log after it"
        );
        let restored = crate::checkpoint::Restored { loaded, base_generation, replayed };
        let log = Log::open(dir, &options, &recovery)?;
        // Made now, not by the first checkpoint: creating it fsyncs the data directory,
        // and under load that held a client's write for 2–43 ms at the first checkpoint
        // (1M keys, `bench/checkpoint`'s load; later cuts: about 1 ms). Probably the
        // log append's mtime update waiting for the inode-table block the fsync writes.
        crate::checkpoint::file::ensure_directory(&checkpoints).map_err(crate::checkpoint::RestoreError::from)?;
        log.observe_syncs(std::sync::Arc::new(crate::admin::metrics::record_fsync));
        let progress = log.progress();
        Ok(Database {
            locked: Mutex::new(Locked {
                keyspace,
                last_record_epoch,
                effects: Vec::new(),
                payload: Vec::new(),
                rng: SmallRng::from_entropy(),
            }),
            log,
            progress,
            fsync,
            node,
            epoch: AtomicU64::new(last_record_epoch),
            writable: AtomicBool::new(true),
            changes: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            restored,
            flush_wanted: tokio::sync::Notify::new(),
            early_writes: AtomicBool::new(false),
            acknowledged: crate::relay::Relay::default(),
            ready: Default::default(),
        })
    }

    /// Runs one data command. `spec.handler` must be `Handler::Data`.
    pub fn execute(&self, spec: &CommandSpec, args: &[Bytes]) -> Executed {
        if spec.is_write() {
            if let Err(error) = check_write_size(std::iter::once(args)) {
                return Executed { reply: error.to_frame(), ticket: self.log.last_index() };
            }
        }
        let mut locked = self.locked.lock();
        // Checked under the lock, so that once `set_writable(false)` returns no write appends
        // (a switchover drains the log up to that point). The session refuses writes on a
        // standby first; this guards the log's contiguity.
        if spec.is_write() && !self.is_writable() {
            return Executed { reply: CommandError::ReadOnly.to_frame(), ticket: self.log.last_index() };
        }
        let now_ms = unix_ms();
        let reply = run(&mut locked, spec, args, now_ms).unwrap_or_else(Frame::from);
        let ticket = self.commit(&mut locked, now_ms);
        Executed { reply, ticket }
    }

    /// Runs a transaction atomically as one log record. `watched` holds the
    /// versions seen at `WATCH`; if any changed, nothing runs and the reply
    /// is a null array, like Redis.
    pub fn execute_transaction(&self, queued: &[&Queued], watched: &[(Bytes, u64)]) -> Executed {
        if let Err(error) = check_write_size(queued.iter().filter(|q| q.spec.is_write()).map(|q| &q.args[..])) {
            return Executed { reply: error.to_frame(), ticket: self.log.last_index() };
        }
        let mut locked = self.locked.lock();
        if !self.is_writable() && queued.iter().any(|q| q.spec.is_write()) {
            return Executed { reply: CommandError::ReadOnly.to_frame(), ticket: self.log.last_index() };
        }
        if watched.iter().any(|(key, version)| locked.keyspace.watch_version(key) != *version) {
            return Executed { reply: Frame::NullArray, ticket: self.log.last_index() };
        }
        let now_ms = unix_ms();
        let replies = queued
            .iter()
            .map(|command| run(&mut locked, command.spec, &command.args, now_ms).unwrap_or_else(Frame::from))
            .collect();
        let ticket = self.commit(&mut locked, now_ms);
        Executed { reply: Frame::Array(replies), ticket }
    }

    /// Appends the collected effects, if any, as one record; returns the ticket.
    fn commit(&self, locked: &mut Locked, now_ms: u64) -> LogIndex {
        if locked.effects.is_empty() {
            return self.log.last_index();
        }
        let Locked { effects, payload, .. } = locked;
        payload.clear();
        effect::encode(effects, payload);
        let epoch = Epoch(self.epoch.load(Ordering::Relaxed));
        let index = self.log.append(epoch, now_ms, self.node, payload);
        locked.last_record_epoch = epoch.0;
        self.changes.fetch_add(effects.len() as u64, Ordering::Relaxed);
        self.log_bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.ready.signal(effects.iter().flat_map(|effect| {
            let (first, second) = effect.keys();
            first.into_iter().chain(second)
        }));
        effects.clear();
        index
    }

    /// The keys blocked clients wait on.
    pub fn ready_keys(&self) -> &crate::ready_keys::ReadyKeys {
        &self.ready
    }

    /// Waits until a reply with this ticket may be sent.
    pub async fn acknowledge(&self, ticket: LogIndex) {
        self.write_soon();
        if let Some(mut relayed) = self.acknowledged.subscribe() {
            if relayed.wait_for(|index| *index >= ticket.0).await.is_ok() {
                return;
            }
        }
        match self.fsync {
            FsyncPolicy::Always => self.progress.wait_durable(ticket).await,
            _ => self.progress.wait_written(ticket).await,
        }
    }

    /// Republishes the log's acknowledged index for the replies that wait for it (see
    /// `relay`); run it on the event loop.
    pub async fn relay_acknowledged(&self) {
        self.acknowledged.run(self.progress.subscribe_acknowledged()).await;
    }

    /// Has the pending records written: at once by the caller when early writes are on and
    /// enough are pending, otherwise by the flusher task at the end of the event loop's turn.
    pub fn write_soon(&self) {
        if self.early_writes.load(Ordering::Relaxed) && self.log.pending_bytes() >= limits::LOG_EARLY_WRITE_BYTES {
            self.log.write_pending();
        } else {
            self.flush_wanted.notify_one();
        }
    }

    /// With `true` (while a standby is streaming), a connection whose records leave
    /// `LOG_EARLY_WRITE_BYTES` pending writes them at once, so they can be shipped while the
    /// event loop's turn goes on; with `false`, one write at the end of the turn covers all.
    /// A standalone node keeps the single write: fewer system calls, and nothing to ship.
    pub fn set_early_writes(&self, early: bool) {
        self.early_writes.store(early, Ordering::Relaxed);
    }

    /// Waits until the log has written (not necessarily fsynced) up to `index`.
    pub async fn wait_written(&self, index: LogIndex) {
        self.flush_wanted.notify_one();
        self.progress.wait_written(index).await
    }

    /// Writes pending log records whenever a reply waits for them.
    ///
    /// Why a task: every connection that ran commands in this turn of the event loop asks
    /// for a flush, and the task runs after them, so one `write` covers all of them — the
    /// way Redis writes its AOF buffer once before replying. Under `always` the log's
    /// writer thread fsyncs what was written meanwhile (group commit), and the replication
    /// sender can ship it before that fsync ends.
    pub async fn run_flusher(&self) {
        // Until a flusher runs (a `Database` used without a server), the log's thread writes.
        self.log.set_inline_writes(true);
        loop {
            self.flush_wanted.notified().await;
            self.log.write_pending();
        }
    }

    /// Whether a reply with this ticket may be sent without waiting.
    pub fn is_acknowledged(&self, ticket: LogIndex) -> bool {
        self.acknowledgeable() >= ticket
    }

    /// The highest index a reply may be sent for without waiting (durable under `always`,
    /// written otherwise).
    pub fn acknowledgeable(&self) -> LogIndex {
        self.log.acknowledgeable()
    }

    /// Registers a `WATCH` of `key`; returns its version.
    pub fn watch(&self, key: &Bytes) -> u64 {
        self.locked.lock().keyspace.watch(key)
    }

    /// Ends a `WATCH` of `key`.
    pub fn unwatch(&self, key: &Bytes) {
        self.locked.lock().keyspace.unwatch(key)
    }

    /// Merges up to `budget` checkpoint layers the checkpoint has let go of
    /// (see `store::buckets::Bucket`); returns how many may remain.
    pub fn merge_released_layers(&self, budget: usize) -> usize {
        self.locked.lock().keyspace.merge_released_layers(budget)
    }

    /// One active-expiry pass: deletes up to `budget` keys' worth of expired
    /// keys through logged effects. Returns how many were deleted.
    pub fn expire_pass(&self, budget: usize) -> usize {
        let mut locked = self.locked.lock();
        if !self.is_writable() {
            return 0; // a standby deletes expired keys when the active's deletions arrive
        }
        let now_ms = unix_ms();
        let expired = locked.keyspace.expired_keys(now_ms, budget);
        for key in &expired {
            let effect = Effect::Delete { key: key.clone() };
            locked.keyspace.apply(&effect);
            locked.effects.push(effect);
        }
        self.commit(&mut locked, now_ms);
        drop(locked);
        if !expired.is_empty() {
            // No reply waits for these records: ask for their write (and their shipment).
            self.flush_wanted.notify_one();
        }
        expired.len()
    }

    /// Brings the entries of `keys` into the cache before the commands that
    /// use them run (see [`Keyspace::prefetch`]): one lock for the batch.
    pub fn prefetch<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        self.locked.lock().keyspace.prefetch(keys);
    }

    /// Runs `read` on the keyspace under the lock (INFO, digests, tests).
    pub fn with_keyspace<T>(&self, read: impl FnOnce(&Keyspace) -> T) -> T {
        read(&self.locked.lock().keyspace)
    }

    /// A checkpoint's cut, taken under the keyspace lock: the state exactly
    /// as of the returned log index (effects are applied and appended under
    /// this lock, and an `EXEC` holds it throughout, so never half of one).
    /// Also returns how long the lock was held — the stall clients can see.
    /// Returns the cut, its index, the epoch of the record at that index, and the stall.
    pub fn checkpoint_cut(&self, changed_since: Option<u64>) -> (Cut, LogIndex, u64, Duration) {
        let mut locked = self.locked.lock();
        let held = std::time::Instant::now();
        let cut = locked.keyspace.cut(changed_since);
        let index = self.log.last_index();
        let epoch = locked.last_record_epoch;
        let stall = held.elapsed();
        drop(locked);
        (cut, index, epoch, stall)
    }

    /// The last log index and the epoch of its record, read together.
    pub fn last_record(&self) -> (LogIndex, u64) {
        let locked = self.locked.lock();
        (self.log.last_index(), locked.last_record_epoch)
    }

    /// What was restored from checkpoints at open.
    pub fn restored(&self) -> &crate::checkpoint::Restored {
        &self.restored
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Sets the epoch new records are stamped with (the replication plane's role changes).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// Whether local writes may append to the log (false on a standby).
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// Allows or forbids local writes; taken under the keyspace lock so that no command
    /// that began before the change appends after it.
    pub fn set_writable(&self, writable: bool) {
        let _locked = self.locked.lock();
        self.writable.store(writable, Ordering::Release);
    }

    /// Standby: appends records the active sent, at their own indexes, and applies their
    /// effects, in order, under the keyspace lock (log order is apply order, as for local
    /// writes); returns the last index applied. [`Database::persist_replicated`] then makes
    /// them durable before they are acknowledged.
    ///
    /// Refuses a record that is not the next index, whose payload is too large or does not
    /// decode as effects: the sender is then faulty and is disconnected. The records before
    /// it are kept (appended and applied), none after it.
    pub fn apply_replicated(&self, records: &[Record]) -> Result<Option<LogIndex>, ReplicatedError> {
        let mut decoded = Vec::with_capacity(records.len());
        let mut refused = None;
        for record in records {
            if record.payload.len() > limits::LOG_RECORD_BYTES_MAX as usize {
                refused = Some(ReplicatedError::TooLarge { index: record.index, bytes: record.payload.len() });
                break;
            }
            match effect::decode(&record.payload) {
                Ok(effects) => decoded.push(effects),
                Err(error) => {
                    refused = Some(ReplicatedError::BadPayload { index: record.index, reason: error.to_string() });
                    break;
                }
            }
        }
        let mut locked = self.locked.lock();
        assert!(!self.is_writable(), "replicated records are applied only on a standby");
        let mut applied = None;
        let mut changes = 0;
        let mut payload_bytes = 0;
        for (index, (record, effects)) in records.iter().zip(&decoded).enumerate() {
            if index % limits::PREFETCH_AHEAD_MAX == 0 {
                let ahead = decoded[index..].iter().take(limits::PREFETCH_AHEAD_MAX).flatten();
                locked.keyspace.prefetch(ahead.filter_map(|effect| effect.keys().0).map(|key| &key[..]));
            }
            if let Err(expected) = self.log.append_replicated(record) {
                refused = Some(ReplicatedError::NotNext { expected, found: record.index });
                break;
            }
            for effect in effects {
                locked.keyspace.apply(effect);
            }
            locked.last_record_epoch = record.epoch.0;
            applied = Some(record.index);
            changes += effects.len() as u64;
            payload_bytes += record.payload.len() as u64;
        }
        drop(locked);
        self.changes.fetch_add(changes, Ordering::Relaxed);
        self.log_bytes.fetch_add(payload_bytes, Ordering::Relaxed);
        match refused {
            Some(error) => Err(error),
            None => Ok(applied),
        }
    }

    /// Standby: writes the replicated records appended so far and, under `appendfsync
    /// always`, fsyncs them, on the calling thread; returns the index that may now be
    /// acknowledged (durable under `always`, written otherwise). Blocks on the disk: the
    /// replication plane's own thread calls it, so that its acknowledgement follows the
    /// fsync without a hand-off to another thread.
    pub fn persist_replicated(&self) -> LogIndex {
        self.log.persist_pending()
    }

    /// Log bytes appended but not yet handed to the OS.
    pub fn log_backlog_bytes(&self) -> u64 {
        self.log.pending_bytes()
    }

    /// The last log index assigned.
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The log's write/fsync progress.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The fsync policy in force.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync
    }

    /// Effects applied since start.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Payload bytes appended to the log since start.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::Relaxed)
    }

    /// The log writer's counts since start (batches, fsyncs, segments).
    pub fn log_counters(&self) -> tandem_log::WriterCounters {
        self.log.counters()
    }

    /// Writes and fsyncs everything appended, and stops the log writer (clean shutdown).
    pub fn close(self) -> Result<(), tandem_log::LogError> {
        self.log.shutdown()
    }
}

/// Runs one data command inside the lock.
fn run(locked: &mut Locked, spec: &CommandSpec, args: &[Bytes], now_ms: u64) -> Result<Frame, CommandError> {
    let Handler::Data(handler) = spec.handler else {
        unreachable!("{} is a session command; the session runs it", spec.name);
    };
    let Locked { keyspace, effects, rng, .. } = locked;
    let mut context = DataContext::new(keyspace, effects, now_ms, rng);
    if spec.is_write() {
        for key in spec.keys(args) {
            context.purge_if_expired(key);
        }
    }
    handler(&mut context, args)
}

/// Refuses writes whose arguments could not fit in one log record.
fn check_write_size<'a>(commands: impl Iterator<Item = &'a [Bytes]>) -> Result<(), CommandError> {
    let total: u64 = commands.flat_map(|args| args.iter()).map(|arg| arg.len() as u64).sum();
    if total > limits::WRITE_ARGUMENTS_BYTES_MAX {
        return Err(CommandError::err(format!(
            "write too large: {total} bytes of arguments, at most {} fit in one log record",
            limits::WRITE_ARGUMENTS_BYTES_MAX
        )));
    }
    Ok(())
}

/// How long the active-expiry task sleeps between passes at `hz`.
pub fn expiry_interval(hz: u32) -> Duration {
    Duration::from_millis(1000 / hz.max(1) as u64)
}

#[cfg(test)]
mod tests {
    use tandem_log::{Epoch, FsyncPolicy};

    use super::*;
    use crate::store::effect::{Effect, Ttl};
    use crate::store::{Entry, Value};

    fn record(index: u64, payload: Vec<u8>) -> Record {
        Record { index: LogIndex(index), epoch: Epoch(1), hlc: 0, origin: NodeId(1), payload: Bytes::from(payload) }
    }

    fn set(index: u64, key: &str) -> Record {
        set_to(index, key, "v")
    }

    fn set_to(index: u64, key: &str, value: &str) -> Record {
        let effect =
            Effect::Set { key: Bytes::from(key.to_owned()), value: Bytes::from(value.to_owned()), ttl: Ttl::Clear };
        let mut payload = Vec::new();
        effect::encode(&[effect], &mut payload);
        record(index, payload)
    }

    fn standby(dir: &Path) -> Database {
        let options = LogOptions { fsync: FsyncPolicy::Always, ..LogOptions::default() };
        let db = Database::open(dir, options, NodeId(2)).unwrap();
        db.set_writable(false);
        // As in a server, whose flusher turns them on: records wait to be written inline.
        db.log.set_inline_writes(true);
        db
    }

    fn has(db: &Database, key: &str) -> bool {
        db.with_keyspace(|keyspace| keyspace.get_including_expired(key.as_bytes()).is_some())
    }

    #[test]
    fn replicated_records_before_a_refused_one_are_kept_and_none_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = standby(dir.path());
        let batch = [set(1, "a"), set(2, "b"), record(3, vec![0xff; 4]), set(4, "d")];
        let refused = db.apply_replicated(&batch).unwrap_err();
        assert!(matches!(refused, ReplicatedError::BadPayload { index: LogIndex(3), .. }), "{refused}");
        assert_eq!(db.last_index(), LogIndex(2));
        assert!(has(&db, "a") && has(&db, "b") && !has(&db, "d"));

        // A gap: the record before it is kept.
        let refused = db.apply_replicated(&[set(3, "c"), set(5, "e")]).unwrap_err();
        assert!(matches!(refused, ReplicatedError::NotNext { expected: LogIndex(4), found: LogIndex(5) }), "{refused}");
        assert!(has(&db, "c") && !has(&db, "e"));
        assert_eq!(db.apply_replicated(&[]).unwrap(), None);

        // Appended and applied, not yet durable, until persisted on this thread.
        assert!(db.progress().durable() < LogIndex(3));
        assert_eq!(db.persist_replicated(), LogIndex(3));
        assert_eq!(db.progress().durable(), LogIndex(3));
        db.close().unwrap();
    }

    #[test]
    fn a_batch_longer_than_the_prefetch_window_applies_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = standby(dir.path());
        // Keys repeat across prefetch windows: the last write of each must win.
        let last = 2 * limits::PREFETCH_AHEAD_MAX as u64 + 5;
        let batch: Vec<Record> = (1..=last).map(|i| set_to(i, &format!("k{}", i % 70), &i.to_string())).collect();
        assert_eq!(db.apply_replicated(&batch).unwrap(), Some(LogIndex(last)));
        for key in 0..70 {
            let newest = (1..=last).filter(|i| i % 70 == key).max().unwrap();
            let value =
                db.with_keyspace(|keyspace| match keyspace.get_including_expired(format!("k{key}").as_bytes()) {
                    Some(Entry { value: Value::String(bytes), .. }) => bytes.to_vec(),
                    other => panic!("k{key}: {:?}", other.map(|entry| entry.value.type_name())),
                });
            assert_eq!(value, newest.to_string().into_bytes(), "k{key}");
        }
        db.close().unwrap();
    }

    /// Polls a future once, as the event loop does when it first runs a task.
    fn poll_once(future: impl std::future::Future) {
        let mut future = std::pin::pin!(future);
        let _ = future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    }

    #[test]
    fn with_early_writes_a_waiting_reply_writes_its_records_itself() {
        let dir = tempfile::tempdir().unwrap();
        let db = standby(dir.path());
        // Below the early-write size nobody writes but the flusher task (none runs here).
        let small = db.apply_replicated(&[set(1, "a")]).unwrap().unwrap();
        poll_once(db.acknowledge(small));
        assert!(db.progress().written() < small, "left to the flusher");
        db.set_early_writes(true);
        let large = set(2, &"k".repeat(limits::LOG_EARLY_WRITE_BYTES as usize));
        let last = db.apply_replicated(&[large]).unwrap().unwrap();
        poll_once(db.acknowledge(last));
        assert_eq!(db.progress().written(), last, "written by the waiting reply itself");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), db.acknowledge(last)).await })
            .expect("the log thread fsyncs what the reply wrote");
        db.close().unwrap();
    }
}
