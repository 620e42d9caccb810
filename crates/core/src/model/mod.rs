//! PURE: a snapshot of Kubernetes objects -> one `DesiredLb` per CLB stack, plus `Problem`s.
pub mod build;
pub mod ids;
pub mod translate;
pub mod types;

pub use build::{BuildOutput, Index, Limits, Placement, Snapshot, build, rule_costs};
pub use types::*;
