//! Tencent Cloud API 3.0 for CLB: TC3 signing, and (later) the typed client.
pub mod sign;
pub mod types;
