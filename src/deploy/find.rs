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
                Ok(found.into_iter().take(1).collect())
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
        Ok(found
            .into_iter()
            .filter(|lb| {
                lb.tags
                    .iter()
                    .any(|t| t.tag_key == TAG_CLUSTER && t.tag_value == self.cluster_id)
            })
            .collect())
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
        self.client
            .describe_load_balancers(&req)
            .await
            .map_err(cloud("DescribeLoadBalancers by cluster tag"))
    }
}
