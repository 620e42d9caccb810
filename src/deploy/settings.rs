//! Backend settings between the model's `RuleSettings` and CLB's wire types (`HealthCheck`,
//! `RuleOutput` fields): what `CreateRule`/`ModifyRule` send and what `DescribeListeners` says.

use crate::clb::types::{HealthCheck, ModifyRuleRequest, RuleInput, RuleOutput};
use crate::model::{HealthCheckSettings, RuleSettings};

/// The model's health check as CLB's `HealthCheck` (unset fields stay unset).
pub fn health_check_to_wire(h: &HealthCheckSettings) -> HealthCheck {
    HealthCheck {
        health_switch: h.enabled.map(i64::from),
        time_out: h.timeout.map(i64::from),
        interval_time: h.interval.map(i64::from),
        health_num: h.healthy_threshold.map(i64::from),
        un_health_num: h.unhealthy_threshold.map(i64::from),
        http_code: h.http_code.map(i64::from),
        http_check_path: h.path.clone(),
        http_check_domain: h.domain.clone(),
        http_check_method: h.method.clone(),
        ..Default::default()
    }
}

fn small(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

/// CLB's `HealthCheck` of a rule as the model compares it (empty strings are unset).
pub fn health_check_from_wire(h: &HealthCheck) -> HealthCheckSettings {
    let text = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    HealthCheckSettings {
        enabled: h.health_switch.map(|s| s == 1),
        timeout: small(h.time_out),
        interval: small(h.interval_time),
        healthy_threshold: small(h.health_num),
        unhealthy_threshold: small(h.un_health_num),
        http_code: small(h.http_code),
        path: text(&h.http_check_path),
        domain: text(&h.http_check_domain),
        method: text(&h.http_check_method).map(|m| m.to_ascii_uppercase()),
    }
}

/// The settings a `DescribeListeners` rule reports, with its domain's HTTP/2 and QUIC.
pub fn observed_settings(r: &RuleOutput) -> RuleSettings {
    RuleSettings {
        health_check: r.health_check.as_ref().map(health_check_from_wire),
        scheduler: r.scheduler.clone().filter(|s| !s.is_empty()),
        session_expire_time: small(r.session_expire_time),
        forward_type: r.forward_type.clone().filter(|s| !s.is_empty()),
        http2: Some(r.http2),
        quic: r.quic_status.as_deref().map(|q| q == "QUIC_ACTIVE"),
    }
}

/// Put a rule's settings on a `CreateRule` input. `fallback`: the health check the rule needs
/// anyway (a regex domain's literal check host); the settings' own fields go over it.
pub fn apply_to_rule_input(s: &RuleSettings, input: &mut RuleInput) {
    if let Some(h) = &s.health_check {
        let mut wire = input.health_check.take().unwrap_or_default();
        let mine = health_check_to_wire(h);
        overlay_wire(&mut wire, mine);
        input.health_check = Some(wire);
    }
    input.scheduler = s.scheduler.clone();
    input.session_expire_time = s.session_expire_time.map(i64::from);
    input.forward_type = s.forward_type.clone();
    input.http2 = s.http2;
    input.quic = s.quic;
}

/// Put a rule's changed settings on a `ModifyRule` request.
pub fn apply_to_modify_rule(s: &RuleSettings, req: &mut ModifyRuleRequest) {
    req.health_check = s.health_check.as_ref().map(health_check_to_wire);
    req.scheduler = s.scheduler.clone();
    req.session_expire_time = s.session_expire_time.map(i64::from);
    req.forward_type = s.forward_type.clone();
}

fn overlay_wire(base: &mut HealthCheck, more: HealthCheck) {
    macro_rules! take {
        ($($f:ident),*) => { $( if more.$f.is_some() { base.$f = more.$f; } )* };
    }
    take!(
        health_switch,
        time_out,
        interval_time,
        health_num,
        un_health_num,
        http_code,
        http_check_path,
        http_check_domain,
        http_check_method
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_check_survives_the_round_trip_through_the_wire_type() {
        let h = HealthCheckSettings {
            enabled: Some(true),
            timeout: Some(3),
            interval: Some(10),
            healthy_threshold: Some(2),
            unhealthy_threshold: Some(4),
            http_code: Some(2),
            path: Some("/healthz".into()),
            domain: Some("a.example.com".into()),
            method: Some("GET".into()),
        };
        assert_eq!(health_check_from_wire(&health_check_to_wire(&h)), h);
    }

    #[test]
    fn a_created_rule_keeps_the_literal_check_host_of_a_regex_domain_unless_the_settings_name_one()
    {
        let mut input = RuleInput {
            health_check: Some(HealthCheck {
                health_switch: Some(1),
                http_check_domain: Some("x.example.com".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = RuleSettings {
            health_check: Some(HealthCheckSettings {
                path: Some("/ok".into()),
                ..Default::default()
            }),
            scheduler: Some("LEAST_CONN".into()),
            ..Default::default()
        };
        apply_to_rule_input(&s, &mut input);
        let h = input.health_check.unwrap();
        assert_eq!(h.http_check_domain.as_deref(), Some("x.example.com"));
        assert_eq!(h.http_check_path.as_deref(), Some("/ok"));
        assert_eq!(input.scheduler.as_deref(), Some("LEAST_CONN"));
    }
}
