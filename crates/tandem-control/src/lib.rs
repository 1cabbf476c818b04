//! tandem's control plane: a Raft group (openraft) over node A, node B and a witness.
//!
//! It records who is active in which epoch, which data nodes are in sync, who holds the
//! service address, and the checkpoint catalog (DESIGN.md, "Control plane"). Layout:
//!
//! * `state`   — [`ControlState`], [`ControlCommand`] and the pure [`apply`] with its invariants.
//! * `types`   — the openraft type configuration.
//! * `storage` — Raft log, vote and state machine persisted in the member's directory.
//! * `network` — authenticated, length-prefixed postcard RPCs over TCP between members.
//! * `lease`   — the active's lease, from the send time of heartbeats a quorum acknowledged.
//! * `grant`   — the other data node's lease grant, so an active that does not lead may write.
//! * `witness` — when the witness campaigns after all: a live data node whose log is behind.
//! * `node`    — [`ControlNode`]: start, initialize, propose, state, metrics, lease, shutdown.

pub mod error;
pub mod grant;
pub mod lease;
pub mod network;
pub mod node;
pub mod state;
pub mod storage;
pub mod types;
pub mod witness;

pub use error::ControlError;
pub use node::{ControlConfig, ControlNode, MemberConfig, MemberRole};
pub use types::ControlMetrics;

pub use state::{apply, CheckpointEntry, ControlCommand, ControlResponse, ControlState, Epoch, NodeId, Refusal};
