//! Action dispatch: which actions each service serves, which are async writes (a task that locks
//! its CLB, §4), and the map from an action name to its handler in a family module. The families
//! (`load_balancers`, `listeners`, `rules`, `rewrites`, `targets`, `tasks`, `certificates`) use
//! only the shared `common` and `cert_store` modules, never each other.

pub mod cert_store;
pub mod certificates;
pub mod common;
pub mod contract;
pub mod listeners;
pub mod load_balancers;
pub mod rewrites;
pub mod rules;
pub mod targets;
pub mod tasks;

use serde_json::Value;

use crate::core::{Core, Task};
use crate::error::{ApiFailure, codes};

use common::{Handled, decode};

/// Which API a request is for (by the credential scope's service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Clb,
    Ssl,
}

impl Service {
    pub fn from_scope(s: &str) -> Option<Self> {
        match s {
            "clb" => Some(Self::Clb),
            "ssl" => Some(Self::Ssl),
            _ => None,
        }
    }
    pub fn version(self) -> &'static str {
        match self {
            Self::Clb => "2018-03-17",
            Self::Ssl => "2019-12-05",
        }
    }
}

/// CLB actions the emulator serves.
pub const CLB_ACTIONS: &[&str] = &[
    "CreateLoadBalancer",
    "DescribeLoadBalancers",
    "DeleteLoadBalancer",
    "ModifyLoadBalancerAttributes",
    "CreateListener",
    "DescribeListeners",
    "ModifyListener",
    "DeleteListener",
    "DeleteLoadBalancerListeners",
    "CreateRule",
    "DeleteRule",
    "ModifyRule",
    "ModifyDomain",
    "ModifyDomainAttributes",
    "RegisterTargets",
    "DeregisterTargets",
    "BatchRegisterTargets",
    "BatchDeregisterTargets",
    "ModifyTargetWeight",
    "BatchModifyTargetWeight",
    "DescribeTargets",
    "DescribeTargetHealth",
    "DescribeTaskStatus",
    "DescribeQuota",
    "AutoRewrite",
    "ManualRewrite",
    "DeleteRewrite",
    "DescribeRewrite",
];

/// SSL certificate actions the emulator serves.
pub const SSL_ACTIONS: &[&str] = &[
    "UploadCertificate",
    "DescribeCertificate",
    "DescribeCertificates",
    "DeleteCertificate",
];

/// Async writes (§4): they create a task and lock their CLB while it runs.
pub const ASYNC_ACTIONS: &[&str] = &[
    "CreateLoadBalancer",
    "DeleteLoadBalancer",
    "ModifyLoadBalancerAttributes",
    "CreateListener",
    "DeleteListener",
    "DeleteLoadBalancerListeners",
    "ModifyListener",
    "CreateRule",
    "DeleteRule",
    "ModifyRule",
    "ModifyDomain",
    "ModifyDomainAttributes",
    "RegisterTargets",
    "DeregisterTargets",
    "ModifyTargetWeight",
    "BatchModifyTargetWeight",
    "AutoRewrite",
    "ManualRewrite",
    "DeleteRewrite",
];

/// Whether the service serves the action.
pub fn is_known(service: Service, action: &str) -> bool {
    match service {
        Service::Clb => CLB_ACTIONS.contains(&action),
        Service::Ssl => SSL_ACTIONS.contains(&action),
    }
}

/// What a handled call produced.
#[derive(Debug)]
pub struct Outcome {
    pub body: Value,
    /// Whether the resource state changed (data plane update, persistence).
    pub changed: bool,
}

/// Run one known action. Async writes get a task; an injected task failure discards the change.
pub fn dispatch(
    core: &mut Core,
    service: Service,
    action: &str,
    request_id: &str,
    body: &[u8],
) -> Result<Outcome, ApiFailure> {
    // The official contract first: unknown, missing and mistyped fields never reach a handler.
    let body = contract::check(service, action, body)?;
    let is_async = ASYNC_ACTIONS.contains(&action);
    let will_fail = is_async && core.roll_task_failure(action);
    let read = crate::core::is_read(action);
    // A write that fails leaves no trace: every CLB and SSL write is all-or-nothing (a refused
    // call changes nothing; Batch(De)RegisterTargets report per-listener failures in a success).
    let before = (!read).then(|| core.state.clone());
    let handled = match service {
        Service::Ssl => handle_ssl(core, action, &body),
        Service::Clb => handle_clb(core, action, request_id, &body),
    };
    let (value, info) = match handled {
        Ok(v) => v,
        Err(e) => {
            if let Some(state) = before {
                core.state = state;
            }
            return Err(e);
        }
    };
    let snapshot = will_fail.then_some(()).and(before);
    if let Some(snap) = snapshot {
        core.state = snap;
    }
    if is_async {
        let now = core.now_ms();
        core.add_task(Task {
            id: request_id.to_string(),
            action: action.to_string(),
            lbs: info.lbs,
            created_ms: now,
            done_ms: now,
            status: 0,
            will_fail,
            message: None,
            load_balancer_ids: info.load_balancer_ids,
            deal_name: info.deal_name,
        });
    }
    Ok(Outcome {
        body: value,
        changed: !read && !will_fail,
    })
}

/// Map a CLB action to its handler.
fn handle_clb(core: &mut Core, action: &str, request_id: &str, body: &[u8]) -> Handled {
    use {listeners as ls, load_balancers as lb, rewrites as rw, rules as ru, targets as t};
    match action {
        "CreateLoadBalancer" => lb::create_load_balancer(core, request_id, decode(body)?),
        "DescribeLoadBalancers" => lb::describe_load_balancers(core, decode(body)?),
        "DeleteLoadBalancer" => lb::delete_load_balancer(core, decode(body)?),
        "ModifyLoadBalancerAttributes" => lb::modify_lb_attributes(core, decode(body)?),
        "CreateListener" => ls::create_listener(core, decode(body)?),
        "DescribeListeners" => ls::describe_listeners(core, decode(body)?),
        "ModifyListener" => ls::modify_listener(core, decode(body)?),
        "DeleteListener" => ls::delete_listener(core, decode(body)?),
        "DeleteLoadBalancerListeners" => ls::delete_load_balancer_listeners(core, decode(body)?),
        "CreateRule" => ru::create_rule(core, decode(body)?),
        "DeleteRule" => ru::delete_rule(core, decode(body)?),
        "ModifyRule" => ru::modify_rule(core, decode(body)?),
        "ModifyDomain" => ru::modify_domain(core, decode(body)?),
        "ModifyDomainAttributes" => ru::modify_domain_attributes(core, decode(body)?),
        "RegisterTargets" => t::register_targets(core, decode(body)?),
        "DeregisterTargets" => t::deregister_targets(core, decode(body)?),
        "ModifyTargetWeight" => t::modify_target_weight(core, decode(body)?),
        "BatchRegisterTargets" => t::batch_register(core, decode(body)?),
        "BatchDeregisterTargets" => t::batch_deregister(core, decode(body)?),
        "BatchModifyTargetWeight" => t::batch_modify_weight(core, decode(body)?),
        "DescribeTargets" => t::describe_targets(core, decode(body)?),
        "DescribeTargetHealth" => t::describe_target_health(core, decode(body)?),
        "DescribeTaskStatus" => tasks::describe_task_status(core, decode(body)?),
        "DescribeQuota" => lb::describe_quota(core),
        "AutoRewrite" => rw::auto_rewrite(core, decode(body)?),
        "ManualRewrite" => rw::manual_rewrite(core, decode(body)?),
        "DeleteRewrite" => rw::delete_rewrite(core, decode(body)?),
        "DescribeRewrite" => rw::describe_rewrite(core, decode(body)?),
        other => Err(ApiFailure::new(
            codes::INVALID_ACTION,
            format!("The action `{other}` is not supported (request {request_id})."),
        )),
    }
}

/// Map an SSL action to its handler.
fn handle_ssl(core: &mut Core, action: &str, body: &[u8]) -> Handled {
    use certificates as c;
    match action {
        "UploadCertificate" => c::upload_certificate(core, decode(body)?),
        "DescribeCertificate" => c::describe_certificate(core, decode(body)?),
        "DescribeCertificates" => c::describe_certificates(core, decode(body)?),
        "DeleteCertificate" => c::delete_certificate(core, decode(body)?),
        other => Err(ApiFailure::new(
            codes::INVALID_ACTION,
            format!("The action `{other}` is not supported by the ssl service."),
        )),
    }
}
