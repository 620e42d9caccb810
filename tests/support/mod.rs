//! Test support shared by integration tests: manifests from text, and a fake "observed" CLB
//! that looks exactly like a desired state after it was applied.
#![allow(dead_code)]

use clb_ingress::model::{DesiredLb, Snapshot};
use clb_ingress::plan::{ObservedLb, Ownership};

/// Build a snapshot from multi-document YAML (objects in creation order).
pub fn snapshot(yaml: &str) -> Snapshot {
    let mut snap = Snapshot::new("test");
    for doc in clb_ingress::manifests::parse_documents("test.yaml", yaml).expect("yaml") {
        clb_ingress::manifests::add_object(&mut snap, doc).expect("object");
    }
    for (i, ing) in snap.ingresses.iter_mut().enumerate() {
        if ing.metadata.creation_timestamp.is_none() {
            ing.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(i as i64),
                ));
        }
    }
    snap
}

/// What Describe* would return after `desired` was applied to a CLB.
pub fn observe(desired: &DesiredLb) -> ObservedLb {
    clb_ingress::plan::assume_applied(desired, "lb-00000001")
}

pub fn ownership(d: &DesiredLb) -> Ownership {
    clb_ingress::plan::ownership_of(d, "test")
}
pub mod worlds;
