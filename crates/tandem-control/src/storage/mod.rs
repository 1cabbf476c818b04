//! The control plane's own files in a member's directory: Raft log, vote, state machine.

pub mod frame;
pub mod log_store;
pub mod state_machine;

pub use log_store::LogStore;
pub use state_machine::StateMachineStore;
