//! How far the writer has got: `written` (handed to the OS) and `durable` (fsynced), with
//! async waits for many concurrent client tasks.
//!
//! Invariants:
//! * `durable <= written <= Log::last_index()`, and both only increase;
//! * a value is published only after the write or fdatasync covering it returned Ok;
//! * after a fatal error neither advances again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::types::{FsyncPolicy, LogIndex};

/// The writer's side of progress; `Progress` handles read it.
#[derive(Debug)]
pub(crate) struct ProgressState {
    // watch channels wake every waiter on each publication; a waiter re-checks its own index.
    written: watch::Sender<u64>,
    durable: watch::Sender<u64>,
    failed: AtomicBool,
}

impl ProgressState {
    /// Starts with everything up to `index` written and durable (recovery fsynced it).
    pub(crate) fn new(index: u64) -> ProgressState {
        ProgressState {
            written: watch::Sender::new(index),
            durable: watch::Sender::new(index),
            failed: AtomicBool::new(false),
        }
    }

    /// Publishes that records up to `index` were handed to the OS.
    pub(crate) fn publish_written(&self, index: u64) {
        assert!(!self.failed(), "publishing progress after a fatal error");
        self.written.send_if_modified(|written| {
            assert!(index >= *written, "written went backwards: {} -> {index}", *written);
            let changed = index > *written;
            *written = index;
            changed
        });
    }

    /// Publishes that records up to `index` are on stable storage.
    pub(crate) fn publish_durable(&self, index: u64) {
        assert!(!self.failed(), "publishing progress after a fatal error");
        assert!(index <= *self.written.borrow(), "durable {index} ahead of written");
        self.durable.send_if_modified(|durable| {
            assert!(index >= *durable, "durable went backwards: {} -> {index}", *durable);
            let changed = index > *durable;
            *durable = index;
            changed
        });
    }

    /// The highest index handed to the OS.
    pub(crate) fn written_index(&self) -> u64 {
        *self.written.borrow()
    }

    /// The highest index on stable storage.
    pub(crate) fn durable_index(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Records that the writer stopped on a fatal error.
    pub(crate) fn mark_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// A clonable view of the writer's progress, for the tasks that reply to clients.
#[derive(Clone, Debug)]
pub struct Progress {
    state: Arc<ProgressState>,
    policy: FsyncPolicy,
}

impl Progress {
    /// Wraps the writer's state; `policy` decides what `acknowledged` means.
    pub(crate) fn new(state: Arc<ProgressState>, policy: FsyncPolicy) -> Progress {
        Progress { state, policy }
    }

    /// Highest index handed to the OS with write(): survives a process crash, not power loss.
    pub fn written(&self) -> LogIndex {
        LogIndex(*self.state.written.borrow())
    }

    /// Highest index fsynced: survives power loss.
    pub fn durable(&self) -> LogIndex {
        LogIndex(*self.state.durable.borrow())
    }

    /// Highest index a client reply may be sent for: `durable` under `FsyncPolicy::Always`,
    /// `written` otherwise (the policy accepted losing unsynced writes to power loss).
    pub fn acknowledged(&self) -> LogIndex {
        match self.policy {
            FsyncPolicy::Always => self.durable(),
            FsyncPolicy::EverySecond | FsyncPolicy::Never => self.written(),
        }
    }

    /// True once the writer stopped on a fatal error; nothing appended since will be written.
    pub fn failed(&self) -> bool {
        self.state.failed()
    }

    /// A receiver of `acknowledged()`'s changes (a publication marks it changed), for a
    /// task that republishes the index on another runtime (`tandem`'s relay).
    pub fn subscribe_acknowledged(&self) -> watch::Receiver<u64> {
        match self.policy {
            FsyncPolicy::Always => self.state.durable.subscribe(),
            FsyncPolicy::EverySecond | FsyncPolicy::Never => self.state.written.subscribe(),
        }
    }

    /// Resolves when `written() >= index`.
    ///
    /// Never resolves if the writer stopped on a fatal error first: by contract the fatal
    /// handler ends the process, and no reply may claim a write that did not happen.
    pub async fn wait_written(&self, index: LogIndex) {
        wait_until(&self.state.written, index).await;
    }

    /// Resolves when `durable() >= index`; never resolves after a fatal error (see `wait_written`).
    pub async fn wait_durable(&self, index: LogIndex) {
        wait_until(&self.state.durable, index).await;
    }

    /// Resolves when `acknowledged() >= index`; never resolves after a fatal error.
    pub async fn wait_acknowledged(&self, index: LogIndex) {
        match self.policy {
            FsyncPolicy::Always => self.wait_durable(index).await,
            FsyncPolicy::EverySecond | FsyncPolicy::Never => self.wait_written(index).await,
        }
    }
}

/// Waits until the channel's value reaches `index`.
async fn wait_until(sender: &watch::Sender<u64>, index: LogIndex) {
    let mut receiver = sender.subscribe();
    if receiver.wait_for(|value| *value >= index.0).await.is_err() {
        // The sender lives in the Arc we hold, so it cannot close; but if it ever did, the
        // index was not reached, and resolving would lie.
        std::future::pending::<()>().await;
    }
}
