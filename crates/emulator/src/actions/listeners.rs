//! CLB actions on listeners (clb-api.md §3.2): Create/Describe/Modify/DeleteListener and
//! DeleteLoadBalancerListeners, with port clashes, the L4-only fields, SniSwitch and the
//! listener certificate.

use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::Listener;
use crate::validate;
use clb_api::types::*;

use super::cert_store::resolve_either;
use super::common::{
    Handled, cert_output, check_scheduler, empty, lb_ref, listener_mut, null_where, prune_rewrites,
    reply, rule_output, to_value,
};

/// DescribeListeners ListenerIds cap, DeleteLoadBalancerListeners cap (§6).
pub const MAX_DESCRIBE_LISTENER_IDS: usize = 100;
pub const MAX_DELETE_LISTENER_IDS: usize = 20;

const PROTOCOLS: &[&str] = &["TCP", "UDP", "HTTP", "HTTPS", "TCP_SSL", "QUIC"];

/// Whether two protocols compete for the same port (TCP family vs UDP family).
fn same_transport(a: &str, b: &str) -> bool {
    let udp = |p: &str| p == "UDP" || p == "QUIC";
    udp(a) == udp(b)
}

pub fn create_listener(core: &mut Core, r: CreateListenerRequest) -> Handled {
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

pub fn describe_listeners(core: &mut Core, r: DescribeListenersRequest) -> Handled {
    validate::cap("ListenerIds", &r.listener_ids, MAX_DESCRIBE_LISTENER_IDS)?;
    let lb = lb_ref(core, &r.load_balancer_id)?;
    // An unknown ListenerId is an error, not an empty result ("some ListenerId [..] not found").
    if let Some(id) = r
        .listener_ids
        .iter()
        .find(|id| !lb.listeners.iter().any(|l| &l.id == *id))
    {
        return Err(ApiFailure::listener_not_found(id));
    }
    let listeners: Vec<_> = lb
        .listeners
        .iter()
        .filter(|l| r.listener_ids.is_empty() || r.listener_ids.contains(&l.id))
        .filter(|l| r.protocol.as_ref().is_none_or(|p| &l.protocol == p))
        .filter(|l| r.port.is_none_or(|p| i64::from(l.port) == p))
        .map(listener_output)
        .collect();
    let mut body = to_value(&DescribeListenersResponse {
        total_count: listeners.len() as i64,
        listeners,
    });
    // As the official samples: a layer-4 listener has `"Rules": null`, not `[]`.
    null_where(
        &mut body,
        "Listeners",
        |l| !matches!(l["Protocol"].as_str(), Some("HTTP" | "HTTPS")),
        "Rules",
    );
    Ok((body, Default::default()))
}

pub fn modify_listener(core: &mut Core, r: ModifyListenerRequest) -> Handled {
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

pub fn delete_listener(core: &mut Core, r: DeleteListenerRequest) -> Handled {
    delete_listeners(
        core,
        "DeleteListener",
        &r.load_balancer_id,
        Some(vec![r.listener_id]),
    )
}

pub fn delete_load_balancer_listeners(
    core: &mut Core,
    r: DeleteLoadBalancerListenersRequest,
) -> Handled {
    validate::cap("ListenerIds", &r.listener_ids, MAX_DELETE_LISTENER_IDS)?;
    let ids = (!r.listener_ids.is_empty()).then_some(r.listener_ids);
    delete_listeners(
        core,
        "DeleteLoadBalancerListeners",
        &r.load_balancer_id,
        ids,
    )
}

/// Delete some (`ids`) or all (`None`) listeners of a CLB, and the rewrites that pointed at them.
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
