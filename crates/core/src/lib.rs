//! clb-ingress's pure core: `model` (what each CLB should hold, and the Problems), `plan` (the
//! ordered minimal changes from an observed CLB to the desired one), `matching` (two
//! independent request matchers: the Ingress spec and CLB's own) and the CRD types.
//!
//! PURE: no I/O, no clock, no randomness, no async runtime, no Kubernetes or HTTP client.
//! `tests/core_purity.rs` fails the build if such a dependency is added.
#![forbid(unsafe_code)]

pub mod admission;
pub mod backend_config;
pub mod crd;
pub mod gateway;
pub mod manifests;
pub mod matching;
pub mod model;
pub mod plan;
