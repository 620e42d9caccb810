//! Warm restart: the desired-state digest on the CLB. Once a stack's desired state is fully
//! applied to a CLB clb-ingress created, the CLB gets the tag [`TAG_DESIRED`] = the state's
//! [`DesiredLb::digest`] (Tag service ModifyResourceTags; no CLB action changes tags). A sweep
//! then lists this cluster's CLBs once (one DescribeLoadBalancers per page of 100, tags
//! included) and skips every stack whose CLB's tag equals its digest: no listener, rule or
//! target read, no write. Changes made to the cloud by hand are not in the tag; the slow full
//! sweep (`--full-resync-seconds`) reads every CLB and repairs them.

use super::*;
use crate::model::ids::{TAG_DESIRED, is_retained_name};
use std::collections::HashMap;

/// This cluster's CLBs from one paged listing, by stack hash.
#[derive(Debug, Default)]
pub struct Listing {
    lbs: Vec<LoadBalancer>,
    by_stack: HashMap<String, Vec<usize>>,
}

impl Listing {
    /// Index CLBs (all tagged with this cluster's id) by their stack tag.
    pub fn new(lbs: Vec<LoadBalancer>) -> Self {
        let mut by_stack: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, lb) in lbs.iter().enumerate() {
            if let Some(t) = lb
                .tags
                .iter()
                .find(|t| t.tag_key == crate::model::ids::TAG_STACK)
            {
                by_stack.entry(t.tag_value.clone()).or_default().push(i);
            }
        }
        Self { lbs, by_stack }
    }

    /// Every CLB listed.
    pub fn lbs(&self) -> &[LoadBalancer] {
        &self.lbs
    }

    /// The CLBs tagged with this stack hash.
    fn of_stack(&self, stack_hash: &str) -> Vec<&LoadBalancer> {
        self.by_stack
            .get(stack_hash)
            .into_iter()
            .flatten()
            .map(|&i| &self.lbs[i])
            .collect()
    }
}

impl<A: ClbApi> Deployer<A> {
    /// This cluster's CLBs: one DescribeLoadBalancers per page of 100.
    pub async fn listing(&self) -> Result<Listing, DeployError> {
        Ok(Listing::new(self.owned_lbs().await?))
    }

    /// The outcome of reconciling `stack` to `desired`, without a call, when `listing` proves
    /// its CLB already holds it: the stack creates its CLB, exactly one CLB of this cluster
    /// carries its stack tag, it is not marked retained, and its [`TAG_DESIRED`] tag is the
    /// digest of `desired`. None: reconcile it the usual way.
    pub fn warm_outcome(
        &self,
        stack: &StackId,
        desired: Option<&DesiredLb>,
        listing: &Listing,
    ) -> Option<Outcome> {
        let desired = desired?;
        if !stack.creates_clb() {
            return None;
        }
        let [lb] = listing.of_stack(&stack.hash(&self.cluster_id))[..] else {
            return None;
        };
        if is_retained_name(&lb.load_balancer_name) {
            return None;
        }
        let tag = lb.tags.iter().find(|t| t.tag_key == TAG_DESIRED)?;
        let digest = desired.digest();
        if tag.tag_value != digest {
            debug!(stack = %stack, tagged = %tag.tag_value, desired = %digest, "desired state changed");
        }
        (tag.tag_value == digest).then(|| Outcome {
            lb_id: Some(lb.load_balancer_id.clone()),
            vips: lb.load_balancer_vips.clone(),
            ..Outcome::default()
        })
    }

    /// Tag CLB `lb_id` with the digest of `desired` (now fully applied) unless its tag
    /// (`current`) already says so. A failure (for example the Tag service permission
    /// missing) is logged and leaves the stack to be read in full after a restart; the
    /// routing itself is in place, so the reconcile does not fail.
    pub(super) async fn record_digest(
        &self,
        lb_id: &str,
        current: Option<&str>,
        desired: &DesiredLb,
    ) -> bool {
        let digest = desired.digest();
        if current == Some(digest.as_str()) {
            return false;
        }
        let req = ModifyResourceTagsRequest {
            resource: crate::clb::actions::clb_resource_name(self.client.region(), lb_id),
            replace_tags: vec![TagInfo {
                tag_key: TAG_DESIRED.to_string(),
                tag_value: digest,
            }],
            delete_tags: Vec::new(),
        };
        match self.client.modify_resource_tags(&req).await {
            Ok(_) => true,
            Err(e) => {
                warn!(
                    lb = lb_id,
                    category = e.category().as_str(),
                    error = %e,
                    "could not tag the CLB with its desired-state digest (Tag service ModifyResourceTags); a restart will read it in full"
                );
                false
            }
        }
    }
}
