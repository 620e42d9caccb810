//! What every action family shares: the handler result (`Handled`, `TaskInfo`), request decoding
//! and response encoding, the not-found lookups of CLBs and listeners, the scheduler check, the
//! rule and certificate output converters, and the rewrite clean-up after locations go away.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::{CertRef, Lb, Listener, Rule};
use clb_api::types::*;

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

/// Serialize a response (or any state) to JSON; an unserializable value becomes `{}`.
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Object(Default::default()))
}

/// A handler's success: `v` as the body, `lbs` the CLBs a task (if any) locks.
pub fn reply<T: Serialize>(v: &T, lbs: Vec<String>) -> Handled {
    Ok((
        to_value(v),
        TaskInfo {
            lbs,
            ..TaskInfo::default()
        },
    ))
}

/// Set `field` to `null` in each element of the array `list` of `body` that `pick` selects:
/// the real API answers `null` where it has nothing (official samples: `"Rules": null` on
/// layer-4 listeners, `"Targets": null` on layer-7 listeners of DescribeTargets).
pub fn null_where(body: &mut Value, list: &str, pick: impl Fn(&Value) -> bool, field: &str) {
    if let Some(items) = body.get_mut(list).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter(|i| pick(i)) {
            if let Some(obj) = item.as_object_mut() {
                obj.insert(field.to_string(), Value::Null);
            }
        }
    }
}

/// A success with an empty body.
pub fn empty(lbs: Vec<String>) -> Handled {
    reply(&Empty {}, lbs)
}

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

/// Borrow a CLB, or the §5 not-found error.
pub fn lb_ref<'a>(core: &'a Core, lb: &str) -> Result<&'a Lb, ApiFailure> {
    core.state
        .lb(lb)
        .ok_or_else(|| ApiFailure::lb_not_found(lb))
}

/// The `Certificate` output of a stored certificate reference.
pub fn cert_output(c: &CertRef) -> CertificateOutput {
    CertificateOutput {
        ssl_mode: c.ssl_mode.clone(),
        ssl_verify_client: c.ssl_verify_client.clone(),
        cert_id: Some(c.cert_id.clone()),
        cert_ca_id: c.cert_ca_id.clone(),
        ext_cert_ids: c.ext_cert_ids.clone(),
    }
}

/// Scheduler of a listener or rule.
pub fn check_scheduler(s: &Option<String>) -> Result<(), ApiFailure> {
    match s.as_deref() {
        None | Some("WRR" | "LEAST_CONN" | "IP_HASH") => Ok(()),
        Some(o) => Err(ApiFailure::invalid_value(format!(
            "Scheduler must be WRR, LEAST_CONN or IP_HASH, got {o}"
        ))),
    }
}

/// The `RuleOutput` of a rule of a listener.
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
