//! Failover: deciding that a peer failed, and (with the control plane) what
//! to do about it.
//!
//! * [`detector`] — pure: heartbeat arrival times in, `Alive | Suspect | Dead`
//!   out; adapts to the observed jitter between a floor and a ceiling.
//! * [`control`] — follows the control plane's state (role, epoch), promotes
//!   an in-sync standby whose active is dead, keeps the control group's
//!   leadership (and so the lease) on the active; `tandem witness`.
//!
//! The service address comes later; it will follow the same control state.

pub mod control;
pub mod detector;
