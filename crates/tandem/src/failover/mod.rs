//! Failover: deciding that a peer failed, and (with the control plane) what
//! to do about it.
//!
//! * [`detector`] — pure: heartbeat arrival times in, `Alive | Suspect | Dead`
//!   out; adapts to the observed jitter between a floor and a ceiling.
//! * [`control`] — follows the control plane's state (role, epoch), promotes
//!   an in-sync standby whose active is dead, keeps the control group's
//!   leadership (and so the lease) on the active; `tandem witness`.
//! * [`address`] — the active holds the service address while its lease is
//!   valid; a demoted or fenced node releases it (loopback form, and the hold
//!   loop both forms share).
//! * [`vip`] — the Linux virtual IP form: netlink, gratuitous ARP, capabilities.
//! * [`cold`] — a cold standby's takeover: rebuild from the peer's archive first.
//! * [`roles`] — what follows a role change: the role-change channel, closing
//!   clients on demotion, `on_role_change`.
//! * [`switchover`] — operator role changes: planned switchover (zero loss),
//!   forced promotion, and preemption back to the preferred node.

pub mod address;
pub mod cold;
pub mod control;
pub mod detector;
pub mod roles;
pub mod switchover;
pub mod vip;
