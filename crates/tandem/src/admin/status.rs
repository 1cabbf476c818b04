//! `GET /status`: one member's view of itself and of the cluster, as JSON — what
//! `tandem status` gathers from every member's admin address and prints as a table.
//!
//! The same types serialize on the node and deserialize in the CLI, so the two cannot
//! drift apart. Every field a witness or a standalone node lacks is optional.

use serde::{Deserialize, Serialize};
use tandem_control::{ControlNode, ControlState};

use crate::db::unix_ms;
use crate::repl::Role;
use crate::server::Shared;

/// One member's status, as `GET /status` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The member id.
    pub node_id: u32,
    /// `data` or `witness`.
    pub kind: String,
    /// `active`, `standby`, `standalone` or `witness`.
    pub role: String,
    /// The epoch this member is in (its database's for a data node, the control state's
    /// for the witness).
    pub epoch: u64,
    /// Whether a client write would be accepted now (active, writable, lease held).
    pub accepting_writes: bool,
    /// The last log index (0 on the witness).
    pub last_index: u64,
    /// Active: the highest index the standby acknowledged as durable.
    pub replicated_index: Option<u64>,
    /// Active: records the standby lacks; standby: records it lacks of the active's last
    /// heartbeat.
    pub lag_records: Option<u64>,
    /// Active: milliseconds since the standby last held every record.
    pub lag_ms: Option<u64>,
    /// Whether this node's data is complete, as the control plane records it (the in-sync
    /// set), or as the node itself knows it without a control plane.
    pub in_sync: Option<bool>,
    /// The other data node as this one sees it.
    pub peer: Option<PeerStatus>,
    /// The newest checkpoint this node holds.
    pub last_checkpoint: Option<CheckpointStatus>,
    /// The control state this member has applied.
    pub control: Option<ControlView>,
    /// Shipping to the archive, when this node ships (`[archive]`).
    #[serde(default)]
    pub archive: Option<crate::archive::Snapshot>,
}

/// The other data node, as seen from this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its member id.
    pub node_id: u32,
    /// The failure detector's verdict: `alive`, `suspect`, `dead`, or `unknown` before any session.
    pub state: String,
    /// Milliseconds since it was last heard from, if ever.
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Whether the replication session with it is up.
    pub connected: bool,
}

/// The newest checkpoint of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStatus {
    /// Its id.
    pub id: u64,
    /// `full` or `incremental`.
    pub kind: String,
    /// The log index of its cut.
    pub log_index: u64,
    /// When its cut was taken, Unix milliseconds.
    pub created_unix_ms: u64,
}

/// The replicated control state as one member applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlView {
    /// The control-plane epoch.
    pub epoch: u64,
    /// The active data node, if any.
    pub active: Option<u64>,
    /// The data nodes recorded in sync.
    pub in_sync: Vec<u64>,
    /// The data node holding the service address, if any.
    pub address_holder: Option<u64>,
    /// The control group's leader as this member knows it.
    pub leader: Option<u64>,
}

impl ControlView {
    /// The view of `state` on `control`.
    pub fn of(control: &ControlNode, state: &ControlState) -> ControlView {
        ControlView {
            epoch: state.epoch,
            active: state.active,
            in_sync: state.in_sync.iter().copied().collect(),
            address_holder: state.address_holder,
            leader: control.metrics().borrow().current_leader,
        }
    }
}

/// The answer of `POST /switchover` and `POST /promote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationReply {
    /// Whether the operation was carried out.
    pub ok: bool,
    /// The control-plane epoch after it (or at the refusal).
    pub epoch: u64,
    /// What happened, or why not, in words an operator can act on.
    pub message: String,
    /// Switchover: milliseconds from writes refused on the old active to writes accepted by
    /// the new one (`None` if the new active could not be asked).
    pub write_pause_ms: Option<u64>,
    /// The active data node after the operation, if known.
    pub active: Option<u64>,
}

/// The status of a data node.
pub fn data_node(shared: &Shared) -> NodeStatus {
    let replication = &shared.replication;
    let db = &shared.db;
    let role = replication.role();
    let node_id = shared.config.node_id;
    let control = replication.control().map(|control| (control.clone(), control.state()));
    let clustered = replication.cluster.is_some();
    let in_sync = match &control {
        Some((_, state)) => Some(state.in_sync.contains(&u64::from(node_id))),
        None if clustered => Some(replication.in_sync(db)),
        None => None,
    };
    let (replicated_index, lag_records, lag_ms) = match role {
        Role::Active => {
            (Some(replication.replicated_index().0), Some(replication.lag_records(db)), Some(replication.lag_ms(db)))
        }
        Role::Standby => (None, Some(replication.active_last_index().saturating_sub(db.last_index().0)), None),
        Role::Standalone => (None, None, None),
    };
    let peer = replication.cluster.as_ref().map(|cluster| PeerStatus {
        node_id: cluster.peer_data_member().id,
        state: replication.peer_verdict().map_or("unknown", |verdict| verdict.as_str()).to_string(),
        last_heartbeat_ms_ago: replication.peer_silence_ms(),
        connected: match role {
            Role::Active => replication.standby_connected(),
            _ => replication.link_up(),
        },
    });
    let last_checkpoint = shared.checkpoints.status().last_success.map(|verified| CheckpointStatus {
        id: verified.id,
        kind: verified.kind.as_str().to_string(),
        log_index: verified.log_index,
        created_unix_ms: verified.created_unix_ms,
    });
    NodeStatus {
        node_id,
        kind: "data".into(),
        role: role_name(role).into(),
        epoch: db.epoch(),
        accepting_writes: role != Role::Standby && db.is_writable() && !replication.lease_lost(),
        last_index: db.last_index().0,
        replicated_index,
        lag_records,
        lag_ms,
        in_sync,
        peer,
        last_checkpoint,
        control: control.map(|(control, state)| ControlView::of(&control, &state)),
        archive: crate::archive::current().map(|archive| archive.snapshot(db.last_index().0, unix_ms())),
    }
}

/// The status of the witness: only its control-plane view.
pub fn witness(node_id: u32, control: &ControlNode) -> NodeStatus {
    let state = control.state();
    NodeStatus {
        node_id,
        kind: "witness".into(),
        role: "witness".into(),
        epoch: state.epoch,
        accepting_writes: false,
        last_index: 0,
        replicated_index: None,
        lag_records: None,
        lag_ms: None,
        in_sync: None,
        peer: None,
        last_checkpoint: None,
        control: Some(ControlView::of(control, &state)),
        archive: None,
    }
}

/// The word `status` shows for a role.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Standalone => "standalone",
        Role::Active => "active",
        Role::Standby => "standby",
    }
}

/// Milliseconds since `unix_ms`, for ages shown to operators (0 if in the future).
pub fn age_ms(unix_ms_then: u64) -> u64 {
    unix_ms().saturating_sub(unix_ms_then)
}
