//! Finding a stack's CLB: by id (adopted) or by its stack and cluster tags (created), and
//! listing every CLB this cluster created (for pruning).

use super::*;
use crate::model::ids::{TAG_CLASS, TAG_CLUSTER, TAG_SHARD, TAG_STACK};
use crate::model::{Placement, StackId};

impl<A: ClbApi> Deployer<A> {
    /// The CLB of a stack: by id (adopted) or by its stack tag (created). Read-only; if an
    /// interrupted creation left duplicates, all are returned, oldest first.
    #[instrument(level = "debug", skip_all, fields(stack = %stack))]
    pub async fn find(&self, stack: &StackId) -> Result<Vec<LoadBalancer>, DeployError> {
        self.find_clb(stack.adopted_lb(), &stack.hash(&self.cluster_id))
            .await
    }

    pub(super) async fn find_clb(
        &self,
        adopted: Option<&str>,
        stack_hash: &str,
    ) -> Result<Vec<LoadBalancer>, DeployError> {
        match adopted {
            Some(id) => {
                let req = DescribeLoadBalancersRequest {
                    load_balancer_ids: vec![id.to_string()],
                    ..Default::default()
                };
                let found = self
                    .client
                    .describe_load_balancers(&req)
                    .await
                    .map_err(cloud(format!("DescribeLoadBalancers {id}")))?;
                // Only the CLB asked for: an answer naming another is never written to.
                Ok(found
                    .into_iter()
                    .filter(|lb| lb.load_balancer_id == id)
                    .take(1)
                    .collect())
            }
            None => {
                let mut found = self.find_by_tag(stack_hash).await?;
                found.sort_by(|a, b| {
                    a.create_time
                        .cmp(&b.create_time)
                        .then(a.load_balancer_id.cmp(&b.load_balancer_id))
                });
                Ok(found)
            }
        }
    }

    async fn find_by_tag(&self, stack_hash: &str) -> Result<Vec<LoadBalancer>, DeployError> {
        let req = DescribeLoadBalancersRequest {
            filters: vec![Filter {
                name: format!("tag:{TAG_STACK}"),
                values: vec![stack_hash.to_string()],
            }],
            ..Default::default()
        };
        let found = self
            .client
            .describe_load_balancers(&req)
            .await
            .map_err(cloud("DescribeLoadBalancers by stack tag"))?;
        // The filter is the cloud's; the tags are checked here again, exactly.
        Ok(dedup(
            found
                .into_iter()
                .filter(|lb| {
                    has_tag(lb, TAG_CLUSTER, &self.cluster_id) && has_tag(lb, TAG_STACK, stack_hash)
                })
                .collect(),
        ))
    }

    /// Every CLB created by clb-ingress for this cluster (for pruning stacks that are gone).
    pub async fn owned_lbs(&self) -> Result<Vec<LoadBalancer>, DeployError> {
        let req = DescribeLoadBalancersRequest {
            filters: vec![Filter {
                name: format!("tag:{TAG_CLUSTER}"),
                values: vec![self.cluster_id.clone()],
            }],
            ..Default::default()
        };
        let found = self
            .client
            .describe_load_balancers(&req)
            .await
            .map_err(cloud("DescribeLoadBalancers by cluster tag"))?;
        Ok(dedup(
            found
                .into_iter()
                .filter(|lb| has_tag(lb, TAG_CLUSTER, &self.cluster_id))
                .collect(),
        ))
    }
}

/// The shard of a shared class this CLB is, proven by its stack tag: a CLB tagged with a class
/// and shard number whose stack tag is that shard's stack hash, or (a class's first CLB,
/// created before shards were tagged) a CLB whose stack tag is the hash of one of `classes`.
pub fn shard_of(lb: &LoadBalancer, cluster_id: &str, classes: &[String]) -> Option<(String, u32)> {
    let tag = |k: &str| {
        lb.tags
            .iter()
            .find(|t| t.tag_key == k)
            .map(|t| t.tag_value.as_str())
    };
    let stack = tag(TAG_STACK)?;
    if tag(TAG_CLUSTER) != Some(cluster_id) {
        return None;
    }
    if let (Some(class), Some(shard)) =
        (tag(TAG_CLASS), tag(TAG_SHARD).and_then(|n| n.parse().ok()))
        && StackId::shard(class, shard).hash(cluster_id) == stack
    {
        return Some((class.to_string(), shard));
    }
    classes
        .iter()
        .find(|c| StackId::shard(c, 0).hash(cluster_id) == stack)
        .map(|c| (c.clone(), 0))
}

impl<A: ClbApi> Deployer<A> {
    /// Where the hosts of shared classes live now, read from the cloud: every CLB of this
    /// cluster that is a shard of a class ([`shard_of`]; `classes` names the shared classes
    /// whose first CLB may predate the shard tags) and the domains of the listeners the shard's
    /// stack owns on it. One listing of CLBs and one of listeners per shard. A domain found on
    /// two shards (an interrupted move) counts for the lower one.
    pub async fn shard_placement(&self, classes: &[String]) -> Result<Placement, DeployError> {
        let mut out = Placement::new();
        if classes.is_empty() {
            // No shared class: no shard CLB to read (and no listing spent on it).
            return Ok(out);
        }
        for lb in self.owned_lbs().await? {
            let Some((class, shard)) = shard_of(&lb, &self.cluster_id, classes) else {
                continue;
            };
            let owned = StackId::shard(&class, shard).listener_name(&self.cluster_id);
            let listeners = self.listeners(&lb.load_balancer_id).await?;
            let hosts = out.entry(class).or_default();
            for r in listeners
                .iter()
                .filter(|l| l.listener_name == owned)
                .flat_map(|l| &l.rules)
            {
                let at = hosts.entry(r.domain.clone()).or_insert(shard);
                *at = (*at).min(shard);
            }
        }
        Ok(out)
    }
}

/// Does the CLB carry exactly this tag?
fn has_tag(lb: &LoadBalancer, key: &str, value: &str) -> bool {
    lb.tags
        .iter()
        .any(|t| t.tag_key == key && t.tag_value == value)
}

/// A listing with each CLB once (the first of repeats kept).
pub(super) fn dedup(mut lbs: Vec<LoadBalancer>) -> Vec<LoadBalancer> {
    let mut seen = std::collections::HashSet::new();
    lbs.retain(|lb| seen.insert(lb.load_balancer_id.clone()));
    lbs
}
