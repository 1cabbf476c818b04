//! The errors a caller of the control plane can meet, each with what to do about it.

use serde::{Deserialize, Serialize};

use crate::state::NodeId;

/// Why a control-plane operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControlError {
    /// This member is not the leader and could not hand the proposal to it; retry later
    /// or ask `leader` (when known).
    #[error("not the control-plane leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this member knows of, if any.
        leader: Option<NodeId>,
    },
    /// The leader could not be reached; the outcome of a forwarded proposal is unknown.
    #[error("control-plane peer unavailable: {0}")]
    Unavailable(String),
    /// openraft refused or failed (e.g. it is shutting down).
    #[error("raft: {0}")]
    Raft(String),
    /// The member's directory could not be read or written.
    #[error("storage: {0}")]
    Storage(String),
    /// The configuration is inconsistent; the message names the field.
    #[error("config: {0}")]
    Config(String),
}
