//! The active's lease: how long this leader may act without a successor possibly existing.
//!
//! What openraft 0.9.25 offers (read in its source): `RaftMetrics::millis_since_quorum_ack`
//! exists (and `RaftDataMetrics::millis_since_quorum_ack`); there is no public
//! `last_quorum_acked` instant. The leader keeps a per-voter "clock progress"; a successful
//! AppendEntries reply raises a voter's entry to `leader_time`, which `replication/mod.rs`
//! takes with `C::now()` *before* the request is sent (`ReplicationResult::sending_time`), and
//! the quorum-acked time is the largest instant a quorum has reached (the leader counts with
//! its own `now`). So the quantity is stamped at **send** time, which is what a safe lease
//! needs: a follower that acknowledged a heartbeat sent at `t` received it after `t`, and
//! openraft then refuses votes for `leader_lease = election_timeout_max` and does not campaign
//! for at least `election_timeout_min` after receiving it (`Engine::handle_vote_req`,
//! `VoteHandler::update_vote`). Hence no other leader can exist before
//! `t + election_timeout_min`, and a lease of `t + lease_ms` with
//! `lease_ms + drift_margin_ms <= election_timeout_min_ms` is safe.
//!
//! Why we do not read the instant from the metric: the metric is a millisecond count measured
//! when openraft *published* the metrics, and a watch receiver cannot tell when that was;
//! `observed_at - millis` would overestimate `t` by the publish-to-read delay, the unsafe
//! direction. So the transport records the same quantity exactly: for each peer, the send
//! instant of the newest AppendEntries that the peer accepted under the leader's vote.
//! [`LeaseTracker::quorum_acked_sent_at`] combines them like openraft does; the node
//! additionally requires openraft to report itself leader with a quorum ack
//! (`millis_since_quorum_ack.is_some()`), so both views must agree.

use std::collections::BTreeMap;
use std::sync::Mutex;

use openraft::Vote;
use tokio::time::Instant;

use crate::state::NodeId;

/// Per-peer send instants of accepted heartbeats, written by the transport.
#[derive(Default)]
pub struct LeaseTracker {
    /// Peer → (the leader vote the heartbeat carried, when it was sent).
    acknowledged: Mutex<BTreeMap<NodeId, (Vote<NodeId>, Instant)>>,
}

impl LeaseTracker {
    /// Records that `peer` accepted an AppendEntries carrying `vote` that was sent at `sent_at`.
    pub fn record_ack(&self, peer: NodeId, vote: Vote<NodeId>, sent_at: Instant) {
        let mut acknowledged = self.acknowledged.lock().expect("lease mutex poisoned");
        let newer = match acknowledged.get(&peer) {
            Some((known_vote, known_sent_at)) => {
                vote > *known_vote || (vote == *known_vote && sent_at > *known_sent_at)
            }
            None => true,
        };
        if newer {
            acknowledged.insert(peer, (vote, sent_at));
        }
    }

    /// The newest send instant acknowledged under `vote` by a majority of `voters`,
    /// counting `leader` itself (always current) when it is a voter.
    pub fn quorum_acked_sent_at(
        &self,
        leader: NodeId,
        voters: &[NodeId],
        vote: &Vote<NodeId>,
        now: Instant,
    ) -> Option<Instant> {
        let acknowledged = self.acknowledged.lock().expect("lease mutex poisoned");
        let mut instants: Vec<Instant> = voters
            .iter()
            .filter_map(|voter| {
                if *voter == leader {
                    return Some(now);
                }
                acknowledged.get(voter).filter(|(acked_vote, _)| acked_vote == vote).map(|(_, sent_at)| *sent_at)
            })
            .collect();
        let majority = voters.len() / 2 + 1;
        if instants.len() < majority {
            return None;
        }
        instants.sort_unstable_by(|a, b| b.cmp(a));
        Some(instants[majority - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quorum_instant_is_the_majority_th_newest_under_the_current_vote() {
        let tracker = LeaseTracker::default();
        let now = Instant::now();
        let vote = Vote::new_committed(2, 1);
        let voters = [1, 2, 3];
        assert_eq!(tracker.quorum_acked_sent_at(1, &voters, &vote, now), None);
        tracker.record_ack(2, vote, now - Duration::from_millis(30));
        tracker.record_ack(3, vote, now - Duration::from_millis(10));
        // Leader plus the newest peer form the majority of three.
        assert_eq!(tracker.quorum_acked_sent_at(1, &voters, &vote, now), Some(now - Duration::from_millis(10)));
        // Acks under an older vote do not count for a newer one.
        let newer = Vote::new_committed(3, 1);
        assert_eq!(tracker.quorum_acked_sent_at(1, &voters, &newer, now), None);
        // An older send instant never replaces a newer one.
        tracker.record_ack(3, vote, now - Duration::from_millis(50));
        assert_eq!(tracker.quorum_acked_sent_at(1, &voters, &vote, now), Some(now - Duration::from_millis(10)));
    }
}
