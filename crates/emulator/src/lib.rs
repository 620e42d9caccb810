//! The local CLB emulator: an API 3.0 server and a real HTTP(S) data plane on loopback.
pub mod actions;
pub mod cli;
pub mod config;
pub mod core;
pub mod dataplane;
pub mod error;
pub mod health;
pub mod server;
pub mod state;
pub mod sts;
pub mod validate;
