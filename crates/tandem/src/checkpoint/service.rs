//! The node's checkpointer: takes the cut (under the keyspace lock, via
//! [`Database::checkpoint_cut`]), writes the file on a background thread,
//! then applies retention and truncates the log behind the oldest full
//! checkpoint kept. It carries out [`super::policy`] decisions and
//! holds the state `INFO`, `LASTSAVE` and the metrics report.
//!
//! Invariants:
//! * at most one checkpoint is written at a time;
//! * an incremental's base is the newest checkpoint this process loaded or
//!   wrote successfully, so a failed one is simply covered by the next;
//! * checkpoint ids only increase; `last_success.log_index <= log.last_index`;
//! * files are deleted only behind the `retain_full`-th newest *verified*
//!   full checkpoint, and log segments only behind that same checkpoint, so
//!   every checkpoint kept can still be restored with the log tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::file::{self, Listed};
use super::format::{Header, Kind};
use super::policy::{self, Decision, Observed, Schedule};
use super::restore::{Loaded, Verified};
use super::writer_thread::WriterThread;
use crate::db::{unix_ms, Database};
use crate::store::keyspace::BUCKET_COUNT;

/// Makes the calling thread (the checkpoint writer) yield the CPU to the
/// event loop: on a small machine a checkpoint must not compete on equal
/// terms with serving clients.
///
/// A nice value, not `SCHED_IDLE`: an idle-class thread is preempted at once
/// by a woken server thread (measured: the client-seen stall after the cut
/// went from 0.6–3.9 ms to 0.1–0.7 ms), but it can also be preempted while it
/// holds something the server needs — an ext4 journal handle for its write,
/// the process's memory-map lock — and then waits for an idle CPU before it
/// lets go. A 5M-key bench run with `SCHED_IDLE` saw one client wait 79 ms at
/// a cut (likely that; not traced). At nice 10 the writer still gets about a
/// tenth of a contended CPU, so such a wait stays short. Best effort: a failure only costs latency, so it is logged.
pub(super) fn lower_thread_priority() {
    // SAFETY: setpriority on our own thread id only changes this thread's nice value
    // (Linux treats a thread id as a process id here).
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, current_thread_id(), CHECKPOINT_THREAD_NICE) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the checkpoint thread's priority");
    }
}

fn current_thread_id() -> libc::id_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

/// Nice value of the checkpoint writer thread (0 normal, 19 lowest).
const CHECKPOINT_THREAD_NICE: libc::c_int = 10;

/// What the checkpointer needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// When automatic checkpoints fire.
    pub schedule: Schedule,
    /// Full checkpoints kept (with their incrementals).
    pub retain_full: u32,
    /// This node's id, written into every header.
    pub node: u32,
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// The log directory, truncated behind the oldest full checkpoint kept.
    pub log_dir: PathBuf,
}

/// What a caller may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Every bucket.
    Full,
    /// The changed buckets if there is a base (and the chain is not at its limit), else full.
    Incremental,
}

/// A finished checkpoint attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Durable: written, fsynced, renamed, directory fsynced.
    Done(Verified),
    /// Failed; the message says why. Nothing of it remains on disk.
    Failed(String),
}

/// The newest successful checkpoint, for incrementals and `INFO`.
#[derive(Debug, Clone)]
struct Base {
    id: u64,
    generation: u64,
}

/// Figures of the last attempt, for `INFO` and metrics.
#[derive(Debug, Clone, Default)]
pub struct LastAttempt {
    /// Its id.
    pub id: u64,
    /// Its level.
    pub kind: Option<Kind>,
    /// The log index of its cut.
    pub log_index: u64,
    /// Time from the cut to durable (or to the failure).
    pub duration: Duration,
    /// How long the keyspace lock was held for the cut.
    pub stall: Duration,
    /// File size.
    pub bytes: u64,
    /// Buckets written.
    pub buckets: u64,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// A snapshot of the checkpointer's state.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The checkpoint being written: id, level, started.
    pub in_progress: Option<(u64, Kind, Instant)>,
    /// The newest successful checkpoint (loaded at start or written since).
    pub last_success: Option<Verified>,
    /// When `last_success` was durable (Unix ms); the start time if none.
    pub last_success_unix_ms: u64,
    /// The last attempt's figures.
    pub last_attempt: Option<LastAttempt>,
    /// The chain loaded at start: (tip id, log index).
    pub loaded: Option<(u64, u64)>,
    /// Files skipped at start.
    pub skipped_at_start: usize,
    /// Successful checkpoints since start.
    pub succeeded: u64,
    /// Failed checkpoints since start.
    pub failed: u64,
}

struct State {
    next_id: u64,
    /// Checkpoints known complete, ascending by id.
    verified: Vec<Verified>,
    base: Option<Base>,
    /// Incrementals on top of the newest full (for the chain limit).
    chain_incrementals: u32,
    failed_at_ms: Option<u64>,
    status: Status,
    /// When the newest full / any checkpoint was taken (cut time), for the policy.
    last_full_ms: u64,
    last_any_ms: u64,
}

/// Takes checkpoints for one node; see the module comment.
pub struct Checkpointer {
    settings: Settings,
    state: Mutex<State>,
    /// The first log index a peer still needs (0: none): retention keeps the log from
    /// there, so a standby that reconnects catches up from the log.
    log_hold: std::sync::atomic::AtomicU64,
    /// Runs each checkpoint's write.
    writer: WriterThread,
}

/// A checkpoint started in the background.
pub struct Started {
    /// Its id.
    pub id: u64,
    /// Its level.
    pub kind: Kind,
    /// Receives the outcome once.
    pub outcome: tokio::sync::oneshot::Receiver<Outcome>,
}

/// Refused because a checkpoint is already being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a checkpoint is already in progress")]
pub struct Busy;

impl Checkpointer {
    /// A checkpointer continuing from what restore loaded; `base_generation`
    /// is the keyspace generation of the loaded state.
    pub fn new(settings: Settings, loaded: &Loaded, base_generation: u64, started_unix_ms: u64) -> Checkpointer {
        let tip = loaded.chain.last();
        let full = loaded.chain.first();
        let status = Status {
            last_success: tip.cloned(),
            last_success_unix_ms: tip.map_or(started_unix_ms, |tip| tip.created_unix_ms),
            loaded: tip.map(|tip| (tip.id, tip.log_index)),
            skipped_at_start: loaded.skipped.len(),
            ..Status::default()
        };
        let state = State {
            next_id: loaded.next_id,
            verified: loaded.chain.clone(),
            base: tip.map(|tip| Base { id: tip.id, generation: base_generation }),
            chain_incrementals: loaded.chain.len().saturating_sub(1) as u32,
            failed_at_ms: None,
            status,
            last_full_ms: full.map_or(started_unix_ms, |full| full.created_unix_ms.max(started_unix_ms)),
            last_any_ms: tip.map_or(started_unix_ms, |tip| tip.created_unix_ms.max(started_unix_ms)),
        };
        Checkpointer {
            settings,
            state: Mutex::new(state),
            log_hold: Default::default(),
            writer: WriterThread::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The state for `INFO` and `LASTSAVE`.
    pub fn status(&self) -> Status {
        self.state.lock().status.clone()
    }

    /// What the policy would see now.
    fn observe(&self, state: &State, now_ms: u64, last_index: u64) -> Observed {
        let newest_full = state.verified.iter().rev().find(|verified| verified.kind == Kind::Full);
        Observed {
            now_ms,
            last_index,
            last_full_ms: state.last_full_ms,
            last_full_index: newest_full.map_or(0, |full| full.log_index),
            last_any_ms: state.last_any_ms,
            last_any_index: state.status.last_success.as_ref().map_or(0, |last| last.log_index),
            has_base: state.base.is_some(),
            chain_incrementals: state.chain_incrementals,
            in_progress: state.status.in_progress.is_some(),
            failed_at_ms: state.failed_at_ms,
        }
    }

    /// Keeps log records from `index` on for a peer (0 releases the hold).
    pub fn hold_log_from(&self, index: u64) {
        self.log_hold.store(index, std::sync::atomic::Ordering::Release);
    }

    /// Runs the policy at `now_ms` and starts a checkpoint if one is due.
    pub fn tick(self: &Arc<Self>, database: &Database, now_ms: u64) -> Option<Started> {
        let decision = {
            let state = self.state.lock();
            policy::decide(&self.settings.schedule, &self.observe(&state, now_ms, database.last_index().0))
        };
        let requested = match decision {
            Decision::Wait => return None,
            Decision::Full => Requested::Full,
            Decision::Incremental => Requested::Incremental,
        };
        self.start(database, requested).ok()
    }

    /// Takes the cut now and writes the checkpoint in the background.
    pub fn start(self: &Arc<Self>, database: &Database, requested: Requested) -> Result<Started, Busy> {
        let (id, base) = {
            let mut state = self.state.lock();
            if state.status.in_progress.is_some() {
                return Err(Busy);
            }
            let chain_full = state.chain_incrementals >= self.settings.schedule.chain_incrementals_max;
            let base = match requested {
                Requested::Incremental if !chain_full => state.base.clone(),
                _ => None,
            };
            let id = state.next_id;
            state.next_id += 1;
            let kind = if base.is_some() { Kind::Incremental } else { Kind::Full };
            state.status.in_progress = Some((id, kind, Instant::now()));
            (id, base)
        };
        let started = Instant::now();
        let (cut, log_index, last_epoch, stall) = database.checkpoint_cut(base.as_ref().map(|base| base.generation));
        let kind = if cut.changed_since.is_some() { Kind::Incremental } else { Kind::Full };
        crate::admin::metrics::record_checkpoint_stall(stall);
        let header = Header {
            id,
            kind,
            node: self.settings.node,
            epoch: last_epoch,
            log_index: log_index.0,
            base_id: base.as_ref().map(|base| base.id),
            created_unix_ms: unix_ms(),
            bucket_total: BUCKET_COUNT as u32,
            key_count: cut.snapshot.key_count() as u64,
            applied: Vec::new(),
            channels: Vec::new(),
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let checkpointer = Arc::clone(self);
        let generation = cut.generation;
        let failed_header = header.clone();
        let spawned = self.writer.run(Box::new(move || {
            let buckets = cut.into_buckets();
            let written = file::write(&checkpointer.settings.dir, &header, buckets, &mut |_| {});
            let outcome = checkpointer.finish(&header, generation, written, started, stall);
            let _ = sender.send(outcome);
        }));
        if let Err(error) = spawned {
            let written: Result<_, String> = Err(format!("cannot start the checkpoint thread: {error}"));
            let outcome = self.finish(&failed_header, generation, written, started, stall);
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let _ = sender.send(outcome);
            return Ok(Started { id, kind, outcome: receiver });
        }
        Ok(Started { id, kind, outcome: receiver })
    }

    /// Records the end of an attempt; on success applies retention.
    fn finish(
        &self,
        header: &Header,
        generation: u64,
        written: Result<(PathBuf, super::format::Totals), impl ToString>,
        started: Instant,
        stall: Duration,
    ) -> Outcome {
        let duration = started.elapsed();
        let mut attempt = LastAttempt {
            id: header.id,
            kind: Some(header.kind),
            log_index: header.log_index,
            duration,
            stall,
            ..LastAttempt::default()
        };
        let mut state = self.state.lock();
        state.status.in_progress = None;
        let mut removal = None;
        let outcome = match written {
            Ok((path, totals)) => {
                attempt.bytes = totals.bytes;
                attempt.buckets = totals.buckets;
                let verified = Verified::new(header, &path, totals);
                state.base = Some(Base { id: header.id, generation });
                state.failed_at_ms = None;
                state.last_any_ms = header.created_unix_ms;
                match header.kind {
                    Kind::Full => {
                        state.chain_incrementals = 0;
                        state.last_full_ms = header.created_unix_ms;
                    }
                    Kind::Incremental => state.chain_incrementals += 1,
                }
                state.verified.push(verified.clone());
                state.status.last_success = Some(verified.clone());
                state.status.last_success_unix_ms = unix_ms();
                state.status.succeeded += 1;
                crate::admin::metrics::record_checkpoint(header.kind.as_str(), duration, totals.bytes, true);
                tracing::info!(
                    id = header.id,
                    kind = header.kind.as_str(),
                    log_index = header.log_index,
                    bytes = totals.bytes,
                    buckets = totals.buckets,
                    duration_ms = duration.as_millis() as u64,
                    stall_us = stall.as_micros() as u64,
                    "checkpoint written"
                );
                removal = self.plan_retention(&mut state);
                Outcome::Done(verified)
            }
            Err(error) => {
                let message = error.to_string();
                attempt.error = Some(message.clone());
                state.failed_at_ms = Some(unix_ms());
                state.status.failed += 1;
                crate::admin::metrics::record_checkpoint(header.kind.as_str(), duration, 0, false);
                tracing::error!(id = header.id, error = %message, "checkpoint failed; it is not used");
                Outcome::Failed(message)
            }
        };
        state.status.last_attempt = Some(attempt);
        // The files go after the lock: deleting a checkpoint took 35 ms at 1M keys
        // (150 ms at 5M), and the policy's tick, INFO and `CHECKPOINT` wait for
        // this lock on the event loop.
        drop(state);
        if let Some(plan) = removal {
            self.remove(&plan);
        }
        outcome
    }

    /// Plans retention: checkpoints behind the `retain_full`-th newest verified
    /// full one go, and log segments behind it; forgets the checkpoints planned
    /// away. Only this thread deletes files, so the plan holds until [`Self::remove`].
    fn plan_retention(&self, state: &mut State) -> Option<RetentionPlan> {
        let listed = match file::list(&self.settings.dir) {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "cannot list checkpoints for retention");
                return None;
            }
        };
        let plan = retention(&state.verified, &listed, self.settings.retain_full)?;
        state.verified.retain(|verified| verified.id >= plan.oldest_kept_id);
        Some(plan)
    }

    /// Deletes what `plan_retention` planned.
    fn remove(&self, plan: &RetentionPlan) {
        for path in &plan.remove {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::info!(file = %path.display(), "old checkpoint removed (retention)"),
                Err(error) => tracing::warn!(file = %path.display(), %error, "cannot remove an old checkpoint"),
            }
        }
        if !plan.remove.is_empty() {
            if let Err(error) = file::sync_directory(&self.settings.dir) {
                tracing::warn!(%error, "cannot fsync the checkpoint directory after retention");
            }
        }
        let hold = self.log_hold.load(std::sync::atomic::Ordering::Acquire);
        let before = tandem_log::LogIndex(if hold == 0 { plan.log_kept_from } else { plan.log_kept_from.min(hold) });
        match tandem_log::remove_segments_before(&self.settings.log_dir, before) {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(removed, before = before.0, "log segments covered by a full checkpoint removed")
            }
            Err(error) => tracing::warn!(%error, "cannot remove log segments behind the checkpoint"),
        }
    }
}

/// Which files retention removes, and where the log must still start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Checkpoint files to delete (every file older than the oldest full kept).
    pub remove: Vec<PathBuf>,
    /// The oldest full checkpoint kept.
    pub oldest_kept_id: u64,
    /// Log records from this index on must stay (the oldest kept full's index + 1).
    pub log_kept_from: u64,
}

/// Retention: keep the `retain_full` newest verified full checkpoints and
/// every file after the oldest of them; `None` while fewer are verified.
pub fn retention(verified: &[Verified], listed: &[Listed], retain_full: u32) -> Option<RetentionPlan> {
    let retain = retain_full.max(1) as usize;
    let mut fulls: Vec<&Verified> = verified.iter().filter(|verified| verified.kind == Kind::Full).collect();
    fulls.sort_by_key(|full| std::cmp::Reverse(full.id));
    let oldest_kept = fulls.get(retain - 1)?;
    Some(RetentionPlan {
        remove: listed.iter().filter(|listed| listed.id < oldest_kept.id).map(|listed| listed.path.clone()).collect(),
        oldest_kept_id: oldest_kept.id,
        log_kept_from: oldest_kept.log_index + 1,
    })
}

/// The directory and log directory of a data directory.
pub fn directories(data_dir: &Path) -> (PathBuf, PathBuf) {
    (file::directory(data_dir), crate::db::log_dir(data_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(id: u64, kind: Kind, log_index: u64) -> Verified {
        Verified {
            id,
            kind,
            log_index,
            epoch: 1,
            base_id: None,
            created_unix_ms: 0,
            bytes: 0,
            key_count: 0,
            path: PathBuf::from(file::file_name(id, kind)),
        }
    }

    fn listed(items: &[(u64, Kind)]) -> Vec<Listed> {
        items.iter().map(|&(id, kind)| Listed { id, kind, path: PathBuf::from(file::file_name(id, kind)) }).collect()
    }

    #[test]
    fn the_writer_thread_runs_at_a_lower_priority() {
        std::thread::spawn(|| {
            lower_thread_priority();
            // SAFETY: plain queries about the calling thread.
            let (policy, nice) =
                unsafe { (libc::sched_getscheduler(0), libc::getpriority(libc::PRIO_PROCESS, current_thread_id())) };
            assert_eq!((policy, nice), (libc::SCHED_OTHER, CHECKPOINT_THREAD_NICE));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn retention_keeps_n_verified_fulls_and_everything_after_the_oldest() {
        use Kind::{Full, Incremental};
        let on_disk = listed(&[(1, Full), (2, Incremental), (3, Full), (4, Incremental), (5, Full), (6, Incremental)]);
        let known = [verified(3, Full, 30), verified(4, Incremental, 40), verified(5, Full, 50)];
        let plan = retention(&known, &on_disk, 2).unwrap();
        assert_eq!(plan.oldest_kept_id, 3);
        assert_eq!(plan.log_kept_from, 31);
        assert_eq!(
            plan.remove,
            vec![PathBuf::from(file::file_name(1, Full)), PathBuf::from(file::file_name(2, Incremental))]
        );
        let plan = retention(&known, &on_disk, 1).unwrap();
        assert_eq!(plan.oldest_kept_id, 5);
        assert_eq!(plan.remove.len(), 4);
        assert_eq!(retention(&known, &on_disk, 3), None, "only two fulls are known good: keep everything");
    }
}
