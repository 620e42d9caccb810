//! clb-ingress: a Kubernetes Layer-7 ingress controller for Tencent Cloud Load Balancer (CLB).
//!
//! This crate is the product (controller, CLI, deploy engine, metrics). Its layers live in
//! workspace crates, re-exported here under their historical paths (see `docs/architecture.md`):
//! `model`, `plan`, `matching`, `crd` (pure, `clb-ingress-core`), `clb` (`clb-api`, the Tencent
//! Cloud API 3.0 client), and with the default `local-dev` feature `emulator` (`clb-emulator`)
//! and `testapi` (`clb-testapi`).
#![forbid(unsafe_code)]

pub use clb_api as clb;
#[cfg(feature = "local-dev")]
pub use clb_emulator as emulator;
pub use clb_ingress_core::{admission, crd, gateway, matching, model, plan};
#[cfg(feature = "local-dev")]
pub use clb_testapi as testapi;

pub mod cli;
pub mod controller;
pub mod deploy;
pub mod http;
pub mod manifests;
pub mod metrics;
pub mod webhook;
