//! Tencent Cloud API 3.0 for CLB: TC3 signing, wire types, and the typed client (transport,
//! errors and their classification, retries, token buckets, task polling).
pub mod actions;
pub mod api;
pub mod client;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod observe;
pub mod providers;
pub mod ratelimit;
pub mod retry;
pub mod sign;
pub mod types;

pub use api::ClbApi;
pub use client::{ClbClient, ClientConfig, Endpoint, Op, Reply, Service};
pub use credentials::Credentials;
pub use error::{ClbError, ErrorCategory};
#[cfg(test)]
mod wire_tests;
