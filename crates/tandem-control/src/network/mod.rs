//! Raft RPCs between members over TCP: authenticated, length-prefixed postcard frames.
//!
//! * `wire`   — frames (with a size limit), the handshake messages and proofs, the RPC enums.
//! * `client` — openraft's `RaftNetworkFactory`/`RaftNetwork`: one lazily (re)connected
//!   connection per peer, and the forwarding of proposals to the leader.
//! * `server` — the accept loop: handshake, then serve RPCs into the local `Raft`.
//!
//! Transport contract: a request is answered on the connection it came on, in order; a
//! connection whose request was abandoned (timeout) is dropped, never reused, so a late
//! answer cannot be taken for the next request's. A peer that fails the handshake or sends a
//! malformed or oversize frame is disconnected with a logged reason; nothing it sends panics.

pub mod client;
pub mod server;
pub mod wire;
