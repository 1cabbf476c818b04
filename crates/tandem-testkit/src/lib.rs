//! Helpers shared by the test suites of every tandem crate.
//!
//! * [`ports`]: loopback ports for servers under test, free of clashes with outgoing connections.
//! * [`lab`]: the network lab (needs root): hosts in network namespaces on one bridge, with faults.
//! * [`process`]: child processes under a deadline.
//! * [`seed`]: the random seed a test runs with, printed so that a failure can be replayed.

pub mod lab;
pub mod ports;
pub mod process;
pub mod seed;
