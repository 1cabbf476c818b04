//! The data node's side of the control plane: follow the replicated
//! [`ControlState`] (who is active, in which epoch), promote this node when
//! the active is dead and this node is in sync, and keep the control group's
//! leadership on the active. The active's lease is its leader lease or the
//! other data node's grant (`tandem_control::grant`); leading lets it keep
//! writing when the standby dies.
//!
//! Decisions are pure functions of the control state, this node's id and the
//! failure detector's verdict on the peer ([`role_in`], [`proposal`],
//! [`should_stand_aside`]); [`run`] carries them out. Also `tandem witness`
//! ([`run_witness`]): a control-group member with no data role.
//!
//! Invariants:
//! * this node is active iff the applied control state names it active; the
//!   epoch it stamps records with is the control-plane epoch (never lower than
//!   its log's);
//! * a promotion is proposed only for this node, only when it is in the in-sync
//!   set, and names the epoch it saw (the pure `apply` refuses it otherwise);
//! * the active accepts writes only under its lease (`Replication::lease_lost`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tandem_control::{
    ControlCommand, ControlConfig, ControlError, ControlNode, ControlResponse, ControlState, MemberConfig, NodeId,
};

use crate::config::{ClusterConfig, MemberRole};
use crate::failover::cold::{self, Takeover};
use crate::failover::detector::Verdict;
use crate::limits;
use crate::repl::Role;
use crate::server::Shared;

/// The control-plane member configuration of `cluster`'s own member; its files live in
/// `<data_dir>/control/`.
pub fn control_config(cluster: &ClusterConfig, data_dir: &Path) -> ControlConfig {
    let members: BTreeMap<NodeId, MemberConfig> = cluster
        .members
        .iter()
        .map(|member| {
            let role = match member.role {
                MemberRole::Data => tandem_control::MemberRole::Data,
                MemberRole::Witness => tandem_control::MemberRole::Witness,
            };
            let address = member.control.expect("validated: every member has a control address");
            (NodeId::from(member.id), MemberConfig { address, role })
        })
        .collect();
    let data_dir = data_dir.join("control");
    let mut config =
        ControlConfig::new(NodeId::from(cluster.node_id), members, data_dir, &cluster.cluster_id, &cluster.secret.0);
    // Raft's timings follow one setting: at the default (150) they are openraft's own.
    let election_ms = cluster.control_election_timeout_ms;
    config.election_timeout_min_ms = election_ms;
    config.election_timeout_max_ms = election_ms * 2;
    config.heartbeat_ms = election_ms / 3;
    config.lease_ms = election_ms * 2 / 3;
    config.clock_drift_margin_ms = election_ms / 6;
    config
}

/// The role the control state gives this node. A node *becomes* active only once its control
/// state is known current (`fresh`, see `Freshness`). A node that restarts with a stale
/// control log naming it active (the others moved on without it) must not act on it, nor
/// campaign with it, before then.
pub fn role_in(state: &ControlState, me: NodeId, active_now: bool, fresh: bool) -> Role {
    if state.active == Some(me) && (active_now || fresh) {
        Role::Active
    } else {
        Role::Standby
    }
}

/// The two data nodes as a decision sees them.
#[derive(Debug, Clone, Copy)]
pub struct Members {
    /// This node.
    pub me: NodeId,
    /// The other data node.
    pub peer: NodeId,
    /// The data node `[cluster] initial_active` names.
    pub initial_active: NodeId,
    /// Whether the standby is cold: it holds no stream, so it is never in sync, and takes
    /// over a dead active by restoring the active's archive (losing what was not shipped).
    pub cold: bool,
}

/// What this data node should propose now, if anything, given the detector's verdict on
/// the peer:
/// * the first promotion of a new cluster (by `initial_active`, for itself);
/// * its own promotion when the active is dead and this node is in sync (invariant 3) —
///   or, for a cold standby, forced: the archive it restores is the reference then;
/// * as the active, a dead standby out of sync, so that writes continue without it and
///   it is never promoted while it lacks them (replies wait until this is committed).
/// * as the active, a standby that caught up again in sync (`resync_reached`: it holds
///   every write acknowledged since replies began waiting for it).
pub fn proposal(
    state: &ControlState,
    members: Members,
    peer_verdict: Option<Verdict>,
    resync_reached: bool,
) -> Option<ControlCommand> {
    let Members { me, peer, initial_active, cold } = members;
    if state.data_nodes.is_empty() {
        return None;
    }
    let peer_dead = peer_verdict == Some(Verdict::Dead);
    let peer_alive = peer_verdict == Some(Verdict::Alive);
    match state.active {
        Some(active) if active == me && peer_alive && resync_reached && !state.in_sync.contains(&peer) => {
            Some(ControlCommand::MarkInSync { node: peer, epoch: state.epoch })
        }
        None if state.epoch == 0 && me == initial_active => {
            Some(ControlCommand::Promote { node: me, expected_epoch: 0, force: false })
        }
        Some(active) if active == me && peer_dead && state.in_sync.contains(&peer) => {
            Some(ControlCommand::MarkOutOfSync { node: peer, epoch: state.epoch })
        }
        Some(active) if active != me && peer_dead && state.in_sync.contains(&me) => {
            Some(ControlCommand::Promote { node: me, expected_epoch: state.epoch, force: false })
        }
        Some(active) if active != me && peer_dead && cold => {
            Some(ControlCommand::Promote { node: me, expected_epoch: state.epoch, force: true })
        }
        _ => None,
    }
}

/// Whether this node, leading the control group without being the active, should stand
/// aside so that the live active leads: then the active's lease does not hang on this
/// node's grant, and survives this node's death.
pub fn should_stand_aside(state: &ControlState, me: NodeId, leading: bool, peer_verdict: Option<Verdict>) -> bool {
    leading && state.active.is_some_and(|active| active != me) && peer_verdict == Some(Verdict::Alive)
}

/// Drives this data node's role from the control plane until shutdown.
pub async fn run(shared: Arc<Shared>, control: Arc<ControlNode>) {
    let cluster = shared.replication.cluster.as_ref().expect("the control plane runs only in a cluster");
    let heartbeat = Duration::from_millis(cluster.heartbeat_ms);
    let me = control.id();
    let members = Members {
        me,
        peer: NodeId::from(cluster.peer_data_member().id),
        initial_active: NodeId::from(cluster.initial_active),
        cold: cluster.standby == crate::config::StandbyKind::Cold,
    };
    let mut shutdown = shared.shutdown.subscribe();
    let mut freshness = Freshness::default();
    let election = Duration::from_millis(cluster.control_election_timeout_ms);
    let mut retry = Retry::new(heartbeat, (election * 2).min(Duration::from_millis(limits::CONTROL_RETRY_MAX_MS)));
    // Forming the group needs a quorum: until a second member is up, this keeps retrying.
    loop {
        match control.initialize().await {
            Ok(()) => break,
            Err(error) => tracing::info!(%error, "control plane: not initialized yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retry.failed()) => {}
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        }
    }
    retry.succeeded();
    let mut states = control.state_changes();
    let mut stand_aside = StandAside::default();
    // A campaign is refused while a voter heard a leader within its election timeout: retry
    // at a steady half of it.
    let mut campaign = Retry::new(election / 2, election / 2);
    let mut campaign_until: Option<Instant> = None;
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let state = states.borrow_and_update().clone();
        let active_now = shared.replication.role() == Role::Active;
        let fresh = freshness.is_fresh(&state);
        let mut role = role_in(&state, me, active_now, fresh);
        if role == Role::Active
            && !active_now
            && members.cold
            && cold::takeover(&shared, state.epoch) == Takeover::Restoring
        {
            // Not before its data holds the peer's archive (the node restarts to rebuild it).
            role = Role::Standby;
        }
        shared.replication.follow_control(&shared.db, role, state.epoch);
        let verdict = shared.replication.peer_verdict();
        if role == Role::Standby && state.active == Some(members.peer) {
            shared.replication.note_active_dead(verdict == Some(Verdict::Dead));
        }
        stand_aside.update(&control, should_stand_aside(&state, me, control.is_leader(), verdict));
        track_resync(&shared, &state, members.peer, role, verdict);
        // In sync again only once its control log caught up too: a standby whose control log
        // is behind the witness's cannot be elected, so it could not take over.
        let resync_reached = shared.replication.resync_reached() && control.member_caught_up(members.peer);
        let command = proposal(&state, members, verdict, resync_reached);
        // Taking over from a dead active (not the first promotion of a new cluster).
        let promoting =
            state.active.is_some() && matches!(command, Some(ControlCommand::Promote { node, .. }) if node == me);
        if !active_now && role == Role::Active && state.epoch > 1 {
            // Handed the role live (a switchover, a forced promotion): its control log holds
            // that very entry, so it can win an election once the old leader stood aside.
            campaign_until = Some(Instant::now() + election * 8);
        }
        let handed_over = role == Role::Active && campaign_until.is_some_and(|until| Instant::now() < until);
        if (handed_over || (promoting && fresh)) && !control.is_leader() && campaign.due() {
            // Ask for the leadership (and the lease) at once rather than wait for the election
            // timer. Bounded to these two cases: a candidate whose log is behind cannot win
            // and only unsettles the leader.
            control.campaign().await;
            campaign.failed();
        }
        if let Some(command) = command {
            if retry.due() {
                if let Some(epoch) = propose(&control, command, &mut retry).await {
                    // Applied by the leader: as good a confirmation as `Confirm`'s (the
                    // first promotion then takes the role without a standby step first).
                    freshness.applied_in(epoch);
                }
            }
        } else if !freshness.confirmed() && retry.due() {
            freshness.confirm(&control, me, &mut retry).await;
        }
        tokio::select! {
            changed = states.changed() => if changed.is_err() { return },
            _ = ticker.tick() => {}
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        }
    }
}

/// Whether this node's control state is known current since it started.
///
/// Once after each start the node commits a `ControlCommand::Confirm` (it changes nothing);
/// the leader answers with the epoch it applied it in, on top of everything committed before.
/// The active only ever changes with a new epoch, so a local state at that epoch or later names
/// the current active. Neither openraft's view of the log at start (its metrics read as an
/// empty log for a moment) nor any entry applied since is enough: a restarted old active once
/// took its own replayed entries, and later the new leader's first entry, applied before the
/// promotion that followed it, for news, and set itself active on its stale state for a moment
/// (seen in the kill-and-rejoin test under CI load, and in the control-plane restart test).
#[derive(Debug, Default)]
struct Freshness {
    /// The epoch the leader applied this node's `Confirm` (or another of its commands) in.
    confirmed_epoch: Option<u64>,
}

impl Freshness {
    fn is_fresh(&self, state: &ControlState) -> bool {
        self.confirmed_epoch.is_some_and(|epoch| state.epoch >= epoch)
    }

    fn confirmed(&self) -> bool {
        self.confirmed_epoch.is_some()
    }

    /// Records that the leader applied one of this node's commands in `epoch`.
    fn applied_in(&mut self, epoch: u64) {
        if self.confirmed_epoch.is_none() {
            tracing::info!(epoch, "control plane: this node's control state is current as of this epoch");
            self.confirmed_epoch = Some(epoch);
        }
    }

    /// Proposes the `Confirm`; a bounce backs off before the next attempt.
    async fn confirm(&mut self, control: &ControlNode, me: NodeId, retry: &mut Retry) {
        match control.propose(ControlCommand::Confirm { node: me }).await {
            Ok(ControlResponse::Applied { epoch }) => {
                self.applied_in(epoch);
                retry.succeeded();
            }
            outcome => {
                let wait = retry.failed();
                tracing::info!(?outcome, wait_ms = wait.as_millis() as u64, "control plane: confirming; retrying");
            }
        }
    }
}

/// As the active, starts bringing a connected, close-behind standby that the control plane
/// holds out of sync back into sync (`Replication::begin_resync`), and stops when it leaves.
fn track_resync(shared: &Shared, state: &ControlState, peer: NodeId, role: Role, verdict: Option<Verdict>) {
    let replication = &shared.replication;
    let out_of_sync = role == Role::Active && !state.in_sync.contains(&peer);
    let reachable = replication.standby_connected() && verdict == Some(Verdict::Alive);
    if out_of_sync && reachable {
        if replication.lag_records(&shared.db) <= limits::RESYNC_LAG_RECORDS_MAX {
            replication.begin_resync(&shared.db);
        }
    } else {
        replication.end_resync();
    }
    if out_of_sync && !replication.standby_connected() {
        // A standby the control plane gave up on no longer holds the log back; if it
        // returns after the log moved past it, it needs a checkpoint.
        shared.checkpoints.hold_log_from(0);
    }
}

/// Proposes `command`; a refusal is logged (the state moved on or the node is not in
/// sync), a bounce (no leader, leader unreachable) backs off before the next attempt.
/// Returns the epoch the leader applied it in, if it did.
async fn propose(control: &ControlNode, command: ControlCommand, retry: &mut Retry) -> Option<u64> {
    match control.propose(command.clone()).await {
        Ok(ControlResponse::Applied { epoch }) => {
            tracing::info!(?command, epoch, "control plane: applied");
            retry.succeeded();
            return Some(epoch);
        }
        Ok(ControlResponse::Refused(refusal)) => {
            tracing::warn!(?command, %refusal, "control plane: refused");
            retry.failed();
        }
        Ok(ControlResponse::NoCommand) => retry.succeeded(),
        Err(error @ (ControlError::NotLeader { .. } | ControlError::Unavailable(_))) => {
            let wait = retry.failed();
            tracing::info!(?command, %error, wait_ms = wait.as_millis() as u64, "control plane: retrying");
        }
        Err(error) => {
            let wait = retry.failed();
            tracing::warn!(?command, %error, wait_ms = wait.as_millis() as u64, "control plane: proposal failed");
        }
    }
    None
}

/// A bounded exponential backoff between attempts.
struct Retry {
    first: Duration,
    most: Duration,
    wait: Duration,
    next_attempt: Instant,
}

impl Retry {
    fn new(first: Duration, most: Duration) -> Retry {
        Retry { first, most, wait: first, next_attempt: Instant::now() }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next_attempt
    }

    /// Records a failed attempt; returns how long to wait before the next.
    fn failed(&mut self) -> Duration {
        let wait = self.wait;
        self.next_attempt = Instant::now() + wait;
        self.wait = (self.wait * 2).min(self.most);
        wait
    }

    fn succeeded(&mut self) {
        self.wait = self.first;
        self.next_attempt = Instant::now();
    }
}

/// Standing aside, bounded: if no one takes the leadership within
/// `CONTROL_STAND_ASIDE_MAX_MS`, this node leads again for as long before retrying, so a
/// group whose active cannot win an election is never left without a leader.
#[derive(Default)]
struct StandAside {
    since: Option<Instant>,
    paused_until: Option<Instant>,
}

impl StandAside {
    fn update(&mut self, control: &ControlNode, wanted: bool) {
        let now = Instant::now();
        let limit = Duration::from_millis(limits::CONTROL_STAND_ASIDE_MAX_MS);
        let paused = self.paused_until.is_some_and(|until| now < until);
        match (wanted && !paused, self.since) {
            (true, None) => {
                tracing::info!("control plane: leading without being the active; standing aside for the active");
                control.stand_aside(true);
                self.since = Some(now);
            }
            (true, Some(since)) if now.duration_since(since) > limit => {
                tracing::warn!("control plane: the active did not take the leadership; leading again for now");
                control.stand_aside(false);
                self.since = None;
                self.paused_until = Some(now + limit);
            }
            (false, Some(_)) => {
                control.stand_aside(false);
                self.since = None;
            }
            _ => {}
        }
    }
}

/// Runs `tandem witness`: a control-group member that votes and stores the control log,
/// never holds data (and campaigns only to unstick a data node, `tandem_control::witness`),
/// until SIGTERM or SIGINT; with a `sentinel` address it also serves the Sentinel-compatible
/// endpoint there, behind `requirepass` when the witness's file sets one.
pub async fn run_witness(cluster: ClusterConfig, requirepass: Option<String>, data_dir: PathBuf) -> anyhow::Result<()> {
    let config = control_config(&cluster, &data_dir);
    let control = ControlNode::start(config).await.context("starting the witness's control-plane member")?;
    let control = Arc::new(control);
    let admin = match cluster.this_member().admin {
        Some(address) => Some(
            crate::admin::http::WitnessAdmin::start(address, cluster.node_id, control.clone())
                .await
                .with_context(|| format!("cannot listen on the witness's admin address {address}"))?,
        ),
        None => None,
    };
    let (stop_sentinel, sentinel_stopped) = tokio::sync::watch::channel(false);
    let sentinel = crate::sentinel::witness::start(&cluster, requirepass, control.clone(), sentinel_stopped).await?;
    tracing::info!(node = cluster.node_id, data_dir = %data_dir.display(), "witness ready");
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    if let Some(admin) = admin {
        admin.stop().await;
    }
    // Its connections hold `control`: they end before the control member shuts down.
    let _ = stop_sentinel.send(true);
    if let Some(sentinel) = sentinel {
        let _ = sentinel.await;
    }
    match Arc::try_unwrap(control) {
        Ok(control) => control.shutdown().await,
        Err(_) => tracing::warn!("the witness's control member is still shared; stopping without a clean shutdown"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = 1;
    const B: NodeId = 2;
    const AS_A: Members = Members { me: A, peer: B, initial_active: A, cold: false };
    const AS_B: Members = Members { me: B, peer: A, initial_active: A, cold: false };

    fn configured() -> ControlState {
        let mut state = ControlState::default();
        tandem_control::apply(&mut state, &ControlCommand::Configure { data_nodes: [A, B].into() });
        state
    }

    fn active(node: NodeId) -> ControlState {
        let mut state = configured();
        tandem_control::apply(&mut state, &ControlCommand::Promote { node, expected_epoch: 0, force: false });
        state
    }

    #[test]
    fn only_the_initial_active_proposes_the_first_promotion() {
        let state = configured();
        let promote = ControlCommand::Promote { node: A, expected_epoch: 0, force: false };
        assert_eq!(proposal(&state, AS_A, None, false), Some(promote));
        assert_eq!(proposal(&state, AS_B, None, false), None);
        assert_eq!(proposal(&ControlState::default(), AS_A, None, false), None, "not before Configure");
    }

    #[test]
    fn an_in_sync_standby_promotes_itself_only_when_the_active_is_dead() {
        let state = active(A);
        assert_eq!(proposal(&state, AS_B, Some(Verdict::Alive), false), None);
        assert_eq!(proposal(&state, AS_B, Some(Verdict::Suspect), false), None);
        assert_eq!(proposal(&state, AS_B, None, false), None);
        let promote = ControlCommand::Promote { node: B, expected_epoch: 1, force: false };
        assert_eq!(proposal(&state, AS_B, Some(Verdict::Dead), false), Some(promote));
        let mut lagging = state.clone();
        tandem_control::apply(&mut lagging, &ControlCommand::MarkOutOfSync { node: B, epoch: 1 });
        assert_eq!(proposal(&lagging, AS_B, Some(Verdict::Dead), false), None, "an out-of-sync node is never promoted");
    }

    #[test]
    fn a_cold_standby_takes_over_a_dead_active_in_sync_or_not() {
        let cold = Members { cold: true, ..AS_B };
        let mut state = active(A);
        tandem_control::apply(&mut state, &ControlCommand::MarkOutOfSync { node: B, epoch: 1 });
        assert_eq!(proposal(&state, cold, Some(Verdict::Alive), false), None, "never over a live active");
        assert_eq!(proposal(&state, cold, Some(Verdict::Suspect), false), None);
        let forced = ControlCommand::Promote { node: B, expected_epoch: 1, force: true };
        assert_eq!(proposal(&state, cold, Some(Verdict::Dead), false), Some(forced));
        assert_eq!(proposal(&state, AS_B, Some(Verdict::Dead), false), None, "a hot standby out of sync never does");
    }

    #[test]
    fn the_active_marks_a_dead_standby_out_of_sync_once() {
        let state = active(A);
        assert_eq!(proposal(&state, AS_A, Some(Verdict::Alive), false), None);
        assert_eq!(proposal(&state, AS_A, None, false), None);
        let mark = ControlCommand::MarkOutOfSync { node: B, epoch: 1 };
        assert_eq!(proposal(&state, AS_A, Some(Verdict::Dead), false), Some(mark.clone()));
        let mut marked = state.clone();
        tandem_control::apply(&mut marked, &mark);
        assert_eq!(proposal(&marked, AS_A, Some(Verdict::Dead), false), None);
    }

    #[test]
    fn the_active_marks_a_standby_in_sync_again_only_once_it_caught_up_alive() {
        let mut state = active(A);
        tandem_control::apply(&mut state, &ControlCommand::MarkOutOfSync { node: B, epoch: 1 });
        assert_eq!(proposal(&state, AS_A, Some(Verdict::Alive), false), None, "not before it caught up");
        assert_eq!(proposal(&state, AS_A, Some(Verdict::Suspect), true), None, "not while it is suspect");
        let mark = ControlCommand::MarkInSync { node: B, epoch: 1 };
        assert_eq!(proposal(&state, AS_A, Some(Verdict::Alive), true), Some(mark.clone()));
        assert_eq!(proposal(&state, AS_B, Some(Verdict::Alive), true), None, "only the active marks");
        tandem_control::apply(&mut state, &mark);
        assert_eq!(proposal(&state, AS_A, Some(Verdict::Alive), true), None, "once");
    }

    #[test]
    fn roles_follow_the_state_and_the_witness_has_none() {
        let state = active(B);
        assert_eq!(role_in(&state, B, false, true), Role::Active);
        assert_eq!(role_in(&state, B, true, false), Role::Active, "an active stays active between leaders");
        assert_eq!(role_in(&state, B, false, false), Role::Standby, "a state not confirmed by a leader is not enough");
        assert_eq!(role_in(&state, A, true, true), Role::Standby);
        assert_eq!(role_in(&configured(), A, false, true), Role::Standby);
    }

    #[test]
    fn a_leading_standby_stands_aside_only_for_a_live_active() {
        let state = active(A);
        assert!(should_stand_aside(&state, B, true, Some(Verdict::Alive)));
        assert!(!should_stand_aside(&state, B, false, Some(Verdict::Alive)));
        assert!(!should_stand_aside(&state, B, true, Some(Verdict::Dead)));
        assert!(!should_stand_aside(&state, A, true, Some(Verdict::Alive)));
        assert!(!should_stand_aside(&configured(), B, true, Some(Verdict::Alive)));
    }
}
