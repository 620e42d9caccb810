//! Garbage collection of the certificates this cluster uploaded (run after each full sweep).
//!
//! A certificate is deleted only when all of this holds, checked again on every sweep:
//! - it is this cluster's upload (its alias carries this cluster's prefix, see
//!   `deploy::certs`): other clusters' and the user's certificates are never judged;
//! - no stack's desired state uses it, and every stack of the sweep reconciled successfully
//!   (so the CLBs are in their desired state: none still points at an old certificate);
//! - no CLB of this cluster that the sweep did not reconcile (retained by `loadbalance-retain`,
//!   frozen by `mode: skip`, about to be pruned) references it on a listener or rule;
//! - no stack is frozen on an adopted CLB (such a CLB could reference it unseen);
//! - it has been unused like this, continuously, for the grace period.

use super::Controller;
use crate::model::{CertSource, DesiredLb};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info};

/// Default time a certificate must stay unused before it is deleted.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// The plan's names of the uploaded (PEM) certificates a desired state uses.
pub fn pem_names(desired: &DesiredLb) -> impl Iterator<Item = String> + '_ {
    desired
        .listeners
        .iter()
        .flat_map(|l| &l.domains)
        .filter_map(|d| match &d.certificate {
            Some(CertSource::Pem { fingerprint, .. }) => Some(crate::plan::cert_name(fingerprint)),
            _ => None,
        })
}

/// What a sweep knows for the collection.
pub struct SweepFacts {
    /// Names of the PEM certificates some stack wants.
    pub in_use: BTreeSet<String>,
    /// Stack hashes the sweep reconciled.
    pub reconciled: BTreeSet<String>,
    /// A stack is frozen on an adopted CLB.
    pub frozen_adopted: bool,
}

/// Certificates found unused, and since when.
#[derive(Default)]
pub struct Unused(std::sync::Mutex<HashMap<String, Instant>>);

impl Controller {
    /// Delete this cluster's certificates that nothing uses any more (see the module docs).
    pub(super) async fn collect_certificates(&self, facts: SweepFacts, grace: Duration) {
        if facts.frozen_adopted {
            debug!("certificate GC skipped: a stack is frozen on an adopted CLB");
            return;
        }
        if self.memory.lock().await.any_failing() {
            debug!("certificate GC skipped: a stack is not in its desired state");
            return;
        }
        let own = match self.deployer.own_certificates().await {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "certificate GC: cannot list our certificates");
                return;
            }
        };
        let mut candidates: Vec<_> = own
            .into_iter()
            .filter(|c| !facts.in_use.contains(&c.name))
            .collect();
        if !candidates.is_empty() {
            // CLBs of this cluster the sweep did not reconcile may still point at them.
            let lbs = match self.deployer.owned_lbs().await {
                Ok(l) => l,
                Err(e) => {
                    debug!(error = %e, "certificate GC: cannot list our CLBs");
                    return;
                }
            };
            for lb in lbs {
                let tag = lb
                    .tags
                    .iter()
                    .find(|t| t.tag_key == crate::model::ids::TAG_STACK)
                    .map(|t| t.tag_value.as_str());
                if tag.is_some_and(|t| facts.reconciled.contains(t)) {
                    continue;
                }
                match self
                    .deployer
                    .certificates_in_use(&lb.load_balancer_id)
                    .await
                {
                    Ok(ids) => candidates.retain(|c| !ids.contains(&c.id)),
                    Err(e) => {
                        debug!(error = %e, "certificate GC: cannot read a CLB's certificates");
                        return;
                    }
                }
            }
        }
        let now = Instant::now();
        let due: Vec<_> = {
            let mut unused = self
                .unused_certs
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            unused.retain(|id, _| candidates.iter().any(|c| &c.id == id));
            candidates
                .into_iter()
                .filter(|c| now.duration_since(*unused.entry(c.id.clone()).or_insert(now)) >= grace)
                .collect()
        };
        for cert in due {
            match self.deployer.delete_own_certificate(&cert).await {
                Ok(deleted) => {
                    info!(id = %cert.id, deleted, "unused certificate collected");
                    self.hooks.certificate_collected(deleted);
                    self.unused_certs
                        .0
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&cert.id);
                }
                Err(e) => debug!(error = %e, "certificate GC: delete failed (retried next sweep)"),
            }
        }
    }
}
