//! Three control-plane members in one process over loopback TCP, with real files:
//! elections, failover with the witness's vote, restart from the directory, and
//! refusal of unauthenticated or garbage peers. Waits poll with generous bounds;
//! nothing asserts how long an election took.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::Vote;

use tandem_control::network::client::connect;
use tandem_control::network::wire::ClusterAuth;
use tandem_control::storage::LogStore;
use tandem_control::{
    ControlCommand, ControlConfig, ControlNode, ControlResponse, ControlState, MemberConfig, MemberRole, NodeId,
};
use tandem_testkit::ports::free_addresses;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

const NODE_A: NodeId = 1;
const NODE_B: NodeId = 2;
const WITNESS: NodeId = 3;
const CLUSTER_ID: &str = "tandem-test";
const SECRET: &[u8] = b"a cluster secret of some length";
const WAIT_MAX: Duration = Duration::from_secs(15);

struct Cluster {
    _directory: tempfile::TempDir,
    configs: BTreeMap<NodeId, ControlConfig>,
    nodes: BTreeMap<NodeId, ControlNode>,
}

fn init_logging() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let mut cluster = Cluster::configure();
        for id in [NODE_A, NODE_B, WITNESS] {
            cluster.restart(id).await;
        }
        cluster.nodes[&NODE_A].initialize().await.expect("initialize");
        cluster
    }

    /// The members' configurations, none started.
    fn configure() -> Cluster {
        init_logging();
        let directory = tempfile::tempdir().unwrap();
        let addresses = free_addresses(3);
        let roles = [(NODE_A, MemberRole::Data), (NODE_B, MemberRole::Data), (WITNESS, MemberRole::Witness)];
        let members: BTreeMap<NodeId, MemberConfig> = roles
            .iter()
            .zip(&addresses)
            .map(|((id, role), address)| (*id, MemberConfig { address: *address, role: *role }))
            .collect();
        let configs: BTreeMap<NodeId, ControlConfig> = members
            .keys()
            .map(|id| {
                let data_dir = directory.path().join(format!("member-{id}"));
                (*id, ControlConfig::new(*id, members.clone(), data_dir, CLUSTER_ID, SECRET))
            })
            .collect();
        Cluster { _directory: directory, configs, nodes: BTreeMap::new() }
    }

    async fn restart(&mut self, id: NodeId) {
        let node = ControlNode::start(self.configs[&id].clone()).await.expect("start member");
        self.nodes.insert(id, node);
    }

    async fn crash(&mut self, id: NodeId) {
        self.nodes.remove(&id).expect("member running").shutdown().await;
    }

    fn address(&self, id: NodeId) -> SocketAddr {
        self.configs[&id].members[&id].address
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes.iter().find(|(_, node)| node.is_leader()).map(|(id, _)| *id)
    }

    async fn wait_for_leader(&self) -> NodeId {
        wait_until("a leader", || async { self.leader() }).await
    }

    /// A started group whose leader was promoted active (epoch 1) and whose members all
    /// applied it; returns the group, the leader and that state.
    async fn start_with_leader_active() -> (Cluster, NodeId, ControlState) {
        let cluster = Cluster::start().await;
        let leader = cluster.wait_for_leader().await;
        let promote = ControlCommand::Promote { node: leader, expected_epoch: 0, force: false };
        assert_eq!(propose(&cluster.nodes[&leader], promote).await, ControlResponse::Applied { epoch: 1 });
        let state = cluster.wait_for_converged_state().await;
        (cluster, leader, state)
    }

    async fn wait_for_converged_state(&self) -> ControlState {
        wait_until("every member's state to converge", || async {
            let states: Vec<ControlState> = self.nodes.values().map(ControlNode::state).collect();
            states.windows(2).all(|pair| pair[0] == pair[1]).then(|| states[0].clone())
        })
        .await
    }

    async fn shutdown(self) {
        for node in self.nodes.into_values() {
            node.shutdown().await;
        }
    }
}

async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Proposes until a leader takes it (a new leader may still be settling).
async fn propose(node: &ControlNode, command: ControlCommand) -> ControlResponse {
    wait_until("a proposal to commit", || async { node.propose(command.clone()).await.ok() }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_node_leads_and_commands_converge_on_every_member() {
    let cluster = Cluster::start().await;
    let leader = cluster.wait_for_leader().await;
    assert_ne!(leader, WITNESS, "the witness never campaigns");

    // Proposed on the witness and forwarded to the leader.
    let promote = ControlCommand::Promote { node: leader, expected_epoch: 0, force: false };
    assert_eq!(propose(&cluster.nodes[&WITNESS], promote).await, ControlResponse::Applied { epoch: 1 });
    let follower = if leader == NODE_A { NODE_B } else { NODE_A };
    let mark = ControlCommand::MarkOutOfSync { node: follower, epoch: 1 };
    assert_eq!(propose(&cluster.nodes[&follower], mark).await, ControlResponse::Applied { epoch: 1 });

    let state = cluster.wait_for_converged_state().await;
    assert_eq!((state.epoch, state.active, state.address_holder), (1, Some(leader), Some(leader)));
    assert!(!state.in_sync.contains(&follower));

    let leader_node = &cluster.nodes[&leader];
    wait_until("the leader's lease", || async { leader_node.lease_valid_until(Instant::now()) }).await;
    assert_eq!(cluster.nodes[&follower].lease_valid_until(Instant::now()), None);
    assert_eq!(cluster.nodes[&WITNESS].lease_valid_until(Instant::now()), None);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_elects_other_data_node_with_witness_vote_never_the_witness() {
    let mut cluster = Cluster::start().await;
    let mut epoch = 0;
    for _round in 0..4 {
        let leader = cluster.wait_for_leader().await;
        assert_ne!(leader, WITNESS);
        cluster.crash(leader).await;

        // Only the other data node and the witness remain: the new leader needed the witness's vote.
        let survivor = if leader == NODE_A { NODE_B } else { NODE_A };
        let new_leader = cluster.wait_for_leader().await;
        assert_eq!(new_leader, survivor, "the witness must never lead");
        let promote = ControlCommand::Promote { node: survivor, expected_epoch: epoch, force: false };
        assert_eq!(propose(&cluster.nodes[&survivor], promote).await, ControlResponse::Applied { epoch: epoch + 1 });
        epoch += 1;

        cluster.restart(leader).await;
        let state = cluster.wait_for_converged_state().await;
        assert_eq!((state.epoch, state.active), (epoch, Some(survivor)));
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_members_keep_vote_log_and_state() {
    let (mut cluster, _, before) = Cluster::start_with_leader_active().await;
    let saved: BTreeMap<NodeId, (Vote<NodeId>, Option<u64>)> = cluster
        .nodes
        .iter()
        .map(|(id, node)| {
            let metrics = node.metrics().borrow().clone();
            (*id, (metrics.vote, metrics.last_log_index))
        })
        .collect();

    for id in [NODE_A, NODE_B, WITNESS] {
        cluster.crash(id).await;
    }
    for id in [NODE_A, NODE_B, WITNESS] {
        // Read the stopped member's directory the way openraft will on start.
        let directory = cluster.configs[&id].data_dir.join("raft");
        let mut log_store = LogStore::open(&directory).unwrap();
        let (vote, last_log_index) = saved[&id];
        assert_eq!(log_store.read_vote().await.unwrap(), Some(vote), "member {id} recovers its vote");
        let log_state = log_store.get_log_state().await.unwrap();
        assert_eq!(log_state.last_log_id.map(|id| id.index), last_log_index, "member {id} recovers its log");
        drop(log_store);

        cluster.restart(id).await;
        assert_eq!(cluster.nodes[&id].state(), before, "member {id} recovers its applied state");
    }

    let leader = cluster.wait_for_leader().await;
    let promote = ControlCommand::Promote { node: leader, expected_epoch: 1, force: false };
    assert_eq!(propose(&cluster.nodes[&leader], promote).await, ControlResponse::Applied { epoch: 2 });
    assert_eq!(cluster.wait_for_converged_state().await.epoch, 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_wrong_cluster_and_garbage_are_refused_without_harm() {
    let cluster = Cluster::start().await;
    let leader = cluster.wait_for_leader().await;
    let address = cluster.address(WITNESS).to_string();

    let good = ClusterAuth { cluster_id: CLUSTER_ID.into(), secret: SECRET.to_vec() };
    assert!(connect(&address, &good, 9).await.is_ok(), "the right id and secret are accepted");
    let wrong_secret = ClusterAuth { cluster_id: CLUSTER_ID.into(), secret: b"not the cluster secret".to_vec() };
    assert!(connect(&address, &wrong_secret, 9).await.is_err(), "a wrong secret is refused");
    let wrong_cluster = ClusterAuth { cluster_id: "another-cluster".into(), secret: SECRET.to_vec() };
    assert!(connect(&address, &wrong_cluster, 9).await.is_err(), "a wrong cluster id is refused");

    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        &[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x00],
        &[0, 0, 0, 0],
    ];
    for bytes in garbage {
        for id in [NODE_A, NODE_B, WITNESS] {
            let mut stream = TcpStream::connect(cluster.address(id)).await.unwrap();
            let _ = stream.write_all(bytes).await;
            drop(stream);
        }
    }

    // Every member still serves: a command commits and converges everywhere.
    let promote = ControlCommand::Promote { node: leader, expected_epoch: 0, force: false };
    assert_eq!(propose(&cluster.nodes[&WITNESS], promote).await, ControlResponse::Applied { epoch: 1 });
    assert_eq!(cluster.wait_for_converged_state().await.epoch, 1);
    assert!(connect(&address, &good, 9).await.is_ok());
    cluster.shutdown().await;
}

#[tokio::test]
async fn initialize_is_idempotent_and_config_is_validated() {
    let cluster = Cluster::start().await;
    cluster.wait_for_leader().await;
    for node in cluster.nodes.values() {
        node.initialize().await.expect("initialize again");
    }
    let state = cluster.wait_for_converged_state().await;
    assert_eq!(state.data_nodes, [NODE_A, NODE_B].into());

    let mut config = cluster.configs[&NODE_A].clone();
    config.lease_ms = config.election_timeout_min_ms;
    let error = ControlNode::start(config).await.err().expect("a lease as long as the election timeout is refused");
    assert!(error.to_string().contains("lease_ms"), "{error}");
    cluster.shutdown().await;
}

/// A data node that starts for the first time after the group formed joins it without an
/// election: forming the group itself would run a term-1 election whose vote outranks the
/// running leader's, and the active would be fenced until a new leader was elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_starting_after_the_group_formed_joins_without_an_election() {
    let mut cluster = Cluster::configure();
    for id in [NODE_A, WITNESS] {
        cluster.restart(id).await;
    }
    cluster.nodes[&NODE_A].initialize().await.expect("initialize");
    assert_eq!(cluster.wait_for_leader().await, NODE_A);
    let _ = propose(&cluster.nodes[&NODE_A], ControlCommand::Promote { node: NODE_A, expected_epoch: 0, force: false })
        .await;
    let term = cluster.nodes[&NODE_A].metrics().borrow().current_term;
    cluster.restart(NODE_B).await;
    cluster.nodes[&NODE_B].initialize().await.expect("initialize");
    let state = cluster.wait_for_converged_state().await;
    assert_eq!(state.active, Some(NODE_A));
    assert_eq!(cluster.leader(), Some(NODE_A));
    assert_eq!(cluster.nodes[&NODE_A].metrics().borrow().current_term, term, "an election ran");
    cluster.shutdown().await;
}

/// A data node that was down while the others committed comes back with a shorter log after
/// the other data node died: the witness refuses it its vote, so it campaigns itself, brings
/// the data node's log up to date, and stands aside; the data node leads, and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_unsticks_a_data_node_whose_log_is_behind_then_hands_it_the_leadership() {
    let (mut cluster, leader, _) = Cluster::start_with_leader_active().await;
    let other = if leader == NODE_A { NODE_B } else { NODE_A };

    // The other data node is down while the leader and the witness commit without it.
    cluster.crash(other).await;
    let mark = ControlCommand::MarkOutOfSync { node: other, epoch: 1 };
    assert_eq!(propose(&cluster.nodes[&leader], mark).await, ControlResponse::Applied { epoch: 1 });
    cluster.crash(leader).await;
    cluster.restart(other).await;
    assert!(cluster.nodes[&other].state().in_sync.contains(&other), "it restarted with the older log");

    // Only it can lead in the end, holding the log the witness had.
    wait_until("the returning data node to lead", || async { cluster.nodes[&other].is_leader().then_some(()) }).await;
    let state = cluster.nodes[&other].state();
    assert!(!state.in_sync.contains(&other), "it learnt the entry it had missed: {state:?}");
    let forced = ControlCommand::Promote { node: other, expected_epoch: 1, force: true };
    assert_eq!(propose(&cluster.nodes[&other], forced).await, ControlResponse::Applied { epoch: 2 });
    let witness_log = cluster.nodes[&WITNESS].metrics().borrow().last_log_index;
    assert!(witness_log.is_some());
    assert!(!cluster.nodes[&WITNESS].is_leader());
    cluster.shutdown().await;
}

/// The active need not lead: the other data node's grant is its lease, and that node, to
/// take the role, first waits out every grant it issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_that_does_not_lead_holds_its_lease_by_the_other_data_nodes_grant() {
    let cluster = Cluster::start().await;
    let leader = cluster.wait_for_leader().await;
    let other = if leader == NODE_A { NODE_B } else { NODE_A };
    // The follower is made active; the leader does not stand aside (no data layer here).
    let promote = ControlCommand::Promote { node: other, expected_epoch: 0, force: false };
    assert_eq!(propose(&cluster.nodes[&leader], promote).await, ControlResponse::Applied { epoch: 1 });
    let active = &cluster.nodes[&other];
    wait_until("the grant", || async { active.lease_valid_until(Instant::now()) }).await;
    assert!(!active.is_leader());
    assert_eq!(active.leader_lease_until(Instant::now()), None, "its lease is the grant alone");

    // The grantor takes the role back: its proposal waits until the grant it issued lapsed.
    let take_back = ControlCommand::Promote { node: leader, expected_epoch: 1, force: false };
    let proposed_at = Instant::now();
    let granted_until = active.lease_valid_until(proposed_at).expect("still granted");
    assert_eq!(cluster.nodes[&leader].propose(take_back).await, Ok(ControlResponse::Applied { epoch: 2 }));
    let committed_at = Instant::now();
    assert!(
        committed_at >= granted_until,
        "committed while the old active's grant ran: {:?} before its end",
        granted_until - committed_at
    );
    // And the old active holds no lease in the new epoch, nor a grant for it.
    wait_until("the old active to see epoch 2", || async { (active.state().epoch == 2).then_some(()) }).await;
    assert_eq!(active.lease_valid_until(Instant::now()), None);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_on_a_restarted_leader_reports_the_epoch_the_others_moved_to() {
    let (mut cluster, old, _) = Cluster::start_with_leader_active().await;
    cluster.crash(old).await;
    let survivor = if old == NODE_A { NODE_B } else { NODE_A };
    assert_eq!(cluster.wait_for_leader().await, survivor);
    let promote = ControlCommand::Promote { node: survivor, expected_epoch: 1, force: false };
    assert_eq!(propose(&cluster.nodes[&survivor], promote).await, ControlResponse::Applied { epoch: 2 });

    // Restarted, the old leader's own state still names it active in epoch 1 (and openraft may
    // restore its old leadership for a moment). A `Confirm` it commits is applied on top of
    // everything committed before, so the epoch it reports is the one the others moved to: the
    // data node's control loop counts its state as current only once it has reached that epoch.
    cluster.restart(old).await;
    let confirm = ControlCommand::Confirm { node: old };
    assert_eq!(propose(&cluster.nodes[&old], confirm).await, ControlResponse::Applied { epoch: 2 });
    let node = &cluster.nodes[&old];
    let current = wait_until("the old leader's state to reach epoch 2", || async {
        let state = node.state();
        (state.epoch >= 2).then_some(state)
    })
    .await;
    assert_eq!(current.active, Some(survivor), "at the confirmed epoch the state names the new active");
    let state = cluster.wait_for_converged_state().await;
    assert_eq!((state.epoch, state.active), (2, Some(survivor)));
    cluster.shutdown().await;
}
