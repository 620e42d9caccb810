//! PURE: a snapshot of Kubernetes objects -> one `DesiredLb` per CLB stack, plus `Problem`s.
