//! Seeds for randomized tests.

/// The seed of a randomized test: `TANDEM_TEST_SEED` if set, else a fresh one; printed so
/// that a failing run can be reproduced.
pub fn test_seed() -> u64 {
    let seed = match std::env::var("TANDEM_TEST_SEED") {
        Ok(text) => text.parse().expect("TANDEM_TEST_SEED is a u64"),
        Err(_) => rand::random(),
    };
    println!("seed {seed} (rerun with TANDEM_TEST_SEED={seed})");
    seed
}
