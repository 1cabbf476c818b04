//! Fault scenarios of active-passive failover with real processes and real
//! faults (issue 4; DESIGN.md "Active-passive" and invariants 1, 2, 3 and 6):
//! a pause of the active shorter than the failure detector's timeout fails
//! nothing over; a longer one promotes the standby and the paused node comes
//! back fenced, never acknowledging a write of the old epoch; the loss of the
//! witness alone changes nothing; the loss of the witness and the standby
//! stops writes within the lease; bad bytes and bad peers on the replication
//! and control-plane ports are refused, counted and logged, and never crash a
//! node. Sync mode throughout.
//!
//! Fault verbs: `pause`/`resume` (SIGSTOP/SIGCONT of the whole process),
//! `kill9`, `start`. Waits are bounded (`poll_until`); the only timing used as
//! a pass criterion is the lease, which the invariant itself bounds.

mod cluster_support;
mod history;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cluster_support::{
    cluster_config, connect_as, digest, info, lost_writes, poll_until, role, runtime, test_seed, wait_active,
    wait_standby_joined, Cluster, Node, Writers, CONVERGE_TIMEOUT,
};
use history::{History, Operation, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem::repl::handshake;
use tandem::repl::wire::{self, Message, PeerReader};

const SYNC: &str = "ack_mode = \"sync\"";

/// A sync-mode cluster whose node 1 is the active, node 2 its in-sync standby, and node 1
/// leads the control group (so the active holds the lease).
fn started_cluster() -> Cluster {
    let cluster = Cluster::start_with_control_plane(SYNC);
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    // Once more: node 2 forming the group after node 1 can cost one extra control-plane
    // election at first start (a CI run saw node 1 fenced for a moment after it), and the
    // tests start from an active that accepts writes with both planes joined.
    wait_active(&cluster, 0);
    cluster
}

/// The failure detector's floor: the least silence after which a peer is dead, as the test
/// clusters configure it (`heartbeat_ms = 50`, the detector defaults).
fn detector_dead_min(cluster: &Cluster) -> Duration {
    Duration::from_millis(cluster_config(cluster, 1, |text| text).detector.dead_after_min_ms)
}

/// The active's lease, as the node configures its control-plane member.
fn lease(cluster: &Cluster) -> Duration {
    let config = cluster_config(cluster, 1, |text| text);
    Duration::from_millis(tandem::failover::control::control_config(&config, std::path::Path::new("unused")).lease_ms)
}

/// The control-plane (Raft) address of member `id`.
fn control_addr(cluster: &Cluster, id: u32) -> SocketAddr {
    let config = cluster_config(cluster, 1, |text| text);
    let member = config.members.iter().find(|member| member.id == id).expect("a member with this id");
    member.control.expect("the cluster runs a control plane")
}

fn number(node: &Node, field: &str) -> u64 {
    let text = info(node, field);
    text.parse().unwrap_or_else(|_| panic!("INFO field {field} of node {} is not a number: {text:?}", node.id))
}

/// How a client's request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ok,
    /// An error reply (the text after `-`): the request was refused.
    Error(String),
    /// No reply (timeout, broken connection): the outcome is unknown.
    Unknown,
}

fn reply_of<T>(result: &redis::RedisResult<T>) -> Reply {
    match result {
        Ok(_) => Reply::Ok,
        Err(error) if !error.is_io_error() && error.code().is_some() => {
            Reply::Error(format!("{} {}", error.code().unwrap_or_default(), error.detail().unwrap_or_default()))
        }
        Err(_) => Reply::Unknown,
    }
}

fn connect(url: &str, read_timeout: Duration) -> Option<redis::Connection> {
    let client = redis::Client::open(url).ok()?;
    let connection = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
    connection.set_read_timeout(Some(read_timeout)).ok()?;
    connection.set_write_timeout(Some(read_timeout)).ok()?;
    Some(connection)
}

// ---------------------------------------------------------------------------------------
// 1. A pause shorter than the detector's timeout.

#[test]
fn pausing_the_active_for_less_than_the_detector_timeout_fails_nothing_over_and_loses_no_write() {
    let mut cluster = started_cluster();
    let pause = detector_dead_min(&cluster) * 2 / 3;
    let writers = Writers::start(&cluster.nodes[0].url(), 4);
    poll_until(CONVERGE_TIMEOUT, "writers acknowledged 200 writes", || writers.acknowledged_count() >= 200);
    for _ in 0..3 {
        cluster.nodes[0].pause();
        std::thread::sleep(pause);
        cluster.nodes[0].resume();
        // Writes resume on the same active (after a brief fencing while it takes the control
        // group's leadership back, if the standby took it during the pause).
        let before = writers.acknowledged_count();
        poll_until(CONVERGE_TIMEOUT, "the active acknowledges writes again after the pause", || {
            writers.acknowledged_count() >= before + 100
        });
    }
    let acknowledged = writers.stop();
    assert!(cluster.nodes[0].is_running() && cluster.nodes[1].is_running());
    for node in &cluster.nodes {
        assert_eq!(info(node, "tandem_epoch"), "1", "node {}: no failover, the epoch is unchanged", node.id);
        assert_eq!(info(node, "tandem_control_epoch"), "1", "node {}", node.id);
        assert_eq!(info(node, "tandem_control_active"), "1", "node {}", node.id);
    }
    assert_eq!(role(&cluster.nodes[0]), "master");
    assert_eq!(role(&cluster.nodes[1]), "slave");
    let standby_log = cluster.nodes[1].stderr();
    assert!(!standby_log.contains("role=Active"), "the standby was never promoted:\n{standby_log}");
    assert!(
        !standby_log.contains("Promote { node: 2"),
        "the standby never even proposed its promotion:\n{standby_log}"
    );
    let active_log = cluster.nodes[0].stderr();
    assert!(
        !active_log.contains("MarkOutOfSync { node: 2"),
        "the paused active never judged the standby dead:\n{active_log}"
    );
    cluster.wait_converged();
    for node in &cluster.nodes {
        let lost = lost_writes(&mut node.connection(), &acknowledged);
        assert!(lost.is_empty(), "node {}: {} of {} acknowledged writes lost", node.id, lost.len(), acknowledged.len());
    }
}

// ---------------------------------------------------------------------------------------
// 2. A pause longer than the detector's timeout: failover, and the old active comes back fenced.

/// Keys of the register workload: few, so that the histories overlap.
const REGISTER_KEYS: usize = 6;
/// Register clients per node.
const REGISTER_CLIENTS: usize = 3;

/// What the test thread tells the register clients.
#[derive(Default)]
struct Phases {
    /// The node that is frozen later (1, or 2 after a switchover).
    frozen: AtomicU32,
    /// A switchover from node 1 to node 2 is under way: node 1's reads may be stale from now.
    switching: AtomicBool,
    /// Node 2 confirmed it accepts writes after the switchover: its reads are the active's.
    switched: AtomicBool,
    /// The old active is about to be frozen: its reads from now on may be served after the
    /// failover, by a node that is no longer the active.
    pausing: AtomicBool,
    /// Every thread of the old active is stopped: whatever it answers from now on, it answers
    /// after the standby took over.
    stopped: AtomicBool,
    /// The other node was seen promoted: its reads from now on are the new active's.
    promoted: AtomicBool,
    /// The workload ends.
    stop: AtomicBool,
}

/// What one register client saw besides the history.
#[derive(Default)]
struct ClientReport {
    /// Replies to writes sent to the old active after it was frozen.
    writes_after_stop: Vec<Reply>,
    /// Reads served by a node that was not (or no longer) the active: replica reads, stale by
    /// design (`replica_read = true`), not part of the linearizable history.
    replica_reads: Vec<(String, Option<String>)>,
}

/// Random `SET`/`GET` on a few keys against node `node_id` until stopped. Writes always go
/// to the history (a refused write is `Failed`, a timed-out one `Unknown`); reads go to it
/// only while `node_id` is known to be the active.
fn register_client(
    node_id: u32,
    url: String,
    client: usize,
    seed: u64,
    history: Arc<History>,
    phases: Arc<Phases>,
) -> ClientReport {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(node_id) << 32) ^ client as u64);
    let mut report = ClientReport::default();
    let mut connection = connect(&url, Duration::from_secs(10));
    let mut sequence = 0u64;
    while !phases.stop.load(Ordering::SeqCst) {
        let Some(open) = connection.as_mut() else {
            std::thread::sleep(Duration::from_millis(20));
            connection = connect(&url, Duration::from_secs(10));
            continue;
        };
        sequence += 1;
        let key = format!("register:{}", rng.gen_range(0..REGISTER_KEYS));
        let reply = if rng.gen_bool(0.5) {
            let value = format!("n{node_id}c{client}s{sequence}");
            let frozen = phases.frozen.load(Ordering::SeqCst);
            let after_stop = node_id == frozen && phases.stopped.load(Ordering::SeqCst);
            let id = history.invoke(Operation::Write { key: key.clone(), value: value.clone() });
            let reply = reply_of(&redis::cmd("SET").arg(&key).arg(&value).query::<String>(open));
            history.complete(
                id,
                match &reply {
                    Reply::Ok => Outcome::Ok(None),
                    Reply::Error(_) => Outcome::Failed,
                    Reply::Unknown => Outcome::Unknown,
                },
            );
            if after_stop {
                report.writes_after_stop.push(reply.clone());
            }
            reply
        } else {
            let (frozen, load) =
                (phases.frozen.load(Ordering::SeqCst), |flag: &AtomicBool| flag.load(Ordering::SeqCst));
            let served_by_the_active = if node_id == frozen {
                (node_id == 1 || load(&phases.switched)) && !load(&phases.pausing)
            } else {
                (node_id == 1 && !load(&phases.switching)) || load(&phases.promoted)
            };
            let id = served_by_the_active.then(|| history.invoke(Operation::Read { key: key.clone() }));
            let result = redis::cmd("GET").arg(&key).query::<Option<String>>(open);
            let reply = reply_of(&result);
            match (id, result) {
                (Some(id), Ok(value)) => history.complete(id, Outcome::Ok(value)),
                (Some(id), Err(_)) => history.complete(id, Outcome::Unknown),
                (None, Ok(value)) => report.replica_reads.push((key, value)),
                (None, Err(_)) => {}
            }
            reply
        };
        if reply == Reply::Unknown {
            connection = None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report
}

#[test]
fn pausing_the_active_past_the_detector_timeout_promotes_the_standby_and_fences_the_old_active() {
    pause_the_active_past_the_detector_timeout(started_cluster(), false);
}

/// The same, right after a switchover: the new active writes under the old one's lease grant
/// (`tandem_control::grant`) before it leads the control group. Frozen then, it still never
/// acknowledges a write after the old active, promoted again, has waited out its grant.
#[test]
fn pausing_an_active_that_writes_under_a_grant_promotes_the_grantor_and_fences_it() {
    let cluster = Cluster::start_with_admin(SYNC, ["", ""]);
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    pause_the_active_past_the_detector_timeout(cluster, true);
}

/// Register clients on both nodes and writers on the active; the active is frozen (SIGSTOP)
/// past the detector's timeout, the standby is promoted, the old active resumes fenced. With
/// `switch_first`, a switchover hands the role from node 1 to node 2 just before, and node 2
/// is the one frozen.
fn pause_the_active_past_the_detector_timeout(mut cluster: Cluster, switch_first: bool) {
    let seed = test_seed();
    let history = Arc::new(History::default());
    let phases = Arc::new(Phases::default());
    phases.frozen.store(if switch_first { 2 } else { 1 }, Ordering::SeqCst);
    let clients: Vec<JoinHandle<ClientReport>> = (0..2)
        .flat_map(|index| (0..REGISTER_CLIENTS).map(move |client| (index, client)))
        .map(|(index, client)| {
            let node: &Node = &cluster.nodes[index];
            let (node_id, url) = (node.id, node.url());
            let (history, phases) = (history.clone(), phases.clone());
            std::thread::spawn(move || register_client(node_id, url, client, seed, history, phases))
        })
        .collect();
    let (active, standby_index) = if switch_first { (1, 0) } else { (0, 1) };
    let mut writers_before = None;
    if switch_first {
        let early = Writers::start(&cluster.nodes[0].url(), 2);
        poll_until(CONVERGE_TIMEOUT, "the workload acknowledged writes before the switchover", || {
            early.acknowledged_count() >= 50 && history.counts().1 >= 20
        });
        let admin = ([127, 0, 0, 1], cluster.nodes[0].admin_port.unwrap()).into();
        phases.switching.store(true, Ordering::SeqCst);
        let response =
            tandem::admin::client::request(admin, "POST", "/switchover", Some("{}"), CONVERGE_TIMEOUT).unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
        phases.switched.store(true, Ordering::SeqCst);
        writers_before = Some(early.stop());
    }
    let epoch: u64 = info(&cluster.nodes[active], "tandem_epoch").parse().unwrap();
    let writers = Writers::start(&cluster.nodes[active].url(), 2);
    let enough = if switch_first { 20 } else { 100 };
    poll_until(CONVERGE_TIMEOUT, "the workload acknowledged writes", || {
        writers.acknowledged_count() >= enough && history.counts().1 >= 50
    });
    if switch_first {
        let leader = info(&cluster.nodes[active], "tandem_control_leader");
        println!("frozen while the control group's leader is {leader:?} (node 2's lease is the grant unless it is 2)");
    }

    phases.pausing.store(true, Ordering::SeqCst);
    cluster.nodes[active].pause();
    phases.stopped.store(true, Ordering::SeqCst);
    let standby = &cluster.nodes[standby_index];
    let next_epoch = (epoch + 1).to_string();
    poll_until(CONVERGE_TIMEOUT, "the standby is promoted in the next epoch", || {
        info(standby, "role") == "master" && info(standby, "tandem_epoch") == next_epoch
    });
    phases.promoted.store(true, Ordering::SeqCst);
    let before = history.counts().1;
    poll_until(CONVERGE_TIMEOUT, "the new active acknowledges writes", || history.counts().1 >= before + 20);
    cluster.nodes[active].resume();
    // The old active learns the new epoch and follows the new active.
    let old_active = &cluster.nodes[active];
    poll_until(CONVERGE_TIMEOUT, "the old active follows the new one in the next epoch", || {
        info(old_active, "role") == "slave"
            && info(old_active, "tandem_epoch") == next_epoch
            && info(old_active, "master_link_status") == "up"
    });
    // Let both nodes' clients run a little longer against the settled roles.
    let before = history.counts().0;
    poll_until(CONVERGE_TIMEOUT, "more operations after the old active resumed", || history.counts().0 >= before + 200);
    phases.stop.store(true, Ordering::SeqCst);
    let reports: Vec<ClientReport> = clients.into_iter().map(|client| client.join().unwrap()).collect();
    let mut acknowledged = writers.stop();
    acknowledged.extend(writers_before.unwrap_or_default());

    // Close every key's history with a read on the new active.
    let mut new_active = cluster.nodes[standby_index].connection();
    for key in 0..REGISTER_KEYS {
        let key = format!("register:{key}");
        let id = history.invoke(Operation::Read { key: key.clone() });
        let value: Option<String> = redis::cmd("GET").arg(&key).query(&mut new_active).unwrap();
        history.complete(id, Outcome::Ok(value));
    }
    // (a) No acknowledged write is lost on the new active.
    let lost = lost_writes(&mut new_active, &acknowledged);
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acknowledged.len());
    // (b) Every key's history (writes on both nodes, reads on the active) is linearizable.
    let (operations, acknowledged_writes) = history.counts();
    if let Err(problem) = history.check() {
        panic!("seed {seed}: {operations} operations, {acknowledged_writes} acknowledged writes: {problem}");
    }
    // (c) The old active never acknowledged a write sent after it was frozen; it refused them.
    let after_stop: Vec<&Reply> = reports.iter().flat_map(|report| &report.writes_after_stop).collect();
    assert!(!after_stop.contains(&&Reply::Ok), "the fenced old active acknowledged a write: {after_stop:?}");
    let refusals: Vec<&String> =
        after_stop.iter().filter_map(|reply| if let Reply::Error(text) = reply { Some(text) } else { None }).collect();
    assert!(!refusals.is_empty(), "the old active answered no write after resuming: {after_stop:?}");
    assert!(refusals.iter().all(|text| text.starts_with("READONLY")), "{refusals:?}");
    // Replica reads may be stale, but never show a value no write could have produced.
    for (key, value) in reports.iter().flat_map(|report| &report.replica_reads) {
        if let Some(value) = value {
            assert!(history.may_have_written(key, value), "a replica read of {key} returned a phantom {value:?}");
        }
    }
    // The old active rejoined as a standby holding exactly the new active's records.
    let (mut old_connection, mut new_connection) =
        (cluster.nodes[active].connection(), cluster.nodes[standby_index].connection());
    poll_until(CONVERGE_TIMEOUT, "the old active converges on the new one", || {
        cluster_support::info_field(&mut new_connection, "master_repl_offset")
            == cluster_support::info_field(&mut old_connection, "slave_repl_offset")
            && digest(&mut new_connection) == digest(&mut old_connection)
    });
    println!(
        "seed {seed}: {operations} operations, {acknowledged_writes} acknowledged writes, {} refused on the old active",
        refusals.len()
    );
}

/// Plays the old active on node 1's peer port after node 1 died: accepts the standby's next
/// catch-up connection and holds its handshake until `ready` (the standby was promoted and
/// acknowledged writes in the new epoch), then completes it and answers the catch-up request
/// as the stale old active would, with `Diverged` at its own last index. Returns the
/// standby's `CatchUpFrom`.
async fn answer_as_the_stale_old_active(
    cluster: &Cluster,
    old_last_index: u64,
    mut ready: impl FnMut() -> bool,
) -> Message {
    let old_active = cluster_config(cluster, 1, |text| text);
    let listener = tokio::net::TcpListener::bind(cluster.nodes[0].peer_addr()).await.unwrap();
    // The standby gives a handshake `PEER_CONNECT_TIMEOUT_MS`: answer within it.
    let hold_max = Duration::from_millis(tandem::limits::PEER_CONNECT_TIMEOUT_MS * 3 / 4);
    loop {
        let (mut socket, _) = tokio::time::timeout(CONVERGE_TIMEOUT, listener.accept()).await.unwrap().unwrap();
        let accepted_at = Instant::now();
        let mut is_ready = ready();
        while !is_ready && accepted_at.elapsed() < hold_max {
            tokio::time::sleep(Duration::from_millis(10)).await;
            is_ready = ready();
        }
        if !is_ready {
            continue; // the standby reconnects; hold its next attempt
        }
        let mut reader = PeerReader::new(tandem::limits::PEER_HANDSHAKE_FRAME_BYTES_MAX);
        handshake::accept(&mut socket, &mut reader, &old_active).await.unwrap();
        reader.limit = tandem::limits::PEER_FRAME_BYTES_MAX;
        let catch_up = reader.next(&mut socket).await.unwrap();
        let stale = Message::Diverged { epoch: 1, index: old_last_index, index_epoch: 1 };
        wire::send(&mut socket, &stale, &mut BytesMut::new()).await.unwrap();
        // Until the standby closes the session, whatever it decided.
        while tokio::time::timeout(Duration::from_secs(5), reader.next(&mut socket))
            .await
            .is_ok_and(|next| next.is_ok())
        {}
        return catch_up;
    }
}

/// A regression found by the pause scenario above, which hits it only when the old active
/// resumes within milliseconds of the promotion; here the test plays the old active and wins
/// that race every time. A catch-up session that the standby began before its promotion (held
/// in the handshake by the frozen peer) goes on after it: the standby, now the active at
/// epoch 2, sends its last index, and the old active, still at epoch 1, answers `Diverged`.
/// The new active must not drop its own acknowledged epoch-2 records to "rejoin" it.
#[test]
fn a_promoted_standby_ignores_a_stale_old_active_that_answers_its_last_catch_up_with_diverged() {
    let mut cluster = started_cluster();
    let old_writers = Writers::start(&cluster.nodes[0].url(), 2);
    poll_until(CONVERGE_TIMEOUT, "writes on the first active", || old_writers.acknowledged_count() >= 100);
    let mut acknowledged = old_writers.stop();
    cluster.wait_converged();
    let old_last_index: u64 = number(&cluster.nodes[0], "master_repl_offset");
    // Writers on node 2 are refused until it is promoted, then write in epoch 2 at once.
    let new_writers = Writers::start(&cluster.nodes[1].url(), 2);
    cluster.nodes[0].kill9();
    let standby = &cluster.nodes[1];
    // Promoted, with records past the old log: appended, not necessarily acknowledged yet
    // (the first acknowledgement can wait for the lost standby's sync timeout, and the held
    // handshake must be answered within the node's connect timeout; a CI run missed it).
    let ready = || {
        info(standby, "role") == "master"
            && info(standby, "tandem_epoch") == "2"
            && number(standby, "master_repl_offset") > old_last_index
    };
    let catch_up = runtime().block_on(answer_as_the_stale_old_active(&cluster, old_last_index, ready));
    let acknowledged_in_epoch_2 = new_writers.stop();
    assert!(
        matches!(catch_up, Message::CatchUpFrom { epoch: 2, index, .. } if index > old_last_index + 1),
        "the promoted standby asked the old active to catch it up from beyond the old log: {catch_up:?}"
    );
    acknowledged.extend(acknowledged_in_epoch_2);
    let new_active = &cluster.nodes[1];
    poll_until(CONVERGE_TIMEOUT, "the new active serves", || role(new_active) == "master");
    let log = new_active.stderr();
    assert!(!log.contains("restarting to save them aside"), "the new active dropped its own records:\n{log}");
    let lost = lost_writes(&mut cluster.nodes[1].connection(), &acknowledged);
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acknowledged.len());
}

// ---------------------------------------------------------------------------------------
// 3. The witness dies.

#[test]
fn killing_the_witness_under_load_changes_nothing_while_both_data_nodes_are_up() {
    let mut cluster = started_cluster();
    let writers = Writers::start(&cluster.nodes[0].url(), 4);
    poll_until(CONVERGE_TIMEOUT, "writers acknowledged 200 writes", || writers.acknowledged_count() >= 200);
    cluster.witness.as_mut().expect("a witness").kill9();
    let killed_at = Instant::now();
    let before = writers.acknowledged_count();
    // Well past the detector's and the control group's election timeouts, writes keep going.
    let quiet = detector_dead_min(&cluster) * 3;
    poll_until(CONVERGE_TIMEOUT, "writes keep being acknowledged without the witness", || {
        writers.acknowledged_count() >= before + 300 && killed_at.elapsed() >= quiet
    });
    let acknowledged = writers.stop();
    for node in &cluster.nodes {
        assert_eq!(info(node, "tandem_epoch"), "1", "node {}: no failover", node.id);
        assert_eq!(info(node, "tandem_control_active"), "1", "node {}", node.id);
    }
    assert_eq!(role(&cluster.nodes[0]), "master");
    assert_eq!(role(&cluster.nodes[1]), "slave");
    assert_eq!(info(&cluster.nodes[0], "tandem_lease_valid"), "1", "two of three members are a quorum");
    assert_eq!(info(&cluster.nodes[0], "tandem_control_in_sync"), "1,2", "the standby stays in sync");
    cluster.wait_converged();
    let lost = lost_writes(&mut cluster.nodes[1].connection(), &acknowledged);
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acknowledged.len());
}

// ---------------------------------------------------------------------------------------
// 4. The witness and the standby die: no quorum, no lease, no acknowledged write.

/// One write attempt and when it was made and answered.
#[derive(Debug, Clone)]
struct Attempt {
    key: String,
    invoked: Instant,
    completed: Instant,
    reply: Reply,
}

/// Writers on their own connections that record every attempt; a writer whose write gets no
/// reply reconnects (the outcome stays unknown).
fn timed_writers(url: &str, count: usize, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<Vec<Attempt>>> {
    (0..count)
        .map(|writer| {
            let (url, stop) = (url.to_string(), stop.clone());
            std::thread::spawn(move || {
                let mut attempts = Vec::new();
                let mut connection = connect(&url, Duration::from_secs(30));
                for sequence in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Some(open) = connection.as_mut() else {
                        std::thread::sleep(Duration::from_millis(20));
                        connection = connect(&url, Duration::from_secs(30));
                        continue;
                    };
                    let key = format!("timed{writer}:{sequence}");
                    let invoked = Instant::now();
                    let reply = reply_of(&redis::cmd("SET").arg(&key).arg(sequence).query::<String>(open));
                    attempts.push(Attempt { key, invoked, completed: Instant::now(), reply: reply.clone() });
                    match reply {
                        Reply::Unknown => connection = None,
                        Reply::Error(_) => std::thread::sleep(Duration::from_millis(10)),
                        Reply::Ok => {}
                    }
                }
                attempts
            })
        })
        .collect()
}

/// Starts `timed_writers` on the active, waits until writes flow, then kills the witness and
/// the standby; returns the writers, their stop flag and when the quorum was lost.
fn lose_the_quorum_under_load(cluster: &mut Cluster) -> (Vec<JoinHandle<Vec<Attempt>>>, Arc<AtomicBool>, Instant) {
    let stop = Arc::new(AtomicBool::new(false));
    let writers = timed_writers(&cluster.nodes[0].url(), 3, &stop);
    let active = &cluster.nodes[0];
    poll_until(CONVERGE_TIMEOUT, "writes flow", || info(active, "master_repl_offset").parse().unwrap_or(0) >= 100);
    cluster.witness.as_mut().expect("a witness").kill9();
    cluster.nodes[1].kill9();
    (writers, stop, Instant::now())
}

#[test]
fn losing_the_witness_and_the_standby_stops_writes_within_the_lease_until_the_witness_returns() {
    let mut cluster = started_cluster();
    let lease = lease(&cluster);
    let grace = lease;
    let url = cluster.nodes[0].url();
    let (writers, stop, lost_quorum_at) = lose_the_quorum_under_load(&mut cluster);
    let deadline = lost_quorum_at + lease + grace;

    // Probe with fresh connections meanwhile: writes are refused or block, never acknowledged.
    let mut probes = Vec::new();
    let probe_until = lost_quorum_at + detector_dead_min(&cluster) * 3;
    let mut sequence = 0;
    while Instant::now() < probe_until {
        sequence += 1;
        let key = format!("probe:{sequence}");
        let invoked = Instant::now();
        let reply = match connect(&url, Duration::from_millis(300)) {
            Some(mut probe) => reply_of(&redis::cmd("SET").arg(&key).arg(sequence).query::<String>(&mut probe)),
            None => Reply::Unknown,
        };
        probes.push(Attempt { key, invoked, completed: Instant::now(), reply });
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info(&cluster.nodes[0], "tandem_lease_valid"), "0", "no quorum, no lease");
    assert!(cluster.nodes[0].is_running());

    // The witness returns: a quorum again, the dead standby is marked out of sync, writes resume.
    let witness_back_at = Instant::now();
    cluster.witness.as_mut().expect("a witness").start();
    poll_until(CONVERGE_TIMEOUT, "the active acknowledges writes again", || {
        cluster_support::accepts_a_write(&cluster.nodes[0], "after-witness")
    });
    stop.store(true, Ordering::SeqCst);
    let mut attempts: Vec<Attempt> = writers.into_iter().flat_map(|writer| writer.join().unwrap()).collect();
    let probes_in_window = probes.iter().filter(|probe| probe.invoked > deadline).count();
    attempts.extend(probes);

    let acknowledged_without_quorum: Vec<(&String, Duration)> = attempts
        .iter()
        .filter(|attempt| {
            attempt.reply == Reply::Ok && attempt.completed > deadline && attempt.completed < witness_back_at
        })
        .map(|attempt| (&attempt.key, attempt.completed.duration_since(lost_quorum_at)))
        .collect();
    assert!(
        acknowledged_without_quorum.is_empty(),
        "writes acknowledged more than lease + grace ({:?}) after the quorum was lost: {acknowledged_without_quorum:?}",
        lease + grace,
    );
    assert!(probes_in_window >= 5, "the no-quorum window was probed only {probes_in_window} times");
    let refusals: Vec<&String> = attempts
        .iter()
        .filter(|attempt| attempt.invoked > deadline && attempt.completed < witness_back_at)
        .filter_map(|attempt| if let Reply::Error(text) = &attempt.reply { Some(text) } else { None })
        .collect();
    assert!(refusals.iter().all(|text| text.starts_with("READONLY")), "{refusals:?}");
    // Every acknowledged write is on the surviving node.
    let acknowledged: BTreeMap<String, String> = attempts
        .iter()
        .filter(|attempt| attempt.reply == Reply::Ok && attempt.key.starts_with("timed"))
        .map(|attempt| (attempt.key.clone(), attempt.key.rsplit(':').next().unwrap().to_string()))
        .collect();
    assert!(!acknowledged.is_empty());
    let lost = lost_writes(&mut cluster.nodes[0].connection(), &acknowledged);
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acknowledged.len());
}

#[test]
fn an_active_without_quorum_answers_reads_or_refuses_them_cleanly() {
    let mut cluster = started_cluster();
    let lease = lease(&cluster);
    let mut connection = cluster.nodes[0].connection();
    let _: () = redis::cmd("SET").arg("before").arg("quorum-loss").query(&mut connection).unwrap();
    let (writers, stop, _) = lose_the_quorum_under_load(&mut cluster);
    std::thread::sleep(lease * 2);
    // A read is not a write that could be lost: it returns the value it can vouch for, or an
    // error reply that says why not — it does not hang the connection until the quorum returns.
    let mut reader = connect(&cluster.nodes[0].url(), Duration::from_secs(3)).expect("the active accepts connections");
    let read = redis::cmd("GET").arg("before").query::<Option<String>>(&mut reader);
    let reply = reply_of(&read);
    cluster.witness.as_mut().expect("a witness").start();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    match (reply, read) {
        (Reply::Unknown, read) => panic!("a read on the active without quorum got no reply: {read:?}"),
        (Reply::Ok, Ok(value)) => assert_eq!(value.as_deref(), Some("quorum-loss")),
        (Reply::Error(text), _) => assert!(text.starts_with("READONLY"), "{text}"),
        (reply, read) => panic!("{reply:?} / {read:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// 5. Bad peer input on the replication and control-plane ports.
//
// replication.rs already refuses an HTTP request, a huge length prefix, a bad checksum, a
// wrong secret or cluster id and a stale-epoch `Ack` on a cluster without a control plane,
// checking the logs. These add: seeded random garbage and an undecodable checksummed body
// on both data nodes, the `tandem_rejected_peers` counter, a stale epoch mid-session under
// the control plane, and garbage on every member's control-plane port.

/// Sends `bytes`, half-closes, and waits until the node closes the connection.
fn send_and_wait_for_close(addr: SocketAddr, bytes: &[u8]) {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The node may close as soon as it saw enough to refuse: a failed write is fine.
    let _ = socket.write_all(bytes);
    let _ = socket.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    let _ = socket.read_to_end(&mut sink);
}

/// Random bad frames for a length-prefixed protocol: random bytes, a length prefix far above
/// any limit in either byte order, and (for the replication port) a correctly checksummed
/// body that is no message.
fn garbage(rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = (0..4)
        .map(|_| {
            let length = rng.gen_range(1..2048);
            (0..length).map(|_| rng.gen()).collect()
        })
        .collect();
    frames.push([u32::MAX.to_le_bytes(), [0; 4]].concat());
    frames.push([0x7fff_fff0u32.to_be_bytes(), [0; 4]].concat());
    let body: Vec<u8> = vec![0xff; 24];
    frames.push(
        [(body.len() as u32).to_le_bytes(), crc32c::crc32c(&body).to_le_bytes()]
            .concat()
            .into_iter()
            .chain(body)
            .collect(),
    );
    frames
}

#[test]
fn garbage_on_the_replication_ports_is_refused_counted_and_logged_and_the_pair_keeps_serving() {
    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = started_cluster();
    for node in &cluster.nodes {
        let before = number(node, "tandem_rejected_peers");
        let refusals_before = node.stderr().matches("replication peer refused").count();
        let frames = garbage(&mut rng);
        for frame in &frames {
            send_and_wait_for_close(node.peer_addr(), frame);
        }
        poll_until(CONVERGE_TIMEOUT, &format!("node {} counts and logs every refusal", node.id), || {
            number(node, "tandem_rejected_peers") >= before + frames.len() as u64
                && node.stderr().matches("replication peer refused").count() >= refusals_before + frames.len()
        });
        let log = node.stderr();
        assert!(log.contains("above the limit"), "node {}: the oversize length is named:\n{log}", node.id);
        assert!(log.contains("does not decode"), "node {}: the undecodable body is named:\n{log}", node.id);
    }
    // Both nodes survived and the pair still replicates synchronously.
    assert!(cluster.nodes[0].is_running() && cluster.nodes[1].is_running(), "seed {seed}");
    let mut active = cluster.nodes[0].connection();
    let _: () = redis::cmd("SET").arg("after-garbage").arg(1).query(&mut active).unwrap();
    cluster.wait_converged();
}

#[test]
fn impostors_and_a_stale_epoch_peer_are_refused_counted_and_logged_and_the_pair_keeps_serving() {
    let mut cluster = started_cluster();
    let addr = cluster.nodes[0].peer_addr();
    let before = number(&cluster.nodes[0], "tandem_rejected_peers");
    let wrong_secret =
        cluster_config(&cluster, 2, |text| text.replace(cluster_support::SECRET, "not-the-secret-at-all-123"));
    let wrong_cluster = cluster_config(&cluster, 2, |text| text.replace(cluster_support::CLUSTER_ID, "somebody-else"));
    let genuine = cluster_config(&cluster, 2, |text| text);
    let epoch: u64 = number(&cluster.nodes[0], "tandem_epoch");
    assert!(epoch >= 1);
    let reason = runtime().block_on(async {
        let (outcome, ..) = connect_as(addr, &wrong_secret).await;
        assert!(outcome.unwrap_err().contains("authentication failed"));
        let (outcome, ..) = connect_as(addr, &wrong_cluster).await;
        assert!(outcome.unwrap_err().contains("wrong cluster id"));
        // Authenticated, then a heartbeat from an epoch the cluster has left behind.
        let (outcome, mut socket, mut reader) = connect_as(addr, &genuine).await;
        outcome.unwrap();
        let mut scratch = BytesMut::new();
        wire::send(&mut socket, &Message::CatchUpFrom { epoch, index: 1, prev_epoch: 0 }, &mut scratch).await.unwrap();
        let stale = Message::Heartbeat { epoch: epoch - 1, sent_at_ms: 0, last_index: 0 };
        wire::send(&mut socket, &stale, &mut scratch).await.unwrap();
        loop {
            match reader.next(&mut socket).await {
                Ok(Message::Refused { reason }) => break reason,
                Ok(_) => continue, // records and heartbeats before the refusal
                Err(error) => panic!("the node closed without saying why: {error}"),
            }
        }
    });
    assert!(reason.contains(&format!("stale epoch {}", epoch - 1)), "{reason}");
    let active = &cluster.nodes[0];
    poll_until(CONVERGE_TIMEOUT, "the active counts and logs the three refusals", || {
        let log = active.stderr();
        number(active, "tandem_rejected_peers") >= before + 3
            && log.contains("wrong cluster id `somebody-else`")
            && log.contains("authentication failed")
            && log.contains(&format!("stale epoch {}", epoch - 1))
    });
    // The impostor displaced the real standby's session for a moment; it reconnects, and sync
    // writes are acknowledged again.
    assert!(cluster.nodes[0].is_running() && cluster.nodes[1].is_running());
    let mut connection = cluster.nodes[0].connection();
    let _: () = redis::cmd("SET").arg("after-impostors").arg(1).query(&mut connection).unwrap();
    cluster.wait_converged();
}

#[test]
fn garbage_on_the_control_plane_ports_is_refused_and_every_member_survives() {
    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = started_cluster();
    for id in 1..=3 {
        let addr = control_addr(&cluster, id);
        let mut frames = garbage(&mut rng);
        frames.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        for frame in &frames {
            send_and_wait_for_close(addr, frame);
        }
    }
    for node in &cluster.nodes {
        poll_until(CONVERGE_TIMEOUT, &format!("node {} logs the refusals", node.id), || {
            node.stderr().matches("control plane: refused peer").count() >= 8
        });
    }
    assert!(cluster.nodes[0].is_running() && cluster.nodes[1].is_running(), "seed {seed}");
    let witness = cluster.witness.as_mut().expect("a witness");
    assert!(witness.is_running(), "seed {seed}: the witness survived:\n{}", witness.stderr());
    assert!(witness.stderr().matches("control plane: refused peer").count() >= 8, "{}", witness.stderr());
    // The control group is intact: no failover, the active holds its lease and serves.
    wait_standby_joined(&cluster);
    assert_eq!(info(&cluster.nodes[0], "tandem_epoch"), "1");
    assert_eq!(info(&cluster.nodes[0], "tandem_lease_valid"), "1");
    let mut active = cluster.nodes[0].connection();
    let _: () = redis::cmd("SET").arg("after-control-garbage").arg(1).query(&mut active).unwrap();
    cluster.wait_converged();
}
