//! The local CLB emulator: an API 3.0 server and a real HTTP(S) data plane on loopback.
pub mod dataplane;
