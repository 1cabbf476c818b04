//! The witness's one exception to "never campaigns": unsticking a group whose only live data
//! node cannot be elected.
//!
//! A data node that was down while the others committed entries (e.g. the active recording
//! it out of sync) comes back with a shorter control log than the witness's. If the active is
//! gone meanwhile, no leader can exist: the witness refuses the data node its vote (its log
//! is behind) and the witness itself does not campaign. Nothing could be committed, not even
//! the operator's forced promotion.
//!
//! So the witness watches for exactly that: a candidate whose log is behind its own, while no
//! leader has sent it anything for a while ([`Stuck`], pure, `now` passed in). Then it
//! campaigns once; as the leader it brings the data node's log up to date and, as soon as a
//! data node holds the whole log, stands aside (no heartbeats) so that the data node is
//! elected in its place. The witness never becomes *active*: `apply` refuses that whoever
//! leads. If no one takes over within a bound, it leads again, so the group is never left
//! without a leader by the witness's own standing aside.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::node::{ControlConfig, MemberRole};
use crate::state::NodeId;
use crate::types::ControlRaft;

/// What the witness's server saw of leaders and candidates.
#[derive(Default)]
pub struct Heard {
    inner: Mutex<HeardInner>,
}

#[derive(Default, Clone, Copy)]
struct HeardInner {
    /// The last AppendEntries (any leader's).
    leader_at: Option<Instant>,
    /// The last vote request from a candidate whose log is behind this member's.
    behind_candidate_at: Option<Instant>,
}

impl Heard {
    /// Records an AppendEntries received at `now`.
    pub fn leader(&self, now: Instant) {
        self.inner.lock().expect("heard mutex poisoned").leader_at = Some(now);
    }

    /// Records a vote request received at `now` from a candidate whose last log index is
    /// `candidate_last` while this member's is `own_last`.
    pub fn candidate(&self, now: Instant, candidate_last: Option<u64>, own_last: Option<u64>) {
        if candidate_last < own_last {
            self.inner.lock().expect("heard mutex poisoned").behind_candidate_at = Some(now);
        }
    }

    fn snapshot(&self) -> HeardInner {
        *self.inner.lock().expect("heard mutex poisoned")
    }
}

/// When the group is stuck in the sense of the module comment.
#[derive(Debug, Clone, Copy)]
pub struct Stuck {
    /// No leader heard from for at least this long.
    pub leaderless_for: Duration,
    /// A candidate behind this member's log was seen within this long.
    pub candidate_within: Duration,
}

impl Stuck {
    /// The bounds for a group whose longest election timeout is `election_timeout_max`: a
    /// leader is missing for four times that (a follower that heard a leader waits up to
    /// twice that before it campaigns, so a normal failover elects the in-sync standby
    /// before), and the behind candidate asked within as long.
    pub fn for_election_timeout(election_timeout_max: Duration) -> Stuck {
        Stuck { leaderless_for: election_timeout_max * 4, candidate_within: election_timeout_max * 4 }
    }

    /// Whether the witness should campaign at `now`, given what it heard since `started`:
    /// only a candidate behind that asked after the last leader was heard counts.
    pub fn now(&self, heard: &Heard, started: Instant, now: Instant) -> bool {
        let seen = heard.snapshot();
        let leaderless_since = seen.leader_at.unwrap_or(started);
        let leaderless = now.saturating_duration_since(leaderless_since) >= self.leaderless_for;
        let candidate_behind = seen
            .behind_candidate_at
            .is_some_and(|at| at > leaderless_since && now.saturating_duration_since(at) <= self.candidate_within);
        leaderless && candidate_behind
    }
}

/// The witness's watch over a stuck group (`witness.rs`): campaigns when a live data node
/// cannot be elected for want of log, and, leading, stands aside once a data node holds the
/// whole log; leads again if no one took over within `STAND_ASIDE_ELECTIONS` election timeouts.
pub(crate) async fn unstick(
    config: ControlConfig,
    raft: ControlRaft,
    heard: Arc<Heard>,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = config.node_id;
    let data_members: Vec<NodeId> =
        config.members.iter().filter(|(_, member)| member.role == MemberRole::Data).map(|(id, _)| *id).collect();
    let election_max = Duration::from_millis(config.election_timeout_max_ms);
    let stuck = Stuck::for_election_timeout(election_max);
    let started = Instant::now();
    let mut aside_since: Option<Instant> = None;
    let mut campaigned_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let (leading, caught_up) = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            let leading = metrics.state == ServerState::Leader && metrics.current_leader == Some(me);
            let caught_up = data_members.iter().any(|member| {
                let matched = metrics.replication.as_ref().and_then(|replication| replication.get(member).copied());
                let matched = matched.flatten().map(|log_id| log_id.index);
                matched.is_some() && matched >= metrics.last_log_index
            });
            (leading, caught_up)
        };
        let runtime = raft.runtime_config();
        match (leading, aside_since) {
            (true, None) if caught_up => {
                tracing::info!("witness: a data node holds the whole control log; standing aside for it");
                runtime.heartbeat(false);
                aside_since = Some(now);
            }
            (true, Some(since)) if now.duration_since(since) > election_max * STAND_ASIDE_ELECTIONS => {
                tracing::warn!("witness: no data node took the leadership; leading again for now");
                runtime.heartbeat(true);
                aside_since = None;
            }
            (false, Some(_)) => {
                runtime.heartbeat(true);
                aside_since = None;
            }
            _ => {}
        }
        // Retried soon: a refusal taught it the candidate's higher term, and the candidate,
        // having seen a longer log, waits extra before it campaigns again.
        let retry = Duration::from_millis(config.election_timeout_min_ms);
        let recently = campaigned_at.is_some_and(|at| now.duration_since(at) < retry);
        if !leading && !recently && stuck.now(&heard, started, now) {
            tracing::warn!(
                "witness: no leader and a data node too far behind to be elected; campaigning to bring it up to date"
            );
            campaigned_at = Some(now);
            if let Err(error) = raft.trigger().elect().await {
                tracing::warn!(%error, "witness: cannot start an election");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(config.heartbeat_ms)) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// How many longest election timeouts the witness stands aside before it leads again.
const STAND_ASIDE_ELECTIONS: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(300);

    #[test]
    fn stuck_only_without_a_leader_and_with_a_candidate_behind_since() {
        let start = Instant::now();
        let stuck = Stuck::for_election_timeout(MAX);
        let heard = Heard::default();
        let later = start + Duration::from_secs(2);
        assert!(!stuck.now(&heard, start, later), "no candidate behind");
        heard.candidate(later, Some(5), Some(5));
        assert!(!stuck.now(&heard, start, later), "a candidate as long as us can be elected");
        heard.candidate(later, Some(4), Some(5));
        assert!(stuck.now(&heard, start, later), "leaderless since the start, a candidate behind");
        heard.leader(later + MAX);
        assert!(!stuck.now(&heard, start, later + MAX * 6), "the candidate asked before the last leader");
        heard.candidate(later + MAX * 2, None, Some(1));
        assert!(!stuck.now(&heard, start, later + MAX * 4), "a leader was heard recently");
        assert!(stuck.now(&heard, start, later + MAX * 5), "then it went quiet");
        assert!(!stuck.now(&heard, start, later + MAX * 7), "the behind candidate is old news");
        let fresh = Heard::default();
        fresh.candidate(start + MAX, None, Some(1));
        assert!(!stuck.now(&fresh, start, start + MAX), "not right after the start");
    }
}
