//! CLB actions on rewrites (clb-api.md §3.6): AutoRewrite (HTTPS domains redirected from an HTTP
//! listener on port 80, created if need be), ManualRewrite, DeleteRewrite and DescribeRewrite.

use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::Listener;
use clb_api::types::*;

use super::common::{Handled, listener_mut, reply, rule_output};

/// Default rewrite code (§3.6).
pub const DEFAULT_REWRITE_CODE: i64 = 302;
/// Port of the HTTP listener AutoRewrite creates or reuses.
pub const AUTO_REWRITE_HTTP_PORT: u16 = 80;

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
            let quota = core.settings.quotas.listeners_per_lb;
            if core
                .state
                .lb(&lb_id)
                .is_some_and(|lb| lb.listeners.len() as i64 >= quota)
            {
                return Err(ApiFailure::limit(format!(
                    "listener quota {quota} per CLB exceeded"
                )));
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
    let rule_quota = core.settings.quotas.rules_per_listener;
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
            if http.rules.len() as i64 >= rule_quota {
                return Err(ApiFailure::limit(format!(
                    "rule quota {rule_quota} per listener exceeded"
                )));
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
        if m.source_location_id == m.target_location_id {
            return Err(ApiFailure::invalid(format!(
                "{} cannot redirect to itself",
                m.source_location_id
            )));
        }
        // No chains: a redirect target is no source (here or in this call), and a source is no
        // one's target.
        if r.rewrite_infos
            .iter()
            .any(|o| o.source_location_id == m.target_location_id)
        {
            return Err(ApiFailure::invalid(format!(
                "{} is redirected in this call and cannot be a redirect target",
                m.target_location_id
            )));
        }
        let targeted = core.state.lb(&r.load_balancer_id).is_some_and(|lb| {
            lb.listeners.iter().flat_map(|l| &l.rules).any(|x| {
                x.rewrite.as_ref().is_some_and(|w| {
                    w.target_location_id.as_deref() == Some(m.source_location_id.as_str())
                })
            })
        });
        if targeted {
            return Err(ApiFailure::invalid(format!(
                "{} is a redirect target and cannot be redirected",
                m.source_location_id
            )));
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
