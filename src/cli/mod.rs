//! Subcommand implementations behind `main.rs` (which only parses and dispatches).
pub mod apply;
pub mod cloud;
pub mod crd;
#[cfg(feature = "local-dev")]
pub mod demo;
pub mod migrate;
pub mod plan;
pub mod preflight;
pub mod run;
