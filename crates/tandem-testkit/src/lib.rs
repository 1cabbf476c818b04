//! Helpers shared by the test suites of every tandem crate.

pub mod ports;
