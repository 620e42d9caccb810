//! Subcommand implementations behind `main.rs` (which only parses and dispatches).
pub mod plan;
