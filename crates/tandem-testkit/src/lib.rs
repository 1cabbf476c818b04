//! Helpers shared by the test suites of every tandem crate.
//!
//! * [`ports`]: loopback ports for servers under test, free of clashes with outgoing connections.
//! * [`lab`]: the network lab (needs root): hosts in network namespaces on one bridge, with faults.

pub mod lab;
pub mod ports;
pub mod seed;
