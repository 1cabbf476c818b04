//! The replicated control state and the pure function that changes it.
//!
//! Every member applies the same committed commands in the same order through
//! [`apply`], so every member holds the same [`ControlState`]. `apply` reads no
//! clock and does no I/O: a refused command leaves the state untouched and says
//! why in its [`ControlResponse`].
//!
//! Invariants (checked by [`ControlState::check_invariants`] after every apply,
//! and by the property test at the bottom of this file):
//! 1. the epoch only increases, and by exactly one on each promotion or switchover;
//! 2. the active node, the address holder and every in-sync node are data nodes
//!    (the witness never becomes active: DESIGN.md, "Control plane");
//! 3. the active node is in sync (it defines the acknowledged data of its epoch);
//! 4. a promotion without `force` names an in-sync node (DESIGN.md invariant 3);
//! 5. an epoch-scoped command carrying another epoch than the current one is refused,
//!    so a decision taken in an old epoch cannot change the new one (invariant 2).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A member's id in the control group (openraft's node id).
pub type NodeId = u64;

/// The number that orders actives: at most one node accepts writes per epoch.
pub type Epoch = u64;

/// One checkpoint known to the cluster, recorded in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    /// The checkpoint's id (unique in the catalog).
    pub id: String,
    /// The data node that took it.
    pub node: NodeId,
    /// The log index the checkpoint's cut was made at.
    pub log_index: u64,
    /// When it was created, in milliseconds since the Unix epoch (taken by the proposer).
    pub created_unix_ms: u64,
}

/// The state every control-group member holds once the same commands are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    /// The current epoch; 0 until the first promotion.
    pub epoch: Epoch,
    /// The node allowed to accept writes in `epoch`, if any.
    pub active: Option<NodeId>,
    /// Data nodes that hold every acknowledged write; only these are promoted automatically.
    pub in_sync: BTreeSet<NodeId>,
    /// The data node that holds the service address, if any.
    pub address_holder: Option<NodeId>,
    /// Which members carry data (and so may become active); set once by `Configure`.
    pub data_nodes: BTreeSet<NodeId>,
    /// The checkpoint catalog, by checkpoint id.
    pub checkpoints: BTreeMap<String, CheckpointEntry>,
}

/// A change to the control state, proposed through Raft and applied by [`apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCommand {
    /// Names the data nodes, once, when the cluster is initialized; all start in sync.
    Configure {
        /// The members that carry data.
        data_nodes: BTreeSet<NodeId>,
    },
    /// Makes `node` the active of a new epoch and gives it the service address.
    Promote {
        /// The node to promote.
        node: NodeId,
        /// The epoch the proposer saw; the promotion is refused if it has moved on.
        expected_epoch: Epoch,
        /// Promote even if `node` is not in sync (an operator accepting data loss).
        force: bool,
    },
    /// Records that `node` no longer holds every acknowledged write of `epoch`.
    MarkOutOfSync {
        /// The standby that fell behind.
        node: NodeId,
        /// The epoch the proposer is active in.
        epoch: Epoch,
    },
    /// Records that `node` caught up and holds every acknowledged write of `epoch`.
    MarkInSync {
        /// The standby that caught up.
        node: NodeId,
        /// The epoch the proposer is active in.
        epoch: Epoch,
    },
    /// A planned hand-over of the active role and the address from `from` to `to`.
    Switchover {
        /// The current active.
        from: NodeId,
        /// The in-sync standby taking over.
        to: NodeId,
        /// The epoch the proposer saw.
        expected_epoch: Epoch,
    },
    /// Records that `node` released the service address (e.g. its lease expired).
    ReleaseAddress {
        /// The node that released it.
        node: NodeId,
        /// The epoch it held it in.
        epoch: Epoch,
    },
    /// Adds a checkpoint to the catalog (idempotent for an identical entry).
    RecordCheckpoint(CheckpointEntry),
    /// Changes nothing. A member restarted with a control state that names it active commits
    /// one to learn whether that state is current: entries apply in order, so once its own
    /// has applied, so has everything committed before it.
    Confirm {
        /// The member asking.
        node: NodeId,
    },
}

/// Why a command was refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The command carries another epoch than the current one.
    #[error("epoch {given} is not the current epoch {current}")]
    WrongEpoch {
        /// The epoch in the command.
        given: Epoch,
        /// The current epoch.
        current: Epoch,
    },
    /// The node is not in sync and the promotion was not forced.
    #[error("node {node} is not in sync; promoting it would lose acknowledged writes")]
    NotInSync {
        /// The node.
        node: NodeId,
    },
    /// The node is not a data node (the witness, or an unknown id).
    #[error("node {node} is not a data node")]
    NotDataNode {
        /// The node.
        node: NodeId,
    },
    /// The command needs `node` to be the active, and it is not.
    #[error("node {node} is not the active (active: {active:?})")]
    NotActive {
        /// The node.
        node: NodeId,
        /// The current active.
        active: Option<NodeId>,
    },
    /// The active cannot be marked out of sync: it defines the acknowledged writes.
    #[error("node {node} is the active and cannot be out of sync")]
    ActiveCannotBeOutOfSync {
        /// The node.
        node: NodeId,
    },
    /// A switchover to the node that is already active.
    #[error("switchover from {node} to itself")]
    SameNode {
        /// The node.
        node: NodeId,
    },
    /// `Configure` was already applied.
    #[error("the data nodes are already configured")]
    AlreadyConfigured,
    /// `Configure` with no data node.
    #[error("at least one data node is needed")]
    NoDataNode,
    /// Another checkpoint with the same id is already in the catalog.
    #[error("checkpoint {id} is already recorded with different contents")]
    CheckpointConflict {
        /// The id.
        id: String,
    },
}

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    /// The command changed (or idempotently confirmed) the state; the epoch after it.
    Applied {
        /// The epoch after the command.
        epoch: Epoch,
    },
    /// The command was refused; the state is unchanged.
    Refused(Refusal),
    /// Raft's own entries (blank, membership) carry no command.
    NoCommand,
}

impl ControlState {
    /// Panics if an invariant from the module comment is broken: a programmer error.
    pub fn check_invariants(&self) {
        if let Some(active) = self.active {
            assert!(self.data_nodes.contains(&active), "active {active} is not a data node");
            assert!(self.in_sync.contains(&active), "active {active} is not in sync");
            assert!(self.epoch > 0, "an active exists only from epoch 1 on");
        }
        if let Some(holder) = self.address_holder {
            assert!(self.data_nodes.contains(&holder), "address holder {holder} is not a data node");
        }
        assert!(self.in_sync.is_subset(&self.data_nodes), "in-sync set {:?} has a non-data node", self.in_sync);
        for (id, entry) in &self.checkpoints {
            assert_eq!(id, &entry.id, "catalog key and checkpoint id differ");
        }
    }
}

/// Applies `command` to `state` and says what happened; pure and deterministic.
pub fn apply(state: &mut ControlState, command: &ControlCommand) -> ControlResponse {
    let epoch_before = state.epoch;
    let result = match command {
        ControlCommand::Configure { data_nodes } => configure(state, data_nodes),
        ControlCommand::Promote { node, expected_epoch, force } => promote(state, *node, *expected_epoch, *force),
        ControlCommand::MarkOutOfSync { node, epoch } => mark_out_of_sync(state, *node, *epoch),
        ControlCommand::MarkInSync { node, epoch } => mark_in_sync(state, *node, *epoch),
        ControlCommand::Switchover { from, to, expected_epoch } => switchover(state, *from, *to, *expected_epoch),
        ControlCommand::ReleaseAddress { node, epoch } => release_address(state, *node, *epoch),
        ControlCommand::RecordCheckpoint(entry) => record_checkpoint(state, entry),
        ControlCommand::Confirm { .. } => Ok(()),
    };
    assert!(state.epoch >= epoch_before, "epoch went back from {epoch_before} to {}", state.epoch);
    state.check_invariants();
    match result {
        Ok(()) => ControlResponse::Applied { epoch: state.epoch },
        Err(refusal) => {
            assert_eq!(state.epoch, epoch_before, "a refused command changed the epoch");
            ControlResponse::Refused(refusal)
        }
    }
}

fn require_epoch(state: &ControlState, given: Epoch) -> Result<(), Refusal> {
    if given == state.epoch {
        Ok(())
    } else {
        Err(Refusal::WrongEpoch { given, current: state.epoch })
    }
}

fn require_data_node(state: &ControlState, node: NodeId) -> Result<(), Refusal> {
    if state.data_nodes.contains(&node) {
        Ok(())
    } else {
        Err(Refusal::NotDataNode { node })
    }
}

fn configure(state: &mut ControlState, data_nodes: &BTreeSet<NodeId>) -> Result<(), Refusal> {
    if !state.data_nodes.is_empty() {
        return Err(Refusal::AlreadyConfigured);
    }
    if data_nodes.is_empty() {
        return Err(Refusal::NoDataNode);
    }
    // Nothing has been written yet, so every data node holds every acknowledged write.
    state.data_nodes = data_nodes.clone();
    state.in_sync = data_nodes.clone();
    Ok(())
}

fn promote(state: &mut ControlState, node: NodeId, expected_epoch: Epoch, force: bool) -> Result<(), Refusal> {
    require_epoch(state, expected_epoch)?;
    require_data_node(state, node)?;
    let node_in_sync = state.in_sync.contains(&node);
    if !node_in_sync && !force {
        return Err(Refusal::NotInSync { node });
    }
    state.epoch += 1;
    state.active = Some(node);
    state.address_holder = Some(node);
    if !node_in_sync {
        // A forced promotion makes the promoted node's data the reference: the others
        // hold writes it lacks, so none of them is in sync with it any more.
        state.in_sync.clear();
        state.in_sync.insert(node);
    }
    Ok(())
}

fn mark_out_of_sync(state: &mut ControlState, node: NodeId, epoch: Epoch) -> Result<(), Refusal> {
    require_epoch(state, epoch)?;
    require_data_node(state, node)?;
    if state.active == Some(node) {
        return Err(Refusal::ActiveCannotBeOutOfSync { node });
    }
    state.in_sync.remove(&node);
    Ok(())
}

fn mark_in_sync(state: &mut ControlState, node: NodeId, epoch: Epoch) -> Result<(), Refusal> {
    require_epoch(state, epoch)?;
    require_data_node(state, node)?;
    state.in_sync.insert(node);
    Ok(())
}

fn switchover(state: &mut ControlState, from: NodeId, to: NodeId, expected_epoch: Epoch) -> Result<(), Refusal> {
    require_epoch(state, expected_epoch)?;
    require_data_node(state, to)?;
    if state.active != Some(from) {
        return Err(Refusal::NotActive { node: from, active: state.active });
    }
    if from == to {
        return Err(Refusal::SameNode { node: to });
    }
    if !state.in_sync.contains(&to) {
        return Err(Refusal::NotInSync { node: to });
    }
    state.epoch += 1;
    state.active = Some(to);
    state.address_holder = Some(to);
    Ok(())
}

fn release_address(state: &mut ControlState, node: NodeId, epoch: Epoch) -> Result<(), Refusal> {
    require_epoch(state, epoch)?;
    if state.address_holder == Some(node) {
        state.address_holder = None;
    }
    Ok(())
}

fn record_checkpoint(state: &mut ControlState, entry: &CheckpointEntry) -> Result<(), Refusal> {
    require_data_node(state, entry.node)?;
    match state.checkpoints.get(&entry.id) {
        Some(existing) if existing == entry => Ok(()),
        Some(_) => Err(Refusal::CheckpointConflict { id: entry.id.clone() }),
        None => {
            state.checkpoints.insert(entry.id.clone(), entry.clone());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE_A: NodeId = 1;
    const NODE_B: NodeId = 2;
    const WITNESS: NodeId = 3;

    fn configured() -> ControlState {
        let mut state = ControlState::default();
        let response = apply(&mut state, &ControlCommand::Configure { data_nodes: [NODE_A, NODE_B].into() });
        assert_eq!(response, ControlResponse::Applied { epoch: 0 });
        state
    }

    fn promote(node: NodeId, expected_epoch: Epoch, force: bool) -> ControlCommand {
        ControlCommand::Promote { node, expected_epoch, force }
    }

    #[test]
    fn promotion_bumps_epoch_and_moves_the_address() {
        let mut state = configured();
        assert_eq!(apply(&mut state, &promote(NODE_A, 0, false)), ControlResponse::Applied { epoch: 1 });
        assert_eq!(state.active, Some(NODE_A));
        assert_eq!(state.address_holder, Some(NODE_A));
    }

    #[test]
    fn promotion_with_stale_epoch_is_refused() {
        let mut state = configured();
        apply(&mut state, &promote(NODE_A, 0, false));
        let before = state.clone();
        let response = apply(&mut state, &promote(NODE_B, 0, false));
        assert_eq!(response, ControlResponse::Refused(Refusal::WrongEpoch { given: 0, current: 1 }));
        assert_eq!(state, before);
    }

    #[test]
    fn promotion_of_out_of_sync_node_is_refused_unless_forced() {
        let mut state = configured();
        apply(&mut state, &promote(NODE_A, 0, false));
        apply(&mut state, &ControlCommand::MarkOutOfSync { node: NODE_B, epoch: 1 });
        let response = apply(&mut state, &promote(NODE_B, 1, false));
        assert_eq!(response, ControlResponse::Refused(Refusal::NotInSync { node: NODE_B }));
        assert_eq!(state.active, Some(NODE_A));

        assert_eq!(apply(&mut state, &promote(NODE_B, 1, true)), ControlResponse::Applied { epoch: 2 });
        assert_eq!(state.active, Some(NODE_B));
        assert_eq!(state.in_sync, [NODE_B].into(), "after a forced promotion only the new active is in sync");
    }

    #[test]
    fn witness_is_never_promoted_even_forced() {
        let mut state = configured();
        let response = apply(&mut state, &promote(WITNESS, 0, true));
        assert_eq!(response, ControlResponse::Refused(Refusal::NotDataNode { node: WITNESS }));
    }

    #[test]
    fn sync_marks_with_stale_epoch_are_refused() {
        let mut state = configured();
        apply(&mut state, &promote(NODE_A, 0, false));
        apply(&mut state, &promote(NODE_A, 1, false));
        let response = apply(&mut state, &ControlCommand::MarkOutOfSync { node: NODE_B, epoch: 1 });
        assert_eq!(response, ControlResponse::Refused(Refusal::WrongEpoch { given: 1, current: 2 }));
        assert!(state.in_sync.contains(&NODE_B));
        apply(&mut state, &ControlCommand::MarkOutOfSync { node: NODE_B, epoch: 2 });
        let response = apply(&mut state, &ControlCommand::MarkInSync { node: NODE_B, epoch: 1 });
        assert!(matches!(response, ControlResponse::Refused(Refusal::WrongEpoch { .. })));
        assert!(!state.in_sync.contains(&NODE_B));
    }

    #[test]
    fn active_cannot_be_marked_out_of_sync() {
        let mut state = configured();
        apply(&mut state, &promote(NODE_A, 0, false));
        let response = apply(&mut state, &ControlCommand::MarkOutOfSync { node: NODE_A, epoch: 1 });
        assert_eq!(response, ControlResponse::Refused(Refusal::ActiveCannotBeOutOfSync { node: NODE_A }));
    }

    #[test]
    fn switchover_hands_over_to_in_sync_standby_only() {
        let mut state = configured();
        apply(&mut state, &promote(NODE_A, 0, false));
        let wrong_from = ControlCommand::Switchover { from: NODE_B, to: NODE_A, expected_epoch: 1 };
        assert!(matches!(apply(&mut state, &wrong_from), ControlResponse::Refused(Refusal::NotActive { .. })));
        apply(&mut state, &ControlCommand::MarkOutOfSync { node: NODE_B, epoch: 1 });
        let to_lagging = ControlCommand::Switchover { from: NODE_A, to: NODE_B, expected_epoch: 1 };
        assert!(matches!(apply(&mut state, &to_lagging), ControlResponse::Refused(Refusal::NotInSync { .. })));
        apply(&mut state, &ControlCommand::MarkInSync { node: NODE_B, epoch: 1 });
        assert_eq!(apply(&mut state, &to_lagging), ControlResponse::Applied { epoch: 2 });
        assert_eq!((state.active, state.address_holder), (Some(NODE_B), Some(NODE_B)));
    }

    #[test]
    fn configure_applies_once() {
        let mut state = configured();
        let again = ControlCommand::Configure { data_nodes: [NODE_A].into() };
        assert_eq!(apply(&mut state, &again), ControlResponse::Refused(Refusal::AlreadyConfigured));
    }

    #[test]
    fn checkpoint_record_is_idempotent_and_conflicts_are_refused() {
        let mut state = configured();
        let entry = CheckpointEntry { id: "c1".into(), node: NODE_A, log_index: 10, created_unix_ms: 5 };
        let record = ControlCommand::RecordCheckpoint(entry.clone());
        assert_eq!(apply(&mut state, &record), ControlResponse::Applied { epoch: 0 });
        assert_eq!(apply(&mut state, &record), ControlResponse::Applied { epoch: 0 });
        let other = ControlCommand::RecordCheckpoint(CheckpointEntry { log_index: 11, ..entry });
        assert!(matches!(apply(&mut state, &other), ControlResponse::Refused(Refusal::CheckpointConflict { .. })));
    }

    #[test]
    fn confirm_changes_nothing() {
        let mut state = configured();
        apply(&mut state, &ControlCommand::Promote { node: NODE_A, expected_epoch: 0, force: false });
        let before = state.clone();
        assert_eq!(apply(&mut state, &ControlCommand::Confirm { node: NODE_B }), ControlResponse::Applied { epoch: 1 });
        assert_eq!(state, before);
    }

    fn command_strategy() -> impl Strategy<Value = ControlCommand> {
        let node = 0u64..5;
        let epoch = 0u64..6;
        prop_oneof![
            (node.clone(), epoch.clone(), any::<bool>())
                .prop_map(|(node, expected_epoch, force)| ControlCommand::Promote { node, expected_epoch, force }),
            (node.clone(), epoch.clone()).prop_map(|(node, epoch)| ControlCommand::MarkOutOfSync { node, epoch }),
            (node.clone(), epoch.clone()).prop_map(|(node, epoch)| ControlCommand::MarkInSync { node, epoch }),
            (node.clone(), node.clone(), epoch.clone())
                .prop_map(|(from, to, expected_epoch)| ControlCommand::Switchover { from, to, expected_epoch }),
            (node.clone(), epoch).prop_map(|(node, epoch)| ControlCommand::ReleaseAddress { node, epoch }),
            (0u64..3, node.clone(), 0u64..4).prop_map(|(id, node, log_index)| ControlCommand::RecordCheckpoint(
                CheckpointEntry { id: format!("c{id}"), node, log_index, created_unix_ms: 0 }
            )),
            node.prop_map(|node| ControlCommand::Confirm { node }),
        ]
    }

    proptest! {
        #[test]
        fn random_command_sequences_keep_the_invariants(commands in proptest::collection::vec(command_strategy(), 0..60)) {
            let mut state = configured();
            for command in &commands {
                let before = state.clone();
                let response = apply(&mut state, command);
                prop_assert!(state.epoch >= before.epoch);
                match &response {
                    ControlResponse::Refused(_) => prop_assert_eq!(&state, &before),
                    ControlResponse::Applied { epoch } => prop_assert_eq!(*epoch, state.epoch),
                    ControlResponse::NoCommand => prop_assert!(false, "a command always has an outcome"),
                }
                let changed_active = matches!(command, ControlCommand::Promote { .. } | ControlCommand::Switchover { .. });
                if changed_active && matches!(response, ControlResponse::Applied { .. }) {
                    prop_assert_eq!(state.epoch, before.epoch + 1);
                } else {
                    prop_assert_eq!(state.epoch, before.epoch);
                }
                if let (ControlCommand::Promote { node, force: false, .. }, ControlResponse::Applied { .. }) = (command, &response) {
                    prop_assert!(before.in_sync.contains(node), "promoted a node that was not in sync");
                }
                prop_assert_ne!(state.active, Some(WITNESS));
            }
        }
    }
}
