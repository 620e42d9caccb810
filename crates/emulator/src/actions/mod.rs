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
pub mod rule_settings;
pub mod rules;
pub mod tags;
pub mod targets;
pub mod tasks;

use serde_json::Value;

use crate::core::{Core, Task};
use crate::error::{ApiFailure, codes};

use common::{Handled, decode, reply};

/// Which API a request is for (by the credential scope's service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Clb,
    Ssl,
    Vpc,
    Tag,
}

impl Service {
    pub fn from_scope(s: &str) -> Option<Self> {
        match s {
            "clb" => Some(Self::Clb),
            "ssl" => Some(Self::Ssl),
            "vpc" => Some(Self::Vpc),
            "tag" => Some(Self::Tag),
            _ => None,
        }
    }
    pub fn version(self) -> &'static str {
        match self {
            Self::Clb => "2018-03-17",
            Self::Ssl => "2019-12-05",
            Self::Vpc => "2017-03-12",
            Self::Tag => "2018-08-13",
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

/// VPC actions the emulator serves (the VPC of a subnet, for internal CLBs).
pub const VPC_ACTIONS: &[&str] = &["DescribeSubnets"];

/// Tag service actions the emulator serves (tags of an existing CLB).
pub const TAG_ACTIONS: &[&str] = &["ModifyResourceTags"];

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
        Service::Vpc => VPC_ACTIONS.contains(&action),
        Service::Tag => TAG_ACTIONS.contains(&action),
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
        Service::Vpc => handle_vpc(core, action, &body),
        Service::Tag => tags::handle_tag(core, action, &body),
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
    // An injected task failure discards the change too.
    if let (true, Some(state)) = (will_fail, before) {
        core.state = state;
    }
    if is_async && !will_fail {
        for id in &info.lbs {
            if let Some(lb) = core.state.lb(id) {
                core.counters.note_default_domains(lb);
            }
        }
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

/// VPC `DescribeSubnets` by `SubnetIds` over the configured subnets (`Settings::subnets`):
/// the subnets that exist, like the real API (an unknown id is simply not listed).
fn handle_vpc(core: &mut Core, action: &str, body: &[u8]) -> Handled {
    if action != "DescribeSubnets" {
        return Err(ApiFailure::new(
            crate::error::codes::INVALID_ACTION,
            format!("The action `{action}` does not exist."),
        ));
    }
    let req: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiFailure::new(
                crate::error::codes::INVALID_PARAMETER,
                format!("The request body is not a JSON object: {e}"),
            )
        })?
    };
    let ids: Option<Vec<&str>> = match req.get("SubnetIds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_str).collect()),
        Some(_) => {
            return Err(ApiFailure::new(
                crate::error::codes::INVALID_PARAMETER,
                "The value type of parameter `SubnetIds` is not valid: expected array.",
            ));
        }
    };
    let set: Vec<Value> = core
        .settings
        .subnets
        .iter()
        .filter(|(s, _)| ids.as_ref().is_none_or(|ids| ids.contains(&s.as_str())))
        .map(|(s, v)| {
            serde_json::json!({"VpcId": v, "SubnetId": s, "SubnetName": s, "CidrBlock": "10.0.0.0/24",
                "Zone": format!("{}-1", core.settings.region)})
        })
        .collect();
    let n = set.len();
    reply(
        &serde_json::json!({"SubnetSet": set, "TotalCount": n}),
        vec![],
    )
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::config::Settings;
    use crate::core::ManualClock;
    use crate::state::State;

    thread_local! {
        static CLOCK: Arc<ManualClock> = Arc::new(ManualClock::new(1_700_000_000_000));
    }

    fn core() -> Core {
        let settings = Settings {
            seed: Some(1),
            task_delay_ms: 1,
            ..Settings::default()
        };
        Core::new(settings, State::new(), CLOCK.with(Arc::clone))
    }

    /// One call, after every earlier task has finished (the clock moves 1 s first).
    fn call(c: &mut Core, action: &str, body: Value) -> Result<Value, ApiFailure> {
        CLOCK.with(|k| k.advance_ms(1_000));
        c.settle();
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let id = format!("req-{}", c.now_ms());
        dispatch(c, Service::Clb, action, &id, &bytes).map(|o| o.body)
    }

    /// An OPEN CLB with an HTTP listener on 80 and two rules (/a, /b) on a.com; their ids.
    fn setup(c: &mut Core) -> (String, String, String, String) {
        let lb = call(c, "CreateLoadBalancer", json!({"LoadBalancerType": "OPEN"}))
            .expect("clb")["LoadBalancerIds"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let l = call(
            c,
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [80], "Protocol": "HTTP"}),
        )
        .expect("listener")["ListenerIds"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let r = call(
            c,
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": l,
                   "Rules": [{"Domain": "a.com", "Url": "/a"}, {"Domain": "a.com", "Url": "/b"}]}),
        )
        .expect("rules");
        let id = |i: usize| r["LocationIds"][i].as_str().unwrap_or_default().to_string();
        (lb, l, id(0), id(1))
    }

    fn rules(c: &Core, lb: &str) -> usize {
        c.state
            .lb(lb)
            .map(|l| l.listeners.iter().map(|x| x.rules.len()).sum())
            .unwrap_or_default()
    }

    #[test]
    fn a_create_rule_call_refused_on_its_second_rule_leaves_no_first_rule_behind() {
        let mut c = core();
        let (lb, l, _, _) = setup(&mut c);
        let err = call(
            &mut c,
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": l,
                   "Rules": [{"Domain": "b.com", "Url": "/ok"}, {"Domain": "b.com", "Url": "no-slash"}]}),
        )
        .expect_err("the second rule is invalid");
        assert_eq!(err.code, codes::INVALID_PARAMETER_VALUE);
        assert_eq!(rules(&c, &lb), 2, "b.com/ok must not exist");
    }

    #[test]
    fn batch_register_targets_reports_an_already_bound_target_instead_of_reweighting_it() {
        let mut c = core();
        let (lb, l, a, _) = setup(&mut c);
        let target = |w: i64| {
            json!({"LoadBalancerId": lb, "Targets": [
                {"ListenerId": l, "LocationId": a, "Port": 8080, "EniIp": "10.0.0.9", "Weight": w}]})
        };
        let first = call(&mut c, "BatchRegisterTargets", target(20)).expect("bound");
        assert_eq!(first["FailListenerIdSet"], json!([]));
        let again = call(&mut c, "BatchRegisterTargets", target(70)).expect("answered");
        assert_eq!(again["FailListenerIdSet"], json!([l]));
        let d = call(&mut c, "DescribeTargets", json!({"LoadBalancerId": lb})).expect("read");
        assert_eq!(
            d["Listeners"][0]["Rules"][0]["Targets"][0]["Weight"],
            json!(20)
        );
        assert_eq!(d["Listeners"][0]["Targets"], Value::Null);
    }

    #[test]
    fn target_health_comes_from_the_probes_and_new_rules_store_clbs_default_check() {
        let mut c = core();
        c.health = Some(Arc::new(crate::health::HealthTable::default()));
        let (lb, l, a, b) = setup(&mut c);
        let d = call(&mut c, "DescribeListeners", json!({"LoadBalancerId": lb})).expect("read");
        let hc = &d["Listeners"][0]["Rules"][0]["HealthCheck"];
        assert_eq!(hc["HealthSwitch"], json!(1));
        assert_eq!(hc["IntervalTime"], json!(5));
        assert_eq!(hc["HttpCheckMethod"], json!("HEAD"));
        call(
            &mut c,
            "ModifyRule",
            json!({"LoadBalancerId": lb, "ListenerId": l, "LocationId": b,
                   "HealthCheck": {"HealthSwitch": 0}}),
        )
        .expect("check off");
        let err = call(
            &mut c,
            "ModifyRule",
            json!({"LoadBalancerId": lb, "ListenerId": l, "LocationId": a,
                   "HealthCheck": {"TimeOut": 10}}),
        )
        .expect_err("TimeOut 10 is not below the stored IntervalTime 5");
        assert_eq!(err.code, codes::INVALID_PARAMETER_VALUE);
        let bind = |loc: &str, ip: &str| json!({"ListenerId": l, "LocationId": loc, "Port": 8080, "EniIp": ip, "Weight": 10});
        call(
            &mut c,
            "BatchRegisterTargets",
            json!({"LoadBalancerId": lb, "Targets": [
                bind(&a, "127.0.0.9"), bind(&a, "10.0.0.9"), bind(&b, "127.0.0.9")]}),
        )
        .expect("bound");
        let h = call(
            &mut c,
            "DescribeTargetHealth",
            json!({"LoadBalancerIds": [lb]}),
        )
        .expect("health");
        let rules = &h["LoadBalancers"][0]["Listeners"][0]["Rules"];
        let find = |rule: &Value, ip: &str| {
            rule["Targets"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["IP"] == ip).cloned())
                .unwrap_or_default()
        };
        let loopback = find(&rules[0], "127.0.0.9");
        assert_eq!(loopback["HealthStatus"], json!(false), "not probed yet");
        assert_eq!(loopback["HealthStatusDetail"], json!("Unknown"));
        let pod = find(&rules[0], "10.0.0.9");
        assert_eq!(pod["HealthStatus"], json!(true), "never probed: healthy");
        assert_eq!(pod["HealthStatusDetail"], json!("Alive"));
        assert_eq!(
            find(&rules[1], "127.0.0.9")["HealthStatusDetail"],
            json!("Close")
        );
    }

    #[test]
    fn manual_rewrite_refuses_self_and_chained_redirects() {
        let mut c = core();
        let (lb, l, a, b) = setup(&mut c);
        let rewrite = |c: &mut Core, from: &str, to: &str| {
            call(
                c,
                "ManualRewrite",
                json!({"LoadBalancerId": lb, "SourceListenerId": l, "TargetListenerId": l,
                       "RewriteInfos": [{"SourceLocationId": from, "TargetLocationId": to}]}),
            )
        };
        let own = rewrite(&mut c, &a, &a).expect_err("self");
        assert_eq!(own.code, codes::INVALID_PARAMETER);
        rewrite(&mut c, &a, &b).expect("a -> b");
        let chain = rewrite(&mut c, &b, &a).expect_err("b is a target");
        assert_eq!(chain.code, codes::INVALID_PARAMETER);
    }

    #[test]
    fn describing_an_unknown_listener_id_is_listener_id_not_found() {
        let mut c = core();
        let (lb, l, _, _) = setup(&mut c);
        for action in ["DescribeListeners", "DescribeTargets"] {
            let err = call(
                &mut c,
                action,
                json!({"LoadBalancerId": lb, "ListenerIds": [l, "lbl-nothere"]}),
            )
            .expect_err("unknown id");
            assert_eq!(err.code, codes::LISTENER_ID_NOT_FOUND, "{action}");
        }
        let ok = call(&mut c, "DescribeListeners", json!({"LoadBalancerId": lb})).expect("all");
        assert_eq!(ok["TotalCount"], json!(1));
    }

    #[test]
    fn a_clb_action_naming_a_missing_certificate_answers_invalid_parameter() {
        let mut c = core();
        let (lb, _, _, _) = setup(&mut c);
        let err = call(
            &mut c,
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [443], "Protocol": "HTTPS",
                   "Certificate": {"CertId": "Abcdefgh"}}),
        )
        .expect_err("no such certificate");
        assert_eq!(err.code, codes::INVALID_PARAMETER);
        assert!(err.message.contains("Abcdefgh"), "{}", err.message);
    }

    #[test]
    fn an_internal_clb_without_a_subnet_is_refused() {
        let mut c = core();
        let err = call(
            &mut c,
            "CreateLoadBalancer",
            json!({"LoadBalancerType": "INTERNAL", "VpcId": "vpc-1"}),
        )
        .expect_err("no subnet");
        assert_eq!(err.code, codes::MISSING_PARAMETER);
        assert!(err.message.contains("SubnetId"), "{}", err.message);
    }
}
