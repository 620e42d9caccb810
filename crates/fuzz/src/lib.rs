//! The fuzz suite's shared settings. The suite itself is `tests/parsers/`: property tests
//! (proptest) with arbitrary bytes and structured generators for every parser reachable from
//! users or the network. Stable Rust, offline; `.ci/run` runs it in release
//! (`cargo test -p clb-fuzz --release --locked`). See docs/operations.md, "Fuzz suite".
#![forbid(unsafe_code)]

use proptest::test_runner::{Config, FileFailurePersistence};

/// Cases per property in an optimised build (`--release`): the suite's CI setting.
pub const RELEASE_CASES: u32 = 100_000;
/// Cases per property in a debug build (`cargo test --workspace`): a quick smoke run.
pub const DEBUG_CASES: u32 = 256;

/// The proptest configuration of every property: `PROPTEST_CASES` when set, else
/// [`RELEASE_CASES`] in an optimised build and [`DEBUG_CASES`] in a debug one. A failing case is
/// saved next to the test's source (`<file>.regressions`, committed) and replayed first on every
/// later run.
pub fn config() -> Config {
    config_scaled(1)
}

/// As [`config`], with the case count divided by `divisor` (at least 1 case): for properties
/// whose every case already checks many inputs.
pub fn config_scaled(divisor: u32) -> Config {
    let default = if cfg!(debug_assertions) {
        DEBUG_CASES
    } else {
        RELEASE_CASES
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(default);
    Config {
        cases: (cases / divisor.max(1)).max(1),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        // Shrinking a failure is worth some time, but not minutes in CI.
        max_shrink_iters: 10_000,
        ..Config::default()
    }
}
