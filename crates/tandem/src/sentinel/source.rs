//! What a Sentinel endpoint serves from: the seam between the endpoint (listener,
//! connections, `+switch-master`) and the member it runs on. A data node serves from its
//! own state ([`super::data_node`]), the witness from its control-plane member
//! ([`super::witness`]); both report the same view, built by the pure [`view_of`].

use std::future::Future;

use tandem_control::ControlState;
use tandem_resp::Frame;
use tokio::sync::watch;

use super::commands::{DataNode, View};
use crate::config::{ClusterConfig, MemberRole};
use crate::repl::RoleEvent;

/// The member an endpoint runs on.
///
/// To be correct, an implementation reports only what its member's replicated control
/// state (or, with static roles, its own role) says: the endpoint never decides anything,
/// so two endpoints never contradict the control plane, only lag behind it.
pub trait Source: Send + Sync + 'static {
    /// The cluster as the endpoint reports it now; `None` outside a cluster.
    fn view(&self) -> Option<View>;
    /// A stream that wakes whenever [`Source::view`]'s active may have changed.
    fn changes(&self) -> Changes;
    /// Becomes true when the endpoint must stop (its connections too).
    fn shutdown(&self) -> watch::Receiver<bool>;
    /// The bounds on one connection's requests.
    fn request_limits(&self) -> RequestLimits;
    /// The password every command but `AUTH`, `HELLO … AUTH` and `QUIT` waits for, if any.
    fn requirepass(&self) -> Option<&str>;
    /// Carries out `SENTINEL failover`: a planned switchover to the standby, `+OK` once it
    /// is the active, Sentinel's `-NOGOODSLAVE <reason>` when it was refused.
    fn failover(&self) -> impl Future<Output = Frame> + Send;
}

/// How far one connection's requests may go.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// The RESP parser's bounds (bulk length, array length, nesting, inline length).
    pub resp: tandem_resp::Limits,
    /// Most unparsed bytes buffered for one connection; beyond it the connection closes.
    pub query_buffer_bytes_max: usize,
}

/// Wakes on a change of what the endpoint reports: the control state with a control plane,
/// the node's role with static roles.
pub enum Changes {
    /// The applied control state.
    Control(watch::Receiver<ControlState>),
    /// A data node's role events (static roles).
    Roles(watch::Receiver<RoleEvent>),
}

impl Changes {
    /// Waits for the next change; false once no change can come any more.
    pub async fn changed(&mut self) -> bool {
        match self {
            Changes::Control(states) => states.changed().await.is_ok(),
            Changes::Roles(roles) => roles.changed().await.is_ok(),
        }
    }
}

/// What the member knows of the roles, as [`view_of`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    /// The active member's id, if one is named.
    pub active: Option<u32>,
    /// Whether the control plane has a leader (failover can be authorized).
    pub has_leader: bool,
    /// The control-plane epoch (or, with static roles, the log's).
    pub epoch: u64,
}

/// The view an endpoint of member `cluster.node_id` reports, given the roles it knows and
/// whether a data member is in sync with the active.
pub fn view_of(cluster: &ClusterConfig, roles: Roles, in_sync: impl FnOnce(u32) -> bool) -> Option<View> {
    let data_node = |id: u32| {
        let member = cluster.member(id).filter(|member| member.role == MemberRole::Data)?;
        Some(DataNode { id, client: member.client? })
    };
    let active = roles.active.and_then(data_node);
    let master = active.or_else(|| data_node(cluster.initial_active))?;
    let replica_id = cluster
        .members
        .iter()
        .find(|member| member.role == MemberRole::Data && member.id != master.id)
        .map(|member| member.id)?;
    Some(View {
        master_name: cluster.sentinel_master_name.clone(),
        active,
        master,
        replica: data_node(replica_id)?,
        replica_in_sync: in_sync(replica_id),
        other_sentinels: cluster
            .members
            .iter()
            .filter(|member| member.id != cluster.node_id)
            .filter_map(|member| member.sentinel)
            .collect(),
        has_leader: roles.has_leader,
        epoch: roles.epoch,
    })
}

/// The HTTP status of a refused switchover (the admin endpoint's 409 Conflict).
pub const REFUSED: u16 = 409;

/// `SENTINEL failover`'s reply for a switchover's HTTP status and message.
pub fn failover_reply(ok: bool, status: u16, message: &str) -> Frame {
    match (ok, status) {
        (true, _) => Frame::ok(),
        (false, REFUSED) => Frame::error(format!("NOGOODSLAVE {message}")),
        (false, _) => Frame::error(format!("ERR {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterFile;

    /// The witness's configuration (member 3): every member has an endpoint.
    const WITNESS: &str = r#"
node_id = 3
cluster_id = "test"
secret = "test-cluster-secret-0123456789"
initial_active = 1
members = [
  { id = 1, role = "data", client = "127.0.0.1:7001", peer = "127.0.0.1:17101", control = "127.0.0.1:17201", sentinel = "127.0.0.1:26379" },
  { id = 2, role = "data", client = "127.0.0.1:7002", peer = "127.0.0.1:17102", control = "127.0.0.1:17202", sentinel = "127.0.0.1:26380" },
  { id = 3, role = "witness", peer = "127.0.0.1:17103", control = "127.0.0.1:17203", sentinel = "127.0.0.1:26381" },
]
"#;

    fn witness() -> ClusterConfig {
        toml::from_str::<ClusterFile>(WITNESS).unwrap().validate_witness().unwrap()
    }

    #[test]
    fn the_witness_reports_the_active_the_other_data_node_and_the_other_endpoints() {
        let cluster = witness();
        let view = view_of(&cluster, Roles { active: Some(2), has_leader: true, epoch: 4 }, |id| id == 1).unwrap();
        assert_eq!(view.active.map(|node| node.client.port()), Some(7002));
        assert_eq!((view.master.id, view.replica.id, view.replica_in_sync, view.epoch), (2, 1, true, 4));
        let ports: Vec<u16> = view.other_sentinels.iter().map(|address| address.port()).collect();
        assert_eq!(ports, [26379, 26380], "the data nodes' endpoints, not its own");
    }

    #[test]
    fn without_an_active_the_initial_one_is_reported_down() {
        let view = view_of(&witness(), Roles { active: None, has_leader: false, epoch: 0 }, |_| false).unwrap();
        assert_eq!((view.active, view.master.id, view.replica.id), (None, 1, 2));
    }

    #[test]
    fn failover_replies_are_sentinels() {
        assert_eq!(failover_reply(true, 200, "done"), Frame::ok());
        assert_eq!(failover_reply(false, 409, "not in sync"), Frame::error("NOGOODSLAVE not in sync"));
        assert_eq!(failover_reply(false, 503, "unreachable"), Frame::error("ERR unreachable"));
    }
}
