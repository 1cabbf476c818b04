//! The applied control state of one member, persisted in its directory.
//!
//! Files:
//! * `state-machine.bin`: the [`PersistedStateMachine`] (last applied log id, membership,
//!   [`ControlState`]), replaced atomically after every applied batch. Control commands are
//!   rare, so persisting the whole (small) state each time is simpler than a snapshot-plus-replay
//!   scheme, and a restarted member shows its last applied state at once.
//! * `snapshot.bin`: the newest snapshot (meta and bytes) built or installed, replaced atomically.
//!
//! Invariant: `last_applied` only moves forward, except when a snapshot from the leader is
//! installed (openraft installs only snapshots newer than what is applied).

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::frame;
use crate::state::{self, ControlResponse, ControlState, NodeId};
use crate::types::{Entry, Member, TypeConfig};

const STATE_FILE: &str = "state-machine.bin";
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// Everything the state machine needs to come back after a restart; also a snapshot's bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PersistedStateMachine {
    /// The last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership config applied.
    pub membership: StoredMembership<NodeId, Member>,
    /// The control state after `last_applied`.
    pub state: ControlState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

/// The member's state machine; clones share the same files and memory.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<StateMachineInner>>,
    /// Publishes the control state after every applied batch (the node's `state()` view).
    state_sender: Arc<watch::Sender<ControlState>>,
}

struct StateMachineInner {
    directory: PathBuf,
    machine: PersistedStateMachine,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
}

impl StateMachineStore {
    /// Opens (or creates) the state machine in `directory` and loads what it held.
    pub fn open(directory: &Path) -> io::Result<StateMachineStore> {
        std::fs::create_dir_all(directory)?;
        let machine: PersistedStateMachine = frame::read_file(&directory.join(STATE_FILE))?.unwrap_or_default();
        machine.state.check_invariants();
        let snapshot = frame::read_file(&directory.join(SNAPSHOT_FILE))?;
        let (state_sender, _) = watch::channel(machine.state.clone());
        let inner = StateMachineInner { directory: directory.to_path_buf(), machine, snapshot, snapshots_built: 0 };
        Ok(StateMachineStore { inner: Arc::new(Mutex::new(inner)), state_sender: Arc::new(state_sender) })
    }

    /// A receiver of the applied control state, updated after every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<ControlState> {
        self.state_sender.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateMachineInner> {
        self.inner.lock().expect("state machine mutex poisoned by a panic")
    }
}

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

impl StateMachineInner {
    fn persist(&self) -> io::Result<()> {
        frame::write_file_atomically(&self.directory.join(STATE_FILE), &self.machine)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut inner = self.lock();
        let data = postcard::to_allocvec(&inner.machine)
            .map_err(|error| StorageIOError::read_state_machine(&io_error(error)))?;
        inner.snapshots_built += 1;
        let last_log_id = inner.machine.last_applied;
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, inner.snapshots_built),
            None => format!("empty-{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta { last_log_id, last_membership: inner.machine.membership.clone(), snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        frame::write_file_atomically(&inner.directory.join(SNAPSHOT_FILE), &stored)
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        inner.snapshot = Some(stored);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>> {
        let inner = self.lock();
        Ok((inner.machine.last_applied, inner.machine.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ControlResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut responses = Vec::new();
        for entry in entries {
            if let Some(applied) = inner.machine.last_applied {
                assert!(entry.log_id.index > applied.index, "entry {} applied twice", entry.log_id);
            }
            inner.machine.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => ControlResponse::NoCommand,
                EntryPayload::Normal(command) => state::apply(&mut inner.machine.state, &command),
                EntryPayload::Membership(membership) => {
                    inner.machine.membership = StoredMembership::new(Some(entry.log_id), membership);
                    ControlResponse::NoCommand
                }
            };
            responses.push(response);
        }
        inner.persist().map_err(|error| StorageIOError::write_state_machine(&error))?;
        self.state_sender.send_replace(inner.machine.state.clone());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let machine: PersistedStateMachine = postcard::from_bytes(&data)
            .map_err(|error| StorageIOError::read_snapshot(Some(meta.signature()), &io_error(error)))?;
        machine.state.check_invariants();
        let mut inner = self.lock();
        inner.machine = machine;
        inner.persist().map_err(|error| StorageIOError::write_state_machine(&error))?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        frame::write_file_atomically(&inner.directory.join(SNAPSHOT_FILE), &stored)
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        inner.snapshot = Some(stored);
        self.state_sender.send_replace(inner.machine.state.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner
            .snapshot
            .as_ref()
            .map(|stored| Snapshot { meta: stored.meta.clone(), snapshot: Box::new(Cursor::new(stored.data.clone())) }))
    }
}
