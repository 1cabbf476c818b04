//! Lease grants: the other data node's promise that lets the active write without leading
//! the control group.
//!
//! Why: the active's own lease is the Raft leader's lease (`lease.rs`), and openraft 0.9 has
//! no leadership transfer. After a switchover the new active would wait for the old leader's
//! follower-side lease to run out and an election before it could write (about
//! `election_timeout_max`). A grant closes that gap.
//!
//! The argument. Only a data node becomes active, and a node other than the active becomes
//! active only by a `Promote` or `Switchover` that names it, which only that node (or the
//! active itself) proposes. With two data nodes, the only node that could replace the
//! active `A` is the other data node `B`. So if `B` promises not to propose a change of the
//! active before an instant `T`, nothing can replace `A` before `T`, whoever leads the group:
//! * `A` asks at `sent_at` (its clock); `B` answers only while its applied state names `A`
//!   active in the same epoch, and records `received_at + lease + drift_margin` (its clock,
//!   `received_at` after `sent_at`) as the earliest instant it may propose such a change;
//! * `A` treats the grant as valid until `sent_at + lease`, earlier than `B`'s bound by at
//!   least the drift margin;
//! * before `B` proposes a change of the active it *seals* (refuses new grants), then waits
//!   out every grant it issued; a member that restarts acts as if it had granted just before
//!   it stopped (it cannot know), so it waits one lease after starting too.
//!
//! The grant is the majority behind the active's lease in another form: `A` plus `B` are two
//! of the three members (DESIGN.md invariant 2). The witness never grants: it cannot promise
//! anything on `B`'s behalf.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::network::client::ask_grant;
use crate::network::wire::ClusterAuth;
use crate::node::{ControlConfig, MemberRole};
use crate::state::{ControlCommand, ControlState, Epoch, NodeId};

/// Both sides of grants on one member.
pub struct Grants {
    me: NodeId,
    lease: Duration,
    drift_margin: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Issuing side: no change of the active may be proposed before this instant.
    issued_until: Instant,
    /// Issuing side: proposals changing the active under way; no grant while above zero.
    sealed: u32,
    /// Holding side: the newest grant received, for which epoch, valid until when.
    held: Option<(Epoch, Instant)>,
}

impl Grants {
    /// Grants of `lease` with `drift_margin` on `me`, started at `now` (as if it had granted
    /// just before: see the module comment).
    pub fn new(me: NodeId, lease: Duration, drift_margin: Duration, now: Instant) -> Grants {
        let inner = Inner { issued_until: now + lease + drift_margin, sealed: 0, held: None };
        Grants { me, lease, drift_margin, inner: Mutex::new(inner) }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("grants mutex poisoned")
    }

    /// Issuing side: answers `from`'s request for a grant in `epoch`, received at
    /// `received_at`, by this member's applied `state`. `Ok` carries the granted lease.
    pub fn decide(
        &self,
        from: NodeId,
        epoch: Epoch,
        state: &ControlState,
        received_at: Instant,
    ) -> Result<Duration, String> {
        if !state.data_nodes.contains(&self.me) {
            return Err(format!("member {} is not a data node; only the other data node grants", self.me));
        }
        if from == self.me {
            return Err("a member does not grant itself".into());
        }
        if state.active != Some(from) || state.epoch != epoch {
            return Err(format!(
                "member {} sees {:?} active in epoch {}, not {from} in epoch {epoch}",
                self.me, state.active, state.epoch
            ));
        }
        let mut inner = self.inner();
        if inner.sealed > 0 {
            return Err(format!("member {} is proposing a change of the active", self.me));
        }
        inner.issued_until = inner.issued_until.max(received_at + self.lease + self.drift_margin);
        Ok(self.lease)
    }

    /// Issuing side: stops granting until the returned seal is dropped; the caller must not
    /// propose before [`Seal::clear_at`].
    pub fn seal(&self) -> Seal<'_> {
        let mut inner = self.inner();
        inner.sealed += 1;
        Seal { grants: self, clear_at: inner.issued_until }
    }

    /// Holding side: records a grant for `epoch` asked for at `sent_at`, of `granted`
    /// (never longer than this member's own lease).
    pub fn record_held(&self, epoch: Epoch, sent_at: Instant, granted: Duration) {
        let valid_until = sent_at + granted.min(self.lease);
        let mut inner = self.inner();
        let newer = inner.held.is_none_or(|(held_epoch, until)| (epoch, valid_until) > (held_epoch, until));
        if newer {
            inner.held = Some((epoch, valid_until));
        }
    }

    /// Holding side: until when this member may act as the active under a grant, by its
    /// applied `state`; `None` if it is not the active or holds no grant for the epoch.
    pub fn held_until(&self, state: &ControlState, now: Instant) -> Option<Instant> {
        if state.active != Some(self.me) {
            return None;
        }
        let (epoch, until) = self.inner().held?;
        (epoch == state.epoch && until > now).then_some(until)
    }
}

/// Grants refused while this lives (a change of the active is being proposed).
pub struct Seal<'a> {
    grants: &'a Grants,
    /// Every grant issued before sealing has lapsed by then.
    pub clear_at: Instant,
}

impl Drop for Seal<'_> {
    fn drop(&mut self) {
        self.grants.inner().sealed -= 1;
    }
}

/// Whether `command` would make another node than the one `state` names active (so the
/// proposer must first wait out its grants).
pub fn changes_active(command: &ControlCommand, state: &ControlState) -> bool {
    match command {
        ControlCommand::Promote { node, .. } => state.active != Some(*node),
        ControlCommand::Switchover { to, .. } => state.active != Some(*to),
        _ => false,
    }
}

/// As the active, keeps a lease grant from the other data member (module comment): asks as soon
/// as this member becomes active in an epoch, then every heartbeat, until shutdown.
pub(crate) async fn keep_grants(
    config: ControlConfig,
    auth: Arc<ClusterAuth>,
    grants: Arc<Grants>,
    mut state: watch::Receiver<ControlState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = config.node_id;
    let grantors: Vec<(NodeId, String)> = config
        .members
        .iter()
        .filter(|(id, member)| **id != me && member.role == MemberRole::Data)
        .map(|(id, member)| (*id, member.address.to_string()))
        .collect();
    let mut streams: Vec<Option<tokio::net::TcpStream>> = grantors.iter().map(|_| None).collect();
    let timeout = Duration::from_millis(config.lease_ms);
    let heartbeat = Duration::from_millis(config.heartbeat_ms);
    let mut refused_before: Option<String> = None;
    loop {
        let current = state.borrow_and_update().clone();
        if current.active == Some(me) {
            for ((grantor, address), stream) in grantors.iter().zip(streams.iter_mut()) {
                let sent_at = Instant::now();
                match ask_grant(stream, address, &auth, me, current.epoch, timeout).await {
                    Ok(granted) => {
                        grants.record_held(current.epoch, sent_at, granted);
                        refused_before = None;
                    }
                    Err(reason) => {
                        // Logged once per reason: a dead peer refuses every heartbeat.
                        if refused_before.as_ref() != Some(&reason) {
                            tracing::debug!(grantor, %reason, "control plane: no lease grant");
                            refused_before = Some(reason);
                        }
                    }
                }
            }
        }
        tokio::select! {
            changed = state.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(heartbeat) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::apply;

    const A: NodeId = 1;
    const B: NodeId = 2;
    const WITNESS: NodeId = 3;
    const LEASE: Duration = Duration::from_millis(100);
    const MARGIN: Duration = Duration::from_millis(25);

    fn active(node: NodeId) -> ControlState {
        let mut state = ControlState::default();
        apply(&mut state, &ControlCommand::Configure { data_nodes: [A, B].into() });
        apply(&mut state, &ControlCommand::Promote { node, expected_epoch: 0, force: false });
        state
    }

    #[test]
    fn only_the_other_data_node_grants_the_active_of_the_current_epoch() {
        let now = Instant::now();
        let state = active(A);
        let b = Grants::new(B, LEASE, MARGIN, now);
        assert_eq!(b.decide(A, 1, &state, now), Ok(LEASE));
        assert!(b.decide(A, 2, &state, now).is_err(), "another epoch");
        assert!(b.decide(WITNESS, 1, &state, now).is_err(), "not the active");
        assert!(b.decide(B, 1, &active(B), now).is_err(), "not itself");
        let witness = Grants::new(WITNESS, LEASE, MARGIN, now);
        assert!(witness.decide(A, 1, &state, now).is_err(), "the witness never grants");
    }

    #[test]
    fn a_seal_refuses_grants_and_waits_out_every_issued_one() {
        let start = Instant::now();
        let b = Grants::new(B, LEASE, MARGIN, start);
        assert_eq!(b.seal().clear_at, start + LEASE + MARGIN, "a fresh member waits one lease");
        let later = start + Duration::from_secs(5);
        b.decide(A, 1, &active(A), later).unwrap();
        {
            let seal = b.seal();
            assert_eq!(seal.clear_at, later + LEASE + MARGIN);
            assert!(b.decide(A, 1, &active(A), later).is_err(), "no grant while sealed");
        }
        assert!(b.decide(A, 1, &active(A), later).is_ok(), "granting again once the proposal is over");
    }

    #[test]
    fn a_held_grant_counts_from_the_request_only_for_its_epoch_and_while_active() {
        let sent_at = Instant::now();
        let a = Grants::new(A, LEASE, MARGIN, sent_at);
        let state = active(A);
        assert_eq!(a.held_until(&state, sent_at), None);
        a.record_held(1, sent_at, Duration::from_secs(10));
        assert_eq!(a.held_until(&state, sent_at), Some(sent_at + LEASE), "never longer than its own lease");
        assert_eq!(a.held_until(&state, sent_at + LEASE), None, "lapsed");
        assert_eq!(a.held_until(&active(B), sent_at), None, "not the active");
        let mut next_epoch = state.clone();
        apply(&mut next_epoch, &ControlCommand::Promote { node: A, expected_epoch: 1, force: false });
        assert_eq!(a.held_until(&next_epoch, sent_at), None, "granted for another epoch");
        a.record_held(1, sent_at - Duration::from_millis(10), LEASE);
        assert_eq!(a.held_until(&state, sent_at), Some(sent_at + LEASE), "an older grant never shortens it");
    }

    #[test]
    fn only_commands_naming_another_active_need_the_grants_waited_out() {
        let state = active(A);
        assert!(changes_active(&ControlCommand::Promote { node: B, expected_epoch: 1, force: false }, &state));
        assert!(changes_active(&ControlCommand::Switchover { from: A, to: B, expected_epoch: 1 }, &state));
        assert!(!changes_active(&ControlCommand::Promote { node: A, expected_epoch: 1, force: false }, &state));
        assert!(!changes_active(&ControlCommand::MarkOutOfSync { node: B, epoch: 1 }, &state));
    }
}
