//! Gateway API on CLB: the v1 standard-channel types, hostname patterns and computed status.
//! `model::build` turns each Gateway of a clb-ingress GatewayClass into one CLB stack
//! (`model::build::gateway`); docs/gateway-api.md explains the mapping for users.

pub mod hosts;
pub mod status;
pub mod types;

pub use hosts::HostPattern;
pub use status::{Condition, GatewayApiStatus};
pub use types::*;
