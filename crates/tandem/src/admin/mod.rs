//! The admin plane: Prometheus metrics, `/status` and the operations over HTTP, memory and
//! CPU readings, and the HTTP client the CLI's operations use.
//!
//! * [`http`] — the endpoint: `/metrics`, `/health`, `/status`, `POST /switchover|/promote`.
//! * [`status`] — the JSON a member answers `/status` with (shared with the CLI).
//! * [`client`] — a small HTTP/1.1 client: `tandem status|switchover|promote`, forwarding.
//! * [`metrics`], [`memory`] — Prometheus counters, jemalloc and RSS readings.

pub mod client;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod status;
