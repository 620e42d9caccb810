//! Executes plans against a CLB: find the stack's CLB, observe it (one listing per reconcile),
//! and apply a `plan::Plan` in order, one writer per CLB, with batching and task waits.
//!
//! Every step is idempotent and safe to re-run after a crash at any point: the CLB is found by
//! its stack tag (and created with a ClientToken derived from the stack), certificates by their
//! upload name, and everything else is re-derived from what the CLB reports on the next run.

mod certs;
mod execute;
mod find;
mod observe;
pub mod quota;
pub mod settings;
mod warm;

pub use certs::OwnCertificate;
pub use warm::Listing;

use crate::clb::types::*;
use crate::clb::{ClbApi, ClbClient, ClbError};
use crate::model::{CertSource, DesiredLb, StackId};
use crate::plan::{self, ObservedLb};
use tracing::{debug, info, instrument, warn};

/// Public CLBs get this bandwidth cap unless the class parameters say otherwise (Mbps).
pub const DEFAULT_BANDWIDTH_MBPS: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{step}: {source}")]
    Cloud {
        step: String,
        #[source]
        source: ClbError,
    },
    #[error("{0}")]
    Plan(#[from] plan::PlanError),
    #[error("{step}: the CLB did not return {what}")]
    Missing { step: String, what: String },
    #[error("{step}: {ref_} was not created by an earlier step")]
    Unresolved { step: String, ref_: String },
    /// The CLB named for adoption may not be adopted (it was created by clb-ingress for another
    /// stack or cluster, or lacks the tags the class requires). Nothing was written to it.
    #[error("CLB {lb} is not adopted: {why}")]
    NotAdoptable { lb: String, why: String },
    /// A CLB API answer that cannot be right (an id missing or repeated, a port out of range);
    /// nothing is written on the strength of it.
    #[error("{step}: malformed answer: {what}")]
    Malformed { step: String, what: String },
    /// A certificate must be uploaded (again), but the controller dropped its private key from
    /// memory after the first upload: the Secret is read again and the stack retried at once.
    #[error(
        "the certificate of Secret {secret} must be uploaded again; its private key was dropped from memory after the first upload and is read again"
    )]
    KeyDropped { secret: String, fingerprint: String },
    /// An internal CLB without a VPC in the class: its subnet's VPC was looked up
    /// (VPC DescribeSubnets) and the subnet does not exist.
    #[error(
        "{step}: subnet {subnet} was not found (VPC DescribeSubnets), so the VPC of the internal CLB is unknown; check kubernetes.io/ingress.subnetId, or set create.vpcId in the class's ClbClassParameters"
    )]
    SubnetNotFound { step: String, subnet: String },
}

impl DeployError {
    /// Bounded category (Event reason, metric label).
    pub fn category(&self) -> &'static str {
        match self {
            DeployError::Cloud { source, .. } => source.category().as_str(),
            DeployError::Plan(_) => "LoadBalancerNotFound",
            DeployError::Missing { .. }
            | DeployError::Unresolved { .. }
            | DeployError::Malformed { .. } => "Inconsistent",
            DeployError::NotAdoptable { .. } => "AdoptionRefused",
            DeployError::KeyDropped { .. } => "KeyDropped",
            DeployError::SubnetNotFound { .. } => "SubnetNotFound",
        }
    }
}

fn cloud(step: impl Into<String>) -> impl FnOnce(ClbError) -> DeployError {
    let step = step.into();
    move |source| DeployError::Cloud { step, source }
}

/// What one reconcile of one stack did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub lb_id: Option<String>,
    pub vips: Vec<String>,
    pub changes: usize,
    pub write_calls: usize,
    pub conflicts: Vec<String>,
    /// The CLB was tagged with the digest of the desired state just applied (warm restart).
    pub digest_recorded: bool,
}

/// Talks to one region's CLB API on behalf of the model and the plan, through the `ClbApi`
/// seam (`ClbClient` in production; an in-memory CLB in tests).
#[derive(Clone)]
pub struct Deployer<A: ClbApi = ClbClient> {
    client: A,
    cluster_id: String,
}

impl<A: ClbApi> Deployer<A> {
    pub fn new(client: A, cluster_id: impl Into<String>) -> Self {
        Self {
            client,
            cluster_id: cluster_id.into(),
        }
    }

    pub fn client(&self) -> &A {
        &self.client
    }

    /// The cluster id this deployer tags, finds and owns CLBs by.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Mark the CLBs clb-ingress created for a stack as retained (by their name), so they are
    /// never deleted or pruned.
    pub async fn retain_lbs(&self, stack: &StackId) -> Result<(), DeployError> {
        if !stack.creates_clb() {
            return Ok(());
        }
        for lb in self.find(stack).await? {
            if crate::model::ids::is_retained_name(&lb.load_balancer_name) {
                continue;
            }
            let reply = self
                .client
                .modify_load_balancer_attributes(&ModifyLoadBalancerAttributesRequest {
                    load_balancer_id: lb.load_balancer_id.clone(),
                    load_balancer_name: Some(crate::model::ids::retained_name(
                        &lb.load_balancer_name,
                    )),
                    ..Default::default()
                })
                .await
                .map_err(cloud("ModifyLoadBalancerAttributes (retain)"))?;
            self.wait(&reply.request_id, "ModifyLoadBalancerAttributes")
                .await?;
        }
        Ok(())
    }

    async fn delete_lbs(&self, ids: &[String]) -> Result<(), DeployError> {
        let req = DeleteLoadBalancerRequest {
            load_balancer_ids: ids.to_vec(),
            force_delete: Some(true),
        };
        let replies = match self.client.delete_load_balancers(&req).await {
            Err(e) if e.category() == crate::clb::ErrorCategory::NotFound => return Ok(()),
            other => other.map_err(cloud("DeleteLoadBalancer"))?,
        };
        for r in replies {
            self.wait(&r.request_id, "DeleteLoadBalancer").await?;
        }
        Ok(())
    }

    async fn wait(&self, task: &str, step: &str) -> Result<(), DeployError> {
        self.client
            .wait_task(task)
            .await
            .map(|_| ())
            .map_err(cloud(format!("{step} (task {task})")))
    }

    /// Reconcile one stack: find, observe, plan, execute. `desired` None deletes what we own.
    /// Bring a stack's CLB to `desired` (None: the stack is gone; delete what it owns).
    #[instrument(level = "info", skip_all, fields(stack = %stack))]
    pub async fn reconcile(
        &self,
        stack: &StackId,
        desired: Option<&DesiredLb>,
    ) -> Result<Outcome, DeployError> {
        let hash = stack.hash(&self.cluster_id);
        let found = self.find_clb(stack.adopted_lb(), &hash).await?;
        if let Some(lb) = found.first()
            && stack.adopted_lb().is_some()
        {
            let required = match desired.map(|d| &d.source) {
                Some(crate::model::LbSource::Existing { required_tags, .. }) => Some(required_tags),
                _ => None,
            };
            check_adoptable(lb, required)?;
        }
        self.reconcile_found(found, stack.creates_clb(), &hash, desired)
            .await
    }

    /// Delete a CLB clb-ingress created for this cluster whose stack no longer exists (found
    /// by [`Deployer::owned_lbs`]; `stack_hash` is its stack tag).
    #[instrument(level = "info", skip_all, fields(lb = %lb.load_balancer_id))]
    pub async fn prune(&self, lb: &LoadBalancer, stack_hash: &str) -> Result<Outcome, DeployError> {
        let found = self.find_clb(None, stack_hash).await?;
        self.reconcile_found(found, true, stack_hash, None).await
    }

    async fn reconcile_found(
        &self,
        mut found: Vec<LoadBalancer>,
        creates_clb: bool,
        stack_hash: &str,
        desired: Option<&DesiredLb>,
    ) -> Result<Outcome, DeployError> {
        // A listing can repeat a CLB: never treat the kept one as its own duplicate.
        found = find::dedup(found);
        if found.len() > 1 && creates_clb {
            // Ours by their tags: keep the oldest, delete the rest.
            let extra: Vec<String> = found[1..]
                .iter()
                .map(|l| l.load_balancer_id.clone())
                .collect();
            warn!(?extra, "deleting duplicate CLBs of one stack");
            self.delete_lbs(&extra).await?;
        }
        let lb = found.into_iter().next();
        let wants_certs = desired.is_some_and(|d| {
            d.listeners
                .iter()
                .flat_map(|l| &l.domains)
                .any(|dom| matches!(dom.certificate, Some(CertSource::Pem { .. })))
        });
        let observed = match &lb {
            Some(lb) => Some(self.observe(lb, wants_certs).await?),
            None => None,
        };
        // A CLB marked retained (loadbalance-retain) is never deleted.
        let own = crate::model::ids::ownership_by_hash(
            creates_clb,
            stack_hash,
            &self.cluster_id,
            observed.as_ref().map(ObservedLb::facts),
        );
        let plan = plan::diff(desired, observed.as_ref(), &own)?;
        let mut outcome = Outcome {
            lb_id: observed.as_ref().map(|o| o.id.clone()),
            vips: observed
                .as_ref()
                .map(|o| o.vips.clone())
                .unwrap_or_default(),
            changes: plan.changes.len(),
            write_calls: plan.api_calls(),
            conflicts: plan.conflicts.clone(),
            digest_recorded: false,
        };
        let digest_of = |o: &ObservedLb| o.tags.get(crate::model::ids::TAG_DESIRED).cloned();
        let recorded_digest = observed.as_ref().and_then(digest_of);
        // The digest is recorded only on a CLB that is ours whole and only when everything
        // desired is in place (no conflict left anything out).
        let record = desired.filter(|_| own.lb_owned && plan.conflicts.is_empty());
        if plan.is_empty() {
            debug!("in sync");
            if let (Some(d), Some(id)) = (record, &outcome.lb_id) {
                outcome.digest_recorded =
                    self.record_digest(id, recorded_digest.as_deref(), d).await;
            }
            return Ok(outcome);
        }
        // The controller logs one INFO line per reconcile with the outcome; this is detail.
        debug!(
            changes = plan.changes.len(),
            calls = plan.api_calls(),
            "applying plan"
        );
        let lb_id = self
            .execute(observed.as_ref().map(|o| o.id.clone()), &plan, stack_hash)
            .await?;
        if outcome.lb_id.is_none() {
            outcome.lb_id = lb_id.clone();
        }
        if let (Some(d), Some(id)) = (record, &lb_id) {
            outcome.digest_recorded = self.record_digest(id, recorded_digest.as_deref(), d).await;
        }
        if desired.is_none() {
            outcome.vips.clear();
        } else if outcome.vips.is_empty()
            && let Some(id) = &lb_id
        {
            let req = DescribeLoadBalancersRequest {
                load_balancer_ids: vec![id.clone()],
                ..Default::default()
            };
            if let Some(lb) = self
                .client
                .describe_load_balancers(&req)
                .await
                .map_err(cloud("DescribeLoadBalancers (address)"))?
                .into_iter()
                .next()
            {
                outcome.vips = lb.load_balancer_vips;
            }
        }
        Ok(outcome)
    }
}

/// May this existing CLB be adopted? Never one clb-ingress created (for any stack or cluster:
/// it carries our tags), and only with every tag the class requires (`required`: None when the
/// stack is going away and only its own listeners are removed).
fn check_adoptable(
    lb: &LoadBalancer,
    required: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<(), DeployError> {
    use crate::model::ids::{TAG_CLUSTER, TAG_CREATED_BY, TAG_STACK};
    let tag = |k: &str| {
        lb.tags
            .iter()
            .find(|t| t.tag_key == k)
            .map(|t| t.tag_value.as_str())
    };
    let refuse = |why: &str| DeployError::NotAdoptable {
        lb: lb.load_balancer_id.clone(),
        why: why.to_string(),
    };
    if [TAG_CLUSTER, TAG_STACK, TAG_CREATED_BY]
        .iter()
        .any(|k| tag(k).is_some())
    {
        return Err(refuse(
            "it was created by clb-ingress for another stack or cluster",
        ));
    }
    if let Some(required) = required
        && let Some((k, _)) = required.iter().find(|(k, v)| tag(k) != Some(v.as_str()))
    {
        return Err(refuse(&format!(
            "it lacks the tag {k} that the class's adoption.tagSelector requires"
        )));
    }
    Ok(())
}
