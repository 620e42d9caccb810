//! The fuzz suite: every parser reachable from users or the network, fed arbitrary input and
//! structured input from generators, with the strongest invariant each one has (not only "does
//! not panic"). `clb_fuzz::config()` sets the case count: 100,000 per property in release (the
//! `.ci/run` step), 256 in debug, `PROPTEST_CASES` to override. Failing cases are kept in
//! `<module>.regressions` files next to the modules and replayed on every run.

mod annotations;
mod auth;
mod credentials;
mod decode;
mod emulator_auth;
mod manifests;
mod settings;
mod tls;
mod translate;
