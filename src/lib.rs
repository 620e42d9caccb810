//! clb-ingress: a Kubernetes Layer-7 ingress controller for Tencent Cloud Load Balancer (CLB).
//!
//! Layers (see `docs/architecture.md`): `model` and `plan` are pure; `matching` holds the two
//! independent request matchers; `clb` speaks the Tencent Cloud API; `emulator` is the local CLB.
#![forbid(unsafe_code)]

pub mod clb;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod deploy;
pub mod emulator;
pub mod http;
pub mod manifests;
pub mod matching;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod testapi;
