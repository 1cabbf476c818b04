//! tandem: a fault-tolerant key-value service that speaks the Redis protocol.
//!
//! # Layout (follow a write from top to bottom)
//! * [`limits`] — every bound in one place, with const assertions relating them.
//! * [`config`] — TOML file + flags → a validated [`config::Config`].
//! * `tandem_resp` (crate) — RESP2/RESP3 frames: check, parse, encode (pure).
//! * [`cmd`] — the command table and one file per command family; a data
//!   command reads the keyspace and emits effects.
//! * [`store`] — the keyspace (buckets shared with checkpoints), values,
//!   effects, and `Keyspace::apply`, the one path that changes state.
//! * `tandem_log` (crate) — CRC-framed effect records in segment files,
//!   group commit, replay, check and repair.
//! * [`checkpoint`] — policy, cut, file format, restore: the keyspace saved
//!   at several intervals so a restart loads it plus the log tail.
//! * [`archive`] — shipping closed records and checkpoints to stable storage
//!   (a manifest written last), `archive verify`, and `restore --from` an archive.
//! * [`repl`] — the replication plane: the active streams log records to the
//!   hot standby (same indexes), replies wait per ack mode; handshake, wire;
//!   rejoin after divergence and catch-up from a snapshot.
//! * [`failover`] — the failure detector (pure: heartbeats and `now` in,
//!   alive/suspect/dead out) and the control-plane driver: roles and epoch
//!   from the replicated control state, promotion, lease fencing, in-sync
//!   tracking, the service address (loopback, or the Linux virtual IP with
//!   gratuitous ARP), role-change reactions, switchover, the witness.
//! * [`db`] — the keyspace lock and the log together: execute a command or an
//!   `EXEC` as one record, and the durability ticket a reply waits for;
//!   [`ready_keys`]: the keys blocked clients (`BLPOP`, …) wait on, signalled
//!   by every commit.
//! * [`server`] — accept loop, one task per connection (which parses a
//!   pipeline ahead and prefetches its keys), sessions (auth, MULTI, pub/sub),
//!   client registry, `INFO`/`CONFIG`.
//! * [`sentinel`] — a Redis-Sentinel-compatible discovery endpoint: the active's
//!   address from the control state, `+switch-master` on failover.
//! * [`admin`] — `/metrics`, `/health`, `/status`, `POST /switchover|/promote` over
//!   HTTP, memory and CPU readings, and the admin HTTP client.
//! * [`ops`] — `tandem status`, `switchover`, `promote`: the operator's side, over
//!   the members' admin HTTP endpoints.
//! * [`node`] — wires a node together (open, bind, background tasks, shutdown).
//! * [`demo`], [`logcheck`], [`client`] — `tandem demo`, `tandem log check`,
//!   and the small RESP client they use.
//! * `tandem_control` (crate) — the control plane's Raft group (openraft).
//!
//! # The write path
//! client ─RESP→ `server` → `cmd::lookup` → handler under the keyspace lock
//! → `DataContext::emit` (apply + collect effects) → `Log::append` (one
//! record per command or `EXEC`) → reply released once the record is as
//! durable as `appendfsync` promises — and, in a cluster, as replicated as
//! the ack mode promises (`sync`: the standby persisted it too).

pub mod admin;
pub mod archive;
pub mod checkpoint;
pub mod client;
pub mod cmd;
pub mod config;
pub mod db;
pub mod demo;
pub mod failover;
pub mod limits;
pub mod logcheck;
pub mod node;
pub mod ops;
pub mod ready_keys;
pub mod relay;
pub mod repl;
pub mod sentinel;
pub mod server;
pub mod store;
