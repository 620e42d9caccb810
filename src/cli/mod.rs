//! Subcommand implementations behind `main.rs` (which only parses and dispatches).
pub mod apply;
pub mod cloud;
pub mod crd;
pub mod demo;
pub mod plan;
pub mod run;
