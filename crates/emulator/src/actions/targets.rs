//! CLB actions on targets (clb-api.md §3.4): (Batch)Register/DeregisterTargets,
//! (Batch)ModifyTargetWeight, DescribeTargets and DescribeTargetHealth.
//!
//! Deregistering or re-weighting a target that is not bound is a no-op (the real API's answer
//! is undocumented); registering one that is already bound is `InvalidParameterValue.Duplicate`.

use std::net::Ipv4Addr;

use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::health::Health;
use crate::state::{Bound, Listener};
use crate::validate;
use clb_api::types::*;

use super::common::{Handled, listener_mut, null_where, reply, to_value};

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
                // Already bound: reported, not re-weighted (ModifyTargetWeight changes weights).
                Some(_) => fail(format!(
                    "target {}:{} is already bound to listener {}.",
                    b.ip, b.port, t.listener_id
                )),
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
    reply(&resp, vec![])
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
    if let Some(id) = r
        .listener_ids
        .iter()
        .find(|id| !lb.listeners.iter().any(|l| &l.id == *id))
    {
        return Err(ApiFailure::listener_not_found(id));
    }
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
    let mut body = to_value(&DescribeTargetsResponse { listeners });
    // As the official samples: layer-7 listeners have `"Targets": null`, layer-4 `"Rules": null`.
    let l7 = |l: &serde_json::Value| matches!(l["Protocol"].as_str(), Some("HTTP" | "HTTPS"));
    null_where(&mut body, "Listeners", l7, "Targets");
    null_where(&mut body, "Listeners", |l| !l7(l), "Rules");
    Ok((body, Default::default()))
}

/// A target's health on rule (or L4 listener) `location`: from the data plane's probes when
/// there is a data plane, `Alive` otherwise (nothing probes, nothing is known to be down).
fn health(
    table: Option<&crate::health::HealthTable>,
    location: &str,
    check: bool,
    b: &Bound,
) -> TargetHealth {
    let h = table.map_or(Health::Alive, |t| t.health(location, &b.ip, b.port, check));
    TargetHealth {
        ip: b.ip.clone(),
        port: i64::from(b.port),
        health_status: h == Health::Alive,
        target_id: b.instance_id.clone().unwrap_or_else(|| b.ip.clone()),
        health_status_detail: Some(h.detail().into()),
        health_status_detial: Some(h.detail().into()),
        weight: Some(i64::from(b.weight)),
    }
}

/// Whether a rule's stored health check is on (a rule stored without one has CLB's default: on).
fn check_on(hc: Option<&HealthCheck>) -> bool {
    hc.is_none_or(|h| h.health_switch != Some(0))
}

pub fn describe_target_health(core: &mut Core, r: DescribeTargetHealthRequest) -> Handled {
    if r.load_balancer_ids.is_empty() {
        return Err(ApiFailure::missing("LoadBalancerIds"));
    }
    validate::cap("LoadBalancerIds", &r.load_balancer_ids, MAX_HEALTH_LBS)?;
    let table = core.health.clone();
    let table = table.as_deref();
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
                            targets: x
                                .targets
                                .iter()
                                .map(|b| health(table, &x.id, check_on(x.health_check.as_ref()), b))
                                .collect(),
                        })
                        .collect()
                } else {
                    vec![RuleHealth {
                        location_id: l.id.clone(),
                        domain: None,
                        url: None,
                        rule_id: None,
                        // Layer-4 listeners are not probed by the emulator's data plane.
                        targets: l
                            .targets
                            .iter()
                            .map(|b| health(None, &l.id, true, b))
                            .collect(),
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
