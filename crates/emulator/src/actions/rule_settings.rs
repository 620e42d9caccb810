//! Checks of a layer-7 rule's settings as CLB makes them (api.json 2018-03-17 `HealthCheck`,
//! `RuleInput`, `ModifyRuleRequest`): health-check ranges and choices, `TimeOut` below
//! `IntervalTime`, the health-check protocol a rule allows, and the backend protocol
//! (`ForwardType`) each action and listener protocol takes.

use crate::error::{ApiFailure, codes};
use clb_api::types::HealthCheck;

/// `ForwardType`s `CreateRule` takes (TRPC is "not open to the public" and refused).
pub const CREATE_FORWARD_TYPES: [&str; 4] = ["HTTP", "HTTPS", "GRPC", "GRPCS"];
/// `ForwardType`s `ModifyRule` takes (its documentation lists these three).
pub const MODIFY_FORWARD_TYPES: [&str; 3] = ["HTTP", "HTTPS", "GRPC"];

fn range(v: Option<i64>, name: &str, lo: i64, hi: i64) -> Result<(), ApiFailure> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_RANGE,
            format!("HealthCheck.{name} must be {lo}-{hi}, got {x}"),
        )),
        _ => Ok(()),
    }
}

/// A rule's health check as `CreateRule`/`ModifyRule` receive it (`https`: on an HTTPS listener).
pub fn check_health_check(h: &HealthCheck, https: bool) -> Result<(), ApiFailure> {
    if let Some(s) = h.health_switch
        && s != 0
        && s != 1
    {
        return Err(ApiFailure::invalid_value(format!(
            "HealthCheck.HealthSwitch must be 0 or 1, got {s}"
        )));
    }
    range(h.time_out, "TimeOut", 2, 60)?;
    range(h.interval_time, "IntervalTime", 2, 300)?;
    range(h.health_num, "HealthNum", 2, 10)?;
    range(h.un_health_num, "UnHealthNum", 2, 10)?;
    range(h.http_code, "HttpCode", 1, 31)?;
    let timeout = h.time_out.unwrap_or(2);
    let interval = h.interval_time.unwrap_or(5);
    if timeout >= interval {
        return Err(ApiFailure::invalid_value(format!(
            "HealthCheck.TimeOut ({timeout}) must be less than IntervalTime ({interval})"
        )));
    }
    if let Some(m) = &h.http_check_method
        && !matches!(m.to_ascii_uppercase().as_str(), "HEAD" | "GET")
    {
        return Err(ApiFailure::invalid_value(format!(
            "HealthCheck.HttpCheckMethod must be HEAD or GET, got {m}"
        )));
    }
    if let Some(p) = &h.http_check_path
        && (!p.starts_with('/') || p.len() > 200 || !p.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ApiFailure::invalid_value(format!(
            "HealthCheck.HttpCheckPath {p:?} must start with / and have 1-200 visible ASCII characters"
        )));
    }
    if let Some(d) = &h.http_check_domain
        && !d.is_empty()
    {
        // A regex cannot be a Host header.
        if d.starts_with('~') || d.len() > 80 {
            return Err(ApiFailure::invalid_value(format!(
                "HealthCheck.HttpCheckDomain {d:?} must be a host name of at most 80 characters, not a regular expression"
            )));
        }
    }
    if let Some(t) = &h.check_type {
        let allowed: &[&str] = if https {
            &["HTTP", "HTTPS", "GRPC"]
        } else {
            &["HTTP", "GRPC"]
        };
        if !allowed.contains(&t.as_str()) {
            return Err(ApiFailure::invalid_value(format!(
                "HealthCheck.CheckType of a rule on an {} listener must be one of {}, got {t}",
                if https { "HTTPS" } else { "HTTP" },
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// A rule's `ForwardType`: one the action takes, and only HTTP on an HTTP listener.
pub fn check_forward_type(
    f: Option<&str>,
    allowed: &[&str],
    https: bool,
) -> Result<(), ApiFailure> {
    let Some(f) = f else { return Ok(()) };
    if !allowed.contains(&f) {
        return Err(ApiFailure::invalid_value(format!(
            "ForwardType must be one of {}, got {f}",
            allowed.join(", ")
        )));
    }
    if !https && f != "HTTP" {
        return Err(ApiFailure::new(
            codes::PROTOCOL_CHECK_FAILED,
            "ForwardType other than HTTP needs an HTTPS listener",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc() -> HealthCheck {
        HealthCheck::default()
    }

    #[test]
    fn out_of_range_health_check_values_are_refused_with_the_field_name() {
        let cases = [
            (
                HealthCheck {
                    time_out: Some(61),
                    ..hc()
                },
                "TimeOut",
            ),
            (
                HealthCheck {
                    time_out: Some(1),
                    ..hc()
                },
                "TimeOut",
            ),
            (
                HealthCheck {
                    interval_time: Some(301),
                    ..hc()
                },
                "IntervalTime",
            ),
            (
                HealthCheck {
                    health_num: Some(11),
                    ..hc()
                },
                "HealthNum",
            ),
            (
                HealthCheck {
                    un_health_num: Some(1),
                    ..hc()
                },
                "UnHealthNum",
            ),
            (
                HealthCheck {
                    http_code: Some(32),
                    ..hc()
                },
                "HttpCode",
            ),
            (
                HealthCheck {
                    health_switch: Some(2),
                    ..hc()
                },
                "HealthSwitch",
            ),
            (
                HealthCheck {
                    time_out: Some(5),
                    interval_time: Some(5),
                    ..hc()
                },
                "less than",
            ),
            (
                HealthCheck {
                    http_check_method: Some("POST".into()),
                    ..hc()
                },
                "HttpCheckMethod",
            ),
            (
                HealthCheck {
                    http_check_path: Some("healthz".into()),
                    ..hc()
                },
                "HttpCheckPath",
            ),
            (
                HealthCheck {
                    http_check_domain: Some("~^a$".into()),
                    ..hc()
                },
                "HttpCheckDomain",
            ),
            (
                HealthCheck {
                    check_type: Some("HTTPS".into()),
                    ..hc()
                },
                "CheckType",
            ),
        ];
        for (h, field) in cases {
            let e = check_health_check(&h, false).unwrap_err();
            assert!(e.message.contains(field), "{h:?}: {}", e.message);
        }
        let ok = HealthCheck {
            health_switch: Some(1),
            time_out: Some(2),
            interval_time: Some(300),
            health_num: Some(10),
            un_health_num: Some(2),
            http_code: Some(31),
            http_check_method: Some("GET".into()),
            http_check_path: Some("/healthz".into()),
            check_type: Some("HTTPS".into()),
            ..hc()
        };
        check_health_check(&ok, true).unwrap();
    }

    #[test]
    fn modify_rule_refuses_grpcs_and_http_listeners_refuse_other_backend_protocols() {
        assert!(check_forward_type(Some("GRPCS"), &MODIFY_FORWARD_TYPES, true).is_err());
        assert!(check_forward_type(Some("GRPCS"), &CREATE_FORWARD_TYPES, true).is_ok());
        assert!(check_forward_type(Some("TRPC"), &CREATE_FORWARD_TYPES, true).is_err());
        assert!(check_forward_type(Some("HTTPS"), &CREATE_FORWARD_TYPES, false).is_err());
        assert!(check_forward_type(Some("HTTP"), &CREATE_FORWARD_TYPES, false).is_ok());
    }
}
