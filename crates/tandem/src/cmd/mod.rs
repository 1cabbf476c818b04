//! Commands: the table of every command tandem knows, and one file per
//! command family holding its parsing and execution.
//!
//! A request is looked up in [`table`] (case-insensitive), its arity checked,
//! then it runs one of two ways:
//! * [`Handler::Data`] runs under the keyspace lock with a [`DataContext`]:
//!   it reads the keyspace, returns the reply, and expresses every change as
//!   an [`Effect`](crate::store::Effect) through [`DataContext::emit`], which
//!   applies it and collects it for the log record;
//! * [`Handler::Session`] is a connection or server command (`AUTH`, `MULTI`,
//!   `SUBSCRIBE`, `INFO`, …) that the server's session code runs.
//!
//! Each spec says whether the command reads, writes or administers, which
//! is what role admission and `COMMAND INFO` use.

pub mod args;
pub mod blocking;
pub mod context;
pub mod error;
pub mod float_text;
#[cfg(test)]
pub mod harness;
pub mod hashes;
pub mod key_copy;
pub mod key_dump;
pub mod key_object;
pub mod keys;
pub mod list_move;
pub mod lists;
pub mod random_picks;
pub mod set_algebra;
pub mod sets;
pub mod sort;
pub mod sorted_algebra;
pub mod sorted_ranges;
pub mod sorted_sets;
pub mod strings;
pub mod table;

pub use context::DataContext;
pub use error::CommandError;
pub use table::{lookup, lookup_indexed, CommandSpec, Flags, Handler, SessionCommand, COMMANDS};

use tandem_resp::Frame;

/// What a command returns: a reply frame, or an error that becomes one.
pub type Reply = Result<Frame, CommandError>;
