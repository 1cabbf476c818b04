//! One member of the control group: its configuration, and the handle the server uses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config, ServerState};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::ControlError;
use crate::grant::{changes_active, keep_grants, Grants};
use crate::lease::LeaseTracker;
use crate::network::client::{forward_proposal, PeerClientFactory};
use crate::network::server::{propose_locally, serve, MemberContext};
use crate::network::wire::ClusterAuth;
use crate::state::{ControlCommand, ControlResponse, ControlState, NodeId, Refusal};
use crate::storage::{LogStore, StateMachineStore};
use crate::types::{ControlMetrics, ControlRaft};
use crate::witness::{unstick, Heard};

/// How many proposal timeouts `initialize` waits for the first leader and its first commit.
const INITIALIZE_PROPOSALS_MAX: u64 = 5;

/// How long a member that never ran waits to be reached by the leader of a group that
/// already formed, before it forms the group itself (see [`ControlNode::initialize`]).
/// A leader retries an unreachable member every 500 ms (openraft's replication backoff).
pub const JOIN_WAIT: Duration = Duration::from_millis(1_000);

/// Whether a member carries data (may lead and become active) or only votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// A data node: campaigns for leadership and may become active.
    Data,
    /// The witness: votes, and campaigns only to unstick a data node whose log is behind
    /// (`Config::enable_elect = false`; `witness.rs`); never active.
    Witness,
}

/// A member of the group as every member's configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    /// The member's control-plane (Raft) address.
    pub address: SocketAddr,
    /// Data node or witness.
    pub role: MemberRole,
}

/// Everything a member needs to start.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// This member's id (a key of `members`).
    pub node_id: NodeId,
    /// All members of the group, this one included.
    pub members: BTreeMap<NodeId, MemberConfig>,
    /// Where the Raft log, vote and state machine live.
    pub data_dir: PathBuf,
    /// The cluster id, checked in every handshake.
    pub cluster_id: String,
    /// The shared secret peers prove knowledge of (HMAC key).
    pub secret: Vec<u8>,
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max_ms: u64,
    /// How long after a quorum-acknowledged heartbeat was sent the leader may act.
    pub lease_ms: u64,
    /// Allowance for clocks running at different rates on different members.
    pub clock_drift_margin_ms: u64,
    /// How long a proposal (local or forwarded) may take.
    pub propose_timeout_ms: u64,
}

impl ControlConfig {
    /// A configuration with the default timings (heartbeat 50 ms, election 150–300 ms,
    /// lease 100 ms, drift margin 25 ms).
    pub fn new(
        node_id: NodeId,
        members: BTreeMap<NodeId, MemberConfig>,
        data_dir: PathBuf,
        cluster_id: &str,
        secret: &[u8],
    ) -> Self {
        ControlConfig {
            node_id,
            members,
            data_dir,
            cluster_id: cluster_id.to_string(),
            secret: secret.to_vec(),
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            lease_ms: 100,
            clock_drift_margin_ms: 25,
            propose_timeout_ms: 2_000,
        }
    }

    /// Checks the configuration; the error names the field.
    pub fn validate(&self) -> Result<(), ControlError> {
        let fail = |message: String| Err(ControlError::Config(message));
        if !self.members.contains_key(&self.node_id) {
            return fail(format!("node_id: {} is not among members", self.node_id));
        }
        if !self.members.values().any(|member| member.role == MemberRole::Data) {
            return fail("members: no data node".into());
        }
        if self.cluster_id.is_empty() {
            return fail("cluster_id: empty".into());
        }
        if self.secret.len() < 16 {
            return fail("secret: shorter than 16 bytes".into());
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms >= self.election_timeout_min_ms {
            return fail(format!(
                "heartbeat_ms: {} must be above 0 and below election_timeout_min_ms",
                self.heartbeat_ms
            ));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return fail("election_timeout_min_ms: must be below election_timeout_max_ms".into());
        }
        // The lease argument (lease.rs): no successor exists before the acknowledged
        // heartbeat's send time + election_timeout_min, measured on the followers' clocks.
        if self.lease_ms + self.clock_drift_margin_ms > self.election_timeout_min_ms {
            return fail(format!(
                "lease_ms: {} + clock_drift_margin_ms {} must not exceed election_timeout_min_ms {}",
                self.lease_ms, self.clock_drift_margin_ms, self.election_timeout_min_ms
            ));
        }
        if self.lease_ms <= self.heartbeat_ms {
            return fail(format!(
                "lease_ms: {} must exceed heartbeat_ms or the lease lapses between heartbeats",
                self.lease_ms
            ));
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<Config, ControlError> {
        let role = self.members[&self.node_id].role;
        let config = Config {
            cluster_name: self.cluster_id.clone(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            enable_elect: role == MemberRole::Data,
            ..Config::default()
        };
        config.validate().map_err(|error| ControlError::Config(error.to_string()))
    }
}

/// A running member: the handle the server (or the witness binary) holds.
pub struct ControlNode {
    config: ControlConfig,
    raft: ControlRaft,
    auth: Arc<ClusterAuth>,
    lease: Arc<LeaseTracker>,
    grants: Arc<Grants>,
    state: watch::Receiver<ControlState>,
    shutdown: watch::Sender<bool>,
    listener_task: JoinHandle<()>,
    /// `keep_grants` on a data member, `unstick` on the witness.
    member_task: JoinHandle<()>,
}

fn storage_error(error: impl std::fmt::Display) -> ControlError {
    ControlError::Storage(error.to_string())
}

impl ControlNode {
    /// Opens the member's directory, binds its address and starts its Raft.
    pub async fn start(config: ControlConfig) -> Result<ControlNode, ControlError> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let log_store = LogStore::open(&config.data_dir.join("raft")).map_err(storage_error)?;
        let state_machine = StateMachineStore::open(&config.data_dir.join("raft")).map_err(storage_error)?;
        let state = state_machine.subscribe();
        let auth = Arc::new(ClusterAuth { cluster_id: config.cluster_id.clone(), secret: config.secret.clone() });
        let lease = Arc::new(LeaseTracker::default());
        let network = PeerClientFactory {
            own_id: config.node_id,
            peer_addresses: config.members.iter().map(|(id, member)| (*id, member.address.to_string())).collect(),
            auth: auth.clone(),
            lease: lease.clone(),
        };
        let own_address = config.members[&config.node_id].address;
        let listener = TcpListener::bind(own_address).await.map_err(|error| {
            ControlError::Config(format!("members[{}].address: cannot bind {own_address}: {error}", config.node_id))
        })?;
        let raft = ControlRaft::new(config.node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|error| ControlError::Raft(error.to_string()))?;
        let lease_ms = Duration::from_millis(config.lease_ms);
        let margin = Duration::from_millis(config.clock_drift_margin_ms);
        let grants = Arc::new(Grants::new(config.node_id, lease_ms, margin, Instant::now()));
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let heard = Arc::new(Heard::default());
        let context = MemberContext { grants: grants.clone(), state: state.clone(), heard: heard.clone() };
        let listener_task =
            tokio::spawn(serve(listener, raft.clone(), auth.clone(), context, shutdown_receiver.clone()));
        // A data member keeps its grants as the active; the witness watches for a stuck group.
        let member_task = match config.members[&config.node_id].role {
            MemberRole::Data => tokio::spawn(keep_grants(
                config.clone(),
                auth.clone(),
                grants.clone(),
                state.clone(),
                shutdown_receiver,
            )),
            MemberRole::Witness => tokio::spawn(unstick(config.clone(), raft.clone(), heard, shutdown_receiver)),
        };
        tracing::info!(node = config.node_id, address = %own_address, "control plane member started");
        Ok(ControlNode { config, raft, auth, lease, grants, state, shutdown, listener_task, member_task })
    }

    async fn wait_to_be_reached_if_new(&self) {
        let lowest_data_member =
            self.config.members.iter().filter(|(_, member)| member.role == MemberRole::Data).map(|(id, _)| *id).min();
        let mut metrics = self.raft.metrics();
        let reached = |metrics: &ControlMetrics| metrics.last_log_index.is_some() || metrics.current_leader.is_some();
        if lowest_data_member == Some(self.config.node_id) || reached(&metrics.borrow()) {
            return;
        }
        if tokio::time::timeout(JOIN_WAIT, metrics.wait_for(reached)).await.is_err() {
            tracing::info!(
                waited_ms = JOIN_WAIT.as_millis() as u64,
                "no leader reached this new member; forming the group"
            );
        }
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// Forms the group from the configured members, once; calling it again, on any member,
    /// or after the group formed, is harmless. Then names the data nodes in the state.
    ///
    /// A member that never ran, other than the lowest-id data member, first waits up to
    /// [`JOIN_WAIT`] for a leader to reach it: forming the group runs a term-1 election, and
    /// openraft ranks a vote of one term by node id, so a member starting after the group
    /// formed would take the lead from the running leader (fencing the active until a new
    /// leader is elected). The lowest-id data member forms the group at once, and any other
    /// still does when no leader reaches it, so that a first start needs no given order.
    pub async fn initialize(&self) -> Result<(), ControlError> {
        self.wait_to_be_reached_if_new().await;
        let members: BTreeMap<NodeId, BasicNode> =
            self.config.members.iter().map(|(id, member)| (*id, BasicNode::new(member.address))).collect();
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(error) => return Err(ControlError::Raft(error.to_string())),
        }
        let data_nodes: BTreeSet<NodeId> = self
            .config
            .members
            .iter()
            .filter(|(_, member)| member.role == MemberRole::Data)
            .map(|(id, _)| *id)
            .collect();
        if self.state().data_nodes == data_nodes {
            return Ok(());
        }
        // The first election takes a few timeouts; until a leader exists, proposals bounce.
        let deadline =
            Instant::now() + Duration::from_millis(self.config.propose_timeout_ms * INITIALIZE_PROPOSALS_MAX);
        loop {
            let mut metrics = self.raft.metrics();
            let leader_known = metrics.wait_for(|metrics| metrics.current_leader.is_some());
            if tokio::time::timeout_at(deadline, leader_known).await.is_err() {
                return Err(ControlError::NotLeader { leader: None });
            }
            match self.propose(ControlCommand::Configure { data_nodes: data_nodes.clone() }).await {
                Ok(ControlResponse::Applied { .. } | ControlResponse::Refused(Refusal::AlreadyConfigured)) => {
                    return Ok(())
                }
                Ok(other) => return Err(ControlError::Raft(format!("configure: {other:?}"))),
                Err(error @ (ControlError::NotLeader { .. } | ControlError::Unavailable(_)))
                    if Instant::now() < deadline =>
                {
                    tracing::debug!(%error, "control plane: retrying configure");
                    tokio::time::sleep(Duration::from_millis(self.config.heartbeat_ms)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Commits `command` through the group's leader and returns how it was applied.
    /// On a follower it is forwarded to the leader; if none is known, `NotLeader`.
    /// A command that makes another node active is proposed only once every lease grant
    /// this member issued has lapsed, and no grant is issued meanwhile (`grant.rs`).
    pub async fn propose(&self, command: ControlCommand) -> Result<ControlResponse, ControlError> {
        let _seal = if changes_active(&command, &self.state()) {
            let seal = self.grants.seal();
            tokio::time::sleep_until(seal.clear_at).await;
            Some(seal)
        } else {
            None
        };
        let timeout = Duration::from_millis(self.config.propose_timeout_ms);
        let local = tokio::time::timeout(timeout, propose_locally(&self.raft, command.clone())).await;
        match local {
            Ok(Err(ControlError::NotLeader { leader: Some(leader) })) if leader != self.config.node_id => {
                let Some(member) = self.config.members.get(&leader) else {
                    return Err(ControlError::NotLeader { leader: Some(leader) });
                };
                let address = member.address.to_string();
                forward_proposal(&address, &self.auth, self.config.node_id, command, timeout).await
            }
            Ok(result) => result,
            Err(_) => Err(ControlError::Unavailable(format!("proposal not committed within {timeout:?}"))),
        }
    }

    /// The control state as applied on this member (may lag the leader's).
    pub fn state(&self) -> ControlState {
        self.state.borrow().clone()
    }

    /// A receiver of the applied control state, to react to changes without polling.
    pub fn state_changes(&self) -> watch::Receiver<ControlState> {
        self.state.clone()
    }

    /// openraft's metrics (role, leader, term, quorum ack…), as a watch channel.
    pub fn metrics(&self) -> watch::Receiver<ControlMetrics> {
        self.raft.metrics()
    }

    /// Whether this member is the group's leader, as openraft last reported.
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.config.node_id)
    }

    /// As the leader: whether `member` holds every entry of this member's control log (it
    /// could be elected next: a voter refuses a candidate whose log is behind its own).
    pub fn member_caught_up(&self, member: NodeId) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let Some(replication) = metrics.replication.as_ref() else {
            return false;
        };
        let matched = replication.get(&member).copied().flatten().map(|log_id| log_id.index);
        matched.is_some() && matched >= metrics.last_log_index
    }

    /// Makes a leader stand aside (stop heartbeats and campaigns) so another data member
    /// elects itself, or ends that (`false`). openraft 0.9 has no leadership transfer; a
    /// leader that stops heartbeating is replaced once the followers' election timers run
    /// out. The caller must end it if no one takes over (e.g. the other member died).
    pub fn stand_aside(&self, enabled: bool) {
        let runtime = self.raft.runtime_config();
        runtime.heartbeat(!enabled);
        runtime.elect(!enabled);
    }

    /// Campaigns now instead of waiting for the election timer (a no-op while it leads): the
    /// active asks for the leadership, and with it the lease, as soon as it can get it. A
    /// voter still refuses while it heard a leader within its election timeout.
    pub async fn campaign(&self) {
        if let Err(error) = self.raft.trigger().elect().await {
            tracing::warn!(%error, "control plane: cannot start an election");
        }
    }

    /// Until when this member, as the active, may act without another active possibly
    /// existing: the later of its leader lease (`lease.rs`) and the lease grant of the other
    /// data node (`grant.rs`); `None` if it holds neither at `now`.
    pub fn lease_valid_until(&self, now: Instant) -> Option<Instant> {
        let granted = self.grants.held_until(&self.state.borrow(), now);
        self.leader_lease_until(now).max(granted)
    }

    /// Until when this member may act as leader without another leader possibly existing;
    /// `None` if it is not leader or holds no lease at `now`. See `lease.rs` for the argument.
    pub fn leader_lease_until(&self, now: Instant) -> Option<Instant> {
        let (vote, voters) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let leading = metrics.state == ServerState::Leader && metrics.current_leader == Some(self.config.node_id);
            if !leading || metrics.millis_since_quorum_ack.is_none() || !metrics.vote.is_committed() {
                return None;
            }
            (metrics.vote, metrics.membership_config.membership().voter_ids().collect::<Vec<_>>())
        };
        let acked_sent_at = self.lease.quorum_acked_sent_at(self.config.node_id, &voters, &vote, now)?;
        let valid_until = acked_sent_at + Duration::from_millis(self.config.lease_ms);
        (valid_until > now).then_some(valid_until)
    }

    /// Stops Raft, the listener and every served connection; the directory keeps the state.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "control plane: raft did not shut down cleanly");
        }
        let _ = self.listener_task.await;
        let _ = self.member_task.await;
        tracing::info!(node = self.config.node_id, "control plane member stopped");
    }
}
