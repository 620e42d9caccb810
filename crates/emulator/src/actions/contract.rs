//! The official request contract: every request is checked against the input model of its action
//! in `contract.json`, an excerpt of the pinned tccli's `api.json` (see tests/contract/extract.py;
//! tests/sdk/test_contract.py fails when the excerpt and the pinned spec differ).
//!
//! Before a handler sees a body: a field the model does not define is `UnknownParameter` (at any
//! depth, named by its path, e.g. `Targets.0.Weigth`); a required field that is absent (or `null`)
//! is `MissingParameter`; a value of the wrong JSON type is `InvalidParameter`. Integers and
//! booleans sent as strings (`"Limit": "10"`, as the SSL service's official samples do) are
//! converted to numbers and booleans, and explicit `null`s are dropped, so the typed request
//! structs decode what the real API accepts.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Service;
use crate::error::{ApiFailure, codes};

/// The common error code of a field the action does not define.
pub const UNKNOWN_PARAMETER: &str = "UnknownParameter";

/// A documented constraint on one field of one model. api.json states these only in the
/// description text (Chinese); tests/sdk/test_contract.py checks that each row's bounds or values
/// appear in the pinned description of that field, and that the emulator enforces the row.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// An integer in `lo..=hi` (else `InvalidParameterValue.Range`).
    Range(i64, i64),
    /// 0 (off) or an integer in `lo..=hi` (else `InvalidParameterValue.Range`).
    ZeroOrRange(i64, i64),
    /// One of these integers (else `InvalidParameterValue`).
    IntOneOf(&'static [i64]),
    /// One of these strings, exactly (else `InvalidParameterValue`).
    OneOf(&'static [&'static str]),
    /// One of these strings, ignoring ASCII case (else `InvalidParameterValue`).
    OneOfIgnoreCase(&'static [&'static str]),
    /// A string of `lo..=hi` characters (else `InvalidParameterValue.Length`).
    Len(usize, usize),
    /// An array of at most `n` elements (else `InvalidParameterValue.Length`).
    Cap(usize),
}

use Rule::*;

const SCHEDULERS: &[&str] = &["WRR", "LEAST_CONN", "IP_HASH"];
const TARGET_TYPES: &[&str] = &["NODE", "TARGETGROUP"];
const SSL_MODES: &[&str] = &["UNIDIRECTIONAL", "MUTUAL"];

/// The constraints the emulator enforces before any handler: (model, field, rule). A model's
/// rows apply wherever the model appears (HealthCheck in CreateListener, ModifyListener,
/// RuleInput and ModifyRule alike). Constraints that depend on state or on other fields
/// (SubnetId for INTERNAL, listener-only fields, per-protocol health-check types) live in the
/// handlers; the rest is listed under "Strictness" in docs/emulator.md.
pub const CONSTRAINTS: &[(&str, &str, Rule)] = &[
    ("HealthCheck", "HealthSwitch", IntOneOf(&[0, 1])),
    ("HealthCheck", "TimeOut", Range(2, 60)),
    ("HealthCheck", "IntervalTime", Range(2, 300)),
    ("HealthCheck", "HealthNum", Range(2, 10)),
    ("HealthCheck", "UnHealthNum", Range(2, 10)),
    ("HealthCheck", "HttpCode", Range(1, 31)),
    ("HealthCheck", "HttpCheckMethod", OneOf(&["HEAD", "GET"])),
    (
        "HealthCheck",
        "CheckType",
        OneOf(&["TCP", "HTTP", "HTTPS", "GRPC", "PING", "CUSTOM"]),
    ),
    (
        "HealthCheck",
        "HttpVersion",
        OneOf(&["HTTP/1.0", "HTTP/1.1"]),
    ),
    ("HealthCheck", "SourceIpType", IntOneOf(&[0, 1])),
    ("HealthCheck", "ContextType", OneOf(&["HEX", "TEXT"])),
    ("HealthCheck", "SendContext", Len(0, 500)),
    ("HealthCheck", "RecvContext", Len(0, 500)),
    (
        "CreateListenerRequest",
        "SessionExpireTime",
        ZeroOrRange(30, 3600),
    ),
    (
        "ModifyListenerRequest",
        "SessionExpireTime",
        ZeroOrRange(30, 3600),
    ),
    ("RuleInput", "SessionExpireTime", ZeroOrRange(30, 86400)),
    (
        "ModifyRuleRequest",
        "SessionExpireTime",
        ZeroOrRange(30, 86400),
    ),
    (
        "CreateListenerRequest",
        "Scheduler",
        OneOf(&["WRR", "LEAST_CONN"]),
    ),
    ("ModifyListenerRequest", "Scheduler", OneOf(SCHEDULERS)),
    ("RuleInput", "Scheduler", OneOf(SCHEDULERS)),
    ("ModifyRuleRequest", "Scheduler", OneOf(SCHEDULERS)),
    ("CreateListenerRequest", "TargetType", OneOf(TARGET_TYPES)),
    ("ModifyListenerRequest", "TargetType", OneOf(TARGET_TYPES)),
    (
        "RuleInput",
        "TargetType",
        OneOf(&["NODE", "TARGETGROUP", "TARGETGROUP-V2"]),
    ),
    ("CreateListenerRequest", "SniSwitch", IntOneOf(&[0, 1])),
    ("ModifyListenerRequest", "SniSwitch", IntOneOf(&[0, 1])),
    ("CertificateInput", "SSLMode", OneOf(SSL_MODES)),
    (
        "CertificateInput",
        "SSLVerifyClient",
        OneOf(&["ON", "OPTIONAL"]),
    ),
    ("MultiCertInfo", "SSLMode", OneOf(SSL_MODES)),
    (
        "RuleInput",
        "ForwardType",
        OneOf(&["HTTP", "HTTPS", "GRPC", "GRPCS", "TRPC"]),
    ),
    ("RuleInput", "Url", Len(1, 200)),
    ("RuleInput", "Domain", Len(1, 80)),
    ("ModifyDomainRequest", "NewDomain", Len(1, 120)),
    (
        "CreateLoadBalancerRequest",
        "LoadBalancerType",
        OneOf(&["OPEN", "INTERNAL"]),
    ),
    ("CreateLoadBalancerRequest", "Forward", IntOneOf(&[1])),
    (
        "CreateLoadBalancerRequest",
        "AddressIPVersion",
        OneOfIgnoreCase(&["IPV4", "IPV6", "IPv6FullChain"]),
    ),
    ("CreateLoadBalancerRequest", "LoadBalancerName", Len(1, 80)),
    ("DescribeLoadBalancersRequest", "LoadBalancerIds", Cap(20)),
    ("DescribeLoadBalancersRequest", "Limit", Range(0, 100)),
    ("DescribeLoadBalancersRequest", "Filters", Cap(10)),
    ("DeleteLoadBalancerRequest", "LoadBalancerIds", Cap(20)),
    ("DescribeListenersRequest", "ListenerIds", Cap(100)),
    ("DescribeTargetsRequest", "ListenerIds", Cap(20)),
    ("RegisterTargetsRequest", "Targets", Cap(20)),
    ("DeregisterTargetsRequest", "Targets", Cap(20)),
    ("Target", "Weight", Range(0, 100)),
    ("BatchTarget", "Weight", Range(0, 100)),
];

fn check_rule(path: &str, rule: Rule, v: &Value) -> Result<(), ApiFailure> {
    let range = |lo: i64, hi: i64, zero: bool| -> Result<(), ApiFailure> {
        let n = v.as_i64().unwrap_or(i64::MIN);
        if (zero && n == 0) || (lo..=hi).contains(&n) {
            Ok(())
        } else {
            let zero = if zero { "0 or " } else { "" };
            Err(ApiFailure::new(
                codes::INVALID_PARAMETER_VALUE_RANGE,
                format!("The value of `{path}` must be {zero}{lo}-{hi}, got {v}."),
            ))
        }
    };
    let one_of = |ok: bool, allowed: String| -> Result<(), ApiFailure> {
        if ok {
            Ok(())
        } else {
            Err(ApiFailure::invalid_value(format!(
                "The value of `{path}` must be one of {allowed}, got {v}."
            )))
        }
    };
    let length = |len: usize, lo: usize, hi: usize, what: &str| -> Result<(), ApiFailure> {
        if (lo..=hi).contains(&len) {
            Ok(())
        } else {
            Err(ApiFailure::new(
                codes::INVALID_PARAMETER_VALUE_LENGTH,
                format!("The {what} of `{path}` must be {lo}-{hi}, got {len}."),
            ))
        }
    };
    match rule {
        Range(lo, hi) => range(lo, hi, false),
        ZeroOrRange(lo, hi) => range(lo, hi, true),
        IntOneOf(allowed) => one_of(
            v.as_i64().is_some_and(|n| allowed.contains(&n)),
            format!("{allowed:?}"),
        ),
        OneOf(allowed) => one_of(
            v.as_str().is_some_and(|s| allowed.contains(&s)),
            allowed.join(", "),
        ),
        OneOfIgnoreCase(allowed) => one_of(
            v.as_str()
                .is_some_and(|s| allowed.iter().any(|a| a.eq_ignore_ascii_case(s))),
            allowed.join(", "),
        ),
        Len(lo, hi) => length(
            v.as_str().map(|s| s.chars().count()).unwrap_or_default(),
            lo,
            hi,
            "length",
        ),
        Cap(n) => length(
            v.as_array().map(Vec::len).unwrap_or_default(),
            0,
            n,
            "number of elements",
        ),
    }
}

/// The committed spec excerpt (tccli version in its `tccli` field).
const CONTRACT_JSON: &str = include_str!("contract.json");

#[derive(Debug, Deserialize)]
struct Contract {
    tccli: String,
    services: HashMap<String, ServiceSpec>,
}

#[derive(Debug, Deserialize)]
struct ServiceSpec {
    actions: HashMap<String, Option<ActionSpec>>,
    objects: HashMap<String, Vec<MemberSpec>>,
}

#[derive(Debug, Deserialize)]
struct ActionSpec {
    input: String,
    output: String,
}

#[derive(Debug, Deserialize)]
struct MemberSpec {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    member: String,
    required: bool,
}

fn contract() -> Option<&'static Contract> {
    static C: OnceLock<Option<Contract>> = OnceLock::new();
    C.get_or_init(|| serde_json::from_str(CONTRACT_JSON).ok())
        .as_ref()
}

fn service_key(s: Service) -> &'static str {
    match s {
        Service::Clb => "clb",
        Service::Ssl => "ssl",
        Service::Vpc => "vpc",
        Service::Tag => "tag",
    }
}

/// The tccli version the excerpt was taken from (empty if the excerpt does not parse).
pub fn tccli_version() -> &'static str {
    contract().map(|c| c.tccli.as_str()).unwrap_or_default()
}

/// The names of the output model's fields of `action` (for tests of response shapes).
pub fn output_fields(service: Service, action: &str) -> Option<Vec<&'static str>> {
    let svc = contract()?.services.get(service_key(service))?;
    let spec = svc.actions.get(action)?.as_ref()?;
    let members = svc.objects.get(&spec.output)?;
    Some(members.iter().map(|m| m.name.as_str()).collect())
}

/// Check `body` against the input model of `action`; return the normalized body to decode.
/// An action missing from the excerpt is not checked (the contract test reports it).
pub fn check(service: Service, action: &str, body: &[u8]) -> Result<Vec<u8>, ApiFailure> {
    let Some(svc) = contract().and_then(|c| c.services.get(service_key(service))) else {
        return Ok(body.to_vec());
    };
    let Some(Some(spec)) = svc.actions.get(action) else {
        return Ok(body.to_vec());
    };
    let mut value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiFailure::new(
                codes::INVALID_PARAMETER,
                format!("The request body is not a JSON object: {e}"),
            )
        })?
    };
    check_object(svc, &spec.input, "", &mut value)?;
    serde_json::to_vec(&value).map_err(|e| ApiFailure::new(codes::INTERNAL_ERROR, e.to_string()))
}

fn path_of(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn invalid_type(path: &str, want: &str) -> ApiFailure {
    ApiFailure::new(
        codes::INVALID_PARAMETER,
        format!("The value type of parameter `{path}` is not valid: expected {want}."),
    )
}

fn check_object(
    svc: &ServiceSpec,
    model: &str,
    prefix: &str,
    value: &mut Value,
) -> Result<(), ApiFailure> {
    let Some(members) = svc.objects.get(model) else {
        return Ok(());
    };
    let Value::Object(map) = value else {
        let what = if prefix.is_empty() {
            "the request body"
        } else {
            prefix
        };
        return Err(invalid_type(what, "an object"));
    };
    map.retain(|_, v| !v.is_null());
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    if let Some(unknown) = keys
        .into_iter()
        .find(|k| !members.iter().any(|m| &m.name == *k))
    {
        return Err(ApiFailure::new(
            UNKNOWN_PARAMETER,
            format!(
                "The parameter `{}` is not recognized.",
                path_of(prefix, unknown)
            ),
        ));
    }
    for m in members {
        let path = path_of(prefix, &m.name);
        match map.get_mut(&m.name) {
            None if m.required => return Err(ApiFailure::missing(&path)),
            None => {}
            Some(v) => {
                check_value(svc, m, &path, v)?;
                for (_, _, rule) in CONSTRAINTS
                    .iter()
                    .filter(|(o, f, _)| *o == model && *f == m.name)
                {
                    check_rule(&path, *rule, v)?;
                }
            }
        }
    }
    Ok(())
}

fn check_value(
    svc: &ServiceSpec,
    m: &MemberSpec,
    path: &str,
    v: &mut Value,
) -> Result<(), ApiFailure> {
    if m.kind == "list" {
        let Value::Array(items) = v else {
            return Err(invalid_type(path, "an array"));
        };
        for (i, item) in items.iter_mut().enumerate() {
            check_scalar_or_object(svc, &m.member, &format!("{path}.{i}"), item)?;
        }
        Ok(())
    } else {
        check_scalar_or_object(svc, &m.member, path, v)
    }
}

fn check_scalar_or_object(
    svc: &ServiceSpec,
    member: &str,
    path: &str,
    v: &mut Value,
) -> Result<(), ApiFailure> {
    match member {
        "string" => match v {
            Value::String(_) => Ok(()),
            _ => Err(invalid_type(path, "a string")),
        },
        "int64" | "uint64" => {
            let n = match v {
                Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if member == "uint64" && n < 0 => {
                    Err(invalid_type(path, "a non-negative integer"))
                }
                Some(n) => {
                    if v.is_string() {
                        *v = Value::from(n);
                    }
                    Ok(())
                }
                None => Err(invalid_type(path, "an integer")),
            }
        }
        "float" | "double" => match v {
            Value::Number(_) => Ok(()),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) => {
                    *v = Value::from(f);
                    Ok(())
                }
                Err(_) => Err(invalid_type(path, "a number")),
            },
            _ => Err(invalid_type(path, "a number")),
        },
        "bool" => match v {
            Value::Bool(_) => Ok(()),
            Value::String(s) if s == "true" || s == "false" => {
                *v = Value::Bool(s == "true");
                Ok(())
            }
            _ => Err(invalid_type(path, "a boolean")),
        },
        model => check_object(svc, model, path, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(service: Service, action: &str, body: &str) -> Result<Value, String> {
        check(service, action, body.as_bytes())
            .map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null))
            .map_err(|e| format!("{}: {}", e.code, e.message))
    }

    #[test]
    fn the_committed_excerpt_parses_and_names_its_tccli_version() {
        assert!(!tccli_version().is_empty());
        for action in super::super::CLB_ACTIONS {
            assert!(
                output_fields(Service::Clb, action).is_some(),
                "{action} is not in contract.json"
            );
        }
        for action in super::super::SSL_ACTIONS {
            assert!(output_fields(Service::Ssl, action).is_some(), "{action}");
        }
    }

    #[test]
    fn a_misspelt_nested_field_is_an_unknown_parameter_named_by_its_path() {
        let err = code(
            Service::Clb,
            "RegisterTargets",
            r#"{"LoadBalancerId":"lb-1","ListenerId":"lbl-1","Targets":[{"Port":80,"InstanceId":"ins-1","Weigth":50}]}"#,
        )
        .expect_err("refused");
        assert_eq!(
            err,
            "UnknownParameter: The parameter `Targets.0.Weigth` is not recognized."
        );
    }

    #[test]
    fn a_missing_required_field_is_a_missing_parameter() {
        let err = code(
            Service::Clb,
            "RegisterTargets",
            r#"{"LoadBalancerId":"lb-1"}"#,
        )
        .expect_err("refused");
        assert!(err.starts_with("MissingParameter: "), "{err}");
        assert!(err.contains("`ListenerId`"), "{err}");
        let err = code(
            Service::Clb,
            "RegisterTargets",
            r#"{"LoadBalancerId":"lb-1","ListenerId":"l","Targets":[{"InstanceId":"ins-1"}]}"#,
        )
        .expect_err("refused");
        assert!(err.contains("`Targets.0.Port`"), "{err}");
    }

    #[test]
    fn documented_ranges_enums_and_lengths_are_enforced_wherever_the_model_appears() {
        let listener = |hc: &str| {
            format!(
                r#"{{"LoadBalancerId":"lb-1","Ports":[80],"Protocol":"TCP","HealthCheck":{hc}}}"#
            )
        };
        let err = code(
            Service::Clb,
            "CreateListener",
            &listener(r#"{"TimeOut":61}"#),
        )
        .expect_err("refused");
        assert!(err.starts_with("InvalidParameterValue.Range: "), "{err}");
        assert!(err.contains("`HealthCheck.TimeOut`"), "{err}");
        assert!(
            code(
                Service::Clb,
                "CreateListener",
                &listener(r#"{"TimeOut":60}"#)
            )
            .is_ok()
        );
        let err = code(
            Service::Clb,
            "ModifyRule",
            r#"{"LoadBalancerId":"lb-1","ListenerId":"l","LocationId":"loc","HealthCheck":{"HttpCheckMethod":"POST"}}"#,
        )
        .expect_err("refused");
        assert!(err.starts_with("InvalidParameterValue: "), "{err}");
        let session = |t: i64| {
            code(
                Service::Clb,
                "CreateListener",
                &format!(
                    r#"{{"LoadBalancerId":"lb-1","Ports":[80],"Protocol":"TCP","SessionExpireTime":{t}}}"#
                ),
            )
        };
        assert!(session(0).is_ok() && session(30).is_ok() && session(3600).is_ok());
        assert!(session(29).is_err() && session(3601).is_err());
        let domain = |n: usize| {
            code(
                Service::Clb,
                "ModifyDomain",
                &format!(
                    r#"{{"LoadBalancerId":"lb-1","ListenerId":"l","Domain":"a.com","NewDomain":"{}"}}"#,
                    "a".repeat(n)
                ),
            )
        };
        assert!(domain(120).is_ok());
        let err = domain(121).expect_err("refused");
        assert!(err.starts_with("InvalidParameterValue.Length: "), "{err}");
    }

    #[test]
    fn every_constraint_names_a_field_of_its_model_in_the_excerpt() {
        let c = contract().expect("parses");
        for (model, field, _) in CONSTRAINTS {
            let found = c.services.values().any(|s| {
                s.objects
                    .get(*model)
                    .is_some_and(|ms| ms.iter().any(|m| m.name == *field))
            });
            assert!(found, "{model}.{field} is not in contract.json");
        }
    }

    #[test]
    fn numbers_and_booleans_sent_as_strings_are_converted_and_nulls_dropped() {
        let v = code(
            Service::Ssl,
            "DescribeCertificates",
            r#"{"Offset":"0","Limit":"10","SearchKey":"x","Upload":null}"#,
        )
        .expect("accepted");
        assert_eq!(v["Offset"], Value::from(0));
        assert_eq!(v["Limit"], Value::from(10));
        assert!(v.get("Upload").is_none());
        let err =
            code(Service::Ssl, "DescribeCertificates", r#"{"Limit":"ten"}"#).expect_err("refused");
        assert!(err.starts_with("InvalidParameter: "), "{err}");
        let err = code(
            Service::Clb,
            "DescribeLoadBalancers",
            r#"{"LoadBalancerIds":"lb-1"}"#,
        )
        .expect_err("refused");
        assert!(err.starts_with("InvalidParameter: "), "{err}");
    }
}
