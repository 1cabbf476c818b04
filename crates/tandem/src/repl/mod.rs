//! The replication plane: the active streams its log records to the hot
//! standby, which persists them at the same indexes, applies them through
//! `Keyspace::apply`, and acknowledges its durable index; client replies on
//! the active wait for that acknowledgement as the ack mode says.
//!
//! * [`wire`] — frames and messages (pure), and the socket reader.
//! * [`handshake`] — both peers prove the cluster secret (HMAC-SHA256).
//! * [`sender`] — the active: listens on the peer port, tails its own log
//!   from the standby's index on, tracks the acknowledged index.
//! * [`receiver`] — the standby: connects to the active, finds where the two
//!   logs agree, persists and applies, acknowledges, feeds the failure detector.
//! * [`rejoin`] — a node whose log diverged saves its extra records to
//!   `diverged-<epoch>.log`, cuts its log and restarts to rebuild its state.
//! * [`snapshot`] — catch-up from a full checkpoint the active cuts and streams
//!   when its log no longer reaches back to what the standby needs.
//! * [`Replication`] (this file) — the state both share with the client
//!   plane: role, epoch, acknowledged index, in-sync flag, the peer's verdict.
//!
//! Design: the sender *tails the log* (one resumable `tandem_log` reader)
//! instead of taking records from an in-memory channel fed by the commit
//! path. One code path serves catch-up and the live tail, the log stays the
//! only source of records, and nothing is ever shipped that the active's own
//! log has not written to the OS: after a crash of the active process the
//! standby never holds a record the active lost. The cost is a page-cache
//! read per batch.
//!
//! Threads: the plane runs on a thread and runtime of its own (`node.rs`),
//! beside the client event loop. The active's records are written to the log
//! by the client loop (inline writes; while a standby streams, as soon as
//! `LOG_EARLY_WRITE_BYTES` are pending rather than at the end of a turn) and
//! shipped from this thread while the log's thread fsyncs them. The standby
//! applies a message and every one that already arrived behind it, writes
//! and fsyncs them *on this thread* (`Database::persist_replicated`), then
//! acknowledges: one fsync per group of messages, and no hand-off to another
//! thread between the disk and the acknowledgement. Sync replication is
//! latency-bound; each hand-off is a wake-up on a busy machine.
//!
//! Invariants:
//! * the standby's log is a prefix of the active's: same index, epoch, hlc,
//!   origin and payload for every record it holds (the log refuses a gap);
//! * `replicated_index` only grows, and never exceeds what was sent;
//! * in `sync` mode no reply leaves the active before the standby persisted
//!   every record the reply depends on (its ticket);
//! * after the handshake every message carries the epoch; a stale one closes
//!   the connection with a logged reason.

pub mod handshake;
pub mod receiver;
pub mod rejoin;
pub mod sender;
pub mod snapshot;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tandem_control::ControlNode;
use tandem_log::LogIndex;
use tokio::sync::watch;

use crate::config::{AckMode, ClusterConfig};
use crate::db::Database;
use crate::failover::detector::{Detector, Verdict};

/// What this node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No cluster configured.
    Standalone,
    /// Accepts writes and streams them to the standby.
    Active,
    /// Follows the active; refuses writes.
    Standby,
}

impl Role {
    fn to_u8(self) -> u8 {
        match self {
            Role::Standalone => 0,
            Role::Active => 1,
            Role::Standby => 2,
        }
    }

    fn from_u8(value: u8) -> Role {
        match value {
            1 => Role::Active,
            2 => Role::Standby,
            _ => Role::Standalone,
        }
    }

    /// The name Redis's `ROLE` and `INFO replication` use.
    pub fn redis_name(self) -> &'static str {
        match self {
            Role::Standalone | Role::Active => "master",
            Role::Standby => "slave",
        }
    }
}

/// The replication state shared by the client plane and the replication tasks.
pub struct Replication {
    /// The cluster section; `None` for a standalone node.
    pub cluster: Option<ClusterConfig>,
    role: AtomicU8,
    /// Active: the standby's acknowledged durable index (a watch, so replies can wait on it).
    replicated: watch::Sender<u64>,
    /// `replicated` republished on the event loop (see `relay`).
    replicated_relay: crate::relay::Relay,
    /// Active: a standby session is established.
    standby_connected: AtomicBool,
    /// Semi-sync: the standby holds every acknowledged write (cleared after `sync_timeout_ms`).
    in_sync: AtomicBool,
    /// Unix ms when the standby last had every record this node had.
    caught_up_at_ms: AtomicU64,
    /// Standby: the replication link to the active is established.
    link_up: AtomicBool,
    /// Standby: the active's last index, from its latest heartbeat.
    active_last_index: AtomicU64,
    /// The peer's liveness as the failure detector judges it (`None` before any session).
    detector: Mutex<Option<Detector>>,
    /// Times the standby fell out of sync (semi-sync).
    out_of_sync_events: AtomicU64,
    /// Peer connections refused or closed for bad input (auth, garbage, stale epoch).
    rejected_peers: AtomicU64,
    /// Bumped for every new standby session; an older session stops when it sees a newer one.
    session_generation: AtomicU64,
    /// The origin of the monotonic milliseconds the detector is fed.
    clock: Instant,
    /// Serializes role changes (the control-plane task and the receiver both make them).
    role_change: Mutex<()>,
    /// The control-plane member, when the cluster has one: its lease fences the active.
    control: OnceLock<Arc<ControlNode>>,
    /// The end of the lease last computed, in nanoseconds after `lease_base` (0: none):
    /// a fixed promise, so commands need not recompute it until then. Cleared on every role
    /// change.
    lease_until_nanos: AtomicU64,
    /// The origin of `lease_until_nanos`.
    lease_base: tokio::time::Instant,
    /// Every role change, as (role, epoch): the service address, `on_role_change`, the
    /// role-change channel and client disconnection follow it (`failover::roles`).
    role_events: watch::Sender<RoleEvent>,
    /// When this node last saw its active dead and was promoted (the failover timeline).
    failover: Mutex<FailoverRecord>,
    /// The service address, if configured, and whether this node holds it.
    pub service_address: AddressStatus,
    /// Records this node saved aside and dropped when it last rejoined (`rejoin`).
    diverged_records: AtomicU64,
    /// The cold takeover this process started with (`failover::cold`), if any.
    cold_restore: Mutex<Option<crate::failover::cold::Restored>>,
    /// Active: the standby is out of sync in the control plane but caught up enough to be
    /// marked in sync again; `Some(target)` makes sync replies wait for it already, and
    /// `MarkInSync` is proposed once it acknowledged `target` (see `begin_resync`).
    resync: watch::Sender<Option<u64>>,
}

/// A role this node took, and the epoch it took it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleEvent {
    /// The new role.
    pub role: Role,
    /// The epoch.
    pub epoch: u64,
    /// The role before.
    pub previous: Role,
}

/// The timeline of this node's last failover (promotion after its active was declared dead).
#[derive(Debug, Clone, Copy, Default)]
pub struct FailoverRecord {
    /// Promotions of this node after the active was declared dead.
    pub failovers: u64,
    /// Unix ms when this node's detector declared the active dead, for the last failover.
    pub detected_unix_ms: u64,
    /// Unix ms when the control plane made this node active, for the last failover.
    pub promoted_unix_ms: u64,
    /// Unix ms when this node first bound the service address after that promotion (0
    /// until it has). A lease that lapses later releases the address and a renewal binds
    /// it again; the service address's own stamps then show that last bind, this one the
    /// failover's.
    pub address_bound_unix_ms: u64,
    /// Unix ms the active was first seen dead, while this node has not been promoted yet.
    pending_detection_unix_ms: Option<u64>,
}

/// Whether this node holds the service address, for INFO and the demo's timeline.
#[derive(Debug, Default)]
pub struct AddressStatus {
    bound: AtomicBool,
    bound_unix_ms: AtomicU64,
    released_unix_ms: AtomicU64,
}

impl AddressStatus {
    /// Records that the address was bound (`true`) or released now.
    pub fn set_bound(&self, bound: bool) {
        self.bound.store(bound, Ordering::Release);
        let when = if bound { &self.bound_unix_ms } else { &self.released_unix_ms };
        when.store(crate::db::unix_ms(), Ordering::Relaxed);
    }

    /// Whether this node holds the address now.
    pub fn is_bound(&self) -> bool {
        self.bound.load(Ordering::Acquire)
    }

    /// Unix ms of the last bind (0 if never).
    pub fn bound_unix_ms(&self) -> u64 {
        self.bound_unix_ms.load(Ordering::Relaxed)
    }

    /// Unix ms of the last release (0 if never).
    pub fn released_unix_ms(&self) -> u64 {
        self.released_unix_ms.load(Ordering::Relaxed)
    }
}

impl Replication {
    /// The state of a node without a cluster.
    pub fn standalone() -> Replication {
        Replication::with(None, Role::Standalone)
    }

    /// The state of a cluster member starting in `role`.
    pub fn new(cluster: ClusterConfig, role: Role) -> Replication {
        Replication::with(Some(cluster), role)
    }

    fn with(cluster: Option<ClusterConfig>, role: Role) -> Replication {
        Replication {
            cluster,
            role: AtomicU8::new(role.to_u8()),
            replicated: watch::Sender::new(0),
            replicated_relay: crate::relay::Relay::default(),
            standby_connected: AtomicBool::new(false),
            in_sync: AtomicBool::new(true),
            caught_up_at_ms: AtomicU64::new(crate::db::unix_ms()),
            link_up: AtomicBool::new(false),
            active_last_index: AtomicU64::new(0),
            detector: Mutex::new(None),
            out_of_sync_events: AtomicU64::new(0),
            rejected_peers: AtomicU64::new(0),
            session_generation: AtomicU64::new(0),
            clock: Instant::now(),
            role_change: Mutex::new(()),
            control: OnceLock::new(),
            lease_until_nanos: AtomicU64::new(0),
            lease_base: tokio::time::Instant::now(),
            role_events: watch::Sender::new(RoleEvent { role, epoch: 0, previous: role }),
            failover: Mutex::new(FailoverRecord::default()),
            service_address: AddressStatus::default(),
            diverged_records: AtomicU64::new(0),
            cold_restore: Mutex::new(None),
            resync: watch::Sender::new(None),
        }
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Acquire))
    }

    /// Sets the role and the epoch — the API the control plane drives (`failover::control`).
    /// The epoch only moves forward; the database stamps new records with it
    /// and refuses writes unless the node is active or standalone.
    pub fn set_role(&self, db: &Database, role: Role, epoch: u64) {
        let _serialized = self.role_change.lock();
        self.apply_role(db, role, epoch);
    }

    /// Takes the role the control plane gives this node, at the control-plane epoch (or
    /// the log's, if that is ahead); does nothing if both are already in force.
    pub fn follow_control(&self, db: &Database, role: Role, control_epoch: u64) {
        let _serialized = self.role_change.lock();
        let epoch = control_epoch.max(db.epoch());
        if role != self.role() || epoch != db.epoch() {
            self.apply_role(db, role, epoch);
        }
    }

    /// Active only: refuses local writes (`hold = true`) or accepts them again, serialized
    /// with role changes so that a standby never becomes writable. A planned switchover
    /// drains the log this way (`failover::switchover`). Returns false, changing nothing,
    /// if this node is not the active.
    pub fn hold_writes(&self, db: &Database, hold: bool) -> bool {
        let _serialized = self.role_change.lock();
        if self.role() != Role::Active {
            return false;
        }
        db.set_writable(!hold);
        true
    }

    /// Runs `apply` (applying replicated records) only if this node is a standby, with
    /// role changes held off meanwhile, so that a promotion never lands in the middle of a
    /// batch from the old active. `None` if this node is not a standby.
    pub(crate) fn while_standby<R>(&self, apply: impl FnOnce() -> R) -> Option<R> {
        let _serialized = self.role_change.lock();
        (self.role() == Role::Standby).then(apply)
    }

    fn apply_role(&self, db: &Database, role: Role, epoch: u64) {
        assert!(epoch >= db.epoch(), "epochs only increase: {} -> {epoch}", db.epoch());
        // A lease computed for another role or epoch is not this one's.
        self.lease_until_nanos.store(0, Ordering::Release);
        let previous = self.role();
        let previous_epoch = db.epoch();
        db.set_epoch(epoch);
        db.set_writable(role != Role::Standby);
        self.role.store(role.to_u8(), Ordering::Release);
        if role == Role::Standby && (previous != Role::Standby || epoch != previous_epoch) {
            // A new active (a new epoch) gets one detector timeout from now to be heard
            // from: until it has taken the role it refuses this node's sessions, and a
            // clock started earlier (at this node's start, say) could call it dead
            // before it ever served (seen at a cluster's formation in the lab test).
            self.reset_detector();
        }
        if previous == Role::Standby && role == Role::Active {
            let mut failover = self.failover.lock();
            if let Some(detected) = failover.pending_detection_unix_ms.take() {
                failover.failovers += 1;
                failover.detected_unix_ms = detected;
                failover.promoted_unix_ms = crate::db::unix_ms();
                failover.address_bound_unix_ms = 0;
            }
        }
        self.role_events.send_replace(RoleEvent { role, epoch, previous });
        tracing::info!(role = ?role, epoch, "role set");
    }

    /// Role changes, newest first (a watch: a slow reader sees the latest).
    pub fn role_events(&self) -> watch::Receiver<RoleEvent> {
        self.role_events.subscribe()
    }

    /// Records that this node bound the service address now: the first bind after a
    /// failover's promotion completes that failover's timeline.
    pub fn note_address_bound(&self) {
        self.service_address.set_bound(true);
        let mut failover = self.failover.lock();
        if failover.promoted_unix_ms != 0 && failover.address_bound_unix_ms == 0 {
            failover.address_bound_unix_ms = self.service_address.bound_unix_ms();
        }
    }

    /// The standby saw its active dead (`true`) or alive again: the start of a failover's
    /// timeline, completed when this node is promoted.
    pub fn note_active_dead(&self, dead: bool) {
        let mut failover = self.failover.lock();
        match (dead, failover.pending_detection_unix_ms) {
            (true, None) => failover.pending_detection_unix_ms = Some(crate::db::unix_ms()),
            (false, Some(_)) => failover.pending_detection_unix_ms = None,
            _ => {}
        }
    }

    /// Records the rejoin at start saved aside (`diverged-<epoch>.log`).
    pub fn record_diverged(&self, records: u64) {
        self.diverged_records.fetch_add(records, Ordering::Relaxed);
    }

    /// Records the cold takeover's rebuild at start (`failover::cold::prepare`); the
    /// detection from before the restart counts for the failover this node completes now.
    pub fn record_cold_restore(&self, restored: crate::failover::cold::Restored) {
        *self.cold_restore.lock() = Some(restored);
        if restored.detected_unix_ms != 0 {
            self.failover.lock().pending_detection_unix_ms = Some(restored.detected_unix_ms);
        }
    }

    /// When this standby's detector declared the active dead, if it did and this node has
    /// not been promoted since.
    pub fn pending_detection_unix_ms(&self) -> Option<u64> {
        self.failover.lock().pending_detection_unix_ms
    }

    /// The cold takeover's rebuild this process started with, if any.
    pub fn cold_restore(&self) -> Option<crate::failover::cold::Restored> {
        *self.cold_restore.lock()
    }

    /// Records saved aside at the last rejoin of this process.
    pub fn diverged_records(&self) -> u64 {
        self.diverged_records.load(Ordering::Relaxed)
    }

    /// The last failover's timeline.
    pub fn failover_record(&self) -> FailoverRecord {
        *self.failover.lock()
    }

    /// Hands over the control-plane member, once, at start: from then on the active accepts
    /// writes only while it holds the control-plane lease.
    pub fn attach_control(&self, control: Arc<ControlNode>) {
        assert!(self.control.set(control).is_ok(), "the control plane is attached once");
    }

    /// The control-plane member, if attached.
    pub fn control(&self) -> Option<&Arc<ControlNode>> {
        self.control.get()
    }

    /// Whether this node is the active but cannot confirm its lease with a majority of the
    /// control group (DESIGN.md invariant 2): it must not accept writes now.
    pub fn lease_lost(&self) -> bool {
        if self.role() != Role::Active {
            return false;
        }
        let Some(control) = self.control.get() else {
            return false;
        };
        let now = tokio::time::Instant::now();
        // The lease's end is a promise fixed when it was computed (no other node can become
        // active before it but by this node's own switchover), so it is reused until then.
        let cached = self.lease_until_nanos.load(Ordering::Acquire);
        if cached != 0 && now < self.lease_base + Duration::from_nanos(cached) {
            return false;
        }
        match control.lease_valid_until(now) {
            Some(valid_until) if valid_until > now => {
                let nanos = valid_until.duration_since(self.lease_base).as_nanos() as u64;
                self.lease_until_nanos.store(nanos.max(1), Ordering::Release);
                false
            }
            _ => true,
        }
    }

    /// Whether client writes must be refused with `-READONLY`.
    pub fn refuses_writes(&self) -> bool {
        self.role() == Role::Standby
    }

    /// Whether client reads must be refused (a standby with `replica_read = false`).
    pub fn refuses_reads(&self) -> bool {
        self.role() == Role::Standby && self.cluster.as_ref().is_some_and(|cluster| !cluster.replica_read)
    }

    /// The ack mode, for an active cluster member.
    pub fn ack_mode(&self) -> Option<AckMode> {
        self.cluster.as_ref().map(|cluster| cluster.ack_mode)
    }

    /// Hot or cold (hot outside a cluster: there is no standby to restore).
    pub fn standby_kind(&self) -> crate::config::StandbyKind {
        self.cluster.as_ref().map_or(crate::config::StandbyKind::Hot, |cluster| cluster.standby)
    }

    /// Active: the highest index the standby acknowledged as durable.
    pub fn replicated_index(&self) -> LogIndex {
        LogIndex(*self.replicated.borrow())
    }

    /// Resolves once the standby acknowledged `index` (never, if it never does). The
    /// future borrows nothing, so a deferred reply (`WAIT`) can own it.
    pub fn wait_replicated(&self, index: LogIndex) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.replicated.subscribe();
        async move {
            if receiver.wait_for(|value| *value >= index.0).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Republishes the standby's acknowledged index for the replies that wait for it (see
    /// `relay`); run it on the event loop.
    pub async fn relay_replicated(&self) {
        self.replicated_relay.run(self.replicated.subscribe()).await;
    }

    /// Whether a reply with this ticket (already locally acknowledged) must wait for the standby.
    pub fn must_wait(&self, ticket: LogIndex) -> bool {
        let Some(cluster) = &self.cluster else {
            return false;
        };
        if self.role() != Role::Active {
            return false;
        }
        let replicated = self.replicated_index();
        match cluster.ack_mode {
            AckMode::Sync => replicated < ticket && self.peer_counts(),
            AckMode::SemiSync => self.in_sync.load(Ordering::Acquire) && replicated < ticket && self.peer_counts(),
            AckMode::Async => {
                cluster.max_lag_records > 0
                    && self.standby_connected.load(Ordering::Acquire)
                    && replicated.0.saturating_add(cluster.max_lag_records) < ticket.0
            }
        }
    }

    /// Waits as the ack mode says before a reply with this ticket may leave (see `must_wait`).
    pub async fn wait_for_reply(&self, ticket: LogIndex) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        match cluster.ack_mode {
            AckMode::Sync => self.wait_replicated_or_peer_out_of_sync(ticket).await,
            AckMode::SemiSync => {
                let timeout = Duration::from_millis(cluster.sync_timeout_ms);
                let waited = self.wait_replicated_or_peer_out_of_sync(ticket);
                if tokio::time::timeout(timeout, waited).await.is_err() {
                    self.standby_out_of_sync(ticket, cluster.sync_timeout_ms).await;
                }
            }
            AckMode::Async => {
                let target = LogIndex(ticket.0.saturating_sub(cluster.max_lag_records));
                let mut receiver = self.replicated_relay.subscribe().unwrap_or_else(|| self.replicated.subscribe());
                // Stop waiting if the standby goes away: async never blocks on an absent standby.
                let _ = tokio::time::timeout(Duration::from_millis(cluster.sync_timeout_ms.max(100)), async {
                    let _ = receiver.wait_for(|value| *value >= target.0).await;
                })
                .await;
            }
        }
    }

    /// Whether the control plane records the peer as in sync (always true without a control
    /// plane). A sync reply waits for the standby only while it is: the control plane marks
    /// a dead standby out of sync *before* the active acknowledges a write without it, so an
    /// out-of-sync node is never promoted automatically (DESIGN.md invariant 3).
    fn peer_recorded_in_sync(&self) -> bool {
        let (Some(control), Some(cluster)) = (self.control.get(), &self.cluster) else {
            return true;
        };
        let peer = tandem_control::NodeId::from(cluster.peer_data_member().id);
        control.state_changes().borrow().in_sync.contains(&peer)
    }

    /// Whether sync replies wait for the standby: it is in sync in the control plane, or
    /// being brought back into sync (`begin_resync`).
    fn peer_counts(&self) -> bool {
        self.peer_recorded_in_sync() || self.resync.borrow().is_some()
    }

    /// Resolves once the standby acknowledged `index`, or once replies no longer wait for it
    /// (the control plane recorded it out of sync, and no resync is under way).
    async fn wait_replicated_or_peer_out_of_sync(&self, index: LogIndex) {
        let mut replicated = self.replicated_relay.subscribe().unwrap_or_else(|| self.replicated.subscribe());
        let mut resync = self.resync.subscribe();
        let mut states = self.control.get().map(|control| control.state_changes());
        loop {
            if *replicated.borrow_and_update() >= index.0 {
                return;
            }
            resync.borrow_and_update();
            if let Some(states) = states.as_mut() {
                states.borrow_and_update();
            }
            if !self.peer_counts() {
                return;
            }
            let state_changed = async {
                match states.as_mut() {
                    Some(states) => states.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = replicated.changed() => if changed.is_err() { std::future::pending::<()>().await },
                _ = resync.changed() => {}
                changed = state_changed => if changed.is_err() { std::future::pending::<()>().await },
            }
        }
    }

    /// Semi-sync: the standby did not acknowledge in time; the active continues alone, but
    /// only after the control plane recorded the standby out of sync (DESIGN.md invariant 3:
    /// a standby that lacks an acknowledged write is never promoted automatically). Returns
    /// early if the standby acknowledges meanwhile; without a quorum it keeps waiting.
    async fn standby_out_of_sync(&self, ticket: LogIndex, timeout_ms: u64) {
        if let (Some(control), Some(cluster)) = (self.control.get(), &self.cluster) {
            let peer = tandem_control::NodeId::from(cluster.peer_data_member().id);
            let heartbeat = Duration::from_millis(cluster.heartbeat_ms);
            let recorded = async {
                while self.peer_recorded_in_sync() {
                    self.end_resync();
                    let command =
                        tandem_control::ControlCommand::MarkOutOfSync { node: peer, epoch: control.state().epoch };
                    match control.propose(command).await {
                        Ok(tandem_control::ControlResponse::Applied { .. }) => {}
                        outcome => {
                            tracing::warn!(
                                ?outcome,
                                "semi-sync: cannot record the standby out of sync yet; replies wait"
                            );
                            tokio::time::sleep(heartbeat).await;
                        }
                    }
                }
            };
            tokio::select! {
                _ = recorded => {}
                _ = self.wait_replicated(ticket) => return,
            }
        }
        if self.in_sync.swap(false, Ordering::AcqRel) {
            self.out_of_sync_events.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                ticket = ticket.0,
                replicated = self.replicated_index().0,
                timeout_ms,
                "semi-sync: the standby did not acknowledge within sync_timeout_ms; continuing without it \
                 (the standby is no longer in sync)"
            );
        }
    }

    /// Active: the standby, out of sync in the control plane, is connected and close behind:
    /// from now on sync replies wait for it, and once it acknowledged everything appended
    /// before this call (`resync_reached`) the control plane may record it in sync — no
    /// reply acknowledged meanwhile is missing from it.
    pub fn begin_resync(&self, db: &Database) {
        self.resync.send_if_modified(|target| {
            if target.is_some() {
                return false;
            }
            *target = Some(db.last_index().0);
            true
        });
    }

    /// Active: stops waiting for a standby that is not in sync (it left, or it was marked).
    pub fn end_resync(&self) {
        self.resync.send_if_modified(|target| target.take().is_some());
    }

    /// Whether a resync is under way and the standby acknowledged its target.
    pub fn resync_reached(&self) -> bool {
        self.resync.borrow().is_some_and(|target| self.replicated_index().0 >= target)
    }

    /// Active: the standby acknowledged `durable_index`; `last_index` is this node's own.
    pub(crate) fn acknowledged(&self, durable_index: u64, last_index: u64) {
        self.replicated.send_if_modified(|replicated| {
            let advanced = durable_index > *replicated;
            *replicated = (*replicated).max(durable_index);
            advanced
        });
        if durable_index >= last_index {
            self.caught_up_at_ms.store(crate::db::unix_ms(), Ordering::Relaxed);
            if !self.in_sync.swap(true, Ordering::AcqRel) {
                tracing::info!(durable_index, "semi-sync: the standby caught up and is in sync again");
            }
        }
    }

    /// Whether the standby holds every acknowledged write, as this node knows it.
    pub fn in_sync(&self, db: &Database) -> bool {
        match (self.role(), self.ack_mode()) {
            (Role::Standalone, _) | (_, None) => true,
            (Role::Active, Some(AckMode::Sync)) => true,
            (Role::Active, Some(AckMode::SemiSync)) => self.in_sync.load(Ordering::Acquire),
            (Role::Active, Some(AckMode::Async)) => self.replicated_index() >= db.last_index(),
            (Role::Standby, _) => {
                self.link_up.load(Ordering::Acquire)
                    && db.last_index().0 >= self.active_last_index.load(Ordering::Acquire)
            }
        }
    }

    /// Active: records the standby lacks.
    pub fn lag_records(&self, db: &Database) -> u64 {
        db.last_index().0.saturating_sub(self.replicated_index().0)
    }

    /// Active: milliseconds since the standby last had every record (0 when it has them).
    pub fn lag_ms(&self, db: &Database) -> u64 {
        if self.lag_records(db) == 0 {
            return 0;
        }
        crate::db::unix_ms().saturating_sub(self.caught_up_at_ms.load(Ordering::Relaxed))
    }

    /// Whether a standby session is established (active side).
    pub fn standby_connected(&self) -> bool {
        self.standby_connected.load(Ordering::Acquire)
    }

    /// Whether the link to the active is established (standby side).
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Acquire)
    }

    /// The peer's liveness, if a session ever started.
    pub fn peer_verdict(&self) -> Option<Verdict> {
        let now = self.now_ms();
        self.detector.lock().as_ref().map(|detector| detector.verdict(now))
    }

    /// Milliseconds since the peer was last heard from, if ever.
    pub fn peer_silence_ms(&self) -> Option<u64> {
        let now = self.now_ms();
        self.detector.lock().as_ref().map(|detector| detector.silence_ms(now))
    }

    /// Times the standby fell out of sync (semi-sync).
    pub fn out_of_sync_events(&self) -> u64 {
        self.out_of_sync_events.load(Ordering::Relaxed)
    }

    /// Peer connections refused or closed for bad input.
    pub fn rejected_peers(&self) -> u64 {
        self.rejected_peers.load(Ordering::Relaxed)
    }

    /// Standby: the active's last index from its latest heartbeat.
    pub fn active_last_index(&self) -> u64 {
        self.active_last_index.load(Ordering::Acquire)
    }

    /// Monotonic milliseconds since start: the detector's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Starts judging a new session's peer, granting it a full timeout to speak.
    pub(crate) fn reset_detector(&self) {
        if let Some(cluster) = &self.cluster {
            *self.detector.lock() = Some(Detector::new(cluster.detector, self.now_ms()));
        }
    }

    /// Feeds the detector: the peer spoke now.
    pub(crate) fn peer_heard(&self) {
        let now = self.now_ms();
        if let Some(detector) = self.detector.lock().as_mut() {
            detector.heartbeat(now);
        }
    }

    pub(crate) fn set_standby_connected(&self, connected: bool) {
        self.standby_connected.store(connected, Ordering::Release);
    }

    pub(crate) fn set_link_up(&self, up: bool) {
        self.link_up.store(up, Ordering::Release);
    }

    pub(crate) fn set_active_last_index(&self, index: u64) {
        self.active_last_index.store(index, Ordering::Release);
    }

    pub(crate) fn count_rejected_peer(&self) {
        self.rejected_peers.fetch_add(1, Ordering::Relaxed);
    }

    /// A new standby session begins; returns its generation.
    pub(crate) fn new_session(&self) -> u64 {
        self.session_generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether `generation` is still the newest session.
    pub(crate) fn is_current_session(&self, generation: u64) -> bool {
        self.session_generation.load(Ordering::Acquire) == generation
    }
}
