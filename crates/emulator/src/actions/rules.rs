//! CLB actions on forwarding rules and their domains (clb-api.md §3.3): Create/Delete/ModifyRule,
//! ModifyDomain and ModifyDomainAttributes, with the one-default-domain rule and domain-level
//! attributes (Http2, Quic, certificate) shared by every rule of a domain.

use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::{Listener, Rule};
use crate::validate;
use clb_api::types::*;

use super::cert_store::resolve_either;
use super::common::{Handled, check_scheduler, empty, listener_mut, prune_rewrites, reply};
use super::rule_settings::{
    CREATE_FORWARD_TYPES, MODIFY_FORWARD_TYPES, check_forward_type, check_health_check,
};

/// Session expiry ranges (§3.3).
pub const RULE_SESSION_MIN: i64 = 30;
pub const RULE_SESSION_MAX: i64 = 86_400;

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

/// The health check a rule stores once `given` is laid over `base` (CLB's defaults for a new
/// rule), refused when the result is inconsistent (TimeOut not below IntervalTime, a regex
/// check domain, a check path not starting with `/`).
fn rule_health_check(
    base: Option<&HealthCheck>,
    given: Option<&HealthCheck>,
) -> Result<HealthCheck, ApiFailure> {
    let hc = crate::health::merged(base, given);
    crate::health::check_rule_settings(&hc).map_err(ApiFailure::invalid_value)?;
    Ok(hc)
}

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

pub fn create_rule(core: &mut Core, r: CreateRuleRequest) -> Handled {
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
        check_forward_type(rule.forward_type.as_deref(), &CREATE_FORWARD_TYPES, https)?;
        if let Some(h) = &rule.health_check {
            check_health_check(h, https)?;
        }
        rule_health_check(None, rule.health_check.as_ref())?;
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
            health_check: Some(rule_health_check(None, rule.health_check.as_ref())?),
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

pub fn delete_rule(core: &mut Core, r: DeleteRuleRequest) -> Handled {
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

pub fn modify_rule(core: &mut Core, r: ModifyRuleRequest) -> Handled {
    core.writable("ModifyRule", &r.load_balancer_id)?;
    check_scheduler(&r.scheduler)?;
    check_rule_session(r.session_expire_time)?;
    if let Some(u) = &r.url {
        validate::url(u)?;
    }
    let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
    let https = l.protocol == "HTTPS";
    check_forward_type(r.forward_type.as_deref(), &MODIFY_FORWARD_TYPES, https)?;
    if let Some(h) = &r.health_check {
        check_health_check(h, https)?;
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
    let health_check = r
        .health_check
        .as_ref()
        .map(|given| rule_health_check(l.rules[idx].health_check.as_ref(), Some(given)))
        .transpose()?;
    let rule = &mut l.rules[idx];
    if let Some(u) = r.url {
        rule.url = u;
    }
    if health_check.is_some() {
        rule.health_check = health_check;
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

fn check_rename(l: &Listener, old: &str, new: &[String], long: bool) -> Result<(), ApiFailure> {
    for n in new {
        if long {
            validate::new_domain(n)?;
        } else {
            validate::domain(n)?;
        }
        if n != old && l.rules.iter().any(|x| x.has_domain(n)) {
            return Err(ApiFailure::invalid(format!(
                "domain {n} already exists on the listener"
            )));
        }
    }
    Ok(())
}

/// Rename a domain; `long`: ModifyDomain, whose `NewDomain` may have up to 120 characters.
fn rename_domain(
    l: &mut Listener,
    old: &str,
    new: &[String],
    long: bool,
) -> Result<(), ApiFailure> {
    check_rename(l, old, new, long)?;
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

pub fn modify_domain(core: &mut Core, r: ModifyDomainRequest) -> Handled {
    core.writable("ModifyDomain", &r.load_balancer_id)?;
    let l = l7_listener(core, &r.load_balancer_id, &r.listener_id)?;
    if !l.rules.iter().any(|x| x.has_domain(&r.domain)) {
        return Err(ApiFailure::location_not_found(&format!(
            "Domain {}",
            r.domain
        )));
    }
    rename_domain(l, &r.domain, std::slice::from_ref(&r.new_domain), true)?;
    empty(vec![r.load_balancer_id])
}

pub fn modify_domain_attributes(core: &mut Core, r: ModifyDomainAttributesRequest) -> Handled {
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
        check_rename(l, &r.domain, new, false)?;
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
        rename_domain(l, &r.domain, &new, false)?;
    }
    empty(vec![r.load_balancer_id])
}
