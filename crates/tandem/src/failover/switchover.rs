//! Operator-driven role changes (DESIGN.md "Planned switchover", "Failback", invariant 3):
//!
//! * [`switchover`] — on the active: refuse new writes, wait until the standby acknowledged
//!   every record, commit `Switchover { from, to, expected_epoch }`; the new active takes
//!   the epoch and the address. No acknowledged write can be lost: the standby holds the
//!   whole log before the epoch moves. On a refusal or a timeout, writes resume.
//!   A request that reaches the standby is forwarded to the active's admin address.
//! * [`promote`] — a forced promotion of this node, refused unless the operator gave both
//!   `force` and `accept_data_loss` (the node may lack acknowledged writes).
//! * [`run_preempt`] — with `[cluster] preempt = true`, the active hands the role to the
//!   data node of higher `priority` once it has stayed in sync for `preempt_delay_ms`;
//!   the decision is the pure [`preempt_target`] plus [`Stability`].
//!
//! Invariants:
//! * writes are held only while this node is the active (`Replication::hold_writes` is
//!   serialized with role changes), and resumed only if the epoch did not move;
//! * the switchover is proposed only once the standby acknowledged the log's last index,
//!   which no longer grows (the database checks `writable` under its lock);
//! * a resumed active still accepts writes only under its control-plane lease, so a
//!   switchover whose commit is unknown cannot leave two writers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tandem_control::{ControlCommand, ControlError, ControlNode, ControlResponse, ControlState, NodeId};

use crate::admin::client;
use crate::admin::status::{NodeStatus, OperationReply};
use crate::config::{ClusterConfig, MemberRole};
use crate::failover::detector::Verdict;
use crate::repl::Role;
use crate::server::Shared;

/// The body of `POST /switchover`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverRequest {
    /// The data node to hand the role to (default: the other data node).
    #[serde(default)]
    pub to: Option<u32>,
    /// Set when a standby forwarded the request to the active: never forwarded again.
    #[serde(default)]
    pub forwarded: bool,
}

/// The body of `POST /promote`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Promote even if this node is not in sync.
    #[serde(default)]
    pub force: bool,
    /// The operator accepts that acknowledged writes this node lacks are lost.
    #[serde(default)]
    pub accept_data_loss: bool,
}

/// An operation's HTTP status and answer.
pub type Answer = (u16, OperationReply);

/// HTTP statuses the operations answer with.
const OK: u16 = 200;
const BAD_REQUEST: u16 = 400;
const CONFLICT: u16 = 409;
const UNAVAILABLE: u16 = 503;

/// One switchover or promotion at a time on this node.
static OPERATION_RUNNING: AtomicBool = AtomicBool::new(false);

struct OperationGuard;

impl OperationGuard {
    fn begin() -> Option<OperationGuard> {
        (!OPERATION_RUNNING.swap(true, Ordering::AcqRel)).then_some(OperationGuard)
    }
}

impl Drop for OperationGuard {
    fn drop(&mut self) {
        OPERATION_RUNNING.store(false, Ordering::Release);
    }
}

fn answer(status: u16, state: &ControlState, message: impl Into<String>) -> Answer {
    let reply = OperationReply {
        ok: status == OK,
        epoch: state.epoch,
        message: message.into(),
        write_pause_ms: None,
        active: state.active,
    };
    (status, reply)
}

/// The cluster and the control-plane member, or the answer saying they are missing.
fn cluster_and_control(shared: &Shared) -> Result<(&ClusterConfig, Arc<ControlNode>), Answer> {
    let empty = ControlState::default();
    match (shared.replication.cluster.as_ref(), shared.replication.control()) {
        (Some(cluster), Some(control)) => Ok((cluster, control.clone())),
        _ => Err(answer(
            CONFLICT,
            &empty,
            "this node runs without a control plane (no `control` addresses in [cluster]); roles are static",
        )),
    }
}

/// Runs a planned switchover to `request.to` (default: the other data node); see the module
/// comment. On the standby, forwards the request to the active.
pub async fn switchover(shared: &Arc<Shared>, request: SwitchoverRequest) -> Answer {
    let (cluster, control) = match cluster_and_control(shared) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let me = cluster.node_id;
    let peer = cluster.peer_data_member();
    let state = control.state();
    // By default, the data node that is not the active (this one, if it is the standby).
    let to = request.to.unwrap_or(if state.active == Some(NodeId::from(me)) { peer.id } else { me });
    if cluster.member(to).is_none_or(|member| member.role != MemberRole::Data) {
        return answer(BAD_REQUEST, &state, format!("node {to} is not a data member of this cluster"));
    }
    match state.active {
        None => return answer(CONFLICT, &state, "no node is active yet; the control plane has not elected one"),
        Some(active) if active == NodeId::from(to) => {
            return answer(
                OK,
                &state,
                format!("node {to} is already the active (epoch {}); nothing to do", state.epoch),
            )
        }
        Some(active) if active != NodeId::from(me) => {
            if request.forwarded {
                return answer(CONFLICT, &state, format!("node {me} is not the active; node {active} is"));
            }
            return forward_to_active(cluster, &state, active, to).await;
        }
        Some(_) => {}
    }
    let Some(_running) = OperationGuard::begin() else {
        return answer(CONFLICT, &state, "another switchover or promotion is running on this node");
    };
    if let Err(reason) = standby_ready(shared, &state, to) {
        return answer(CONFLICT, &state, format!("switchover to node {to} refused: {reason}"));
    }
    hand_over(shared, &control, cluster, state, to).await
}

/// Why the standby `to` cannot take over now, if it cannot.
fn standby_ready(shared: &Shared, state: &ControlState, to: u32) -> Result<(), String> {
    if !state.in_sync.contains(&NodeId::from(to)) {
        return Err(format!(
            "node {to} is not in sync (the control plane records it as lacking acknowledged writes); \
             wait until it has caught up, or use `tandem promote --force --accept-data-loss` if the active is lost"
        ));
    }
    let replication = &shared.replication;
    let verdict = replication.peer_verdict();
    if verdict != Some(Verdict::Alive) || !replication.standby_connected() {
        let state = verdict.map_or("unknown", |verdict| verdict.as_str());
        return Err(format!(
            "node {to} is not connected to this active (peer state: {state}); a switchover needs a live standby"
        ));
    }
    Ok(())
}

/// The switchover proper, on the active, with the standby found ready: hold writes, drain,
/// commit the switchover, report when the new active accepts writes.
///
/// The new active writes as soon as it applied the switchover and this node granted it a
/// lease (`tandem_control::grant`): it need not lead the control group first. The
/// leadership follows on its own (this node stands aside for the live active, which
/// campaigns), so the write pause is the drain, one commit and one grant round trip, not an
/// election (openraft 0.9 has no leadership transfer).
async fn hand_over(
    shared: &Arc<Shared>,
    control: &ControlNode,
    cluster: &ClusterConfig,
    state: ControlState,
    to: u32,
) -> Answer {
    let me = cluster.node_id;
    let refused_at = Instant::now();
    let deadline = refused_at + Duration::from_millis(cluster.switchover_timeout_ms);
    if !shared.replication.hold_writes(&shared.db, true) {
        return answer(CONFLICT, &state, format!("node {me} stopped being the active; nothing was changed"));
    }
    tracing::info!(
        to,
        last_index = shared.db.last_index().0,
        "switchover: new writes refused; draining to the standby"
    );
    if tokio::time::timeout_at(deadline.into(), drained(shared)).await.is_err() {
        let reason = format!(
            "node {to} did not acknowledge every record within switchover_timeout_ms = {} (acknowledged {} of {})",
            cluster.switchover_timeout_ms,
            shared.replication.replicated_index().0,
            shared.db.last_index().0
        );
        return resume(shared, control, &state, reason);
    }
    let drained_ms = refused_at.elapsed().as_millis() as u64;
    // The standby acknowledged everything just now; check it is still there before it
    // becomes the active (it may have died with its last acknowledgement).
    if let Err(reason) = standby_ready(shared, &state, to) {
        return resume(shared, control, &state, format!("switchover to node {to} refused: {reason}"));
    }
    // Once committed, `to` is the active: it writes under this node's grant, campaigns for
    // the leadership, and this node stands aside for it.
    let command =
        ControlCommand::Switchover { from: NodeId::from(me), to: NodeId::from(to), expected_epoch: state.epoch };
    let proposed = commit_switchover(control, command, deadline).await;
    let epoch = match proposed {
        Ok(ControlResponse::Applied { epoch }) => epoch,
        Ok(ControlResponse::Refused(refusal)) => {
            return resume(shared, control, &state, format!("the control plane refused the switchover: {refusal}"))
        }
        Ok(ControlResponse::NoCommand) => {
            return resume(shared, control, &state, "the control plane applied no command".into())
        }
        Err(error) => {
            let reason = format!("the switchover was not committed: {error}");
            let (_, mut reply) = resume(shared, control, &state, reason);
            reply
                .message
                .push_str(" (this node no longer leads the control group, so its lease keeps it from writing)");
            return (UNAVAILABLE, reply);
        }
    };
    let committed_ms = refused_at.elapsed().as_millis() as u64;
    tracing::info!(to, epoch, drained_ms, committed_ms, "switchover: committed");
    let accepted_at = match cluster.member(to).and_then(|member| member.admin) {
        Some(address) => wait_accepting(address, epoch, deadline).await,
        None => None,
    };
    let pause_ms = accepted_at.map(|at| (at - refused_at).as_millis() as u64);
    let steps = format!("standby caught up after {drained_ms} ms, committed after {committed_ms} ms");
    let message = match pause_ms {
        Some(pause_ms) => {
            format!("switched over from node {me} to node {to} in epoch {epoch}: writes paused {pause_ms} ms ({steps})")
        }
        None => format!(
            "switched over from node {me} to node {to} in epoch {epoch} ({steps}); node {to} did not confirm it \
             accepts writes within switchover_timeout_ms"
        ),
    };
    tracing::info!(to, epoch, write_pause_ms = ?pause_ms, "switchover: done");
    let reply = OperationReply { ok: true, epoch, message, write_pause_ms: pause_ms, active: control.state().active };
    (OK, reply)
}

/// Proposes the switchover until it is committed, refused or `deadline` passes. This node
/// may be the active without leading the control group (a lease grant, `tandem_control::grant`),
/// e.g. right after the previous switchover, while the leadership moves: a bounce for want of
/// a leader is retried. An unknown outcome is settled by the applied state: the switchover's
/// `expected_epoch` makes a second commit impossible, so a retry is refused if the first landed.
async fn commit_switchover(
    control: &ControlNode,
    command: ControlCommand,
    deadline: Instant,
) -> Result<ControlResponse, ControlError> {
    let ControlCommand::Switchover { to, expected_epoch, .. } = command else {
        unreachable!("commit_switchover is given a switchover");
    };
    loop {
        let outcome = control.propose(command.clone()).await;
        let state = control.state();
        if state.epoch == expected_epoch + 1 && state.active == Some(to) {
            return Ok(ControlResponse::Applied { epoch: state.epoch });
        }
        match outcome {
            Err(ControlError::NotLeader { .. } | ControlError::Unavailable(_)) if Instant::now() < deadline => {
                tracing::debug!(?outcome, "switchover: no leader to commit it yet; retrying");
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Pause between attempts to commit a switchover while the control group has no leader.
const RETRY_MS: u64 = 10;

/// Resolves once the standby acknowledged every record of the log (which no longer grows).
async fn drained(shared: &Shared) {
    loop {
        let last = shared.db.last_index();
        shared.replication.wait_replicated(last).await;
        if shared.db.last_index() == last {
            return;
        }
    }
}

/// Accepts writes again after a failed switchover — only if the epoch did not move, which
/// `hold_writes` checks under the role-change lock (a demotion meanwhile keeps them off).
fn resume(shared: &Shared, control: &ControlNode, before: &ControlState, reason: String) -> Answer {
    let now = control.state();
    let resumed = now.epoch == before.epoch && shared.replication.hold_writes(&shared.db, false);
    tracing::warn!(%reason, resumed, "switchover: not done");
    let suffix = if resumed { "; writes resumed on this node" } else { "; this node is no longer the active" };
    answer(CONFLICT, &now, format!("{reason}{suffix}"))
}

/// Polls the new active's `/status` until it accepts writes in `epoch` (or later); the
/// instant it was first seen doing so, or `None` at `deadline`.
async fn wait_accepting(address: SocketAddr, epoch: u64, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        let response = client::request_async(address, "GET", "/status", None, Duration::from_millis(500)).await;
        if let Ok(response) = response {
            let accepting = serde_json::from_str::<NodeStatus>(&response.body)
                .is_ok_and(|status| status.accepting_writes && status.epoch >= epoch);
            if accepting {
                return Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// A switchover that reached a standby: asks the active's admin endpoint to run it.
async fn forward_to_active(cluster: &ClusterConfig, state: &ControlState, active: NodeId, to: u32) -> Answer {
    let Some(address) = u32::try_from(active).ok().and_then(|id| cluster.member(id)).and_then(|member| member.admin)
    else {
        return answer(
            CONFLICT,
            state,
            format!(
                "node {} is not the active; node {active} is, and it has no admin address to forward to",
                cluster.node_id
            ),
        );
    };
    let body = serde_json::json!({ "to": to, "forwarded": true }).to_string();
    let wait = Duration::from_millis(cluster.switchover_timeout_ms + 5_000);
    match client::request_async(address, "POST", "/switchover", Some(body), wait).await {
        Ok(response) => match serde_json::from_str::<OperationReply>(&response.body) {
            Ok(reply) => (response.status, reply),
            Err(error) => answer(UNAVAILABLE, state, format!("the active (node {active}) answered badly: {error}")),
        },
        Err(error) => {
            answer(UNAVAILABLE, state, format!("cannot reach the active (node {active}) at {address}: {error}"))
        }
    }
}

/// Forces the promotion of this node; see the module comment.
pub async fn promote(shared: &Arc<Shared>, request: PromoteRequest) -> Answer {
    let (cluster, control) = match cluster_and_control(shared) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let me = NodeId::from(cluster.node_id);
    let state = control.state();
    if state.active == Some(me) {
        return answer(OK, &state, format!("node {me} is already the active (epoch {}); nothing to do", state.epoch));
    }
    let in_sync = state.in_sync.contains(&me);
    let lacking = shared.replication.active_last_index().saturating_sub(shared.db.last_index().0);
    if !(request.force && request.accept_data_loss) {
        let reason = if in_sync {
            "it is in sync, so the control plane promotes it by itself if the active fails; to move the role \
             from a live active use `tandem switchover`"
                .to_string()
        } else {
            format!(
                "it is not in sync: it may lack acknowledged writes (at least {lacking} records behind the active's \
                 last known index), which a promotion would lose for good"
            )
        };
        return answer(
            CONFLICT,
            &state,
            format!("refusing to promote node {me} without --force --accept-data-loss: {reason}"),
        );
    }
    if state.active.is_some() && shared.replication.peer_verdict() == Some(Verdict::Alive) {
        return answer(
            CONFLICT,
            &state,
            format!(
                "the active (node {}) is alive: use `tandem switchover` (no loss), or stop it before forcing",
                state.active.unwrap_or_default()
            ),
        );
    }
    let Some(_running) = OperationGuard::begin() else {
        return answer(CONFLICT, &state, "another switchover or promotion is running on this node");
    };
    tracing::warn!(
        node = me,
        in_sync,
        lacking_records_at_least = lacking,
        last_index = shared.db.last_index().0,
        "forced promotion: acknowledged writes this node lacks are lost"
    );
    let command = ControlCommand::Promote { node: me, expected_epoch: state.epoch, force: true };
    match control.propose(command).await {
        Ok(ControlResponse::Applied { epoch }) => {
            let accepting = wait_local_accepting(shared, Duration::from_millis(cluster.switchover_timeout_ms)).await;
            let message = format!(
                "node {me} promoted by force in epoch {epoch}{}; writes it lacked (at least {lacking} records) are lost{}",
                if in_sync { " (it was in sync)" } else { " (it was NOT in sync)" },
                if accepting { "" } else { "; it does not accept writes yet (no control-plane lease)" }
            );
            let reply = OperationReply { ok: true, epoch, message, write_pause_ms: None, active: Some(me) };
            (OK, reply)
        }
        Ok(ControlResponse::Refused(refusal)) => {
            answer(CONFLICT, &control.state(), format!("the control plane refused the promotion: {refusal}"))
        }
        Ok(ControlResponse::NoCommand) => answer(CONFLICT, &control.state(), "the control plane applied no command"),
        Err(error) => answer(
            UNAVAILABLE,
            &control.state(),
            format!("the promotion was not committed: {error} (a majority of the control group must be up)"),
        ),
    }
}

/// Waits until this node accepts writes (role applied and lease held), up to `within`.
async fn wait_local_accepting(shared: &Shared, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let replication = &shared.replication;
        if replication.role() == Role::Active && shared.db.is_writable() && !replication.lease_lost() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// What the preemption decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct PreemptView<'a> {
    /// `[cluster] preempt`.
    pub preempt: bool,
    /// This node and its priority.
    pub me: (NodeId, u8),
    /// The other data node and its priority.
    pub peer: (NodeId, u8),
    /// The applied control state.
    pub state: &'a ControlState,
    /// The peer is alive and its replication session with this active is up.
    pub peer_connected: bool,
}

/// The node this active should hand the role to now, if preemption applies: `preempt` is
/// on, this node is the active, the peer is preferred (higher priority), recorded in sync,
/// and connected. Pure; [`Stability`] adds the "for a while" part.
pub fn preempt_target(view: PreemptView<'_>) -> Option<NodeId> {
    let PreemptView { preempt, me, peer, state, peer_connected } = view;
    let eligible =
        preempt && state.active == Some(me.0) && peer.1 > me.1 && state.in_sync.contains(&peer.0) && peer_connected;
    eligible.then_some(peer.0)
}

/// Turns "eligible now" into "eligible continuously for `delay_ms`", so that a peer that
/// flaps in and out of sync never takes the role. Pure: `now_ms` is passed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stability {
    since_ms: Option<u64>,
}

impl Stability {
    /// Records whether the condition holds at `now_ms`; true once it has held since at
    /// least `delay_ms` ago without interruption.
    pub fn observe(&mut self, holds: bool, now_ms: u64, delay_ms: u64) -> bool {
        if !holds {
            self.since_ms = None;
            return false;
        }
        let since = *self.since_ms.get_or_insert(now_ms);
        now_ms.saturating_sub(since) >= delay_ms
    }

    /// Starts the wait over (after an attempt, successful or not).
    pub fn restart(&mut self) {
        self.since_ms = None;
    }
}

/// With `[cluster] preempt = true`: hands the role to the preferred data node once it has
/// been in sync for `preempt_delay_ms`, as a planned switchover. Runs until shutdown.
pub async fn run_preempt(shared: Arc<Shared>) {
    let Some(cluster) = shared.replication.cluster.as_ref() else { return };
    if !cluster.preempt {
        return;
    }
    let me = cluster.this_member();
    let peer = cluster.peer_data_member();
    let mut stability = Stability::default();
    let mut ticker = tokio::time::interval(Duration::from_millis(cluster.heartbeat_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = shared.shutdown.subscribe();
    let clock = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let Some(control) = shared.replication.control() else { continue };
        let state = control.state();
        let replication = &shared.replication;
        let view = PreemptView {
            preempt: cluster.preempt,
            me: (NodeId::from(me.id), me.priority),
            peer: (NodeId::from(peer.id), peer.priority),
            state: &state,
            peer_connected: replication.peer_verdict() == Some(Verdict::Alive) && replication.standby_connected(),
        };
        let target = preempt_target(view);
        let now_ms = clock.elapsed().as_millis() as u64;
        if !stability.observe(target.is_some(), now_ms, cluster.preempt_delay_ms) {
            continue;
        }
        stability.restart();
        tracing::info!(to = peer.id, priority = peer.priority, "preempt: handing the role to the preferred node");
        let request = SwitchoverRequest { to: Some(peer.id), forwarded: true };
        let (status, reply) = switchover(&shared, request).await;
        if status == OK {
            tracing::info!(message = %reply.message, "preempt: switchover done");
        } else {
            tracing::warn!(message = %reply.message, "preempt: switchover not done; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = 1;
    const B: NodeId = 2;

    fn active(node: NodeId) -> ControlState {
        let mut state = ControlState::default();
        tandem_control::apply(&mut state, &ControlCommand::Configure { data_nodes: [A, B].into() });
        tandem_control::apply(&mut state, &ControlCommand::Promote { node, expected_epoch: 0, force: false });
        state
    }

    fn view(state: &ControlState, preempt: bool, priorities: (u8, u8), connected: bool) -> PreemptView<'_> {
        PreemptView { preempt, me: (A, priorities.0), peer: (B, priorities.1), state, peer_connected: connected }
    }

    #[test]
    fn the_active_hands_over_only_to_a_preferred_connected_in_sync_peer() {
        let state = active(A);
        assert_eq!(preempt_target(view(&state, true, (100, 200), true)), Some(B));
        assert_eq!(preempt_target(view(&state, false, (100, 200), true)), None, "preempt is off by default");
        assert_eq!(preempt_target(view(&state, true, (200, 100), true)), None, "this node is preferred");
        assert_eq!(preempt_target(view(&state, true, (100, 200), false)), None, "the peer is not connected");
        let mut lagging = state.clone();
        tandem_control::apply(&mut lagging, &ControlCommand::MarkOutOfSync { node: B, epoch: 1 });
        assert_eq!(preempt_target(view(&lagging, true, (100, 200), true)), None, "the peer is not in sync");
    }

    #[test]
    fn a_standby_never_preempts() {
        let state = active(B);
        assert_eq!(preempt_target(view(&state, true, (100, 200), true)), None);
        assert_eq!(preempt_target(view(&state, true, (200, 100), true)), None);
    }

    #[test]
    fn stability_needs_the_condition_to_hold_without_interruption() {
        let mut stability = Stability::default();
        assert!(!stability.observe(true, 1_000, 500));
        assert!(!stability.observe(true, 1_400, 500));
        assert!(!stability.observe(false, 1_450, 500), "a flap starts the wait over");
        assert!(!stability.observe(true, 1_500, 500));
        assert!(!stability.observe(true, 1_999, 500));
        assert!(stability.observe(true, 2_000, 500));
        stability.restart();
        assert!(!stability.observe(true, 2_100, 500));
        assert!(Stability::default().observe(true, 7, 0), "no delay: at once");
    }
}
