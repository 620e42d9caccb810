//! Action dispatch and the CLB actions on load balancers, listeners, rules and domains
//! (clb-api.md §3.1-§3.3), with the semantics of §4, §6, §7 and §9. Targets, tasks, quota and
//! rewrites live in `targets.rs`; the SSL service in `ssl.rs`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::core::{Core, Task};
use crate::error::{ApiFailure, codes};
use crate::state::{CertRef, Lb, Listener, Rule};
use crate::validate;
use clb_api::types::*;

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
/// DescribeListeners ListenerIds cap, DeleteLoadBalancerListeners cap (§6).
pub const MAX_DESCRIBE_LISTENER_IDS: usize = 100;
pub const MAX_DELETE_LISTENER_IDS: usize = 20;
/// Bound targets at which DeleteLoadBalancer without ForceDelete refuses (§3.1).
pub const DELETE_TARGET_RISK: usize = 20;
/// Session expiry ranges (§3.3).
pub const RULE_SESSION_MIN: i64 = 30;
pub const RULE_SESSION_MAX: i64 = 86_400;

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

/// What a handler says about the task its call creates.
#[derive(Debug, Default)]
pub struct TaskInfo {
    pub lbs: Vec<String>,
    pub load_balancer_ids: Option<Vec<String>>,
    pub deal_name: Option<String>,
}

/// A handler's result: the response body and, for writes, the CLBs it touched.
pub type Handled = Result<(Value, TaskInfo), ApiFailure>;

/// Decode a request body into its typed request; serde errors become the API's codes.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiFailure> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        if let Some(rest) = msg.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            ApiFailure::missing(field)
        } else {
            ApiFailure::new(
                codes::INVALID_PARAMETER,
                format!("The request body is not valid for this action: {msg}"),
            )
        }
    })
}

pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Object(Default::default()))
}

fn reply<T: Serialize>(v: &T, lbs: Vec<String>) -> Handled {
    Ok((
        to_value(v),
        TaskInfo {
            lbs,
            ..TaskInfo::default()
        },
    ))
}

fn empty(lbs: Vec<String>) -> Handled {
    reply(&Empty {}, lbs)
}

/// Run one known action. Async writes get a task; an injected task failure discards the change.
pub fn dispatch(
    core: &mut Core,
    service: Service,
    action: &str,
    request_id: &str,
    body: &[u8],
) -> Result<Outcome, ApiFailure> {
    let is_async = ASYNC_ACTIONS.contains(&action);
    let will_fail = is_async && core.roll_task_failure(action);
    let snapshot = will_fail.then(|| core.state.clone());
    let (value, info) = match service {
        Service::Ssl => crate::ssl::handle(core, action, body)?,
        Service::Clb => handle(core, action, request_id, body)?,
    };
    let read = crate::core::is_read(action);
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

fn handle(core: &mut Core, action: &str, request_id: &str, body: &[u8]) -> Handled {
    use crate::targets as t;
    match action {
        "CreateLoadBalancer" => create_load_balancer(core, request_id, decode(body)?),
        "DescribeLoadBalancers" => describe_load_balancers(core, decode(body)?),
        "DeleteLoadBalancer" => delete_load_balancer(core, decode(body)?),
        "ModifyLoadBalancerAttributes" => modify_lb_attributes(core, decode(body)?),
        "CreateListener" => create_listener(core, decode(body)?),
        "DescribeListeners" => describe_listeners(core, decode(body)?),
        "ModifyListener" => modify_listener(core, decode(body)?),
        "DeleteListener" => {
            let r: DeleteListenerRequest = decode(body)?;
            delete_listeners(core, action, &r.load_balancer_id, Some(vec![r.listener_id]))
        }
        "DeleteLoadBalancerListeners" => {
            let r: DeleteLoadBalancerListenersRequest = decode(body)?;
            validate::cap("ListenerIds", &r.listener_ids, MAX_DELETE_LISTENER_IDS)?;
            let ids = (!r.listener_ids.is_empty()).then_some(r.listener_ids);
            delete_listeners(core, action, &r.load_balancer_id, ids)
        }
        "CreateRule" => create_rule(core, decode(body)?),
        "DeleteRule" => delete_rule(core, decode(body)?),
        "ModifyRule" => modify_rule(core, decode(body)?),
        "ModifyDomain" => modify_domain(core, decode(body)?),
        "ModifyDomainAttributes" => modify_domain_attributes(core, decode(body)?),
        "RegisterTargets" => t::register_targets(core, decode(body)?),
        "DeregisterTargets" => t::deregister_targets(core, decode(body)?),
        "ModifyTargetWeight" => t::modify_target_weight(core, decode(body)?),
        "BatchRegisterTargets" => t::batch_register(core, decode(body)?),
        "BatchDeregisterTargets" => t::batch_deregister(core, decode(body)?),
        "BatchModifyTargetWeight" => t::batch_modify_weight(core, decode(body)?),
        "DescribeTargets" => t::describe_targets(core, decode(body)?),
        "DescribeTargetHealth" => t::describe_target_health(core, decode(body)?),
        "DescribeTaskStatus" => t::describe_task_status(core, decode(body)?),
        "DescribeQuota" => t::describe_quota(core),
        "AutoRewrite" => t::auto_rewrite(core, decode(body)?),
        "ManualRewrite" => t::manual_rewrite(core, decode(body)?),
        "DeleteRewrite" => t::delete_rewrite(core, decode(body)?),
        "DescribeRewrite" => t::describe_rewrite(core, decode(body)?),
        other => Err(ApiFailure::new(
            codes::INVALID_ACTION,
            format!("The action `{other}` is not supported (request {request_id})."),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Borrow a listener of a CLB mutably, or the §5 not-found errors.
pub fn listener_mut<'a>(
    core: &'a mut Core,
    lb: &str,
    listener: &str,
) -> Result<&'a mut Listener, ApiFailure> {
    core.state
        .lb_mut(lb)
        .ok_or_else(|| ApiFailure::lb_not_found(lb))?
        .listener_mut(listener)
        .ok_or_else(|| ApiFailure::listener_not_found(listener))
}

pub fn lb_ref<'a>(core: &'a Core, lb: &str) -> Result<&'a Lb, ApiFailure> {
    core.state
        .lb(lb)
        .ok_or_else(|| ApiFailure::lb_not_found(lb))
}

/// Resolve a `CertificateInput` into a stored certificate reference (inline PEM is uploaded).
pub fn resolve_cert(core: &mut Core, c: &CertificateInput) -> Result<CertRef, ApiFailure> {
    let mode = c
        .ssl_mode
        .clone()
        .unwrap_or_else(|| "UNIDIRECTIONAL".into());
    if mode != "UNIDIRECTIONAL" && mode != "MUTUAL" {
        return Err(ApiFailure::invalid_value(format!(
            "SSLMode must be UNIDIRECTIONAL or MUTUAL, got {mode}"
        )));
    }
    let cert_id = match (&c.cert_id, &c.cert_content, &c.cert_key) {
        (Some(id), _, _) => {
            crate::ssl::require_cert(core, id, "SVR")?;
            id.clone()
        }
        (None, Some(content), Some(key)) => {
            let alias = c.cert_name.clone().unwrap_or_default();
            crate::ssl::store(core, content, Some(key), "SVR", &alias)?
        }
        _ => {
            return Err(ApiFailure::missing(
                "Certificate.CertId (or CertContent + CertKey + CertName)",
            ));
        }
    };
    let cert_ca_id = if mode == "MUTUAL" {
        match (&c.cert_ca_id, &c.cert_ca_content) {
            (Some(id), _) => {
                crate::ssl::require_cert(core, id, "CA")?;
                Some(id.clone())
            }
            (None, Some(content)) => {
                let alias = c.cert_ca_name.clone().unwrap_or_default();
                Some(crate::ssl::store(core, content, None, "CA", &alias)?)
            }
            _ => return Err(ApiFailure::missing("Certificate.CertCaId")),
        }
    } else {
        None
    };
    Ok(CertRef {
        ssl_verify_client: (mode == "MUTUAL")
            .then(|| c.ssl_verify_client.clone().unwrap_or_else(|| "ON".into())),
        ssl_mode: mode,
        cert_id,
        cert_ca_id,
        ext_cert_ids: vec![],
    })
}

/// Resolve a `MultiCertInfo` (first server certificate is the primary, others ExtCertIds).
pub fn resolve_multi(core: &mut Core, m: &MultiCertInfo) -> Result<CertRef, ApiFailure> {
    let mut server = Vec::new();
    let mut ca = None;
    for c in &m.cert_list {
        let id = match (&c.cert_id, &c.cert_content) {
            (Some(id), _) => {
                if !core.state.certs.contains_key(id) {
                    return Err(ApiFailure::new(
                        codes::CERTIFICATE_NOT_FOUND,
                        format!("certificate {id} not found"),
                    ));
                }
                id.clone()
            }
            (None, Some(content)) => {
                let kind = if c.cert_key.is_some() { "SVR" } else { "CA" };
                let alias = c.cert_name.clone().unwrap_or_default();
                crate::ssl::store(core, content, c.cert_key.as_deref(), kind, &alias)?
            }
            _ => return Err(ApiFailure::missing("MultiCertInfo.CertList.CertId")),
        };
        if core.state.certs.get(&id).is_some_and(|c| c.kind == "CA") {
            ca = Some(id);
        } else {
            server.push(id);
        }
    }
    if server.is_empty() {
        return Err(ApiFailure::missing("MultiCertInfo.CertList"));
    }
    let mutual = m.ssl_mode == "MUTUAL";
    if mutual && ca.is_none() {
        return Err(ApiFailure::missing("MultiCertInfo CA certificate"));
    }
    Ok(CertRef {
        ssl_mode: if mutual { "MUTUAL" } else { "UNIDIRECTIONAL" }.into(),
        ssl_verify_client: mutual
            .then(|| m.ssl_verify_client.clone().unwrap_or_else(|| "ON".into())),
        cert_id: server[0].clone(),
        cert_ca_id: ca,
        ext_cert_ids: server[1..].to_vec(),
    })
}

/// Certificate / MultiCertInfo, at most one of them.
fn resolve_either(
    core: &mut Core,
    cert: &Option<CertificateInput>,
    multi: &Option<MultiCertInfo>,
) -> Result<Option<CertRef>, ApiFailure> {
    match (cert, multi) {
        (Some(_), Some(_)) => Err(ApiFailure::combination(
            "Certificate and MultiCertInfo cannot both be given",
        )),
        (Some(c), None) => resolve_cert(core, c).map(Some),
        (None, Some(m)) => resolve_multi(core, m).map(Some),
        (None, None) => Ok(None),
    }
}

pub fn cert_output(c: &CertRef) -> CertificateOutput {
    CertificateOutput {
        ssl_mode: c.ssl_mode.clone(),
        ssl_verify_client: c.ssl_verify_client.clone(),
        cert_id: Some(c.cert_id.clone()),
        cert_ca_id: c.cert_ca_id.clone(),
        ext_cert_ids: c.ext_cert_ids.clone(),
    }
}

fn check_scheduler(s: &Option<String>) -> Result<(), ApiFailure> {
    match s.as_deref() {
        None | Some("WRR" | "LEAST_CONN" | "IP_HASH") => Ok(()),
        Some(o) => Err(ApiFailure::invalid_value(format!(
            "Scheduler must be WRR, LEAST_CONN or IP_HASH, got {o}"
        ))),
    }
}

fn check_rule_session(s: Option<i64>) -> Result<(), ApiFailure> {
    match s {
        None | Some(0) => Ok(()),
        Some(v) if (RULE_SESSION_MIN..=RULE_SESSION_MAX).contains(&v) => Ok(()),
        Some(v) => Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_RANGE,
            format!(
                "SessionExpireTime must be 0 or {RULE_SESSION_MIN}-{RULE_SESSION_MAX}, got {v}"
            ),
        )),
    }
}

fn check_forward_type(s: &Option<String>) -> Result<(), ApiFailure> {
    match s.as_deref() {
        None | Some("HTTP" | "HTTPS" | "GRPC" | "GRPCS" | "TRPC") => Ok(()),
        Some(o) => Err(ApiFailure::invalid_value(format!(
            "ForwardType must be HTTP, HTTPS, GRPC, GRPCS or TRPC, got {o}"
        ))),
    }
}

pub fn rule_output(l: &Listener, r: &Rule) -> RuleOutput {
    RuleOutput {
        location_id: r.id.clone(),
        domain: r.domains.first().cloned().unwrap_or_default(),
        domains: r.domains.clone(),
        url: r.url.clone(),
        session_expire_time: Some(r.session_expire_time),
        health_check: r.health_check.clone(),
        certificate: r.certificate.as_ref().map(cert_output),
        scheduler: Some(r.scheduler.clone()),
        listener_id: l.id.clone(),
        rewrite_target: r.rewrite.clone(),
        be_auto_created: Some(r.be_auto_created),
        default_server: r.default_server,
        http2: r.http2,
        forward_type: Some(r.forward_type.clone()),
        create_time: Some(r.create_time.clone()),
        target_type: Some(r.target_type.clone()),
        quic_status: Some(
            if r.quic {
                "QUIC_ACTIVE"
            } else {
                "QUIC_INACTIVE"
            }
            .into(),
        ),
        cookie_name: r.cookie_name.clone(),
    }
}

/// Remove rewrites whose target location no longer exists anywhere on the CLB.
pub fn prune_rewrites(lb: &mut Lb) {
    let alive: Vec<String> = lb
        .listeners
        .iter()
        .flat_map(|l| l.rules.iter().map(|r| r.id.clone()))
        .collect();
    for l in &mut lb.listeners {
        for r in &mut l.rules {
            if r.rewrite
                .as_ref()
                .and_then(|w| w.target_location_id.as_ref())
                .is_some_and(|t| !alive.contains(t))
            {
                r.rewrite = None;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load balancers
// ---------------------------------------------------------------------------------------------

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

fn create_load_balancer(
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
        core.state.lbs.push(lb);
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

fn describe_load_balancers(core: &mut Core, r: DescribeLoadBalancersRequest) -> Handled {
    validate::cap("LoadBalancerIds", &r.load_balancer_ids, MAX_DESCRIBE_LB_IDS)?;
    validate::cap("Filters", &r.filters, MAX_FILTERS)?;
    for f in &r.filters {
        validate::cap("Filters.Values", &f.values, MAX_FILTER_VALUES)?;
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

fn delete_load_balancer(core: &mut Core, r: DeleteLoadBalancerRequest) -> Handled {
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

fn modify_lb_attributes(core: &mut Core, r: ModifyLoadBalancerAttributesRequest) -> Handled {
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

// ---------------------------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------------------------

const PROTOCOLS: &[&str] = &["TCP", "UDP", "HTTP", "HTTPS", "TCP_SSL", "QUIC"];

/// Whether two protocols compete for the same port (TCP family vs UDP family).
fn same_transport(a: &str, b: &str) -> bool {
    let udp = |p: &str| p == "UDP" || p == "QUIC";
    udp(a) == udp(b)
}

fn create_listener(core: &mut Core, r: CreateListenerRequest) -> Handled {
    let action = "CreateListener";
    core.writable(action, &r.load_balancer_id)?;
    if !PROTOCOLS.contains(&r.protocol.as_str()) {
        return Err(ApiFailure::invalid_value(format!(
            "Protocol must be one of {PROTOCOLS:?}, got {}",
            r.protocol
        )));
    }
    if r.ports.is_empty() {
        return Err(ApiFailure::missing("Ports"));
    }
    let mut ports = Vec::new();
    for p in &r.ports {
        let p = validate::port("Ports", *p)?;
        if ports.contains(&p) {
            return Err(ApiFailure::new(
                codes::INVALID_PARAMETER_VALUE_DUPLICATE,
                format!("port {p} is given twice"),
            ));
        }
        ports.push(p);
    }
    if !r.listener_names.is_empty() && r.listener_names.len() != ports.len() {
        return Err(ApiFailure::invalid(
            "ListenerNames must have one name per port",
        ));
    }
    for n in &r.listener_names {
        validate::name("ListenerNames", n)?;
    }
    let l7 = r.protocol == "HTTP" || r.protocol == "HTTPS";
    let tls = r.protocol == "HTTPS" || r.protocol == "TCP_SSL";
    if l7 && (r.health_check.is_some() || r.session_expire_time.is_some() || r.scheduler.is_some())
    {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            "HealthCheck, SessionExpireTime and Scheduler are set on rules for HTTP/HTTPS listeners",
        ));
    }
    let sni = match r.sni_switch {
        None | Some(0) => false,
        Some(1) if r.protocol == "HTTPS" => true,
        Some(1) => {
            return Err(ApiFailure::new(
                codes::PROTOCOL_CHECK_FAILED,
                "SniSwitch is only for HTTPS listeners",
            ));
        }
        Some(v) => {
            return Err(ApiFailure::invalid_value(format!(
                "SniSwitch must be 0 or 1, got {v}"
            )));
        }
    };
    if !tls && (r.certificate.is_some() || r.multi_cert_info.is_some()) {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            format!("{} listeners take no certificate", r.protocol),
        ));
    }
    check_scheduler(&r.scheduler)?;
    if tls && !sni && r.certificate.is_none() && r.multi_cert_info.is_none() {
        return Err(ApiFailure::missing("Certificate"));
    }
    let lb = lb_ref(core, &r.load_balancer_id)?;
    for p in &ports {
        if let Some(l) = lb
            .listeners
            .iter()
            .find(|l| l.port == *p && same_transport(&l.protocol, &r.protocol))
        {
            return Err(ApiFailure::new(
                codes::PORT_CHECK_FAILED,
                format!(
                    "port {p} is already used by listener {} ({})",
                    l.id, l.protocol
                ),
            ));
        }
    }
    let quota = core.settings.quotas.listeners_per_lb;
    if (lb.listeners.len() + ports.len()) as i64 > quota {
        return Err(ApiFailure::limit(format!(
            "listener quota {quota} per CLB exceeded"
        )));
    }
    let certificate = resolve_either(core, &r.certificate, &r.multi_cert_info)?;
    let now = core.time_string();
    let mut ids = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let id = core.new_id("lbl");
        let l = Listener {
            id: id.clone(),
            name: r.listener_names.get(i).cloned().unwrap_or_default(),
            protocol: r.protocol.clone(),
            port: *port,
            certificate: certificate.clone(),
            sni,
            health_check: r.health_check.clone(),
            scheduler: (!l7).then(|| r.scheduler.clone().unwrap_or_else(|| "WRR".into())),
            session_expire_time: (!l7).then(|| r.session_expire_time.unwrap_or(0)),
            keepalive_enable: r.keepalive_enable,
            target_type: r.target_type.clone().unwrap_or_else(|| "NODE".into()),
            rules: vec![],
            targets: vec![],
            create_time: now.clone(),
        };
        if let Some(lb) = core.state.lb_mut(&r.load_balancer_id) {
            lb.listeners.push(l);
        }
        ids.push(id);
    }
    reply(
        &CreateListenerResponse { listener_ids: ids },
        vec![r.load_balancer_id],
    )
}

pub fn listener_output(l: &Listener) -> clb_api::types::Listener {
    clb_api::types::Listener {
        listener_id: l.id.clone(),
        listener_name: l.name.clone(),
        protocol: l.protocol.clone(),
        port: i64::from(l.port),
        end_port: None,
        certificate: l.certificate.as_ref().map(cert_output),
        health_check: l.health_check.clone(),
        scheduler: l.scheduler.clone(),
        session_expire_time: l.session_expire_time,
        sni_switch: i64::from(l.sni),
        rules: l.rules.iter().map(|r| rule_output(l, r)).collect(),
        create_time: Some(l.create_time.clone()),
        target_type: Some(l.target_type.clone()),
        keepalive_enable: l.keepalive_enable,
    }
}

fn describe_listeners(core: &mut Core, r: DescribeListenersRequest) -> Handled {
    validate::cap("ListenerIds", &r.listener_ids, MAX_DESCRIBE_LISTENER_IDS)?;
    let lb = lb_ref(core, &r.load_balancer_id)?;
    let listeners: Vec<_> = lb
        .listeners
        .iter()
        .filter(|l| r.listener_ids.is_empty() || r.listener_ids.contains(&l.id))
        .filter(|l| r.protocol.as_ref().is_none_or(|p| &l.protocol == p))
        .filter(|l| r.port.is_none_or(|p| i64::from(l.port) == p))
        .map(listener_output)
        .collect();
    reply(
        &DescribeListenersResponse {
            total_count: listeners.len() as i64,
            listeners,
        },
        vec![],
    )
}

fn modify_listener(core: &mut Core, r: ModifyListenerRequest) -> Handled {
    core.writable("ModifyListener", &r.load_balancer_id)?;
    let l = listener_mut(core, &r.load_balancer_id, &r.listener_id)?;
    let protocol = l.protocol.clone();
    let was_sni = l.sni;
    let l7 = l.is_l7();
    let tls = protocol == "HTTPS" || protocol == "TCP_SSL";
    if let Some(n) = &r.listener_name {
        validate::name("ListenerName", n)?;
    }
    check_scheduler(&r.scheduler)?;
    if l7 && (r.health_check.is_some() || r.session_expire_time.is_some() || r.scheduler.is_some())
    {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            "HealthCheck, SessionExpireTime and Scheduler are set on rules for HTTP/HTTPS listeners",
        ));
    }
    let sni = match r.sni_switch {
        None => was_sni,
        Some(1) if protocol == "HTTPS" => true,
        Some(0) if !was_sni => false,
        Some(0) => {
            return Err(ApiFailure::invalid_value(
                "SniSwitch cannot be turned off once it is on",
            ));
        }
        Some(1) => {
            return Err(ApiFailure::new(
                codes::PROTOCOL_CHECK_FAILED,
                "SniSwitch is only for HTTPS listeners",
            ));
        }
        Some(v) => {
            return Err(ApiFailure::invalid_value(format!(
                "SniSwitch must be 0 or 1, got {v}"
            )));
        }
    };
    if !tls && (r.certificate.is_some() || r.multi_cert_info.is_some()) {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            format!("{protocol} listeners take no certificate"),
        ));
    }
    let cert = resolve_either(core, &r.certificate, &r.multi_cert_info)?;
    let l = listener_mut(core, &r.load_balancer_id, &r.listener_id)?;
    l.sni = sni;
    if let Some(c) = cert {
        l.certificate = Some(c);
    }
    if let Some(n) = r.listener_name {
        l.name = n;
    }
    if r.health_check.is_some() {
        l.health_check = r.health_check;
    }
    if r.scheduler.is_some() {
        l.scheduler = r.scheduler;
    }
    if r.session_expire_time.is_some() {
        l.session_expire_time = r.session_expire_time;
    }
    if r.keepalive_enable.is_some() {
        l.keepalive_enable = r.keepalive_enable;
    }
    if let Some(t) = r.target_type {
        l.target_type = t;
    }
    empty(vec![r.load_balancer_id])
}

fn delete_listeners(
    core: &mut Core,
    action: &str,
    lb_id: &str,
    ids: Option<Vec<String>>,
) -> Handled {
    core.writable(action, lb_id)?;
    let lb = core
        .state
        .lb_mut(lb_id)
        .ok_or_else(|| ApiFailure::lb_not_found(lb_id))?;
    if let Some(ids) = &ids {
        if let Some(missing) = ids.iter().find(|id| lb.listener(id).is_none()) {
            return Err(ApiFailure::listener_not_found(missing));
        }
        lb.listeners.retain(|l| !ids.contains(&l.id));
    } else {
        lb.listeners.clear();
    }
    prune_rewrites(lb);
    empty(vec![lb_id.to_string()])
}

// ---------------------------------------------------------------------------------------------
// Rules and domains
// ---------------------------------------------------------------------------------------------

fn l7_listener<'a>(
    core: &'a mut Core,
    lb: &str,
    listener: &str,
) -> Result<&'a mut Listener, ApiFailure> {
    let l = listener_mut(core, lb, listener)?;
    if !l.is_l7() {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            format!(
                "listener {listener} is {}; rules need HTTP or HTTPS",
                l.protocol
            ),
        ));
    }
    Ok(l)
}

fn create_rule(core: &mut Core, r: CreateRuleRequest) -> Handled {
    core.writable("CreateRule", &r.load_balancer_id)?;
    if r.rules.is_empty() {
        return Err(ApiFailure::missing("Rules"));
    }
    let quota = core.settings.quotas.rules_per_listener;
    let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
    let https = l.protocol == "HTTPS";
    let sni = l.sni;
    let listener_has_cert = l.certificate.is_some();
    let existing: Vec<(String, String)> = l
        .rules
        .iter()
        .flat_map(|x| x.domains.iter().map(|d| (d.clone(), x.url.clone())))
        .collect();
    let domains_with_cert: Vec<String> = l
        .rules
        .iter()
        .filter(|x| x.certificate.is_some())
        .flat_map(|x| x.domains.clone())
        .collect();
    if (l.rules.len() + r.rules.len()) as i64 > quota {
        return Err(ApiFailure::limit(format!(
            "rule quota {quota} per listener exceeded"
        )));
    }
    // Validate everything before changing anything.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut defaults: Vec<String> = Vec::new();
    let mut prepared = Vec::new();
    for rule in &r.rules {
        if rule.url.is_empty() {
            return Err(ApiFailure::missing("Rules.Url"));
        }
        validate::url(&rule.url)?;
        let domains = match (&rule.domain, rule.domains.is_empty()) {
            (Some(_), false) => {
                return Err(ApiFailure::combination(
                    "give either Domain or Domains, not both",
                ));
            }
            (Some(d), true) => vec![d.clone()],
            (None, false) => rule.domains.clone(),
            (None, true) => return Err(ApiFailure::missing("Rules.Domain")),
        };
        for d in &domains {
            validate::domain(d)?;
            let key = (d.clone(), rule.url.clone());
            if existing.contains(&key) || seen.contains(&key) {
                return Err(ApiFailure::invalid(format!(
                    "a rule with Domain `{d}` and Url `{}` already exists on listener {}",
                    rule.url, r.listener_id
                )));
            }
            seen.push(key);
        }
        check_scheduler(&rule.scheduler)?;
        check_rule_session(rule.session_expire_time)?;
        check_forward_type(&rule.forward_type)?;
        if !https && (rule.http2.is_some() || rule.quic.is_some()) {
            return Err(ApiFailure::new(
                codes::PROTOCOL_CHECK_FAILED,
                "Http2 and Quic are only for HTTPS listeners",
            ));
        }
        let has_cert = rule.certificate.is_some() || rule.multi_cert_info.is_some();
        if has_cert && !sni {
            return Err(ApiFailure::new(
                codes::PROTOCOL_CHECK_FAILED,
                "a rule certificate needs an HTTPS listener with SniSwitch 1",
            ));
        }
        if sni
            && !has_cert
            && !listener_has_cert
            && domains.iter().any(|d| !domains_with_cert.contains(d))
        {
            return Err(ApiFailure::missing("Rules.Certificate"));
        }
        if rule.default_server == Some(true) {
            let d = domains[0].clone();
            if !defaults.contains(&d) {
                defaults.push(d);
            }
        }
        prepared.push(domains);
    }
    if defaults.len() > 1 {
        return Err(ApiFailure::invalid(
            "only one domain of a listener can be the DefaultServer",
        ));
    }
    let mut certs = Vec::new();
    for rule in &r.rules {
        certs.push(resolve_either(
            core,
            &rule.certificate,
            &rule.multi_cert_info,
        )?);
    }
    let now = core.time_string();
    let mut ids = Vec::new();
    for ((rule, domains), cert) in r.rules.iter().zip(prepared).zip(certs) {
        let id = core.new_id("loc");
        let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
        // A new rule of an existing domain inherits the domain's attributes.
        let sibling = l
            .rules
            .iter()
            .find(|x| domains.iter().any(|d| x.has_domain(d)))
            .cloned();
        let mut new = Rule {
            id: id.clone(),
            multi_domain: domains.len() > 1 || rule.domain.is_none(),
            domains: domains.clone(),
            url: rule.url.clone(),
            default_server: sibling.as_ref().is_some_and(|s| s.default_server),
            http2: rule
                .http2
                .or(sibling.as_ref().map(|s| s.http2))
                .unwrap_or(false),
            quic: rule
                .quic
                .or(sibling.as_ref().map(|s| s.quic))
                .unwrap_or(false),
            certificate: cert
                .clone()
                .or_else(|| sibling.as_ref().and_then(|s| s.certificate.clone())),
            health_check: rule.health_check.clone(),
            scheduler: rule.scheduler.clone().unwrap_or_else(|| "WRR".into()),
            session_expire_time: rule.session_expire_time.unwrap_or(0),
            forward_type: rule.forward_type.clone().unwrap_or_else(|| "HTTP".into()),
            target_type: rule.target_type.clone().unwrap_or_else(|| "NODE".into()),
            cookie_name: rule.cookie_name.clone(),
            rewrite: None,
            be_auto_created: false,
            targets: vec![],
            create_time: now.clone(),
        };
        if l.rules.is_empty() {
            new.default_server = true;
        }
        // Domain-level attributes given on this rule apply to the whole domain.
        for x in l
            .rules
            .iter_mut()
            .filter(|x| domains.iter().any(|d| x.has_domain(d)))
        {
            if let Some(h) = rule.http2 {
                x.http2 = h;
            }
            if let Some(q) = rule.quic {
                x.quic = q;
            }
            if cert.is_some() {
                x.certificate = cert.clone();
            }
        }
        l.rules.push(new);
        ids.push(id);
    }
    if let Some(d) = defaults.first() {
        let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
        l.set_default(d);
    }
    reply(
        &CreateRuleResponse { location_ids: ids },
        vec![r.load_balancer_id],
    )
}

/// After rules were removed: keep exactly one default domain if any rule remains.
fn fix_default(l: &mut Listener, old_default: Option<String>, new_default: Option<&str>) {
    let domains = l.domains();
    if domains.is_empty() {
        return;
    }
    let still = old_default.as_ref().is_some_and(|d| domains.contains(d));
    if still {
        return;
    }
    let pick = new_default
        .map(str::to_string)
        .filter(|d| domains.contains(d))
        .or_else(|| domains.first().cloned());
    if let Some(d) = pick {
        l.set_default(&d);
    }
}

fn delete_rule(core: &mut Core, r: DeleteRuleRequest) -> Handled {
    core.writable("DeleteRule", &r.load_balancer_id)?;
    let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
    let doomed: Vec<String> = if !r.location_ids.is_empty() {
        if let Some(m) = r
            .location_ids
            .iter()
            .find(|id| !l.rules.iter().any(|x| &x.id == *id))
        {
            return Err(ApiFailure::location_not_found(&format!("LocationId {m}")));
        }
        r.location_ids.clone()
    } else if let Some(d) = &r.domain {
        let ids: Vec<String> = l
            .rules
            .iter()
            .filter(|x| x.has_domain(d) && r.url.as_ref().is_none_or(|u| &x.url == u))
            .map(|x| x.id.clone())
            .collect();
        if ids.is_empty() {
            return Err(ApiFailure::location_not_found(&format!(
                "Domain {d} Url {}",
                r.url.as_deref().unwrap_or("*")
            )));
        }
        ids
    } else {
        return Err(ApiFailure::missing("LocationIds"));
    };
    if let Some(nd) = &r.new_default_server_domain {
        let remaining = l
            .rules
            .iter()
            .any(|x| !doomed.contains(&x.id) && x.has_domain(nd));
        if !remaining {
            return Err(ApiFailure::invalid(format!(
                "NewDefaultServerDomain {nd} is not a remaining domain of the listener"
            )));
        }
    }
    let old_default = l.default_domain();
    l.rules.retain(|x| !doomed.contains(&x.id));
    fix_default(l, old_default, r.new_default_server_domain.as_deref());
    if let Some(lb) = core.state.lb_mut(&r.load_balancer_id) {
        prune_rewrites(lb);
    }
    empty(vec![r.load_balancer_id])
}

fn modify_rule(core: &mut Core, r: ModifyRuleRequest) -> Handled {
    core.writable("ModifyRule", &r.load_balancer_id)?;
    check_scheduler(&r.scheduler)?;
    check_rule_session(r.session_expire_time)?;
    check_forward_type(&r.forward_type)?;
    if let Some(u) = &r.url {
        validate::url(u)?;
    }
    let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
    let https = l.protocol == "HTTPS";
    if !https && r.forward_type.as_deref().is_some_and(|f| f != "HTTP") {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            "ForwardType other than HTTP needs an HTTPS listener",
        ));
    }
    let Some(idx) = l.rules.iter().position(|x| x.id == r.location_id) else {
        return Err(ApiFailure::location_not_found(&format!(
            "LocationId {}",
            r.location_id
        )));
    };
    if let Some(u) = &r.url {
        let domains = l.rules[idx].domains.clone();
        let clash = l.rules.iter().any(|x| {
            x.id != r.location_id && &x.url == u && domains.iter().any(|d| x.has_domain(d))
        });
        if clash {
            return Err(ApiFailure::invalid(format!(
                "a rule with Url `{u}` already exists for this domain"
            )));
        }
    }
    let rule = &mut l.rules[idx];
    if let Some(u) = r.url {
        rule.url = u;
    }
    if r.health_check.is_some() {
        rule.health_check = r.health_check;
    }
    if let Some(s) = r.scheduler {
        rule.scheduler = s;
    }
    if let Some(s) = r.session_expire_time {
        rule.session_expire_time = s;
    }
    if let Some(f) = r.forward_type {
        rule.forward_type = f;
    }
    if r.cookie_name.is_some() {
        rule.cookie_name = r.cookie_name;
    }
    empty(vec![r.load_balancer_id])
}

fn check_rename(l: &Listener, old: &str, new: &[String]) -> Result<(), ApiFailure> {
    for n in new {
        validate::domain(n)?;
        if n != old && l.rules.iter().any(|x| x.has_domain(n)) {
            return Err(ApiFailure::invalid(format!(
                "domain {n} already exists on the listener"
            )));
        }
    }
    Ok(())
}

fn rename_domain(l: &mut Listener, old: &str, new: &[String]) -> Result<(), ApiFailure> {
    check_rename(l, old, new)?;
    for x in l.rules.iter_mut().filter(|x| x.has_domain(old)) {
        let mut domains = Vec::new();
        for d in &x.domains {
            if d == old {
                domains.extend(new.iter().cloned());
            } else {
                domains.push(d.clone());
            }
        }
        domains.dedup();
        x.multi_domain = domains.len() > 1;
        x.domains = domains;
    }
    Ok(())
}

fn modify_domain(core: &mut Core, r: ModifyDomainRequest) -> Handled {
    core.writable("ModifyDomain", &r.load_balancer_id)?;
    let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
    if !l.rules.iter().any(|x| x.has_domain(&r.domain)) {
        return Err(ApiFailure::location_not_found(&format!(
            "Domain {}",
            r.domain
        )));
    }
    rename_domain(l, &r.domain, std::slice::from_ref(&r.new_domain))?;
    empty(vec![r.load_balancer_id])
}

fn modify_domain_attributes(core: &mut Core, r: ModifyDomainAttributesRequest) -> Handled {
    core.writable("ModifyDomainAttributes", &r.load_balancer_id)?;
    let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
    let https = l.protocol == "HTTPS";
    let sni = l.sni;
    if !l.rules.iter().any(|x| x.has_domain(&r.domain)) {
        return Err(ApiFailure::location_not_found(&format!(
            "Domain {}",
            r.domain
        )));
    }
    if r.new_domain.is_some() && !r.new_domains.is_empty() {
        return Err(ApiFailure::combination(
            "give NewDomain or NewDomains, not both",
        ));
    }
    if !https && (r.http2.is_some() || r.quic.is_some()) {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            "Http2 and Quic are only for HTTPS listeners",
        ));
    }
    if (r.certificate.is_some() || r.multi_cert_info.is_some()) && !sni {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            "domain certificates need an HTTPS listener with SniSwitch 1",
        ));
    }
    let domains = l.domains();
    let current_default = l.default_domain();
    let mut new_default: Option<String> = None;
    match r.default_server {
        Some(true) => new_default = Some(r.domain.clone()),
        Some(false) if current_default.as_deref() == Some(r.domain.as_str()) => {
            let Some(nd) = &r.new_default_server_domain else {
                return Err(ApiFailure::missing("NewDefaultServerDomain"));
            };
            if nd == &r.domain || !domains.contains(nd) {
                return Err(ApiFailure::invalid(format!(
                    "NewDefaultServerDomain {nd} is not another domain of the listener"
                )));
            }
            new_default = Some(nd.clone());
        }
        _ => {
            if let Some(nd) = &r.new_default_server_domain {
                if !domains.contains(nd) {
                    return Err(ApiFailure::invalid(format!(
                        "NewDefaultServerDomain {nd} is not a domain of the listener"
                    )));
                }
                new_default = Some(nd.clone());
            }
        }
    }
    let renamed = match (&r.new_domain, r.new_domains.is_empty()) {
        (Some(n), _) => Some(vec![n.clone()]),
        (None, false) => Some(r.new_domains.clone()),
        (None, true) => None,
    };
    if let Some(new) = &renamed {
        check_rename(l, &r.domain, new)?;
    }
    let cert = resolve_either(core, &r.certificate, &r.multi_cert_info)?;
    let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
    for x in l.rules.iter_mut().filter(|x| x.has_domain(&r.domain)) {
        if let Some(h) = r.http2 {
            x.http2 = h;
        }
        if let Some(q) = r.quic {
            x.quic = q;
        }
        if cert.is_some() {
            x.certificate = cert.clone();
        }
    }
    if let Some(d) = &new_default {
        l.set_default(d);
    }
    if let Some(new) = renamed {
        rename_domain(l, &r.domain, &new)?;
    }
    empty(vec![r.load_balancer_id])
}
