//! Finding a stack's CLB: by id (adopted) or by its stack and cluster tags (created), and
//! listing every CLB this cluster created (for pruning).

use super::*;
use crate::model::ids::{TAG_CLUSTER, TAG_STACK};

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
