//! Executes plans against a CLB: find the stack's CLB, observe it (one listing per reconcile),
//! and apply a `plan::Plan` in order, one writer per CLB, with batching and task waits.
//!
//! Every step is idempotent and safe to re-run after a crash at any point: the CLB is found by
//! its stack tag (and created with a ClientToken derived from the stack), certificates by their
//! upload name, and everything else is re-derived from what the CLB reports on the next run.

use crate::clb::types::*;
use crate::clb::{ClbClient, ClbError};
use crate::model::ids::{TAG_CLUSTER, TAG_STACK};
use crate::model::{CertSource, DesiredLb, Protocol, StackId, TargetAddr};
use crate::plan::{
    self, CERT_NAME_PREFIX, CertRef, Change, ListenerRef, ObservedLb, ObservedListener,
    ObservedRule, Plan, RuleRef, RuleTarget,
};
use std::collections::{BTreeMap, HashMap};
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
}

impl DeployError {
    /// Bounded category (Event reason, metric label).
    pub fn category(&self) -> &'static str {
        match self {
            DeployError::Cloud { source, .. } => source.category().as_str(),
            DeployError::Plan(_) => "LoadBalancerNotFound",
            DeployError::Missing { .. } | DeployError::Unresolved { .. } => "Inconsistent",
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
}

/// Talks to one region's CLB API on behalf of the model and the plan.
#[derive(Clone)]
pub struct Deployer {
    client: ClbClient,
    cluster_id: String,
}

impl Deployer {
    pub fn new(client: ClbClient, cluster_id: impl Into<String>) -> Self {
        Self {
            client,
            cluster_id: cluster_id.into(),
        }
    }

    pub fn client(&self) -> &ClbClient {
        &self.client
    }

    /// The cluster id this deployer tags, finds and owns CLBs by.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The CLB of a stack: by id (adopted) or by its stack tag (created). Read-only; if an
    /// interrupted creation left duplicates, all are returned, oldest first.
    #[instrument(level = "debug", skip_all, fields(stack = %stack))]
    pub async fn find(&self, stack: &StackId) -> Result<Vec<LoadBalancer>, DeployError> {
        self.find_clb(stack.adopted_lb(), &stack.hash(&self.cluster_id))
            .await
    }

    async fn find_clb(
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

    /// Read a CLB's listeners, rules, targets (and, if asked, our uploaded certificates).
    #[instrument(level = "debug", skip_all, fields(lb = %lb.load_balancer_id))]
    pub async fn observe(
        &self,
        lb: &LoadBalancer,
        with_certificates: bool,
    ) -> Result<ObservedLb, DeployError> {
        let lb_id = &lb.load_balancer_id;
        let listeners = self
            .client
            .describe_listeners(&DescribeListenersRequest {
                load_balancer_id: lb_id.clone(),
                ..Default::default()
            })
            .await
            .map_err(cloud(format!("DescribeListeners {lb_id}")))?;
        let l7: Vec<&Listener> = listeners
            .iter()
            .filter(|l| l.protocol == "HTTP" || l.protocol == "HTTPS")
            .collect();
        let mut targets: HashMap<String, Vec<crate::model::Target>> = HashMap::new();
        let with_rules: Vec<String> = l7
            .iter()
            .filter(|l| !l.rules.is_empty())
            .map(|l| l.listener_id.clone())
            .collect();
        if !with_rules.is_empty() {
            let backends = self
                .client
                .describe_targets(&DescribeTargetsRequest {
                    load_balancer_id: lb_id.clone(),
                    listener_ids: with_rules,
                    ..Default::default()
                })
                .await
                .map_err(cloud(format!("DescribeTargets {lb_id}")))?;
            for lb_backend in backends {
                for rule in lb_backend.rules {
                    let ts = rule.targets.iter().filter_map(backend_to_target).collect();
                    targets.insert(rule.location_id, ts);
                }
            }
        }
        let mut out_listeners = Vec::new();
        for l in l7 {
            let protocol = if l.protocol == "HTTPS" {
                Protocol::Https
            } else {
                Protocol::Http
            };
            let rules = l
                .rules
                .iter()
                .map(|r| ObservedRule {
                    location_id: r.location_id.clone(),
                    domain: r.domain.clone(),
                    url: r.url.clone(),
                    default_server: r.default_server,
                    certificate_id: r.certificate.as_ref().and_then(|c| c.cert_id.clone()),
                    targets: targets.remove(&r.location_id).unwrap_or_default(),
                    rewrite: r.rewrite_target.as_ref().and_then(|w| {
                        Some(plan::ObservedRewrite {
                            target_listener: w.target_listener_id.clone()?,
                            target_location: w.target_location_id.clone()?,
                            code: u16::try_from(w.rewrite_code.unwrap_or(302)).unwrap_or(302),
                        })
                    }),
                })
                .collect();
            out_listeners.push(ObservedListener {
                id: l.listener_id.clone(),
                name: l.listener_name.clone(),
                protocol,
                port: u16::try_from(l.port).unwrap_or(0),
                sni: l.sni_switch == 1,
                rules,
            });
        }
        let mut certificates = BTreeMap::new();
        if with_certificates {
            let certs = self
                .client
                .describe_certificates(&DescribeCertificatesRequest {
                    search_key: Some(CERT_NAME_PREFIX.to_string()),
                    ..Default::default()
                })
                .await
                .map_err(cloud("DescribeCertificates"))?;
            for c in certs {
                if c.alias.starts_with(CERT_NAME_PREFIX) {
                    certificates.entry(c.alias).or_insert(c.certificate_id);
                }
            }
        }
        Ok(ObservedLb {
            id: lb_id.clone(),
            name: lb.load_balancer_name.clone(),
            vips: lb.load_balancer_vips.clone(),
            domain: lb
                .load_balancer_domain
                .clone()
                .or_else(|| lb.domain.clone()),
            tags: lb
                .tags
                .iter()
                .map(|t| (t.tag_key.clone(), t.tag_value.clone()))
                .collect(),
            listeners: out_listeners,
            certificates,
        })
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
        let mut seen = std::collections::HashSet::new();
        found.retain(|lb| seen.insert(lb.load_balancer_id.clone()));
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
        };
        if plan.is_empty() {
            debug!("in sync");
            return Ok(outcome);
        }
        info!(
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

    /// Apply a plan in order. Returns the CLB id (created by the plan, or given).
    pub async fn execute(
        &self,
        lb_id: Option<String>,
        plan: &Plan,
        stack_hash: &str,
    ) -> Result<Option<String>, DeployError> {
        let mut ex = Execution {
            d: self,
            lb_id,
            listeners: HashMap::new(),
            rules: HashMap::new(),
            certs: HashMap::new(),
            stack_hash,
        };
        for change in &plan.changes {
            ex.apply(change).await?;
        }
        Ok(ex.lb_id)
    }
}

fn backend_to_target(b: &Backend) -> Option<crate::model::Target> {
    let addr = match (&b.instance_id, b.backend_type.to_ascii_uppercase().as_str()) {
        (Some(id), "CVM") => TargetAddr::Instance(id.clone()),
        _ => TargetAddr::Ip(b.private_ip_addresses.first()?.clone()),
    };
    Some(crate::model::Target {
        addr,
        port: u16::try_from(b.port).ok()?,
        weight: u32::try_from(b.weight).unwrap_or(0),
    })
}

fn target_fields(t: &crate::model::Target) -> (Option<String>, Option<String>) {
    match &t.addr {
        TargetAddr::Instance(i) => (Some(i.clone()), None),
        TargetAddr::Ip(ip) => (None, Some(ip.clone())),
    }
}

/// State of one plan execution: ids created by earlier steps.
struct Execution<'a> {
    d: &'a Deployer,
    lb_id: Option<String>,
    /// (protocol, port) -> listener id, for listeners created by this plan.
    listeners: HashMap<(Protocol, u16), String>,
    /// (listener id, domain, url) -> location id, for rules created by this plan.
    rules: HashMap<(String, String, String), String>,
    /// certificate fingerprint -> uploaded certificate id.
    certs: HashMap<String, String>,
    stack_hash: &'a str,
}

impl Execution<'_> {
    fn lb(&self, step: &str) -> Result<String, DeployError> {
        self.lb_id.clone().ok_or_else(|| DeployError::Unresolved {
            step: step.to_string(),
            ref_: "the CLB".into(),
        })
    }

    fn listener(&self, l: &ListenerRef, step: &str) -> Result<String, DeployError> {
        match l {
            ListenerRef::Id(id) => Ok(id.clone()),
            ListenerRef::New { protocol, port } => self
                .listeners
                .get(&(*protocol, *port))
                .cloned()
                .ok_or_else(|| DeployError::Unresolved {
                    step: step.to_string(),
                    ref_: format!("listener {} {port}", protocol.as_str()),
                }),
        }
    }

    fn rule(&self, listener: &str, r: &RuleRef, step: &str) -> Result<String, DeployError> {
        match r {
            RuleRef::Id(id) => Ok(id.clone()),
            RuleRef::New { domain, url } => self
                .rules
                .get(&(listener.to_string(), domain.clone(), url.clone()))
                .cloned()
                .ok_or_else(|| DeployError::Unresolved {
                    step: step.to_string(),
                    ref_: format!("rule {domain} {url}"),
                }),
        }
    }

    fn cert(&self, c: &CertRef, step: &str) -> Result<CertificateInput, DeployError> {
        let id = match c {
            CertRef::Id(id) => id.clone(),
            CertRef::Uploaded { fingerprint } => {
                self.certs
                    .get(fingerprint)
                    .cloned()
                    .ok_or_else(|| DeployError::Unresolved {
                        step: step.to_string(),
                        ref_: format!("certificate {}", plan::cert_name(fingerprint)),
                    })?
            }
        };
        Ok(CertificateInput {
            ssl_mode: Some("UNIDIRECTIONAL".into()),
            cert_id: Some(id),
            ..Default::default()
        })
    }

    fn batch_targets(
        &self,
        ts: &[RuleTarget],
        step: &str,
    ) -> Result<Vec<BatchTarget>, DeployError> {
        ts.iter()
            .map(|t| {
                let listener_id = self.listener(&t.listener, step)?;
                let location_id = self.rule(&listener_id, &t.rule, step)?;
                let (instance_id, eni_ip) = target_fields(&t.target);
                Ok(BatchTarget {
                    listener_id,
                    port: i64::from(t.target.port),
                    instance_id,
                    eni_ip,
                    weight: Some(i64::from(t.target.weight)),
                    location_id: Some(location_id),
                    tag: None,
                })
            })
            .collect()
    }

    async fn apply(&mut self, change: &Change) -> Result<(), DeployError> {
        let step = change.kind();
        let d = self.d;
        debug!(%change, "applying");
        match change {
            Change::CreateLoadBalancer {
                name,
                settings,
                tags,
            } => {
                let internal = settings.network_type == crate::crd::NetworkType::Internal;
                let req = CreateLoadBalancerRequest {
                    load_balancer_type: if internal { "INTERNAL" } else { "OPEN" }.into(),
                    forward: Some(1),
                    load_balancer_name: Some(name.clone()),
                    vpc_id: settings.vpc_id.clone(),
                    subnet_id: settings.subnet_id.clone(),
                    project_id: settings.project_id,
                    internet_accessible: (!internal).then(|| InternetAccessible {
                        internet_max_bandwidth_out: Some(
                            settings.bandwidth_mbps.unwrap_or(DEFAULT_BANDWIDTH_MBPS),
                        ),
                        ..Default::default()
                    }),
                    tags: tags
                        .iter()
                        .map(|(k, v)| (k, v))
                        .chain(settings.tags.iter())
                        .map(|(k, v)| TagInfo {
                            tag_key: k.clone(),
                            tag_value: v.clone(),
                        })
                        .collect(),
                    // Unique per attempt: a token is remembered by CLB after the CLB it made is
                    // deleted, so a fixed token would hand back a dead id. Crash safety comes
                    // from finding the CLB by its stack tag (and deleting duplicates) instead.
                    client_token: Some(format!(
                        "clb-ingress-{}-{}",
                        self.stack_hash,
                        &uuid::Uuid::new_v4().simple().to_string()[..12]
                    )),
                    ..Default::default()
                };
                let ids = d
                    .client
                    .create_load_balancer_and_wait(&req)
                    .await
                    .map_err(cloud(step))?;
                self.lb_id = Some(ids.into_iter().next().ok_or(DeployError::Missing {
                    step: step.into(),
                    what: "a LoadBalancerId".into(),
                })?);
            }
            Change::RenameLoadBalancer { id, name } => {
                let reply = d
                    .client
                    .modify_load_balancer_attributes(&ModifyLoadBalancerAttributesRequest {
                        load_balancer_id: id.clone(),
                        load_balancer_name: Some(name.clone()),
                        ..Default::default()
                    })
                    .await
                    .map_err(cloud(format!("{step} {id}")))?;
                d.wait(&reply.request_id, step).await?;
            }
            Change::DeleteRewrites {
                source_listener,
                target_listener,
                rewrites,
            } => {
                let reply = d
                    .client
                    .delete_rewrite(&DeleteRewriteRequest {
                        load_balancer_id: self.lb(step)?,
                        source_listener_id: source_listener.clone(),
                        target_listener_id: target_listener.clone(),
                        rewrite_infos: rewrites
                            .iter()
                            .map(|(src, dst, _, _)| RewriteLocationMap {
                                source_location_id: src.clone(),
                                target_location_id: dst.clone(),
                                ..Default::default()
                            })
                            .collect(),
                    })
                    .await;
                match reply {
                    // Already gone (with its rule, or by an earlier interrupted run).
                    Err(e) if e.category() == crate::clb::ErrorCategory::NotFound => {}
                    other => {
                        let reply = other.map_err(cloud(step))?;
                        d.wait(&reply.request_id, step).await?;
                    }
                }
            }
            Change::CreateRewrites {
                source_listener,
                target_listener,
                rewrites,
            } => {
                let src = self.listener(source_listener, step)?;
                let dst = self.listener(target_listener, step)?;
                let mut infos = Vec::with_capacity(rewrites.len());
                for r in rewrites {
                    infos.push(RewriteLocationMap {
                        source_location_id: self.rule(&src, &r.source, step)?,
                        target_location_id: self.rule(&dst, &r.target, step)?,
                        rewrite_code: Some(i64::from(r.code)),
                        take_url: Some(true),
                        source_domain: Some(r.domain.clone()),
                    });
                }
                let reply = d
                    .client
                    .manual_rewrite(&ManualRewriteRequest {
                        load_balancer_id: self.lb(step)?,
                        source_listener_id: src,
                        target_listener_id: dst,
                        rewrite_infos: infos,
                    })
                    .await
                    .map_err(cloud(step))?;
                d.wait(&reply.request_id, step).await?;
            }
            Change::UploadCertificate {
                fingerprint,
                name,
                cert_pem,
                key_pem,
                ..
            } => {
                let id = d
                    .client
                    .upload_certificate(&UploadCertificateRequest {
                        certificate_public_key: cert_pem.clone(),
                        certificate_private_key: Some(key_pem.clone()),
                        certificate_type: Some("SVR".into()),
                        alias: Some(name.clone()),
                        ..Default::default()
                    })
                    .await
                    .map_err(cloud(format!("{step} {name}")))?;
                self.certs.insert(fingerprint.clone(), id);
            }
            Change::CreateListener {
                protocol,
                port,
                name,
                sni,
            } => {
                let lb = self.lb(step)?;
                let reply = d
                    .client
                    .create_listener(&CreateListenerRequest {
                        load_balancer_id: lb,
                        ports: vec![i64::from(*port)],
                        protocol: protocol.as_str().into(),
                        listener_names: vec![name.clone()],
                        sni_switch: (*protocol == Protocol::Https).then_some(i64::from(*sni)),
                        ..Default::default()
                    })
                    .await
                    .map_err(cloud(format!("{step} {} {port}", protocol.as_str())))?;
                let id =
                    reply
                        .data
                        .listener_ids
                        .into_iter()
                        .next()
                        .ok_or(DeployError::Missing {
                            step: step.into(),
                            what: "a ListenerId".into(),
                        })?;
                d.wait(&reply.request_id, step).await?;
                self.listeners.insert((*protocol, *port), id);
            }
            Change::EnableSni { listener, .. } => {
                let reply = d
                    .client
                    .modify_listener(&ModifyListenerRequest {
                        load_balancer_id: self.lb(step)?,
                        listener_id: listener.clone(),
                        sni_switch: Some(1),
                        ..Default::default()
                    })
                    .await
                    .map_err(cloud(step))?;
                d.wait(&reply.request_id, step).await?;
            }
            Change::CreateRules { listener, rules } => {
                let listener_id = self.listener(listener, step)?;
                let mut inputs = Vec::with_capacity(rules.len());
                for r in rules {
                    inputs.push(RuleInput {
                        url: r.url.clone(),
                        domain: Some(r.domain.clone()),
                        default_server: r.default_server.then_some(true),
                        certificate: match &r.certificate {
                            Some(c) => Some(self.cert(c, step)?),
                            None => None,
                        },
                        ..Default::default()
                    });
                }
                let reply = d
                    .client
                    .create_rule(&CreateRuleRequest {
                        load_balancer_id: self.lb(step)?,
                        listener_id: listener_id.clone(),
                        rules: inputs,
                    })
                    .await
                    .map_err(cloud(format!("{step} on {listener_id}")))?;
                if reply.data.location_ids.len() != rules.len() {
                    return Err(DeployError::Missing {
                        step: step.into(),
                        what: format!("{} LocationIds", rules.len()),
                    });
                }
                d.wait(&reply.request_id, step).await?;
                for (r, loc) in rules.iter().zip(reply.data.location_ids) {
                    self.rules
                        .insert((listener_id.clone(), r.domain.clone(), r.url.clone()), loc);
                }
            }
            Change::ModifyRuleUrl {
                listener,
                location_id,
                to,
                ..
            } => {
                let reply = d
                    .client
                    .modify_rule(&ModifyRuleRequest {
                        load_balancer_id: self.lb(step)?,
                        listener_id: listener.clone(),
                        location_id: location_id.clone(),
                        url: Some(to.clone()),
                        ..Default::default()
                    })
                    .await
                    .map_err(cloud(step))?;
                d.wait(&reply.request_id, step).await?;
            }
            Change::ModifyDomain {
                listener,
                domain,
                certificate,
                make_default,
            } => {
                let certificate = match certificate {
                    Some(c) => Some(self.cert(c, step)?),
                    None => None,
                };
                let reply = d
                    .client
                    .modify_domain_attributes(&ModifyDomainAttributesRequest {
                        load_balancer_id: self.lb(step)?,
                        listener_id: self.listener(listener, step)?,
                        domain: domain.clone(),
                        certificate,
                        default_server: make_default.then_some(true),
                        ..Default::default()
                    })
                    .await
                    .map_err(cloud(format!("{step} {domain}")))?;
                d.wait(&reply.request_id, step).await?;
            }
            Change::RegisterTargets { targets } => {
                let req = BatchTargetsRequest {
                    load_balancer_id: self.lb(step)?,
                    targets: self.batch_targets(targets, step)?,
                };
                d.client
                    .batch_register_targets(&req)
                    .await
                    .map_err(cloud(step))?;
            }
            Change::DeregisterTargets { targets } => {
                let req = BatchTargetsRequest {
                    load_balancer_id: self.lb(step)?,
                    targets: self.batch_targets(targets, step)?,
                };
                d.client
                    .batch_deregister_targets(&req)
                    .await
                    .map_err(cloud(step))?;
            }
            Change::ModifyTargetWeights { targets } => {
                let mut per_rule: BTreeMap<(String, String), Vec<Target>> = BTreeMap::new();
                for bt in self.batch_targets(targets, step)? {
                    per_rule
                        .entry((
                            bt.listener_id.clone(),
                            bt.location_id.clone().unwrap_or_default(),
                        ))
                        .or_default()
                        .push(Target {
                            port: bt.port,
                            instance_id: bt.instance_id,
                            eni_ip: bt.eni_ip,
                            weight: bt.weight,
                            ..Default::default()
                        });
                }
                let req = BatchModifyTargetWeightRequest {
                    load_balancer_id: self.lb(step)?,
                    modify_list: per_rule
                        .into_iter()
                        .map(|((listener_id, location_id), targets)| RsWeightRule {
                            listener_id,
                            targets,
                            location_id: Some(location_id),
                            ..Default::default()
                        })
                        .collect(),
                };
                d.client
                    .batch_modify_target_weight(&req)
                    .await
                    .map_err(cloud(step))?;
            }
            Change::DeleteRules { listener, rules } => {
                let reply = d
                    .client
                    .delete_rule(&DeleteRuleRequest {
                        load_balancer_id: self.lb(step)?,
                        listener_id: listener.clone(),
                        location_ids: rules.iter().map(|r| r.0.clone()).collect(),
                        ..Default::default()
                    })
                    .await
                    .map_err(cloud(format!("{step} on {listener}")))?;
                d.wait(&reply.request_id, step).await?;
            }
            Change::DeleteListeners { listeners } => {
                d.client
                    .delete_load_balancer_listeners(&DeleteLoadBalancerListenersRequest {
                        load_balancer_id: self.lb(step)?,
                        listener_ids: listeners.iter().map(|l| l.0.clone()).collect(),
                    })
                    .await
                    .map_err(cloud(step))?;
            }
            Change::DeleteLoadBalancer { id } => {
                d.delete_lbs(std::slice::from_ref(id)).await?;
            }
        }
        Ok(())
    }
}
