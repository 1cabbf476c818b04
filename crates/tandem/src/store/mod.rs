//! The keyspace and the effects that change it.
//!
//! Commands never change the keyspace directly: a write command computes
//! [`Effect`]s, and [`Keyspace::apply`] is the one code path that changes
//! state — for a live command, for log replay, and (later) for replication
//! and checkpoint restore. `apply` is deterministic: the same effects on the
//! same state give the same state on every node.

pub mod buckets;
pub mod effect;
pub mod glob;
pub mod keyspace;
pub mod sorted_set;
pub mod value;

pub use effect::Effect;
pub use keyspace::{Bucket, Cut, Keyspace, Snapshot};
pub use value::{Entry, Value};
