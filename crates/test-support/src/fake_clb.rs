//! An in-memory `ClbApi` for deploy-engine tests without HTTP. `Describe*` answer from a
//! scripted state that may be adversarial (a CLB listed twice, another cluster's CLBs, foreign
//! listeners, filters ignored); every write is recorded with the ids it touches and answered
//! with fresh ids. The script is not changed by writes: one reconcile pass is judged at a time.

use clb_ingress::clb::api::ApiResult;
use clb_ingress::clb::types::*;
use clb_ingress::clb::{ClbApi, Reply};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the fake CLB API answers.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// CLBs in listing order (repeats allowed: the listing then names one CLB twice).
    pub lbs: Vec<LoadBalancer>,
    /// Listeners (with their rules) of each CLB, by CLB id.
    pub listeners: Vec<(String, Vec<Listener>)>,
    /// Certificates in the account.
    pub certificates: Vec<CertificateDetail>,
    /// Answer every `DescribeLoadBalancers` with every CLB, whatever its ids and filters ask.
    pub ignore_filters: bool,
}

/// One write call and the ids it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub action: &'static str,
    /// The CLB it writes to (or deletes).
    pub lb: Option<String>,
    /// Existing listeners it changes or deletes.
    pub listeners: Vec<String>,
    /// Existing rules (location ids) it changes or deletes.
    pub rules: Vec<String>,
}

/// The fake API (see the module doc).
#[derive(Debug, Default)]
pub struct FakeClb {
    script: Mutex<Script>,
    writes: Mutex<Vec<Write>>,
    next: AtomicU64,
}

impl FakeClb {
    pub fn new(script: Script) -> Self {
        Self {
            script: Mutex::new(script),
            ..Default::default()
        }
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    fn fresh(&self, prefix: &str) -> String {
        format!(
            "{prefix}-new{:05}",
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn record(&self, action: &'static str, lb: Option<&str>, listeners: &[&str], rules: &[&str]) {
        self.writes.lock().unwrap().push(Write {
            action,
            lb: lb.map(str::to_string),
            listeners: listeners.iter().map(|s| s.to_string()).collect(),
            rules: rules.iter().map(|s| s.to_string()).collect(),
        });
    }

    fn reply<T>(&self, data: T) -> Reply<T> {
        Reply {
            request_id: self.fresh("req"),
            data,
        }
    }
}

fn ready<T: Send>(v: T) -> impl Future<Output = T> + Send {
    std::future::ready(v)
}

fn tag_matches(lb: &LoadBalancer, filter: &Filter) -> bool {
    let Some(key) = filter.name.strip_prefix("tag:") else {
        return true;
    };
    lb.tags
        .iter()
        .any(|t| t.tag_key == key && filter.values.contains(&t.tag_value))
}

impl ClbApi for FakeClb {
    fn region(&self) -> &str {
        "ap-test"
    }

    fn describe_load_balancers(
        &self,
        req: &DescribeLoadBalancersRequest,
    ) -> impl Future<Output = ApiResult<Vec<LoadBalancer>>> + Send {
        let s = self.script.lock().unwrap();
        let out = s
            .lbs
            .iter()
            .filter(|lb| {
                s.ignore_filters
                    || ((req.load_balancer_ids.is_empty()
                        || req.load_balancer_ids.contains(&lb.load_balancer_id))
                        && req.filters.iter().all(|f| tag_matches(lb, f)))
            })
            .cloned()
            .collect();
        ready(Ok(out))
    }

    fn create_load_balancer_and_wait(
        &self,
        _req: &CreateLoadBalancerRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send {
        let id = self.fresh("lb");
        self.record("CreateLoadBalancer", Some(&id), &[], &[]);
        ready(Ok(vec![id]))
    }

    fn delete_load_balancers(
        &self,
        req: &DeleteLoadBalancerRequest,
    ) -> impl Future<Output = ApiResult<Vec<Reply<Empty>>>> + Send {
        for id in &req.load_balancer_ids {
            self.record("DeleteLoadBalancer", Some(id), &[], &[]);
        }
        ready(Ok(vec![self.reply(Empty {})]))
    }

    fn modify_load_balancer_attributes(
        &self,
        req: &ModifyLoadBalancerAttributesRequest,
    ) -> impl Future<Output = ApiResult<Reply<ModifyLoadBalancerAttributesResponse>>> + Send {
        self.record(
            "ModifyLoadBalancerAttributes",
            Some(&req.load_balancer_id),
            &[],
            &[],
        );
        ready(Ok(self.reply(Default::default())))
    }

    fn describe_listeners(
        &self,
        req: &DescribeListenersRequest,
    ) -> impl Future<Output = ApiResult<Vec<Listener>>> + Send {
        let s = self.script.lock().unwrap();
        let out = s
            .listeners
            .iter()
            .filter(|(lb, _)| *lb == req.load_balancer_id)
            .flat_map(|(_, ls)| ls.clone())
            .collect();
        ready(Ok(out))
    }

    fn create_listener(
        &self,
        req: &CreateListenerRequest,
    ) -> impl Future<Output = ApiResult<Reply<CreateListenerResponse>>> + Send {
        self.record("CreateListener", Some(&req.load_balancer_id), &[], &[]);
        let ids = req.ports.iter().map(|_| self.fresh("lbl")).collect();
        ready(Ok(self.reply(CreateListenerResponse { listener_ids: ids })))
    }

    fn modify_listener(
        &self,
        req: &ModifyListenerRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send {
        self.record(
            "ModifyListener",
            Some(&req.load_balancer_id),
            &[&req.listener_id],
            &[],
        );
        ready(Ok(self.reply(Empty {})))
    }

    fn delete_load_balancer_listeners(
        &self,
        req: &DeleteLoadBalancerListenersRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send {
        let ls: Vec<&str> = req.listener_ids.iter().map(String::as_str).collect();
        self.record(
            "DeleteLoadBalancerListeners",
            Some(&req.load_balancer_id),
            &ls,
            &[],
        );
        ready(Ok(vec![self.fresh("req")]))
    }

    fn create_rule(
        &self,
        req: &CreateRuleRequest,
    ) -> impl Future<Output = ApiResult<Reply<CreateRuleResponse>>> + Send {
        self.record(
            "CreateRule",
            Some(&req.load_balancer_id),
            &[&req.listener_id],
            &[],
        );
        let ids = req.rules.iter().map(|_| self.fresh("loc")).collect();
        ready(Ok(self.reply(CreateRuleResponse { location_ids: ids })))
    }

    fn delete_rule(
        &self,
        req: &DeleteRuleRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send {
        let rules: Vec<&str> = req.location_ids.iter().map(String::as_str).collect();
        self.record(
            "DeleteRule",
            Some(&req.load_balancer_id),
            &[&req.listener_id],
            &rules,
        );
        ready(Ok(self.reply(Empty {})))
    }

    fn modify_rule(
        &self,
        req: &ModifyRuleRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send {
        self.record(
            "ModifyRule",
            Some(&req.load_balancer_id),
            &[&req.listener_id],
            &[&req.location_id],
        );
        ready(Ok(self.reply(Empty {})))
    }

    fn modify_domain_attributes(
        &self,
        req: &ModifyDomainAttributesRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send {
        self.record(
            "ModifyDomainAttributes",
            Some(&req.load_balancer_id),
            &[&req.listener_id],
            &[],
        );
        ready(Ok(self.reply(Empty {})))
    }

    fn describe_targets(
        &self,
        _req: &DescribeTargetsRequest,
    ) -> impl Future<Output = ApiResult<Vec<ListenerBackend>>> + Send {
        ready(Ok(Vec::new()))
    }

    fn batch_register_targets(
        &self,
        req: &BatchTargetsRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send {
        self.record_targets("BatchRegisterTargets", req);
        ready(Ok(vec![self.fresh("req")]))
    }

    fn batch_deregister_targets(
        &self,
        req: &BatchTargetsRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send {
        self.record_targets("BatchDeregisterTargets", req);
        ready(Ok(vec![self.fresh("req")]))
    }

    fn batch_modify_target_weight(
        &self,
        req: &BatchModifyTargetWeightRequest,
    ) -> impl Future<Output = ApiResult<Vec<String>>> + Send {
        let ls: Vec<&str> = req
            .modify_list
            .iter()
            .map(|r| r.listener_id.as_str())
            .collect();
        let rules: Vec<&str> = req
            .modify_list
            .iter()
            .filter_map(|r| r.location_id.as_deref())
            .collect();
        self.record(
            "BatchModifyTargetWeight",
            Some(&req.load_balancer_id),
            &ls,
            &rules,
        );
        ready(Ok(vec![self.fresh("req")]))
    }

    fn manual_rewrite(
        &self,
        req: &ManualRewriteRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send {
        let rules: Vec<&str> = req
            .rewrite_infos
            .iter()
            .flat_map(|r| [r.source_location_id.as_str(), r.target_location_id.as_str()])
            .collect();
        self.record(
            "ManualRewrite",
            Some(&req.load_balancer_id),
            &[&req.source_listener_id, &req.target_listener_id],
            &rules,
        );
        ready(Ok(self.reply(Empty {})))
    }

    fn delete_rewrite(
        &self,
        req: &DeleteRewriteRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send {
        let rules: Vec<&str> = req
            .rewrite_infos
            .iter()
            .flat_map(|r| [r.source_location_id.as_str(), r.target_location_id.as_str()])
            .collect();
        self.record(
            "DeleteRewrite",
            Some(&req.load_balancer_id),
            &[&req.source_listener_id, &req.target_listener_id],
            &rules,
        );
        ready(Ok(self.reply(Empty {})))
    }

    fn upload_certificate(
        &self,
        _req: &UploadCertificateRequest,
    ) -> impl Future<Output = ApiResult<String>> + Send {
        let id = self.fresh("cert");
        self.record("UploadCertificate", None, &[], &[]);
        ready(Ok(id))
    }

    fn describe_certificates(
        &self,
        _req: &DescribeCertificatesRequest,
    ) -> impl Future<Output = ApiResult<Vec<CertificateDetail>>> + Send {
        ready(Ok(self.script.lock().unwrap().certificates.clone()))
    }

    fn wait_task(
        &self,
        _task_id: &str,
    ) -> impl Future<Output = ApiResult<DescribeTaskStatusResponse>> + Send {
        ready(Ok(DescribeTaskStatusResponse::default()))
    }

    fn describe_quota(&self) -> impl Future<Output = ApiResult<Vec<Quota>>> + Send {
        ready(Ok(Vec::new()))
    }

    fn delete_certificate(
        &self,
        certificate_id: &str,
    ) -> impl Future<Output = ApiResult<bool>> + Send {
        self.record("DeleteCertificate", None, &[], &[certificate_id]);
        ready(Ok(true))
    }

    fn modify_resource_tags(
        &self,
        req: &ModifyResourceTagsRequest,
    ) -> impl Future<Output = ApiResult<Reply<Empty>>> + Send {
        // The CLB id is the last segment of `qcs::clb:<region>:uin/:clb/<lb-id>`.
        let lb = req.resource.rsplit('/').next().unwrap_or_default();
        self.record("ModifyResourceTags", Some(lb), &[], &[]);
        ready(Ok(self.reply(Empty {})))
    }
}

impl FakeClb {
    fn record_targets(&self, action: &'static str, req: &BatchTargetsRequest) {
        let ls: Vec<&str> = req.targets.iter().map(|t| t.listener_id.as_str()).collect();
        let rules: Vec<&str> = req
            .targets
            .iter()
            .filter_map(|t| t.location_id.as_deref())
            .collect();
        self.record(action, Some(&req.load_balancer_id), &ls, &rules);
    }
}
