//! Every bound tandem enforces, in one place.
//!
//! Defaults that a user may change live in [`crate::config`]; this module
//! holds the defaults and the hard ceilings that configuration can never
//! exceed, with `const` assertions relating them, so that a change to one
//! limit that breaks another fails to compile.

/// Largest bulk string a client may send (Redis `proto-max-bulk-len`), default.
pub const BULK_BYTES_MAX_DEFAULT: u64 = 512 * 1024 * 1024;
/// Ceiling for `proto_max_bulk_len`: the length field of a log record is a `u32`.
pub const BULK_BYTES_MAX_CEILING: u64 = 1024 * 1024 * 1024;
/// Largest number of arguments in one request, default.
pub const ARRAY_LEN_MAX_DEFAULT: u64 = 1024 * 1024;
/// Deepest nesting of aggregate frames that the reply decoder accepts.
pub const FRAME_DEPTH_MAX: usize = 32;
/// Longest inline command line (Redis `PROTO_INLINE_MAX_SIZE`).
pub const INLINE_BYTES_MAX: usize = 64 * 1024;
/// Largest unparsed input buffered for one client (Redis `client-query-buffer-limit`), default.
pub const QUERY_BUFFER_BYTES_MAX_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Most simultaneous client connections (Redis `maxclients`), default.
pub const CLIENTS_MAX_DEFAULT: u32 = 10_000;
/// Largest total size of the arguments of one write command or one
/// transaction: everything a write does must fit in one log record.
pub const WRITE_ARGUMENTS_BYTES_MAX: u64 = 1536 * 1024 * 1024;
/// Largest log record the log accepts; leaves room for effect framing.
pub const LOG_RECORD_BYTES_MAX: u32 = (WRITE_ARGUMENTS_BYTES_MAX + 64 * 1024 * 1024) as u32;
/// Default size at which the log rolls to a new segment file.
pub const LOG_SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Messages queued for one pub/sub subscriber before it is disconnected as too slow.
pub const SUBSCRIBER_QUEUE_MESSAGES_MAX: usize = 16_384;
/// Commands queued inside one `MULTI` before the transaction is refused.
pub const TRANSACTION_COMMANDS_MAX: usize = 1_000_000;
/// Keys (or buckets) one `SCAN` call examines at the most, whatever its `COUNT`.
pub const SCAN_COUNT_MAX: usize = 100_000;
/// Bytes a connection's pending replies may reach before it stops reading
/// more requests until they are written (back-pressure, not an error).
pub const REPLY_BUFFER_BYTES_SOFT_MAX: usize = 4 * 1024 * 1024;
/// Pipelined requests a connection parses ahead of running them, and
/// replicated records a standby looks ahead at, to prefetch their keys
/// together (`Keyspace::prefetch`): enough to overlap many cache misses,
/// few enough that the entries are still cached when their commands run.
pub const PREFETCH_AHEAD_MAX: usize = 64;
/// Keys of the parsed-ahead requests prefetched together: room for the
/// first keys of a full look-ahead and then some (multi-key commands), few
/// enough that their entries are still cached when the commands run.
pub const PREFETCH_KEYS_MAX: usize = 4 * PREFETCH_AHEAD_MAX;
/// Keys `Keyspace::prefetch` takes through each link of their lookups
/// together: their misses overlap, and this many leave room in the CPU's
/// queue of outstanding loads.
pub const PREFETCH_GROUP: usize = 16;
/// Log bytes not yet written above which a connection stops running more of its
/// pipelined requests until its replies are acknowledged (back-pressure on writers).
pub const LOG_BACKLOG_BYTES_SOFT_MAX: u64 = 64 * 1024 * 1024;
/// While a standby is streaming, pending log bytes at which a connection writes them itself
/// instead of leaving them to the end of the event loop's turn: the standby receives the first
/// records of a busy turn while the rest still run (see `Database::acknowledge`).
pub const LOG_EARLY_WRITE_BYTES: u64 = 8 * 1024;
/// Active-expiry passes per second (Redis `hz`), default.
pub const EXPIRY_HZ_DEFAULT: u32 = 10;
/// Keys examined at most per active-expiry pass, so a pass never stalls clients.
pub const EXPIRY_KEYS_PER_PASS_MAX: usize = 20_000;
/// Checkpoint layers merged per hold of the keyspace lock (each moves the
/// keys written during a checkpoint: a microsecond or so), so that merging
/// after a checkpoint never holds clients up for long.
pub const LAYERS_MERGED_PER_LOCK: usize = 32;
/// Longest client name accepted by `CLIENT SETNAME`.
pub const CLIENT_NAME_BYTES_MAX: usize = 4096;
/// Largest offset `SETRANGE`/`APPEND` may grow a string to (Redis: 512 MiB).
pub const STRING_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// Seconds between automatic full checkpoints, default (Redis's first `save` point).
pub const CHECKPOINT_FULL_SECONDS_DEFAULT: u64 = 3600;
/// Seconds between automatic incremental checkpoints, default.
pub const CHECKPOINT_INCREMENTAL_SECONDS_DEFAULT: u64 = 60;
/// Incrementals on one full checkpoint before the next one is full, default.
pub const CHECKPOINT_CHAIN_DEFAULT: u32 = 64;
/// Ceiling for `checkpoint_chain_max`: every file of a chain is read at restore.
pub const CHECKPOINT_CHAIN_MAX: u32 = 1024;
/// Pause after a failed automatic checkpoint (Redis waits 5 s after a failed BGSAVE).
pub const CHECKPOINT_RETRY_AFTER_FAILURE_MS: u64 = 5_000;

/// Interval between replication heartbeats, default.
pub const HEARTBEAT_MS_DEFAULT: u64 = 100;
/// Ceiling for `heartbeat_ms`.
pub const HEARTBEAT_MS_MAX: u64 = 10_000;
/// Least silence before the failure detector declares a peer dead, default: a pause
/// shorter than this never fails a node over.
pub const DETECTOR_DEAD_MIN_MS_DEFAULT: u64 = 600;
/// Most silence before the failure detector declares a peer dead, default, however
/// jittery the link.
pub const DETECTOR_DEAD_MAX_MS_DEFAULT: u64 = 3_000;
/// Semi-sync: how long a write waits for the standby before continuing alone, default.
pub const SYNC_TIMEOUT_MS_DEFAULT: u64 = 500;
/// Async: records the standby may lag before writes wait for it, default.
pub const MAX_LAG_RECORDS_DEFAULT: u64 = 100_000;
/// Largest replication frame before the handshake completes: an unauthenticated peer
/// cannot make this node allocate more.
pub const PEER_HANDSHAKE_FRAME_BYTES_MAX: usize = 4 * 1024;
/// Largest replication frame: one record of the largest size, plus framing.
pub const PEER_FRAME_BYTES_MAX: usize = LOG_RECORD_BYTES_MAX as usize + 64 * 1024;
/// Record bytes the active puts in one `Records` message (at least one record always goes).
pub const PEER_BATCH_BYTES_SOFT_MAX: usize = 1024 * 1024;
/// How long a peer connection attempt or handshake may take.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Longest pause between a standby's attempts to reconnect to the active.
pub const PEER_RECONNECT_MAX_MS: u64 = 1_000;
/// The first wait before reconnecting to the active (doubling up to the maximum above).
pub const PEER_RECONNECT_FIRST_MS: u64 = 10;
/// Longest pause between attempts at a control-plane proposal that bounced (no leader yet,
/// leader unreachable).
pub const CONTROL_RETRY_MAX_MS: u64 = 1_000;
/// How often the service-address holder re-checks its role and lease, and a successor
/// retries binding an address the old holder has not released yet.
pub const ADDRESS_RETRY_MS: u64 = 10;
/// Pending connections a listener queues before accepting.
pub const LISTEN_BACKLOG: u32 = 1024;
/// How long an `on_role_change` command may run before it is killed.
pub const ROLE_CHANGE_COMMAND_TIMEOUT_MS: u64 = 30_000;
/// Rounds of `CatchUpFrom`/`Diverged` a standby and the active exchange to find where
/// their logs agree (one per epoch the standby's tail skipped, in practice one or two).
pub const DIVERGENCE_PROBES_MAX: usize = 64;
/// How far behind (records) an out-of-sync standby may be when the active starts making
/// sync replies wait for it again, on the way to marking it in sync: closer, the wait is
/// short; farther, it catches up first without slowing writes.
pub const RESYNC_LAG_RECORDS_MAX: u64 = 1_000;
/// Largest snapshot (a full checkpoint) a standby accepts from the active.
pub const SNAPSHOT_BYTES_MAX: u64 = 1 << 40;
/// The control plane's shortest election timeout by default (the longest is twice it; the
/// heartbeat a third of it, the active's lease two thirds, the clock-drift margin a sixth).
pub const CONTROL_ELECTION_TIMEOUT_MS_DEFAULT: u64 = 150;
/// Bounds of `control_election_timeout_ms`.
pub const CONTROL_ELECTION_TIMEOUT_MS_MIN: u64 = 30;
/// See `CONTROL_ELECTION_TIMEOUT_MS_MIN`.
pub const CONTROL_ELECTION_TIMEOUT_MS_MAX: u64 = 10_000;
/// Longest a control-group leader that is not the active stands aside for the active
/// before it leads again (and as long again before it retries).
pub const CONTROL_STAND_ASIDE_MAX_MS: u64 = 3_000;
/// How long a planned switchover may hold writes while the standby catches up, default.
pub const SWITCHOVER_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Ceiling for `switchover_timeout_ms`: writes are refused for at most this long.
pub const SWITCHOVER_TIMEOUT_MS_MAX: u64 = 60_000;
/// How long a preferred node must stay in sync before `preempt` hands it the role, default
/// (a node that flaps in and out of sync never takes the role back).
pub const PREEMPT_DELAY_MS_DEFAULT: u64 = 3_000;
/// A data member's `priority` when the configuration gives none.
pub const MEMBER_PRIORITY_DEFAULT: u8 = 100;
/// How long an admin HTTP request (`tandem status`, `switchover`, `promote`) may take to
/// connect, and to send or receive each chunk.
pub const ADMIN_HTTP_TIMEOUT_MS: u64 = 2_000;
/// Largest admin HTTP response or request body read.
pub const ADMIN_HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

const _: () = assert!(BULK_BYTES_MAX_DEFAULT <= BULK_BYTES_MAX_CEILING);
const _: () = assert!(HEARTBEAT_MS_DEFAULT * 2 <= DETECTOR_DEAD_MIN_MS_DEFAULT);
const _: () = assert!(DETECTOR_DEAD_MIN_MS_DEFAULT <= DETECTOR_DEAD_MAX_MS_DEFAULT);
const _: () = assert!(PEER_BATCH_BYTES_SOFT_MAX < PEER_FRAME_BYTES_MAX);
const _: () = assert!(PEER_HANDSHAKE_FRAME_BYTES_MAX < PEER_BATCH_BYTES_SOFT_MAX);
const _: () = assert!(CHECKPOINT_CHAIN_DEFAULT <= CHECKPOINT_CHAIN_MAX);
const _: () = assert!(CHECKPOINT_INCREMENTAL_SECONDS_DEFAULT <= CHECKPOINT_FULL_SECONDS_DEFAULT);
const _: () = assert!(BULK_BYTES_MAX_CEILING <= WRITE_ARGUMENTS_BYTES_MAX);
const _: () = assert!(WRITE_ARGUMENTS_BYTES_MAX < LOG_RECORD_BYTES_MAX as u64);
const _: () = assert!(QUERY_BUFFER_BYTES_MAX_DEFAULT > BULK_BYTES_MAX_DEFAULT);
const _: () = assert!(STRING_BYTES_MAX <= BULK_BYTES_MAX_CEILING);
const _: () = assert!(LOG_BACKLOG_BYTES_SOFT_MAX < tandem_log::PENDING_BYTES_SOFT_MAX);
const _: () = assert!(INLINE_BYTES_MAX as u64 <= QUERY_BUFFER_BYTES_MAX_DEFAULT);
const _: () = assert!(SWITCHOVER_TIMEOUT_MS_DEFAULT <= SWITCHOVER_TIMEOUT_MS_MAX);
