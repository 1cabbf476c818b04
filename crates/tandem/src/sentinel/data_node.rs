//! A data node's endpoint: it reports the node's control state (or, with static roles, its
//! own role) and runs `SENTINEL failover` as `tandem switchover` does.

use std::sync::Arc;

use tandem_resp::Frame;
use tokio::sync::watch;

use super::commands::View;
use super::source::{failover_reply, view_of, Changes, RequestLimits, Roles, Source};
use crate::repl::Role;
use crate::server::Shared;

/// Serves from the data node's shared state.
pub struct DataNodeSource {
    shared: Arc<Shared>,
}

impl DataNodeSource {
    /// The endpoint's source on the node that owns `shared`.
    pub fn new(shared: Arc<Shared>) -> DataNodeSource {
        DataNodeSource { shared }
    }
}

impl Source for DataNodeSource {
    fn view(&self) -> Option<View> {
        let shared = &self.shared;
        let cluster = shared.config.cluster.as_ref()?;
        // With a control plane its replicated state names the active; with static roles this
        // node knows only its own role.
        match shared.replication.control() {
            Some(control) => {
                let state = control.state();
                let has_leader = control.metrics().borrow().current_leader.is_some();
                let roles = Roles { active: state.active.map(|id| id as u32), has_leader, epoch: state.epoch };
                view_of(cluster, roles, |replica| state.in_sync.contains(&u64::from(replica)))
            }
            None => {
                let active = match shared.replication.role() {
                    Role::Active => cluster.node_id,
                    _ => cluster.peer_data_member().id,
                };
                let roles = Roles { active: Some(active), has_leader: false, epoch: shared.db.epoch() };
                view_of(cluster, roles, |_| shared.replication.link_up())
            }
        }
    }

    fn changes(&self) -> Changes {
        match self.shared.replication.control() {
            Some(control) => Changes::Control(control.state_changes()),
            None => Changes::Roles(self.shared.replication.role_events()),
        }
    }

    fn shutdown(&self) -> watch::Receiver<bool> {
        self.shared.shutdown.subscribe()
    }

    fn request_limits(&self) -> RequestLimits {
        let config = &self.shared.config;
        RequestLimits { resp: config.resp_limits(), query_buffer_bytes_max: config.client_query_buffer_limit as usize }
    }

    fn requirepass(&self) -> Option<&str> {
        self.shared.config.requirepass.as_deref()
    }

    /// A planned switchover to the standby (no acknowledged write lost); on the standby the
    /// switchover forwards itself to the active.
    async fn failover(&self) -> Frame {
        let request = crate::failover::switchover::SwitchoverRequest { to: None, forwarded: false };
        let (status, reply) = crate::failover::switchover::switchover(&self.shared, request).await;
        failover_reply(reply.ok, status, &reply.message)
    }
}
