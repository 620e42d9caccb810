//! The one home of clb-ingress's test helpers (not product): manifests from text, a fake
//! "observed" CLB that looks exactly like a desired state after it was applied (this file),
//! manifest builders (`worlds`), an emulator child process and its admin client (`emulator`),
//! and a whole local cluster: test API server, emulator, controller processes (`cluster`).

use clb_ingress::model::{DesiredLb, Snapshot};
use clb_ingress::plan::{ObservedLb, Ownership};

/// Build a snapshot from multi-document YAML (objects in creation order).
pub fn snapshot(yaml: &str) -> Snapshot {
    let mut snap = Snapshot::new("test");
    for doc in clb_ingress::manifests::parse_documents("test.yaml", yaml).expect("yaml") {
        clb_ingress::manifests::add_object(&mut snap, doc).expect("object");
    }
    for (i, ing) in snap.ingresses.iter_mut().enumerate() {
        let ing = std::sync::Arc::make_mut(ing);
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
    clb_ingress::plan::ownership(&d.stack, "test", None)
}
pub mod cluster;
pub mod emulator;
pub mod fake_clb;
pub mod gateway;
pub mod worlds;
