//! CLB actions on targets, tasks, quota and rewrites (clb-api.md §3.4-§3.6).
//!
//! Deregistering or re-weighting a target that is not bound is a no-op (the real API's answer
//! is undocumented); registering one that is already bound is `InvalidParameterValue.Duplicate`.

use std::net::Ipv4Addr;

use crate::actions::{Handled, TaskInfo, listener_mut, rule_output, to_value};
use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::{Bound, Listener};
use crate::validate;
use clb_api::types::*;

/// Register/DeregisterTargets cap (§3.4).
pub const MAX_TARGETS_PER_CALL: usize = 20;
/// Batch(De)RegisterTargets cap (§3.4).
pub const MAX_BATCH_TARGETS: usize = 500;
/// BatchModifyTargetWeight caps (§3.4).
pub const MAX_WEIGHT_RULES: usize = 100;
pub const MAX_WEIGHT_TARGETS_PER_RULE: usize = 50;
pub const MAX_WEIGHT_TARGETS: usize = 500;
/// DescribeTargets ListenerIds cap, DescribeTargetHealth LoadBalancerIds cap (§6).
pub const MAX_DESCRIBE_TARGET_LISTENERS: usize = 20;
pub const MAX_HEALTH_LBS: usize = 30;
/// Default rewrite code (§3.6).
pub const DEFAULT_REWRITE_CODE: i64 = 302;
/// Port of the HTTP listener AutoRewrite creates or reuses.
pub const AUTO_REWRITE_HTTP_PORT: u16 = 80;

fn reply<T: serde::Serialize>(v: &T, lbs: Vec<String>) -> Handled {
    Ok((
        to_value(v),
        TaskInfo {
            lbs,
            ..TaskInfo::default()
        },
    ))
}

/// The fake private IP of a CVM instance: the configured one, else 10.x.y.z derived from the id
/// (FNV-1a), never on loopback and never connected to.
pub fn instance_ip(core: &Core, instance_id: &str) -> Ipv4Addr {
    if let Some(ip) = core.settings.instances.get(instance_id) {
        return *ip;
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in instance_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [_, b, c, d] = h.to_be_bytes();
    Ipv4Addr::new(10, b, c, d.max(1))
}

fn valid_instance_id(id: &str) -> bool {
    id.strip_prefix("ins-").is_some_and(|rest| {
        rest.len() == 8
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Resolve (InstanceId | EniIp, Port, Weight) into a bound target.
fn make_bound(
    core: &Core,
    instance_id: &Option<String>,
    eni_ip: &Option<String>,
    port: i64,
    weight: Option<i64>,
    default_weight: i64,
    tag: &Option<String>,
) -> Result<Bound, ApiFailure> {
    let port = validate::port("Targets.Port", port)?;
    let weight = validate::weight(weight.unwrap_or(default_weight))?;
    let (instance_id, ip) = match (instance_id, eni_ip) {
        (Some(_), Some(_)) => {
            return Err(ApiFailure::combination(
                "give exactly one of InstanceId and EniIp",
            ));
        }
        (None, None) => return Err(ApiFailure::missing("Targets.InstanceId or Targets.EniIp")),
        (Some(id), None) => {
            if !valid_instance_id(id) {
                return Err(ApiFailure::invalid_value(format!(
                    "InstanceId {id} is not a CVM instance id (ins-xxxxxxxx)"
                )));
            }
            (Some(id.clone()), instance_ip(core, id).to_string())
        }
        (None, Some(ip)) => {
            let parsed: std::net::IpAddr = ip.parse().map_err(|_| {
                ApiFailure::invalid_value(format!("EniIp {ip} is not an IP address"))
            })?;
            (None, parsed.to_string())
        }
    };
    Ok(Bound {
        instance_id,
        ip,
        port,
        weight,
        tag: tag.clone(),
        registered_time: core.time_string(),
    })
}

/// Where targets of a listener go: the listener itself (L4) or one rule (L7).
enum Slot {
    Listener,
    Rule(usize),
}

fn find_slot(
    l: &Listener,
    location_id: &Option<String>,
    domain: &Option<String>,
    url: &Option<String>,
) -> Result<Slot, ApiFailure> {
    if !l.is_l7() {
        return Ok(Slot::Listener);
    }
    if let Some(loc) = location_id {
        return l
            .rules
            .iter()
            .position(|r| &r.id == loc)
            .map(Slot::Rule)
            .ok_or_else(|| ApiFailure::location_not_found(&format!("LocationId {loc}")));
    }
    match (domain, url) {
        (Some(d), Some(u)) => l
            .rules
            .iter()
            .position(|r| r.has_domain(d) && &r.url == u)
            .map(Slot::Rule)
            .ok_or_else(|| ApiFailure::location_not_found(&format!("Domain {d} Url {u}"))),
        _ => Err(ApiFailure::invalid(format!(
            "listener {} is {}: give LocationId or Domain and Url",
            l.id, l.protocol
        ))),
    }
}

fn slot_targets<'a>(l: &'a mut Listener, slot: &Slot) -> &'a mut Vec<Bound> {
    match slot {
        Slot::Listener => &mut l.targets,
        Slot::Rule(i) => &mut l.rules[*i].targets,
    }
}

fn bound_key(b: &Bound) -> (Option<String>, String, u16) {
    (b.instance_id.clone(), b.ip.clone(), b.port)
}

pub fn register_targets(core: &mut Core, r: RegisterTargetsRequest) -> Handled {
    core.writable("RegisterTargets", &r.load_balancer_id)?;
    if r.targets.is_empty() {
        return Err(ApiFailure::missing("Targets"));
    }
    validate::cap("Targets", &r.targets, MAX_TARGETS_PER_CALL)?;
    let mut new = Vec::new();
    for t in &r.targets {
        new.push(make_bound(
            core,
            &t.instance_id,
            &t.eni_ip,
            t.port,
            t.weight,
            validate::WEIGHT_DEFAULT,
            &t.tag,
        )?);
    }
    let quota = core.settings.quotas.targets_per_rule;
    let l = listener_mut(core, &r.load_balancer_id, &r.listener_id)?;
    let slot = find_slot(l, &r.location_id, &r.domain, &r.url)?;
    let targets = slot_targets(l, &slot);
    let mut keys: Vec<_> = targets.iter().map(bound_key).collect();
    for b in &new {
        if keys.contains(&bound_key(b)) {
            return Err(ApiFailure::new(
                codes::INVALID_PARAMETER_VALUE_DUPLICATE,
                format!("target {}:{} is already bound or given twice", b.ip, b.port),
            ));
        }
        keys.push(bound_key(b));
    }
    if keys.len() as i64 > quota {
        return Err(ApiFailure::limit(format!(
            "target quota {quota} per rule exceeded"
        )));
    }
    targets.extend(new);
    reply(&Empty {}, vec![r.load_balancer_id])
}

pub fn deregister_targets(core: &mut Core, r: RegisterTargetsRequest) -> Handled {
    core.writable("DeregisterTargets", &r.load_balancer_id)?;
    if r.targets.is_empty() {
        return Err(ApiFailure::missing("Targets"));
    }
    validate::cap("Targets", &r.targets, MAX_TARGETS_PER_CALL)?;
    let mut gone = Vec::new();
    for t in &r.targets {
        gone.push(make_bound(
            core,
            &t.instance_id,
            &t.eni_ip,
            t.port,
            Some(0),
            0,
            &None,
        )?);
    }
    let l = listener_mut(core, &r.load_balancer_id, &r.listener_id)?;
    let slot = find_slot(l, &r.location_id, &r.domain, &r.url)?;
    let targets = slot_targets(l, &slot);
    targets.retain(|b| {
        !gone
            .iter()
            .any(|g| b.same(g.instance_id.as_deref(), &g.ip, g.port))
    });
    reply(&Empty {}, vec![r.load_balancer_id])
}

fn apply_weights(
    core: &Core,
    l: &mut Listener,
    slot: &Slot,
    targets: &[Target],
    default: Option<i64>,
) -> Result<(), ApiFailure> {
    let mut changes = Vec::new();
    for t in targets {
        let b = make_bound(
            core,
            &t.instance_id,
            &t.eni_ip,
            t.port,
            t.weight.or(default),
            validate::WEIGHT_DEFAULT,
            &None,
        )?;
        changes.push(b);
    }
    for b in slot_targets(l, slot).iter_mut() {
        if let Some(c) = changes
            .iter()
            .find(|c| b.same(c.instance_id.as_deref(), &c.ip, c.port))
        {
            b.weight = c.weight;
        }
    }
    Ok(())
}

pub fn modify_target_weight(core: &mut Core, r: ModifyTargetWeightRequest) -> Handled {
    core.writable("ModifyTargetWeight", &r.load_balancer_id)?;
    if r.targets.is_empty() {
        return Err(ApiFailure::missing("Targets"));
    }
    if let Some(w) = r.weight {
        validate::weight(w)?;
    }
    let mut l = listener_mut(core, &r.load_balancer_id, &r.listener_id)?.clone();
    let slot = find_slot(&l, &r.location_id, &r.domain, &r.url)?;
    apply_weights(core, &mut l, &slot, &r.targets, r.weight)?;
    *listener_mut(core, &r.load_balancer_id, &r.listener_id)? = l;
    reply(&Empty {}, vec![r.load_balancer_id])
}

pub fn batch_modify_weight(core: &mut Core, r: BatchModifyTargetWeightRequest) -> Handled {
    core.writable("BatchModifyTargetWeight", &r.load_balancer_id)?;
    if r.modify_list.is_empty() {
        return Err(ApiFailure::missing("ModifyList"));
    }
    validate::cap("ModifyList", &r.modify_list, MAX_WEIGHT_RULES)?;
    let mut total = 0;
    for m in &r.modify_list {
        validate::cap(
            "ModifyList.Targets",
            &m.targets,
            MAX_WEIGHT_TARGETS_PER_RULE,
        )?;
        total += m.targets.len();
        if let Some(w) = m.weight {
            validate::weight(w)?;
        }
    }
    if total > MAX_WEIGHT_TARGETS {
        return Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_LENGTH,
            format!("ModifyList has {total} targets; at most {MAX_WEIGHT_TARGETS} are allowed"),
        ));
    }
    // Validate all entries on a copy, then commit.
    let mut lb = core
        .state
        .lb(&r.load_balancer_id)
        .cloned()
        .ok_or_else(|| ApiFailure::lb_not_found(&r.load_balancer_id))?;
    for m in &r.modify_list {
        let l = lb
            .listener_mut(&m.listener_id)
            .ok_or_else(|| ApiFailure::listener_not_found(&m.listener_id))?;
        let slot = find_slot(l, &m.location_id, &m.domain, &m.url)?;
        apply_weights(core, l, &slot, &m.targets, m.weight)?;
    }
    if let Some(slot) = core.state.lb_mut(&r.load_balancer_id) {
        *slot = lb;
    }
    reply(&Empty {}, vec![r.load_balancer_id])
}

fn batch(core: &mut Core, action: &str, r: BatchTargetsRequest, register: bool) -> Handled {
    core.writable(action, &r.load_balancer_id)?;
    if r.targets.is_empty() {
        return Err(ApiFailure::missing("Targets"));
    }
    validate::cap("Targets", &r.targets, MAX_BATCH_TARGETS)?;
    let mut bounds = Vec::new();
    for t in &r.targets {
        bounds.push(make_bound(
            core,
            &t.instance_id,
            &t.eni_ip,
            t.port,
            t.weight,
            validate::WEIGHT_DEFAULT,
            &t.tag,
        )?);
    }
    let quota = core.settings.quotas.targets_per_rule;
    let mut failed: Vec<String> = Vec::new();
    let mut messages: Vec<String> = Vec::new();
    let lb = core
        .state
        .lb_mut(&r.load_balancer_id)
        .ok_or_else(|| ApiFailure::lb_not_found(&r.load_balancer_id))?;
    for (t, b) in r.targets.iter().zip(bounds) {
        let mut fail = |msg: String| {
            if !failed.contains(&t.listener_id) {
                failed.push(t.listener_id.clone());
            }
            messages.push(msg);
        };
        let Some(l) = lb.listener_mut(&t.listener_id) else {
            fail(format!("Listener {} not exists.", t.listener_id));
            continue;
        };
        if l.is_l7() && t.location_id.is_none() {
            fail(format!(
                "Listener {} is {}: LocationId is required.",
                l.id, l.protocol
            ));
            continue;
        }
        let slot = match find_slot(l, &t.location_id, &None, &None) {
            Ok(s) => s,
            Err(e) => {
                fail(e.message);
                continue;
            }
        };
        let targets = slot_targets(l, &slot);
        let existing = targets
            .iter()
            .position(|x| x.same(b.instance_id.as_deref(), &b.ip, b.port));
        if register {
            match existing {
                Some(i) => targets[i].weight = b.weight,
                None if targets.len() as i64 >= quota => {
                    fail(format!("target quota {quota} per rule exceeded"));
                }
                None => targets.push(b),
            }
        } else if let Some(i) = existing {
            targets.remove(i);
        }
    }
    let resp = BatchTargetsResponse {
        fail_listener_id_set: failed,
        message: (!messages.is_empty()).then(|| messages.join(" ")),
    };
    // Synchronous: no task, but the lock check above applied.
    Ok((to_value(&resp), TaskInfo::default()))
}

pub fn batch_register(core: &mut Core, r: BatchTargetsRequest) -> Handled {
    batch(core, "BatchRegisterTargets", r, true)
}

pub fn batch_deregister(core: &mut Core, r: BatchTargetsRequest) -> Handled {
    batch(core, "BatchDeregisterTargets", r, false)
}

fn backend(b: &Bound) -> Backend {
    Backend {
        backend_type: if b.instance_id.is_some() {
            "CVM"
        } else {
            "ENI"
        }
        .into(),
        instance_id: b.instance_id.clone(),
        port: i64::from(b.port),
        weight: i64::from(b.weight),
        public_ip_addresses: vec![],
        private_ip_addresses: vec![b.ip.clone()],
        instance_name: b.instance_id.clone(),
        registered_time: Some(b.registered_time.clone()),
        eni_id: None,
        tag: b.tag.clone(),
    }
}

pub fn describe_targets(core: &mut Core, r: DescribeTargetsRequest) -> Handled {
    validate::cap(
        "ListenerIds",
        &r.listener_ids,
        MAX_DESCRIBE_TARGET_LISTENERS,
    )?;
    let mut loc_filter = None;
    let mut ip_filter = None;
    let mut tag_filter = None;
    for f in &r.filters {
        match f.name.as_str() {
            "location-id" => loc_filter = Some(f.values.clone()),
            "private-ip-address" => ip_filter = Some(f.values.clone()),
            "tag" => tag_filter = Some(f.values.clone()),
            other => {
                return Err(ApiFailure::new(
                    codes::INVALID_PARAMETER_VALUE_INVALID_FILTER,
                    format!("unknown filter name {other}"),
                ));
            }
        }
    }
    let keep = |b: &&Bound| {
        ip_filter.as_ref().is_none_or(|v| v.contains(&b.ip))
            && tag_filter
                .as_ref()
                .is_none_or(|v| b.tag.as_ref().is_some_and(|t| v.contains(t)))
    };
    let lb = core
        .state
        .lb(&r.load_balancer_id)
        .ok_or_else(|| ApiFailure::lb_not_found(&r.load_balancer_id))?;
    let listeners = lb
        .listeners
        .iter()
        .filter(|l| r.listener_ids.is_empty() || r.listener_ids.contains(&l.id))
        .filter(|l| r.protocol.as_ref().is_none_or(|p| &l.protocol == p))
        .filter(|l| r.port.is_none_or(|p| i64::from(l.port) == p))
        .map(|l| ListenerBackend {
            listener_id: l.id.clone(),
            protocol: l.protocol.clone(),
            port: i64::from(l.port),
            rules: l
                .rules
                .iter()
                .filter(|x| loc_filter.as_ref().is_none_or(|v| v.contains(&x.id)))
                .map(|x| RuleTargets {
                    location_id: x.id.clone(),
                    domain: x.domains.first().cloned().unwrap_or_default(),
                    url: x.url.clone(),
                    targets: x.targets.iter().filter(keep).map(backend).collect(),
                })
                .collect(),
            targets: l.targets.iter().filter(keep).map(backend).collect(),
        })
        .collect();
    reply(&DescribeTargetsResponse { listeners }, vec![])
}

fn health(b: &Bound) -> TargetHealth {
    TargetHealth {
        ip: b.ip.clone(),
        port: i64::from(b.port),
        health_status: true,
        target_id: b.instance_id.clone().unwrap_or_else(|| b.ip.clone()),
        health_status_detail: Some("Alive".into()),
        health_status_detial: Some("Alive".into()),
        weight: Some(i64::from(b.weight)),
    }
}

pub fn describe_target_health(core: &mut Core, r: DescribeTargetHealthRequest) -> Handled {
    if r.load_balancer_ids.is_empty() {
        return Err(ApiFailure::missing("LoadBalancerIds"));
    }
    validate::cap("LoadBalancerIds", &r.load_balancer_ids, MAX_HEALTH_LBS)?;
    let mut out = Vec::new();
    for id in &r.load_balancer_ids {
        let lb = core
            .state
            .lb(id)
            .ok_or_else(|| ApiFailure::lb_not_found(id))?;
        let listeners = lb
            .listeners
            .iter()
            .filter(|l| r.listener_ids.is_empty() || r.listener_ids.contains(&l.id))
            .map(|l| {
                let rules = if l.is_l7() {
                    l.rules
                        .iter()
                        .filter(|x| r.location_ids.is_empty() || r.location_ids.contains(&x.id))
                        .map(|x| RuleHealth {
                            location_id: x.id.clone(),
                            domain: x.domains.first().cloned(),
                            url: Some(x.url.clone()),
                            rule_id: Some(x.id.clone()),
                            targets: x.targets.iter().map(health).collect(),
                        })
                        .collect()
                } else {
                    vec![RuleHealth {
                        location_id: l.id.clone(),
                        domain: None,
                        url: None,
                        rule_id: None,
                        targets: l.targets.iter().map(health).collect(),
                    }]
                };
                ListenerHealth {
                    listener_id: l.id.clone(),
                    listener_name: l.name.clone(),
                    protocol: l.protocol.clone(),
                    port: i64::from(l.port),
                    rules,
                }
            })
            .collect();
        out.push(LoadBalancerHealth {
            load_balancer_id: lb.id.clone(),
            load_balancer_name: lb.name.clone(),
            listeners,
        });
    }
    reply(
        &DescribeTargetHealthResponse {
            load_balancers: out,
        },
        vec![],
    )
}

pub fn describe_task_status(core: &mut Core, r: DescribeTaskStatusRequest) -> Handled {
    let id = match (&r.task_id, &r.deal_name) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => core
            .deals
            .get(d)
            .cloned()
            .ok_or_else(|| ApiFailure::invalid(format!("DealName {d} not found")))?,
        (None, None) => return Err(ApiFailure::missing("TaskId")),
    };
    let t = core
        .tasks
        .get(&id)
        .ok_or_else(|| ApiFailure::invalid(format!("TaskId {id} not found")))?;
    reply(
        &DescribeTaskStatusResponse {
            status: t.status,
            load_balancer_ids: t.load_balancer_ids.clone(),
            message: t.message.clone(),
        },
        vec![],
    )
}

pub fn describe_quota(core: &mut Core) -> Handled {
    let q = &core.settings.quotas;
    let count = |t: &str| core.state.lbs.iter().filter(|l| l.lb_type == t).count() as i64;
    let set = vec![
        Quota {
            quota_id: "TOTAL_OPEN_CLB_QUOTA".into(),
            quota_current: Some(count("OPEN")),
            quota_limit: q.open_clb,
        },
        Quota {
            quota_id: "TOTAL_INTERNAL_CLB_QUOTA".into(),
            quota_current: Some(count("INTERNAL")),
            quota_limit: q.internal_clb,
        },
        Quota {
            quota_id: "TOTAL_LISTENER_QUOTA".into(),
            quota_current: None,
            quota_limit: q.listeners_per_lb,
        },
        Quota {
            quota_id: "TOTAL_LISTENER_RULE_QUOTA".into(),
            quota_current: None,
            quota_limit: q.rules_per_listener,
        },
        Quota {
            quota_id: "TOTAL_TARGET_BIND_QUOTA".into(),
            quota_current: None,
            quota_limit: q.targets_per_rule,
        },
    ];
    reply(&DescribeQuotaResponse { quota_set: set }, vec![])
}

// ---------------------------------------------------------------------------------------------
// Rewrites
// ---------------------------------------------------------------------------------------------

fn check_code(code: i64) -> Result<(), ApiFailure> {
    if matches!(code, 301 | 302 | 307) {
        Ok(())
    } else {
        Err(ApiFailure::invalid_value(format!(
            "RewriteCode must be 301, 302 or 307, got {code}"
        )))
    }
}

pub fn auto_rewrite(core: &mut Core, r: AutoRewriteRequest) -> Handled {
    core.writable("AutoRewrite", &r.load_balancer_id)?;
    for c in &r.rewrite_codes {
        check_code(*c)?;
    }
    let https = listener_mut(core, &r.load_balancer_id, &r.listener_id)?.clone();
    if https.protocol != "HTTPS" {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            "AutoRewrite needs an HTTPS listener",
        ));
    }
    let domains = if r.domains.is_empty() {
        https.domains()
    } else {
        for d in &r.domains {
            if !https.rules.iter().any(|x| x.has_domain(d)) {
                return Err(ApiFailure::location_not_found(&format!("Domain {d}")));
            }
        }
        r.domains.clone()
    };
    let now = core.time_string();
    let lb_id = r.load_balancer_id.clone();
    let http_id = match core.state.lb(&lb_id).and_then(|lb| {
        lb.listeners
            .iter()
            .find(|l| l.port == AUTO_REWRITE_HTTP_PORT && l.protocol == "HTTP")
            .map(|l| l.id.clone())
    }) {
        Some(id) => id,
        None => {
            if let Some(l) = core.state.lb(&lb_id).and_then(|lb| {
                lb.listeners.iter().find(|l| {
                    l.port == AUTO_REWRITE_HTTP_PORT && l.protocol != "UDP" && l.protocol != "QUIC"
                })
            }) {
                return Err(ApiFailure::new(
                    codes::PORT_CHECK_FAILED,
                    format!("port 80 is used by {} listener {}", l.protocol, l.id),
                ));
            }
            let id = core.new_id("lbl");
            let l = Listener {
                id: id.clone(),
                name: String::new(),
                protocol: "HTTP".into(),
                port: AUTO_REWRITE_HTTP_PORT,
                certificate: None,
                sni: false,
                health_check: None,
                scheduler: None,
                session_expire_time: None,
                keepalive_enable: None,
                target_type: "NODE".into(),
                rules: vec![],
                targets: vec![],
                create_time: now.clone(),
            };
            if let Some(lb) = core.state.lb_mut(&lb_id) {
                lb.listeners.push(l);
            }
            id
        }
    };
    for (i, d) in domains.iter().enumerate() {
        let code = r
            .rewrite_codes
            .get(i)
            .copied()
            .unwrap_or(DEFAULT_REWRITE_CODE);
        let take = r.take_urls.get(i).copied().unwrap_or(false);
        for src in https.rules.iter().filter(|x| x.has_domain(d)) {
            let target = RewriteTarget {
                target_listener_id: Some(https.id.clone()),
                target_location_id: Some(src.id.clone()),
                rewrite_code: Some(code),
                take_url: Some(take),
                rewrite_type: Some("Auto".into()),
            };
            let new_id = core.new_id("loc");
            let http = listener_mut(core, &lb_id, &http_id)?;
            if let Some(existing) = http
                .rules
                .iter_mut()
                .find(|x| x.has_domain(d) && x.url == src.url)
            {
                existing.rewrite = Some(target);
                continue;
            }
            let first = http.rules.is_empty();
            let mut rule = src.clone();
            rule.id = new_id;
            rule.domains = vec![d.clone()];
            rule.multi_domain = false;
            rule.certificate = None;
            rule.http2 = false;
            rule.quic = false;
            rule.targets = vec![];
            rule.rewrite = Some(target);
            rule.be_auto_created = true;
            rule.create_time = now.clone();
            rule.default_server = first
                || http
                    .rules
                    .iter()
                    .any(|x| x.has_domain(d) && x.default_server);
            http.rules.push(rule);
        }
    }
    reply(&Empty {}, vec![lb_id])
}

fn rule_exists(l: &Listener, id: &str) -> bool {
    l.rules.iter().any(|x| x.id == id)
}

pub fn manual_rewrite(core: &mut Core, r: ManualRewriteRequest) -> Handled {
    core.writable("ManualRewrite", &r.load_balancer_id)?;
    if r.rewrite_infos.is_empty() {
        return Err(ApiFailure::missing("RewriteInfos"));
    }
    let src = listener_mut(core, &r.load_balancer_id, &r.source_listener_id)?.clone();
    let dst = listener_mut(core, &r.load_balancer_id, &r.target_listener_id)?.clone();
    if !src.is_l7() || !dst.is_l7() {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            "rewrites need HTTP/HTTPS listeners",
        ));
    }
    for m in &r.rewrite_infos {
        if !rule_exists(&src, &m.source_location_id) {
            return Err(ApiFailure::location_not_found(&format!(
                "SourceLocationId {}",
                m.source_location_id
            )));
        }
        if !rule_exists(&dst, &m.target_location_id) {
            return Err(ApiFailure::location_not_found(&format!(
                "TargetLocationId {}",
                m.target_location_id
            )));
        }
        if let Some(c) = m.rewrite_code {
            check_code(c)?;
            if m.take_url.is_none() {
                return Err(ApiFailure::missing("RewriteInfos.TakeUrl"));
            }
            let Some(sd) = &m.source_domain else {
                return Err(ApiFailure::missing("RewriteInfos.SourceDomain"));
            };
            let ok = src
                .rules
                .iter()
                .any(|x| x.id == m.source_location_id && x.has_domain(sd));
            if !ok {
                return Err(ApiFailure::invalid(format!(
                    "SourceDomain {sd} is not the domain of {}",
                    m.source_location_id
                )));
            }
        }
        let source = src.rules.iter().find(|x| x.id == m.source_location_id);
        if source.is_some_and(|x| x.rewrite.is_some()) {
            return Err(ApiFailure::new(
                codes::REWRITE_ALREADY_EXIST,
                format!("{} is already redirected", m.source_location_id),
            ));
        }
        let target = dst.rules.iter().find(|x| x.id == m.target_location_id);
        if target.is_some_and(|x| x.rewrite.is_some()) {
            return Err(ApiFailure::invalid(format!(
                "{} is itself redirected and cannot be a redirect target",
                m.target_location_id
            )));
        }
    }
    let l = listener_mut(core, &r.load_balancer_id, &r.source_listener_id)?;
    for m in &r.rewrite_infos {
        if let Some(x) = l.rules.iter_mut().find(|x| x.id == m.source_location_id) {
            x.rewrite = Some(RewriteTarget {
                target_listener_id: Some(r.target_listener_id.clone()),
                target_location_id: Some(m.target_location_id.clone()),
                rewrite_code: Some(m.rewrite_code.unwrap_or(DEFAULT_REWRITE_CODE)),
                take_url: Some(m.take_url.unwrap_or(false)),
                rewrite_type: Some("Manual".into()),
            });
        }
    }
    reply(&Empty {}, vec![r.load_balancer_id])
}

pub fn delete_rewrite(core: &mut Core, r: ManualRewriteRequest) -> Handled {
    core.writable("DeleteRewrite", &r.load_balancer_id)?;
    if r.rewrite_infos.is_empty() {
        return Err(ApiFailure::missing("RewriteInfos"));
    }
    let l = listener_mut(core, &r.load_balancer_id, &r.source_listener_id)?;
    for m in &r.rewrite_infos {
        let found = l.rules.iter().any(|x| {
            x.id == m.source_location_id
                && x.rewrite.as_ref().is_some_and(|w| {
                    w.target_location_id.as_deref() == Some(m.target_location_id.as_str())
                        && w.target_listener_id.as_deref() == Some(r.target_listener_id.as_str())
                })
        });
        if !found {
            return Err(ApiFailure::new(
                codes::SOME_REWRITE_NOT_FOUND,
                format!(
                    "no rewrite from {} to {}",
                    m.source_location_id, m.target_location_id
                ),
            ));
        }
    }
    for m in &r.rewrite_infos {
        if let Some(x) = l.rules.iter_mut().find(|x| x.id == m.source_location_id) {
            x.rewrite = None;
        }
    }
    reply(&Empty {}, vec![r.load_balancer_id])
}

pub fn describe_rewrite(core: &mut Core, r: DescribeRewriteRequest) -> Handled {
    let lb = core
        .state
        .lb(&r.load_balancer_id)
        .ok_or_else(|| ApiFailure::lb_not_found(&r.load_balancer_id))?;
    let set: Vec<RuleOutput> = lb
        .listeners
        .iter()
        .filter(|l| r.source_listener_ids.is_empty() || r.source_listener_ids.contains(&l.id))
        .flat_map(|l| {
            l.rules
                .iter()
                .filter(|x| x.rewrite.is_some())
                .filter(|x| {
                    r.source_location_ids.is_empty() || r.source_location_ids.contains(&x.id)
                })
                .map(move |x| rule_output(l, x))
        })
        .collect();
    reply(&DescribeRewriteResponse { rewrite_set: set }, vec![])
}
