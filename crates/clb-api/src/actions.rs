//! Typed CLB and SSL actions on top of [`ClbClient::call`]: one method per action the controller
//! uses, with paging for the Describe* calls that page and chunking at the per-call caps of
//! clb-api.md §6. Async writes return the [`Reply`] whose `request_id` is the TaskId; methods
//! that must send several chunks to the *same* LB wait for each chunk's task before the next
//! (a running task locks the LB), and return only once the last task has finished.

use futures::StreamExt;
use tracing::instrument;

use super::client::{ClbClient, Op, Reply};
use super::error::ClbError;
use super::types::{
    BatchModifyTargetWeightRequest, BatchTargetsRequest, BatchTargetsResponse, CertificateDetail,
    CreateListenerRequest, CreateListenerResponse, CreateLoadBalancerRequest,
    CreateLoadBalancerResponse, CreateRuleRequest, CreateRuleResponse, DeleteCertificateRequest,
    DeleteCertificateResponse, DeleteLoadBalancerListenersRequest, DeleteLoadBalancerRequest,
    DeleteRewriteRequest, DeleteRuleRequest, DescribeCertificatesRequest,
    DescribeCertificatesResponse, DescribeListenersRequest, DescribeListenersResponse,
    DescribeLoadBalancersRequest, DescribeLoadBalancersResponse, DescribeQuotaResponse,
    DescribeSubnetsRequest, DescribeSubnetsResponse, DescribeTargetHealthRequest,
    DescribeTargetHealthResponse, DescribeTargetsRequest, DescribeTargetsResponse,
    DescribeTaskStatusRequest, DescribeTaskStatusResponse, Empty, Listener, ListenerBackend,
    LoadBalancer, LoadBalancerHealth, ManualRewriteRequest, ModifyDomainAttributesRequest,
    ModifyListenerRequest, ModifyLoadBalancerAttributesRequest,
    ModifyLoadBalancerAttributesResponse, ModifyResourceTagsRequest, ModifyRuleRequest, Quota,
    RegisterTargetsRequest, RsWeightRule, Subnet, UploadCertificateRequest,
    UploadCertificateResponse,
};

/// The actions this client calls (name, service, idempotency). Also the bounded set of action
/// label values for metrics.
pub mod ops {
    use super::Op;

    pub const DESCRIBE_LOAD_BALANCERS: Op = Op::read("DescribeLoadBalancers");
    pub const CREATE_LOAD_BALANCER: Op = Op::write("CreateLoadBalancer");
    pub const DELETE_LOAD_BALANCER: Op = Op::write("DeleteLoadBalancer");
    pub const MODIFY_LOAD_BALANCER_ATTRIBUTES: Op = Op::write("ModifyLoadBalancerAttributes");
    pub const DESCRIBE_LISTENERS: Op = Op::read("DescribeListeners");
    pub const CREATE_LISTENER: Op = Op::write("CreateListener");
    pub const MODIFY_LISTENER: Op = Op::write("ModifyListener");
    pub const DELETE_LOAD_BALANCER_LISTENERS: Op = Op::write("DeleteLoadBalancerListeners");
    pub const CREATE_RULE: Op = Op::write("CreateRule");
    pub const DELETE_RULE: Op = Op::write("DeleteRule");
    pub const MODIFY_RULE: Op = Op::write("ModifyRule");
    pub const MODIFY_DOMAIN_ATTRIBUTES: Op = Op::write("ModifyDomainAttributes");
    pub const DESCRIBE_TARGETS: Op = Op::read("DescribeTargets");
    pub const DESCRIBE_TARGET_HEALTH: Op = Op::read("DescribeTargetHealth");
    pub const REGISTER_TARGETS: Op = Op::write("RegisterTargets");
    pub const DEREGISTER_TARGETS: Op = Op::write("DeregisterTargets");
    pub const BATCH_REGISTER_TARGETS: Op = Op::write("BatchRegisterTargets");
    pub const BATCH_DEREGISTER_TARGETS: Op = Op::write("BatchDeregisterTargets");
    pub const BATCH_MODIFY_TARGET_WEIGHT: Op = Op::write("BatchModifyTargetWeight");
    pub const DESCRIBE_TASK_STATUS: Op = Op::read("DescribeTaskStatus");
    pub const DESCRIBE_QUOTA: Op = Op::read("DescribeQuota");
    pub const MANUAL_REWRITE: Op = Op::write("ManualRewrite");
    pub const DELETE_REWRITE: Op = Op::write("DeleteRewrite");
    pub const UPLOAD_CERTIFICATE: Op = Op::write("UploadCertificate").ssl();
    pub const DESCRIBE_CERTIFICATES: Op = Op::read("DescribeCertificates").ssl();
    pub const DELETE_CERTIFICATE: Op = Op::write("DeleteCertificate").ssl();
    /// VPC DescribeSubnets: the VPC of a subnet (for an internal CLB without a VpcId).
    pub const DESCRIBE_SUBNETS: Op = Op::read("DescribeSubnets").vpc();
    /// Tag ModifyResourceTags: the desired-state digest tag of a CLB (warm restart).
    pub const MODIFY_RESOURCE_TAGS: Op = Op::write("ModifyResourceTags").tag();

    /// Every action above.
    pub const ALL: &[Op] = &[
        DESCRIBE_LOAD_BALANCERS,
        CREATE_LOAD_BALANCER,
        DELETE_LOAD_BALANCER,
        MODIFY_LOAD_BALANCER_ATTRIBUTES,
        DESCRIBE_LISTENERS,
        CREATE_LISTENER,
        MODIFY_LISTENER,
        DELETE_LOAD_BALANCER_LISTENERS,
        CREATE_RULE,
        DELETE_RULE,
        MODIFY_RULE,
        MODIFY_DOMAIN_ATTRIBUTES,
        DESCRIBE_TARGETS,
        DESCRIBE_TARGET_HEALTH,
        REGISTER_TARGETS,
        DEREGISTER_TARGETS,
        BATCH_REGISTER_TARGETS,
        BATCH_DEREGISTER_TARGETS,
        BATCH_MODIFY_TARGET_WEIGHT,
        DESCRIBE_TASK_STATUS,
        DESCRIBE_QUOTA,
        MANUAL_REWRITE,
        DELETE_REWRITE,
        UPLOAD_CERTIFICATE,
        DESCRIBE_CERTIFICATES,
        DELETE_CERTIFICATE,
        DESCRIBE_SUBNETS,
        MODIFY_RESOURCE_TAGS,
    ];
}

/// The Tag service's six-segment description of a CLB: `qcs::clb:<region>:uin/:clb/<lb-id>`
/// (the account segment left empty: the caller's own account, as terraform writes it).
pub fn clb_resource_name(region: &str, lb_id: &str) -> String {
    format!("qcs::clb:{region}:uin/:clb/{lb_id}")
}

/// DescribeLoadBalancers: at most 20 `LoadBalancerIds` per call.
pub const DESCRIBE_LOAD_BALANCERS_MAX_IDS: usize = 20;
/// DescribeLoadBalancers: page size (the API maximum).
pub const DESCRIBE_LOAD_BALANCERS_PAGE: i64 = 100;
/// DescribeListeners: at most 100 `ListenerIds` per call.
pub const DESCRIBE_LISTENERS_MAX_IDS: usize = 100;
/// DescribeTargets: at most 20 `ListenerIds` per call.
pub const DESCRIBE_TARGETS_MAX_LISTENERS: usize = 20;
/// DescribeTargetHealth: at most 30 `LoadBalancerIds` per call.
pub const DESCRIBE_TARGET_HEALTH_MAX_LBS: usize = 30;
/// DeleteLoadBalancer: at most 20 ids per call.
pub const DELETE_LOAD_BALANCER_MAX_IDS: usize = 20;
/// DeleteLoadBalancerListeners: at most 20 ids per call.
pub const DELETE_LISTENERS_MAX_IDS: usize = 20;
/// Register/DeregisterTargets: at most 20 targets per call.
pub const REGISTER_TARGETS_MAX: usize = 20;
/// Batch(De)RegisterTargets: at most 500 targets per call.
pub const BATCH_TARGETS_MAX: usize = 500;
/// BatchModifyTargetWeight: at most 100 `ModifyList` entries per call,
pub const BATCH_WEIGHT_MAX_RULES: usize = 100;
/// ... at most 50 targets per entry,
pub const BATCH_WEIGHT_MAX_TARGETS_PER_RULE: usize = 50;
/// ... and at most 500 targets per call.
pub const BATCH_WEIGHT_MAX_TARGETS: usize = 500;
/// DescribeCertificates page size.
pub const DESCRIBE_CERTIFICATES_PAGE: i64 = 100;
/// Safety stop for paging loops against a misbehaving server.
pub const MAX_PAGES: usize = 1000;
/// Pages of one listing asked for at once (besides the rate limit of their action).
pub const PARALLEL_PAGES: usize = 20;

/// Add one DescribeLoadBalancers page to `all`: `offset` moves past it, `total` takes its
/// count; returns how many CLBs it held.
fn take_page(
    reply: Reply<DescribeLoadBalancersResponse>,
    all: &mut Vec<LoadBalancer>,
    offset: &mut i64,
    total: &mut i64,
) -> i64 {
    let got = reply.data.load_balancer_set.len() as i64;
    *offset += got;
    *total = reply.data.total_count;
    all.extend(reply.data.load_balancer_set);
    got
}

/// Split `ids` into chunks of at most `max`; an empty list gives one empty chunk (the API's
/// "no filter").
fn id_chunks(ids: &[String], max: usize) -> Vec<Vec<String>> {
    if ids.is_empty() {
        vec![Vec::new()]
    } else {
        ids.chunks(max).map(<[String]>::to_vec).collect()
    }
}

/// Pack weight rules into BatchModifyTargetWeight calls: each entry keeps at most 50 targets
/// (larger rules are split into several entries), each call at most 100 entries and 500
/// targets, in input order.
pub fn chunk_weight_rules(rules: &[RsWeightRule]) -> Vec<Vec<RsWeightRule>> {
    let mut calls: Vec<Vec<RsWeightRule>> = Vec::new();
    let mut current: Vec<RsWeightRule> = Vec::new();
    let mut current_targets = 0usize;
    for rule in rules {
        let pieces: Vec<RsWeightRule> = if rule.targets.is_empty() {
            vec![rule.clone()]
        } else {
            rule.targets
                .chunks(BATCH_WEIGHT_MAX_TARGETS_PER_RULE)
                .map(|targets| RsWeightRule {
                    targets: targets.to_vec(),
                    ..rule.clone()
                })
                .collect()
        };
        for piece in pieces {
            let n = piece.targets.len();
            if !current.is_empty()
                && (current.len() >= BATCH_WEIGHT_MAX_RULES
                    || current_targets + n > BATCH_WEIGHT_MAX_TARGETS)
            {
                calls.push(std::mem::take(&mut current));
                current_targets = 0;
            }
            current_targets += n;
            current.push(piece);
        }
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

impl ClbClient {
    // ----------------------------------------------------------------------------------------
    // Load balancers
    // ----------------------------------------------------------------------------------------

    /// DescribeLoadBalancers, every page (and every chunk of 20 ids). `offset`/`limit` in the
    /// request are ignored: paging is done here.
    #[instrument(level = "debug", skip_all, fields(ids = req.load_balancer_ids.len()))]
    pub async fn describe_load_balancers(
        &self,
        req: &DescribeLoadBalancersRequest,
    ) -> Result<Vec<LoadBalancer>, ClbError> {
        let mut all = Vec::new();
        for ids in id_chunks(&req.load_balancer_ids, DESCRIBE_LOAD_BALANCERS_MAX_IDS) {
            let page = DescribeLoadBalancersRequest {
                load_balancer_ids: ids,
                limit: Some(DESCRIBE_LOAD_BALANCERS_PAGE),
                offset: Some(0),
                ..req.clone()
            };
            // The first page tells how many there are; the other pages are asked for at once
            // (the rate limiter paces them), in order.
            let first: Reply<DescribeLoadBalancersResponse> =
                self.call(ops::DESCRIBE_LOAD_BALANCERS, &page).await?;
            let (mut offset, mut total) = (0, 0);
            let got = take_page(first, &mut all, &mut offset, &mut total);
            if got == 0 || offset >= total {
                continue;
            }
            let offsets: Vec<i64> = (1..MAX_PAGES as i64)
                .map(|k| k * DESCRIBE_LOAD_BALANCERS_PAGE)
                .take_while(|o| *o < total)
                .collect();
            let mut pages = futures::stream::iter(offsets.into_iter().map(|o| {
                let page = DescribeLoadBalancersRequest {
                    offset: Some(o),
                    ..page.clone()
                };
                async move { self.call(ops::DESCRIBE_LOAD_BALANCERS, &page).await }
            }))
            .buffered(PARALLEL_PAGES);
            let mut more = true;
            while let Some(reply) = pages.next().await {
                if take_page(reply?, &mut all, &mut offset, &mut total) == 0 {
                    // Fewer than the count said (CLBs deleted meanwhile, or a count that
                    // lies): the pages still under way are dropped.
                    more = false;
                    break;
                }
            }
            drop(pages);
            // CLBs created while the pages were read: the rest, one page at a time.
            let mut page = page;
            for _ in 0..MAX_PAGES {
                if !more || offset >= total {
                    break;
                }
                page.offset = Some(offset);
                let reply = self.call(ops::DESCRIBE_LOAD_BALANCERS, &page).await?;
                more = take_page(reply, &mut all, &mut offset, &mut total) > 0;
            }
        }
        Ok(all)
    }

    /// CreateLoadBalancer (async). With `client_token` set the call is idempotent and is retried
    /// like a read.
    #[instrument(level = "debug", skip_all, fields(name = req.load_balancer_name.as_deref().unwrap_or("")))]
    pub async fn create_load_balancer(
        &self,
        req: &CreateLoadBalancerRequest,
    ) -> Result<Reply<CreateLoadBalancerResponse>, ClbError> {
        let op = Op {
            idempotent: req.client_token.is_some(),
            ..ops::CREATE_LOAD_BALANCER
        };
        self.call(op, req).await
    }

    /// CreateLoadBalancer, then wait for its task; returns the new LB ids (from the response,
    /// or from the task status when the response had none).
    pub async fn create_load_balancer_and_wait(
        &self,
        req: &CreateLoadBalancerRequest,
    ) -> Result<Vec<String>, ClbError> {
        let reply = self.create_load_balancer(req).await?;
        let status = self.wait_task(&reply.request_id).await?;
        if !reply.data.load_balancer_ids.is_empty() {
            return Ok(reply.data.load_balancer_ids);
        }
        match status.load_balancer_ids {
            Some(ids) if !ids.is_empty() => Ok(ids),
            _ => Err(ClbError::MissingInResponse {
                action: ops::CREATE_LOAD_BALANCER.name,
                request_id: reply.request_id,
                what: "LoadBalancerIds",
            }),
        }
    }

    /// DeleteLoadBalancer (async), chunked at 20 ids (different LBs do not lock each other).
    /// Returns one reply (TaskId) per chunk.
    #[instrument(level = "debug", skip_all, fields(ids = ?req.load_balancer_ids))]
    pub async fn delete_load_balancers(
        &self,
        req: &DeleteLoadBalancerRequest,
    ) -> Result<Vec<Reply<Empty>>, ClbError> {
        let mut replies = Vec::new();
        for ids in req.load_balancer_ids.chunks(DELETE_LOAD_BALANCER_MAX_IDS) {
            let chunk = DeleteLoadBalancerRequest {
                load_balancer_ids: ids.to_vec(),
                ..req.clone()
            };
            replies.push(self.call(ops::DELETE_LOAD_BALANCER, &chunk).await?);
        }
        Ok(replies)
    }

    /// ModifyLoadBalancerAttributes (async).
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id))]
    pub async fn modify_load_balancer_attributes(
        &self,
        req: &ModifyLoadBalancerAttributesRequest,
    ) -> Result<Reply<ModifyLoadBalancerAttributesResponse>, ClbError> {
        self.call(ops::MODIFY_LOAD_BALANCER_ATTRIBUTES, req).await
    }

    // ----------------------------------------------------------------------------------------
    // Listeners
    // ----------------------------------------------------------------------------------------

    /// DescribeListeners (with their L7 rules), chunked at 100 listener ids.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id))]
    pub async fn describe_listeners(
        &self,
        req: &DescribeListenersRequest,
    ) -> Result<Vec<Listener>, ClbError> {
        let mut all = Vec::new();
        for ids in id_chunks(&req.listener_ids, DESCRIBE_LISTENERS_MAX_IDS) {
            let chunk = DescribeListenersRequest {
                listener_ids: ids,
                ..req.clone()
            };
            let reply: Reply<DescribeListenersResponse> =
                self.call(ops::DESCRIBE_LISTENERS, &chunk).await?;
            all.extend(reply.data.listeners);
        }
        Ok(all)
    }

    /// CreateListener (async); `ListenerIds` come back in port order.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, ports = ?req.ports))]
    pub async fn create_listener(
        &self,
        req: &CreateListenerRequest,
    ) -> Result<Reply<CreateListenerResponse>, ClbError> {
        let reply: Reply<CreateListenerResponse> = self.call(ops::CREATE_LISTENER, req).await?;
        if reply.data.listener_ids.len() != req.ports.len() {
            return Err(ClbError::MissingInResponse {
                action: ops::CREATE_LISTENER.name,
                request_id: reply.request_id,
                what: "one ListenerId per port",
            });
        }
        Ok(reply)
    }

    /// ModifyListener (async).
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, listener = %req.listener_id))]
    pub async fn modify_listener(
        &self,
        req: &ModifyListenerRequest,
    ) -> Result<Reply<Empty>, ClbError> {
        self.call(ops::MODIFY_LISTENER, req).await
    }

    /// DeleteLoadBalancerListeners (async), chunked at 20 ids, waiting for each chunk's task.
    /// An empty id list is refused: the API would delete *every* listener of the LB, including
    /// ones we do not own.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, n = req.listener_ids.len()))]
    pub async fn delete_load_balancer_listeners(
        &self,
        req: &DeleteLoadBalancerListenersRequest,
    ) -> Result<Vec<String>, ClbError> {
        if req.listener_ids.is_empty() {
            return Err(ClbError::InvalidRequest {
                action: ops::DELETE_LOAD_BALANCER_LISTENERS.name,
                reason: "empty ListenerIds would delete every listener of the load balancer",
            });
        }
        let mut tasks = Vec::new();
        for ids in req.listener_ids.chunks(DELETE_LISTENERS_MAX_IDS) {
            let chunk = DeleteLoadBalancerListenersRequest {
                load_balancer_id: req.load_balancer_id.clone(),
                listener_ids: ids.to_vec(),
            };
            let reply: Reply<Empty> = self
                .call(ops::DELETE_LOAD_BALANCER_LISTENERS, &chunk)
                .await?;
            self.wait_task(&reply.request_id).await?;
            tasks.push(reply.request_id);
        }
        Ok(tasks)
    }

    // ----------------------------------------------------------------------------------------
    // Rules and domains
    // ----------------------------------------------------------------------------------------

    /// CreateRule (async): several rules in one call; `LocationIds` in input order.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, listener = %req.listener_id, n = req.rules.len()))]
    pub async fn create_rule(
        &self,
        req: &CreateRuleRequest,
    ) -> Result<Reply<CreateRuleResponse>, ClbError> {
        let reply: Reply<CreateRuleResponse> = self.call(ops::CREATE_RULE, req).await?;
        if reply.data.location_ids.len() != req.rules.len() {
            return Err(ClbError::MissingInResponse {
                action: ops::CREATE_RULE.name,
                request_id: reply.request_id,
                what: "one LocationId per rule",
            });
        }
        Ok(reply)
    }

    /// DeleteRule (async).
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, listener = %req.listener_id))]
    pub async fn delete_rule(&self, req: &DeleteRuleRequest) -> Result<Reply<Empty>, ClbError> {
        if req.location_ids.is_empty() && req.domain.is_none() {
            return Err(ClbError::InvalidRequest {
                action: ops::DELETE_RULE.name,
                reason: "neither LocationIds nor Domain given",
            });
        }
        self.call(ops::DELETE_RULE, req).await
    }

    /// ModifyRule (async).
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, location = %req.location_id))]
    pub async fn modify_rule(&self, req: &ModifyRuleRequest) -> Result<Reply<Empty>, ClbError> {
        self.call(ops::MODIFY_RULE, req).await
    }

    /// ModifyDomainAttributes (async).
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, domain = %req.domain))]
    pub async fn modify_domain_attributes(
        &self,
        req: &ModifyDomainAttributesRequest,
    ) -> Result<Reply<Empty>, ClbError> {
        self.call(ops::MODIFY_DOMAIN_ATTRIBUTES, req).await
    }

    // ----------------------------------------------------------------------------------------
    // Targets
    // ----------------------------------------------------------------------------------------

    /// DescribeTargets, chunked at 20 listeners per call.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, listeners = req.listener_ids.len()))]
    pub async fn describe_targets(
        &self,
        req: &DescribeTargetsRequest,
    ) -> Result<Vec<ListenerBackend>, ClbError> {
        let mut all = Vec::new();
        for ids in id_chunks(&req.listener_ids, DESCRIBE_TARGETS_MAX_LISTENERS) {
            let chunk = DescribeTargetsRequest {
                listener_ids: ids,
                ..req.clone()
            };
            let reply: Reply<DescribeTargetsResponse> =
                self.call(ops::DESCRIBE_TARGETS, &chunk).await?;
            all.extend(reply.data.listeners);
        }
        Ok(all)
    }

    /// DescribeTargetHealth: each target's health per rule of each CLB, chunked at 30 CLBs.
    #[instrument(level = "debug", skip_all, fields(lbs = req.load_balancer_ids.len()))]
    pub async fn describe_target_health(
        &self,
        req: &DescribeTargetHealthRequest,
    ) -> Result<Vec<LoadBalancerHealth>, ClbError> {
        let mut all = Vec::new();
        for ids in req.load_balancer_ids.chunks(DESCRIBE_TARGET_HEALTH_MAX_LBS) {
            let chunk = DescribeTargetHealthRequest {
                load_balancer_ids: ids.to_vec(),
                ..req.clone()
            };
            let reply: Reply<DescribeTargetHealthResponse> =
                self.call(ops::DESCRIBE_TARGET_HEALTH, &chunk).await?;
            all.extend(reply.data.load_balancers);
        }
        Ok(all)
    }

    /// RegisterTargets (async), chunked at 20 targets, waiting for each chunk's task (all
    /// chunks address the same LB). Returns the TaskIds; nothing is sent for no targets.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, n = req.targets.len()))]
    pub async fn register_targets(
        &self,
        req: &RegisterTargetsRequest,
    ) -> Result<Vec<String>, ClbError> {
        self.targets_chunked(ops::REGISTER_TARGETS, req).await
    }

    /// DeregisterTargets (async), chunked like [`Self::register_targets`].
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, n = req.targets.len()))]
    pub async fn deregister_targets(
        &self,
        req: &RegisterTargetsRequest,
    ) -> Result<Vec<String>, ClbError> {
        self.targets_chunked(ops::DEREGISTER_TARGETS, req).await
    }

    async fn targets_chunked(
        &self,
        op: Op,
        req: &RegisterTargetsRequest,
    ) -> Result<Vec<String>, ClbError> {
        let mut tasks = Vec::new();
        for targets in req.targets.chunks(REGISTER_TARGETS_MAX) {
            let chunk = RegisterTargetsRequest {
                targets: targets.to_vec(),
                ..req.clone()
            };
            let reply: Reply<Empty> = self.call(op, &chunk).await?;
            self.wait_task(&reply.request_id).await?;
            tasks.push(reply.request_id);
        }
        Ok(tasks)
    }

    /// BatchRegisterTargets (synchronous), chunked at 500 targets. A non-empty
    /// `FailListenerIdSet` stops at that chunk with [`ClbError::BatchPartialFailure`].
    /// Returns the RequestIds of the calls made.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, n = req.targets.len()))]
    pub async fn batch_register_targets(
        &self,
        req: &BatchTargetsRequest,
    ) -> Result<Vec<String>, ClbError> {
        self.batch_targets(ops::BATCH_REGISTER_TARGETS, req).await
    }

    /// BatchDeregisterTargets (synchronous), chunked at 500 targets.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, n = req.targets.len()))]
    pub async fn batch_deregister_targets(
        &self,
        req: &BatchTargetsRequest,
    ) -> Result<Vec<String>, ClbError> {
        self.batch_targets(ops::BATCH_DEREGISTER_TARGETS, req).await
    }

    async fn batch_targets(
        &self,
        op: Op,
        req: &BatchTargetsRequest,
    ) -> Result<Vec<String>, ClbError> {
        let mut ids = Vec::new();
        for targets in req.targets.chunks(BATCH_TARGETS_MAX) {
            let chunk = BatchTargetsRequest {
                load_balancer_id: req.load_balancer_id.clone(),
                targets: targets.to_vec(),
            };
            let reply: Reply<BatchTargetsResponse> = self.call(op, &chunk).await?;
            if !reply.data.fail_listener_id_set.is_empty() {
                return Err(ClbError::BatchPartialFailure {
                    action: op.name,
                    failed: reply.data.fail_listener_id_set,
                    message: reply.data.message.unwrap_or_default(),
                    request_id: reply.request_id,
                });
            }
            ids.push(reply.request_id);
        }
        Ok(ids)
    }

    /// BatchModifyTargetWeight (async), packed by [`chunk_weight_rules`]; waits for each
    /// chunk's task. Returns the TaskIds; nothing is sent for an empty list.
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id, rules = req.modify_list.len()))]
    pub async fn batch_modify_target_weight(
        &self,
        req: &BatchModifyTargetWeightRequest,
    ) -> Result<Vec<String>, ClbError> {
        let mut tasks = Vec::new();
        for modify_list in chunk_weight_rules(&req.modify_list) {
            let chunk = BatchModifyTargetWeightRequest {
                load_balancer_id: req.load_balancer_id.clone(),
                modify_list,
            };
            let reply: Reply<Empty> = self.call(ops::BATCH_MODIFY_TARGET_WEIGHT, &chunk).await?;
            self.wait_task(&reply.request_id).await?;
            tasks.push(reply.request_id);
        }
        Ok(tasks)
    }

    // ----------------------------------------------------------------------------------------
    // Tasks, quota
    // ----------------------------------------------------------------------------------------

    /// DescribeTaskStatus, once (see [`ClbClient::wait_task`] for polling).
    #[instrument(level = "debug", skip(self))]
    pub async fn describe_task_status(
        &self,
        task_id: &str,
    ) -> Result<DescribeTaskStatusResponse, ClbError> {
        let req = DescribeTaskStatusRequest {
            task_id: Some(task_id.to_string()),
            deal_name: None,
        };
        Ok(self.call(ops::DESCRIBE_TASK_STATUS, &req).await?.data)
    }

    /// VPC DescribeSubnets by id (`SubnetIds`, at most 100): the subnets that exist.
    #[instrument(level = "debug", skip(self))]
    pub async fn describe_subnets(&self, subnet_ids: &[String]) -> Result<Vec<Subnet>, ClbError> {
        let reply: Reply<DescribeSubnetsResponse> = self
            .call(
                ops::DESCRIBE_SUBNETS,
                &DescribeSubnetsRequest {
                    subnet_ids: subnet_ids.to_vec(),
                },
            )
            .await?;
        Ok(reply.data.subnet_set)
    }

    /// Tag ModifyResourceTags (sync): add or change tags (`replace_tags`) of one resource,
    /// named by its six-segment description (see [`clb_resource_name`]).
    #[instrument(level = "debug", skip_all, fields(resource = %req.resource))]
    pub async fn modify_resource_tags(
        &self,
        req: &ModifyResourceTagsRequest,
    ) -> Result<Reply<Empty>, ClbError> {
        self.call(ops::MODIFY_RESOURCE_TAGS, req).await
    }

    /// DescribeQuota.
    #[instrument(level = "debug", skip(self))]
    pub async fn describe_quota(&self) -> Result<Vec<Quota>, ClbError> {
        let reply: Reply<DescribeQuotaResponse> = self.call(ops::DESCRIBE_QUOTA, &Empty {}).await?;
        Ok(reply.data.quota_set)
    }

    // ----------------------------------------------------------------------------------------
    // Rewrites
    // ----------------------------------------------------------------------------------------

    /// ManualRewrite (async).
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id))]
    pub async fn manual_rewrite(
        &self,
        req: &ManualRewriteRequest,
    ) -> Result<Reply<Empty>, ClbError> {
        self.call(ops::MANUAL_REWRITE, req).await
    }

    /// DeleteRewrite (async).
    #[instrument(level = "debug", skip_all, fields(lb = %req.load_balancer_id))]
    pub async fn delete_rewrite(
        &self,
        req: &DeleteRewriteRequest,
    ) -> Result<Reply<Empty>, ClbError> {
        self.call(ops::DELETE_REWRITE, req).await
    }

    // ----------------------------------------------------------------------------------------
    // SSL certificate service
    // ----------------------------------------------------------------------------------------

    /// UploadCertificate (ssl). The request holds a private key: it is never logged.
    #[instrument(level = "debug", skip_all)]
    pub async fn upload_certificate(
        &self,
        req: &UploadCertificateRequest,
    ) -> Result<String, ClbError> {
        let reply: Reply<UploadCertificateResponse> =
            self.call(ops::UPLOAD_CERTIFICATE, req).await?;
        Ok(reply.data.certificate_id)
    }

    /// DescribeCertificates (ssl), every page.
    #[instrument(level = "debug", skip_all)]
    pub async fn describe_certificates(
        &self,
        req: &DescribeCertificatesRequest,
    ) -> Result<Vec<CertificateDetail>, ClbError> {
        let mut page = DescribeCertificatesRequest {
            limit: Some(DESCRIBE_CERTIFICATES_PAGE),
            ..req.clone()
        };
        let mut all = Vec::new();
        let mut offset = 0i64;
        for _ in 0..MAX_PAGES {
            page.offset = Some(offset);
            let reply: Reply<DescribeCertificatesResponse> =
                self.call(ops::DESCRIBE_CERTIFICATES, &page).await?;
            let got = reply.data.certificates.len() as i64;
            all.extend(reply.data.certificates);
            offset += got;
            if got == 0 || offset >= reply.data.total_count {
                break;
            }
        }
        Ok(all)
    }

    /// DeleteCertificate (ssl); `Ok(false)` when the service refused (e.g. still in use).
    #[instrument(level = "debug", skip(self))]
    pub async fn delete_certificate(&self, certificate_id: &str) -> Result<bool, ClbError> {
        let req = DeleteCertificateRequest {
            certificate_id: certificate_id.to_string(),
        };
        let reply: Reply<DeleteCertificateResponse> =
            self.call(ops::DELETE_CERTIFICATE, &req).await?;
        Ok(reply.data.delete_result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Target;

    fn rule(location: &str, n: usize) -> RsWeightRule {
        RsWeightRule {
            listener_id: "lbl-1".into(),
            location_id: Some(location.into()),
            targets: (0..n)
                .map(|i| Target {
                    port: 80,
                    eni_ip: Some(format!("10.0.{}.{}", i / 250, i % 250)),
                    weight: Some(10),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn weight_rules_are_split_at_50_targets_per_entry_and_500_per_call() {
        let calls = chunk_weight_rules(&[rule("loc-a", 120), rule("loc-b", 30)]);
        let shape: Vec<Vec<usize>> = calls
            .iter()
            .map(|c| c.iter().map(|r| r.targets.len()).collect())
            .collect();
        assert_eq!(shape, vec![vec![50, 50, 20, 30]]);

        let many: Vec<_> = (0..30).map(|i| rule(&format!("loc-{i}"), 40)).collect();
        let calls = chunk_weight_rules(&many);
        for call in &calls {
            assert!(call.len() <= BATCH_WEIGHT_MAX_RULES);
            assert!(
                call.iter().map(|r| r.targets.len()).sum::<usize>() <= BATCH_WEIGHT_MAX_TARGETS
            );
            assert!(
                call.iter()
                    .all(|r| r.targets.len() <= BATCH_WEIGHT_MAX_TARGETS_PER_RULE)
            );
        }
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 30);
        assert_eq!(calls.len(), 3, "1200 targets need 3 calls of <= 500");

        let small: Vec<_> = (0..150).map(|i| rule(&format!("loc-{i}"), 1)).collect();
        let calls = chunk_weight_rules(&small);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 50]
        );
        assert!(chunk_weight_rules(&[]).is_empty());
    }

    #[test]
    fn id_chunks_keep_order_and_give_one_unfiltered_call_for_no_ids() {
        let ids: Vec<String> = (0..45).map(|i| format!("lbl-{i}")).collect();
        let chunks = id_chunks(&ids, 20);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![20, 20, 5]
        );
        assert_eq!(chunks.concat(), ids);
        assert_eq!(id_chunks(&[], 20), vec![Vec::<String>::new()]);
    }

    #[test]
    fn every_action_name_is_unique_and_ssl_actions_use_the_ssl_service() {
        let names: std::collections::BTreeSet<_> = ops::ALL.iter().map(|o| o.name).collect();
        assert_eq!(names.len(), ops::ALL.len());
        for op in ops::ALL {
            let ssl = op.name.contains("Certificate");
            assert_eq!(
                op.service == crate::client::Service::Ssl,
                ssl,
                "{}",
                op.name
            );
            assert_eq!(
                op.idempotent,
                op.name.starts_with("Describe"),
                "{}",
                op.name
            );
        }
    }
}
