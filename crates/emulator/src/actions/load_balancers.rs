//! CLB actions on load balancers themselves (clb-api.md §3.1, §3.7): Create/Describe/Delete
//! LoadBalancer(s), ModifyLoadBalancerAttributes (name, delete protection, pass-to-target), tags at
//! creation, and DescribeQuota.

use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::Lb;
use crate::validate;
use clb_api::types::*;

use super::common::{Handled, TaskInfo, empty, lb_ref, reply, to_value};

/// Max ids in DescribeLoadBalancers / DeleteLoadBalancer (§6).
pub const MAX_DESCRIBE_LB_IDS: usize = 20;
pub const MAX_DELETE_LB_IDS: usize = 20;
/// DescribeLoadBalancers paging (§3.1).
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;
/// DescribeLoadBalancers Filters caps (§3.1).
pub const MAX_FILTERS: usize = 10;
pub const MAX_FILTER_VALUES: usize = 100;
/// Tags per CLB at creation (§3.7).
pub const MAX_TAGS: usize = 20;
/// LBs per CreateLoadBalancer call (§3.1).
pub const MAX_CREATE_NUMBER: i64 = 20;
/// Bound targets at which DeleteLoadBalancer without ForceDelete refuses (§3.1).
pub const DELETE_TARGET_RISK: usize = 20;

fn lb_type_ok(t: &str) -> Result<(), ApiFailure> {
    if t == "OPEN" || t == "INTERNAL" {
        Ok(())
    } else {
        Err(ApiFailure::invalid_value(format!(
            "LoadBalancerType must be OPEN or INTERNAL, got {t}"
        )))
    }
}

fn allocate_vip(core: &Core) -> Result<std::net::Ipv4Addr, ApiFailure> {
    let base = u32::from(core.settings.vip_base);
    let used: std::collections::HashSet<u32> =
        core.state.lbs.iter().map(|l| u32::from(l.vip)).collect();
    let last = u32::from(std::net::Ipv4Addr::new(127, 255, 255, 254));
    (base..=last)
        .find(|v| !used.contains(v))
        .map(std::net::Ipv4Addr::from)
        .ok_or_else(|| {
            ApiFailure::new(
                codes::RESOURCE_INSUFFICIENT,
                "no loopback VIP left for a new CLB",
            )
        })
}

pub fn create_load_balancer(
    core: &mut Core,
    request_id: &str,
    r: CreateLoadBalancerRequest,
) -> Handled {
    lb_type_ok(&r.load_balancer_type)?;
    if let Some(f) = r.forward
        && f != 1
    {
        return Err(ApiFailure::invalid_value("Forward only accepts 1"));
    }
    let number = r.number.unwrap_or(1);
    if !(1..=MAX_CREATE_NUMBER).contains(&number) {
        return Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_RANGE,
            format!("Number must be 1-{MAX_CREATE_NUMBER}, got {number}"),
        ));
    }
    if let Some(n) = &r.load_balancer_name {
        validate::name("LoadBalancerName", n)?;
    }
    validate::cap("Tags", &r.tags, MAX_TAGS)?;
    if r.tags.iter().any(|t| t.tag_key.is_empty()) {
        return Err(ApiFailure::missing("Tags.TagKey"));
    }
    if r.load_balancer_type == "INTERNAL" && r.vpc_id.is_none() {
        return Err(ApiFailure::missing("VpcId"));
    }
    // api.json SubnetId: required for an internal CLB and for an IPv6FullChain one.
    let full_chain = r
        .address_ip_version
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("IPv6FullChain"));
    if (r.load_balancer_type == "INTERNAL" || full_chain) && r.subnet_id.is_none() {
        return Err(ApiFailure::missing("SubnetId"));
    }

    if r.load_balancer_type == "OPEN" && r.subnet_id.is_some() {
        return Err(ApiFailure::combination(
            "SubnetId is not allowed for a public IPv4 CLB",
        ));
    }
    if let Some(token) = &r.client_token {
        if token.len() > 64 || !token.is_ascii() {
            return Err(ApiFailure::invalid_value(
                "ClientToken is at most 64 ASCII characters",
            ));
        }
        if let Some(ids) = core.client_tokens.get(token) {
            let ids = ids.clone();
            let resp = CreateLoadBalancerResponse {
                load_balancer_ids: ids,
                deal_name: None,
            };
            return Ok((to_value(&resp), TaskInfo::default()));
        }
    }
    let quota = if r.load_balancer_type == "OPEN" {
        core.settings.quotas.open_clb
    } else {
        core.settings.quotas.internal_clb
    };
    let current = core
        .state
        .lbs
        .iter()
        .filter(|l| l.lb_type == r.load_balancer_type)
        .count() as i64;
    if current + number > quota {
        return Err(ApiFailure::limit(format!(
            "{} CLB quota {quota} exceeded ({current} exist, {number} requested)",
            r.load_balancer_type
        )));
    }
    let mut ids = Vec::new();
    for _ in 0..number {
        let id = core.new_id("lb");
        let vip = allocate_vip(core)?;
        let name = match &r.load_balancer_name {
            Some(n) if number == 1 && !core.state.lbs.iter().any(|l| &l.name == n) => n.clone(),
            _ => format!("CLB-{id}"),
        };
        core.state.seq += 1;
        let lb = Lb {
            id: id.clone(),
            name,
            lb_type: r.load_balancer_type.clone(),
            forward: 1,
            vip,
            project_id: r.project_id.unwrap_or(0),
            vpc_id: r.vpc_id.clone().unwrap_or_else(|| "vpc-emulator".into()),
            subnet_id: r.subnet_id.clone(),
            tags: r.tags.clone(),
            address_ip_version: r
                .address_ip_version
                .clone()
                .unwrap_or_else(|| "ipv4".into())
                .to_ascii_lowercase(),
            delete_protect: false,
            pass_to_target: r.load_balancer_pass_to_target.unwrap_or(false),
            create_time: core.time_string(),
            seq: core.state.seq,
            create_task: Some(request_id.to_string()),
            listeners: vec![],
        };
        core.state.lbs.push(std::sync::Arc::new(lb));
        ids.push(id);
    }
    if let Some(token) = &r.client_token {
        core.client_tokens.insert(token.clone(), ids.clone());
    }
    let deal = core.new_deal_name();
    let resp = CreateLoadBalancerResponse {
        load_balancer_ids: ids.clone(),
        deal_name: Some(deal.clone()),
    };
    Ok((
        to_value(&resp),
        TaskInfo {
            lbs: ids.clone(),
            load_balancer_ids: Some(ids),
            deal_name: Some(deal),
        },
    ))
}

/// The `LoadBalancer` output of one CLB.
pub fn lb_output(core: &Core, lb: &Lb, with_target_count: bool) -> LoadBalancer {
    let creating = lb
        .create_task
        .as_deref()
        .is_some_and(|t| core.task_running(t));
    LoadBalancer {
        load_balancer_id: lb.id.clone(),
        load_balancer_name: lb.name.clone(),
        load_balancer_type: lb.lb_type.clone(),
        forward: lb.forward,
        domain: None,
        load_balancer_domain: None,
        load_balancer_vips: vec![lb.vip.to_string()],
        status: if creating { 0 } else { 1 },
        create_time: Some(lb.create_time.clone()),
        status_time: Some(lb.create_time.clone()),
        project_id: lb.project_id,
        vpc_id: Some(lb.vpc_id.clone()),
        subnet_id: lb.subnet_id.clone(),
        tags: lb.tags.clone(),
        address_ip_version: Some(lb.address_ip_version.clone()),
        master_zone: None,
        charge_type: Some("POSTPAID_BY_HOUR".into()),
        load_balancer_pass_to_target: Some(lb.pass_to_target),
        target_region_info: Some(TargetRegionInfo {
            region: core.settings.region.clone(),
            vpc_id: lb.vpc_id.clone(),
        }),
        attribute_flags: if lb.delete_protect {
            vec!["DeleteProtect".into()]
        } else {
            vec![]
        },
        target_count: with_target_count.then(|| lb.target_count() as i64),
    }
}

const KNOWN_LB_FILTERS: &[&str] = &[
    "charge-type",
    "internet-charge-type",
    "master-zone-id",
    "tag-key",
    "function-name",
    "vip-isp",
    "sla-type",
    "exclusive",
];

fn lb_matches_filter(lb: &Lb, f: &Filter) -> bool {
    if f.name == "tag-key" {
        return lb.tags.iter().any(|t| f.values.contains(&t.tag_key));
    }
    if let Some(key) = f.name.strip_prefix("tag:") {
        return lb
            .tags
            .iter()
            .any(|t| t.tag_key == key && f.values.contains(&t.tag_value));
    }
    // Other documented filters describe billing/zone properties the emulator does not model.
    true
}

pub fn describe_load_balancers(core: &mut Core, r: DescribeLoadBalancersRequest) -> Handled {
    validate::cap("LoadBalancerIds", &r.load_balancer_ids, MAX_DESCRIBE_LB_IDS)?;
    validate::cap("Filters", &r.filters, MAX_FILTERS)?;
    for f in &r.filters {
        validate::cap("Filters.Values", &f.values, MAX_FILTER_VALUES)?;
        // api.json: "Filter.Name和Filter.Values皆为必填项" (both required).
        if f.values.is_empty() {
            return Err(ApiFailure::missing("Filters.Values"));
        }
        if !(KNOWN_LB_FILTERS.contains(&f.name.as_str()) || f.name.starts_with("tag:")) {
            return Err(ApiFailure::new(
                codes::INVALID_PARAMETER_VALUE_INVALID_FILTER,
                format!("unknown filter name {}", f.name),
            ));
        }
    }
    let limit = r.limit.unwrap_or(DEFAULT_LIMIT);
    if !(0..=MAX_LIMIT).contains(&limit) {
        return Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_RANGE,
            format!("Limit must be 0-{MAX_LIMIT}, got {limit}"),
        ));
    }
    let offset = r.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_RANGE,
            "Offset must not be negative",
        ));
    }
    if let Some(t) = &r.load_balancer_type {
        lb_type_ok(t)?;
    }
    let mut set: Vec<&Lb> = core
        .state
        .lbs
        .iter()
        .map(std::sync::Arc::as_ref)
        .filter(|lb| r.load_balancer_ids.is_empty() || r.load_balancer_ids.contains(&lb.id))
        .filter(|lb| {
            r.load_balancer_type
                .as_ref()
                .is_none_or(|t| &lb.lb_type == t)
        })
        .filter(|lb| r.forward.is_none_or(|f| f == -1 || lb.forward == f))
        .filter(|lb| {
            r.load_balancer_name
                .as_ref()
                .is_none_or(|n| lb.name.contains(n.as_str()))
        })
        .filter(|lb| {
            r.load_balancer_vips.is_empty() || r.load_balancer_vips.contains(&lb.vip.to_string())
        })
        .filter(|lb| r.project_id.is_none_or(|p| lb.project_id == p))
        .filter(|lb| r.vpc_id.as_ref().is_none_or(|v| &lb.vpc_id == v))
        .filter(|lb| match r.with_rs {
            Some(0) => lb.target_count() == 0,
            Some(1) => lb.target_count() > 0,
            _ => true,
        })
        .filter(|lb| {
            r.search_key.as_ref().is_none_or(|k| {
                lb.name.contains(k.as_str())
                    || lb.id.contains(k.as_str())
                    || lb.vip.to_string().contains(k.as_str())
            })
        })
        .filter(|lb| r.filters.iter().all(|f| lb_matches_filter(lb, f)))
        .collect();
    let order_by = r.order_by.as_deref().unwrap_or("CreateTime");
    match order_by {
        "LoadBalancerName" => set.sort_by(|a, b| a.name.cmp(&b.name).then(a.seq.cmp(&b.seq))),
        "LoadBalancerType" => set.sort_by(|a, b| a.lb_type.cmp(&b.lb_type).then(a.seq.cmp(&b.seq))),
        "Domain" | "CreateTime" => set.sort_by_key(|l| l.seq),
        other => {
            return Err(ApiFailure::invalid_value(format!(
                "OrderBy must be LoadBalancerName, CreateTime, Domain or LoadBalancerType, got {other}"
            )));
        }
    }
    if r.order_type.unwrap_or(1) == 1 {
        set.reverse();
    }
    let total = set.len() as i64;
    let with_count = r.additional_fields.iter().any(|f| f == "TargetCount");
    let page: Vec<LoadBalancer> = set
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|lb| lb_output(core, lb, with_count))
        .collect();
    reply(
        &DescribeLoadBalancersResponse {
            total_count: total,
            load_balancer_set: page,
        },
        vec![],
    )
}

pub fn delete_load_balancer(core: &mut Core, r: DeleteLoadBalancerRequest) -> Handled {
    if r.load_balancer_ids.is_empty() {
        return Err(ApiFailure::missing("LoadBalancerIds"));
    }
    validate::cap("LoadBalancerIds", &r.load_balancer_ids, MAX_DELETE_LB_IDS)?;
    for id in &r.load_balancer_ids {
        core.writable("DeleteLoadBalancer", id)?;
        let lb = lb_ref(core, id)?;
        if lb.delete_protect {
            return Err(ApiFailure::new(
                codes::FAILED_OPERATION,
                format!("LoadBalancer({id}) has DeleteProtect enabled"),
            ));
        }
        if !r.force_delete.unwrap_or(false) && lb.target_count() >= DELETE_TARGET_RISK {
            return Err(ApiFailure::new(
                codes::TARGET_NUM_CHECK_RISK,
                format!(
                    "LoadBalancer({id}) has {} targets bound; use ForceDelete",
                    lb.target_count()
                ),
            ));
        }
    }
    core.state
        .lbs
        .retain(|lb| !r.load_balancer_ids.contains(&lb.id));
    empty(r.load_balancer_ids)
}

pub fn modify_lb_attributes(core: &mut Core, r: ModifyLoadBalancerAttributesRequest) -> Handled {
    core.writable("ModifyLoadBalancerAttributes", &r.load_balancer_id)?;
    if let Some(n) = &r.load_balancer_name {
        validate::name("LoadBalancerName", n)?;
    }
    let lb = core
        .state
        .lb_mut(&r.load_balancer_id)
        .ok_or_else(|| ApiFailure::lb_not_found(&r.load_balancer_id))?;
    if let Some(n) = r.load_balancer_name {
        lb.name = n;
    }
    if let Some(p) = r.delete_protect {
        lb.delete_protect = p;
    }
    if let Some(p) = r.load_balancer_pass_to_target {
        lb.pass_to_target = p;
    }
    reply(
        &ModifyLoadBalancerAttributesResponse { deal_name: None },
        vec![r.load_balancer_id],
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
