//! Tests of the log against real files: roundtrips, torn tails, corruption and repair,
//! group commit, and property tests of encoding and damage. (The SIGKILL crash test is its
//! own binary, `tests/crash.rs`: a child forked from here would briefly inherit other
//! tests' directory locks.)

mod common;
mod corruption;
mod group_commit;
mod preallocation;
mod properties;
mod replicated;
mod roundtrip;
mod start_index;
mod torn_tail;
