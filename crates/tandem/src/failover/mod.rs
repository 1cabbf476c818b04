//! Failover: deciding that a peer failed, and (with the control plane) what
//! to do about it.
//!
//! * [`detector`] — pure: heartbeat arrival times in, `Alive | Suspect | Dead`
//!   out; adapts to the observed jitter between a floor and a ceiling.
//!
//! Promotion, fencing and the service address come with the control plane
//! (issue 4); they will read the detector's verdicts, not a clock.

pub mod detector;
