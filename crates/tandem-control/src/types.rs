//! The openraft type configuration of the control group.

use std::io::Cursor;

use crate::state::{ControlCommand, ControlResponse};

openraft::declare_raft_types!(
    /// The control group's openraft types: our commands and responses, `u64` node ids,
    /// members addressed by `BasicNode { addr }` (their peer address), snapshots in memory.
    pub TypeConfig:
        D = ControlCommand,
        R = ControlResponse,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A Raft log entry of the control group.
pub type Entry = openraft::Entry<TypeConfig>;
/// A member's address as stored in the membership config.
pub type Member = openraft::BasicNode;
/// The running Raft instance.
pub type ControlRaft = openraft::Raft<TypeConfig>;
/// What a member reports about itself, through a watch channel.
pub type ControlMetrics = openraft::RaftMetrics<crate::state::NodeId, Member>;
