//! Backend settings of rules: a `ClbBackendConfig` named by a Service port (Service annotation
//! `clb-ingress.io/backend-config`) or by one Ingress path (Ingress annotation
//! `clb-ingress.io/path-backend-configs`), and TKE's `TkeServiceConfig` rules (Ingress annotation
//! `ingress.cloud.tencent.com/tke-service-config`, read with `--tke-service-configs`). Values are
//! checked against CLB's ranges here, so a refused value is a Warning naming the object and
//! field, never a failed cloud call.

use super::*;
use crate::backend_config::{ClbBackendConfigSpec, TkeRule};
use std::ops::RangeInclusive;

/// On a Service: which `ClbBackendConfig` each of its ports uses,
/// `{"ports": {"80": "strict", "grpc": "grpc-backend"}, "default": "base"}`.
pub const ANN_BACKEND_CONFIG: &str = "clb-ingress.io/backend-config";
/// On an Ingress: a `ClbBackendConfig` for single paths,
/// `[{"host": "shop.example.com", "path": "/api", "backendConfig": "api"}]`.
pub const ANN_PATH_BACKEND_CONFIGS: &str = "clb-ingress.io/path-backend-configs";
/// On an Ingress (TKE): the `TkeServiceConfig` whose `l7Listeners` set the rules' settings.
pub const ANN_TKE_SERVICE_CONFIG: &str = "ingress.cloud.tencent.com/tke-service-config";
/// Largest backend-config annotation read (longer ones are refused, not parsed).
pub const MAX_SETTINGS_ANNOTATION_BYTES: usize = 16 * 1024;

/// CLB's ranges (HealthCheck, RuleInput, ModifyRule of API 2018-03-17).
pub const HC_TIMEOUT: RangeInclusive<u32> = 2..=60;
pub const HC_INTERVAL: RangeInclusive<u32> = 2..=300;
pub const HC_THRESHOLD: RangeInclusive<u32> = 2..=10;
pub const HC_HTTP_CODE: RangeInclusive<u32> = 1..=31;
pub const HC_PATH_MAX: usize = 200;
pub const HC_DOMAIN_MAX: usize = 80;
pub const SESSION_RANGE: RangeInclusive<u32> = 30..=86_400;
/// CLB's defaults where a check needs them (TimeOut < IntervalTime).
pub const HC_DEFAULT_TIMEOUT: u32 = 2;
pub const HC_DEFAULT_INTERVAL: u32 = 5;

/// Names of the settings fields in the object they come from, for messages.
struct FieldNames {
    timeout: &'static str,
    interval: &'static str,
    healthy: &'static str,
    unhealthy: &'static str,
    http_code: &'static str,
    path: &'static str,
    domain: &'static str,
    method: &'static str,
    session: &'static str,
    scheduler: &'static str,
    forward_type: &'static str,
}

const BACKEND_CONFIG_FIELDS: FieldNames = FieldNames {
    timeout: "spec.healthCheck.timeoutSeconds",
    interval: "spec.healthCheck.intervalSeconds",
    healthy: "spec.healthCheck.healthyThreshold",
    unhealthy: "spec.healthCheck.unhealthyThreshold",
    http_code: "spec.healthCheck.httpCodes",
    path: "spec.healthCheck.path",
    domain: "spec.healthCheck.domain",
    method: "spec.healthCheck.method",
    session: "spec.sessionExpireSeconds",
    scheduler: "spec.scheduler",
    forward_type: "spec.backendProtocol",
};

const TKE_FIELDS: FieldNames = FieldNames {
    timeout: "healthCheck.timeout",
    interval: "healthCheck.intervalTime",
    healthy: "healthCheck.healthNum",
    unhealthy: "healthCheck.unHealthNum",
    http_code: "healthCheck.httpCode",
    path: "healthCheck.httpCheckPath",
    domain: "healthCheck.httpCheckDomain",
    method: "healthCheck.httpCheckMethod",
    session: "session.sessionExpireTime",
    scheduler: "scheduler",
    forward_type: "forwardType",
};

/// Is `k` an annotation of this module or of canaries (so not an unknown annotation)?
pub fn is_backend_annotation(k: &str) -> bool {
    k == ANN_PATH_BACKEND_CONFIGS
        || k == ANN_TKE_SERVICE_CONFIG
        || k.starts_with(super::canary::ANN_ACTIONS_PREFIX)
}

fn in_range(v: Option<u32>, r: &RangeInclusive<u32>, field: &str, errors: &mut Vec<String>) {
    if let Some(v) = v
        && !r.contains(&v)
    {
        errors.push(format!("{field}: {v} is outside {}-{}", r.start(), r.end()));
    }
}

/// CLB's checks of a rule's settings; each refused value is named by its field.
fn check(s: &RuleSettings, names: &FieldNames) -> Result<(), String> {
    let mut errors = Vec::new();
    if let Some(h) = &s.health_check {
        in_range(h.timeout, &HC_TIMEOUT, names.timeout, &mut errors);
        in_range(h.interval, &HC_INTERVAL, names.interval, &mut errors);
        in_range(
            h.healthy_threshold,
            &HC_THRESHOLD,
            names.healthy,
            &mut errors,
        );
        in_range(
            h.unhealthy_threshold,
            &HC_THRESHOLD,
            names.unhealthy,
            &mut errors,
        );
        in_range(h.http_code, &HC_HTTP_CODE, names.http_code, &mut errors);
        let timeout = h.timeout.unwrap_or(HC_DEFAULT_TIMEOUT);
        let interval = h.interval.unwrap_or(HC_DEFAULT_INTERVAL);
        if (h.timeout.is_some() || h.interval.is_some()) && timeout >= interval {
            errors.push(format!(
                "{} ({timeout}) must be less than {} ({interval})",
                names.timeout, names.interval
            ));
        }
        if let Some(p) = &h.path
            && (!p.starts_with('/')
                || p.len() > HC_PATH_MAX
                || !p.bytes().all(|b| b.is_ascii_graphic()))
        {
            errors.push(format!(
                "{}: {p:?} must start with / and have at most {HC_PATH_MAX} visible ASCII characters",
                names.path
            ));
        }
        if let Some(d) = &h.domain
            && (d.is_empty()
                || d.len() > HC_DOMAIN_MAX
                || d.starts_with('~')
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._*".contains(&b)))
        {
            errors.push(format!(
                "{}: {d:?} must be a host name of 1-{HC_DOMAIN_MAX} characters (no regular expression)",
                names.domain
            ));
        }
        if let Some(m) = &h.method
            && m != "HEAD"
            && m != "GET"
        {
            errors.push(format!("{}: {m:?} is not HEAD or GET", names.method));
        }
    }
    if let Some(v) = s.session_expire_time
        && v != 0
        && !SESSION_RANGE.contains(&v)
    {
        errors.push(format!(
            "{}: {v} must be 0 (off) or {}-{}",
            names.session,
            SESSION_RANGE.start(),
            SESSION_RANGE.end()
        ));
    }
    if let Some(v) = &s.scheduler
        && crate::backend_config::SchedulerName::parse(v).is_none()
    {
        errors.push(format!(
            "{}: {v:?} is not WRR, LEAST_CONN or IP_HASH",
            names.scheduler
        ));
    }
    if let Some(v) = &s.forward_type
        && crate::backend_config::BackendProtocol::parse(v).is_none()
    {
        errors.push(format!(
            "{}: {v:?} is not HTTP, HTTPS, GRPC or GRPCS",
            names.forward_type
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The settings of a `ClbBackendConfig`, checked as CLB checks them.
pub fn settings_of_backend_config(spec: &ClbBackendConfigSpec) -> Result<RuleSettings, String> {
    let health_check = spec.health_check.as_ref().map(|h| HealthCheckSettings {
        enabled: h.enabled,
        timeout: h.timeout_seconds,
        interval: h.interval_seconds,
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
        http_code: h
            .http_codes
            .as_ref()
            .map(|c| c.iter().fold(0u32, |m, c| m | u32::from(c.bit()))),
        path: h.path.clone(),
        domain: h.domain.clone(),
        method: h.method.map(|m| m.as_str().to_string()),
    });
    let s = RuleSettings {
        health_check,
        scheduler: spec.scheduler.map(|s| s.as_str().to_string()),
        session_expire_time: spec.session_expire_seconds,
        forward_type: spec.backend_protocol.map(|p| p.as_str().to_string()),
        http2: spec.http2,
        quic: spec.quic,
    };
    check(&s, &BACKEND_CONFIG_FIELDS)?;
    Ok(s)
}

fn tke_u32(v: Option<i64>, field: &str, errors: &mut Vec<String>) -> Option<u32> {
    let v = v?;
    match u32::try_from(v) {
        Ok(v) => Some(v),
        Err(_) => {
            errors.push(format!("{field}: {v} is negative or too large"));
            None
        }
    }
}

/// The settings of one `TkeServiceConfig` rule (TKE's field names), checked as CLB checks them.
pub fn settings_of_tke_rule(r: &TkeRule) -> Result<RuleSettings, String> {
    let mut errors = Vec::new();
    let health_check = r.health_check.as_ref().map(|h| HealthCheckSettings {
        enabled: h.enable,
        timeout: tke_u32(h.timeout, TKE_FIELDS.timeout, &mut errors),
        interval: tke_u32(h.interval_time, TKE_FIELDS.interval, &mut errors),
        healthy_threshold: tke_u32(h.health_num, TKE_FIELDS.healthy, &mut errors),
        unhealthy_threshold: tke_u32(h.un_health_num, TKE_FIELDS.unhealthy, &mut errors),
        http_code: tke_u32(h.http_code, TKE_FIELDS.http_code, &mut errors),
        path: h.http_check_path.clone(),
        domain: h.http_check_domain.clone().filter(|d| !d.is_empty()),
        method: h.http_check_method.as_ref().map(|m| m.to_ascii_uppercase()),
    });
    let session_expire_time = match &r.session {
        None => None,
        Some(s) if s.enable == Some(false) => Some(0),
        Some(s) => tke_u32(s.session_expire_time, TKE_FIELDS.session, &mut errors),
    };
    let s = RuleSettings {
        health_check,
        scheduler: r.scheduler.clone(),
        session_expire_time,
        forward_type: r.forward_type.as_ref().map(|f| f.to_ascii_uppercase()),
        http2: None,
        quic: None,
    };
    if let Err(e) = check(&s, &TKE_FIELDS) {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(s)
    } else {
        Err(errors.join("; "))
    }
}

impl HealthCheckSettings {
    /// `self` with every field `more` sets taken from `more`.
    pub fn overlay(&self, more: &HealthCheckSettings) -> HealthCheckSettings {
        HealthCheckSettings {
            enabled: more.enabled.or(self.enabled),
            timeout: more.timeout.or(self.timeout),
            interval: more.interval.or(self.interval),
            healthy_threshold: more.healthy_threshold.or(self.healthy_threshold),
            unhealthy_threshold: more.unhealthy_threshold.or(self.unhealthy_threshold),
            http_code: more.http_code.or(self.http_code),
            path: more.path.clone().or_else(|| self.path.clone()),
            domain: more.domain.clone().or_else(|| self.domain.clone()),
            method: more.method.clone().or_else(|| self.method.clone()),
        }
    }
}

impl RuleSettings {
    /// `self` with every field `more` (the more specific source) sets taken from `more`.
    pub fn overlay(&self, more: &RuleSettings) -> RuleSettings {
        let health_check = match (&self.health_check, &more.health_check) {
            (Some(a), Some(b)) => Some(a.overlay(b)),
            (a, b) => b.clone().or_else(|| a.clone()),
        };
        RuleSettings {
            health_check,
            scheduler: more.scheduler.clone().or_else(|| self.scheduler.clone()),
            session_expire_time: more.session_expire_time.or(self.session_expire_time),
            forward_type: more
                .forward_type
                .clone()
                .or_else(|| self.forward_type.clone()),
            http2: more.http2.or(self.http2),
            quic: more.quic.or(self.quic),
        }
    }
}

/// The Service annotation `clb-ingress.io/backend-config`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceBackendConfig {
    #[serde(default)]
    ports: BTreeMap<String, String>,
    #[serde(default)]
    default: Option<String>,
}

/// One entry of the Ingress annotation `clb-ingress.io/path-backend-configs`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PathBackendConfig {
    #[serde(default)]
    host: Option<String>,
    path: String,
    backend_config: String,
}

/// Parse `clb-ingress.io/path-backend-configs`: (host, path, config name) entries.
pub fn parse_path_backend_configs(
    v: &str,
) -> Result<Vec<(Option<String>, String, String)>, String> {
    if v.len() > MAX_SETTINGS_ANNOTATION_BYTES {
        return Err(format!(
            "{} bytes; at most {MAX_SETTINGS_ANNOTATION_BYTES} are read",
            v.len()
        ));
    }
    let entries: Vec<PathBackendConfig> = serde_json::from_str(v).map_err(|e| {
        format!("not a JSON list of {{\"host\", \"path\", \"backendConfig\"}}: {e}")
    })?;
    Ok(entries
        .into_iter()
        .map(|e| (e.host.filter(|h| !h.is_empty()), e.path, e.backend_config))
        .collect())
}

/// Where a rule's settings come from besides its Service port: the path annotation, and the
/// TkeServiceConfig rules that name its host and path (per listener).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PathSettings {
    pub(super) all: RuleSettings,
    pub(super) per_listener: Vec<((Protocol, u16), RuleSettings)>,
}

impl PathSettings {
    pub(super) fn is_empty(&self) -> bool {
        self.all.is_empty() && self.per_listener.is_empty()
    }
}

/// The rules of one TkeServiceConfig: (config name, [((protocol, port), domain, url, settings)]).
pub(super) type TkeRules = (
    String,
    Vec<((Protocol, u16), Option<String>, String, RuleSettings)>,
);

impl<'a> StackBuilder<'_, 'a> {
    fn settings_problem(&mut self, object: &ObjectRef, field: String, message: String) {
        self.problems.push(Problem {
            object: object.clone(),
            field,
            reason: Reason::InvalidBackendConfig,
            effect: Effect::Degraded,
            message,
        });
    }

    /// The settings of the `ClbBackendConfig` `ns/name`, or a Warning on `object`.
    fn backend_config(
        &mut self,
        ns: &str,
        name: &str,
        object: &ObjectRef,
        field: &str,
        named_by: &str,
    ) -> Option<RuleSettings> {
        let Some(cfg) = self.index.backend_configs.get(&(ns, name)) else {
            self.settings_problem(
                object,
                field.to_string(),
                format!(
                    "{named_by} names ClbBackendConfig {ns}/{name}, which does not exist; the rule keeps the settings it has on CLB"
                ),
            );
            return None;
        };
        match settings_of_backend_config(&cfg.spec) {
            Ok(s) => Some(s),
            Err(e) => {
                self.settings_problem(
                    object,
                    field.to_string(),
                    format!(
                        "ClbBackendConfig {ns}/{name} (named by {named_by}) is not applied: {e}"
                    ),
                );
                None
            }
        }
    }

    /// Settings of a Service port from the Service's `clb-ingress.io/backend-config`.
    pub(super) fn service_settings(
        &mut self,
        ns: &str,
        svc: &Service,
        port: &k8s_openapi::api::core::v1::ServicePort,
        object: &ObjectRef,
        field: &str,
    ) -> RuleSettings {
        let Some(v) = svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_BACKEND_CONFIG))
        else {
            return RuleSettings::default();
        };
        let svc_name = svc.metadata.name.as_deref().unwrap_or("");
        let named_by = format!("Service {ns}/{svc_name} annotation {ANN_BACKEND_CONFIG}");
        let parsed: Result<ServiceBackendConfig, String> = if v.len()
            > MAX_SETTINGS_ANNOTATION_BYTES
        {
            Err(format!(
                "{} bytes; at most {MAX_SETTINGS_ANNOTATION_BYTES} are read",
                v.len()
            ))
        } else {
            serde_json::from_str(v).map_err(|e| {
                format!("not {{\"ports\": {{\"<port number or name>\": \"<ClbBackendConfig>\"}}, \"default\": \"<ClbBackendConfig>\"}}: {e}")
            })
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.settings_problem(object, field.to_string(), format!("{named_by}: {e}"));
                return RuleSettings::default();
            }
        };
        let by_port = parsed
            .ports
            .get(&port.port.to_string())
            .or_else(|| port.name.as_ref().and_then(|n| parsed.ports.get(n)))
            .or(parsed.default.as_ref());
        match by_port {
            Some(name) => self
                .backend_config(ns, name, object, field, &named_by)
                .unwrap_or_default(),
            None => RuleSettings::default(),
        }
    }

    /// Settings of one Ingress path beyond its Service port's (path annotation and
    /// TkeServiceConfig); Warnings for what cannot be applied.
    pub(super) fn path_settings(
        &mut self,
        m: &Managed<'a>,
        host: Option<&str>,
        path: &str,
        pi_field: &str,
        tke: &[TkeRules],
    ) -> PathSettings {
        let mut out = PathSettings::default();
        for (_, rules) in tke {
            for ((proto, port), domain, url, s) in rules {
                if domain.as_deref() == host && url == path {
                    out.per_listener.push(((*proto, *port), s.clone()));
                }
            }
        }
        let ns = m.key.namespace.clone().unwrap_or_default();
        let entries = annotation(m.ing, ANN_PATH_BACKEND_CONFIGS)
            .and_then(|v| parse_path_backend_configs(v).ok())
            .unwrap_or_default();
        if let Some((_, _, name)) = entries
            .iter()
            .find(|(h, p, _)| h.as_deref() == host && p == path)
        {
            let named_by = format!(
                "annotation {ANN_PATH_BACKEND_CONFIGS} for {}{path}",
                host.unwrap_or("")
            );
            if let Some(s) = self.backend_config(&ns, name, &m.key, pi_field, &named_by) {
                out.all = s;
            }
        }
        out
    }

    /// The TkeServiceConfig rules of an Ingress, flattened:
    /// (config name, [((protocol, port), domain, url, settings)]). Warnings for what cannot
    /// be applied.
    pub(super) fn tke_rules(&mut self, m: &Managed<'a>) -> Vec<TkeRules> {
        let Some(name) = annotation(m.ing, ANN_TKE_SERVICE_CONFIG) else {
            return Vec::new();
        };
        let field = format!("metadata.annotations[{ANN_TKE_SERVICE_CONFIG}]");
        let ns = m.key.namespace.clone().unwrap_or_default();
        let Some(configs) = &self.index.tke_configs else {
            self.settings_problem(
                &m.key,
                field,
                format!(
                    "TkeServiceConfig {ns}/{name} is not read: the controller runs without --tke-service-configs (chart value tkeServiceConfigs: true)"
                ),
            );
            return Vec::new();
        };
        let Some(cfg) = configs.get(&(ns.as_str(), name)) else {
            self.settings_problem(
                &m.key,
                field,
                format!("TkeServiceConfig {ns}/{name} does not exist; the rules keep the settings they have on CLB"),
            );
            return Vec::new();
        };
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        let listeners = cfg
            .spec
            .load_balancer
            .as_ref()
            .map(|l| l.l7_listeners.as_slice())
            .unwrap_or_default();
        for (li, l) in listeners.iter().enumerate() {
            let proto = match l.protocol.to_ascii_uppercase().as_str() {
                "HTTP" => Protocol::Http,
                "HTTPS" => Protocol::Https,
                other => {
                    errors.push(format!(
                        "spec.loadBalancer.l7Listeners[{li}].protocol: {other:?} is not HTTP or HTTPS"
                    ));
                    continue;
                }
            };
            let Ok(port) = u16::try_from(l.port)
                .map_err(|_| ())
                .and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
            else {
                errors.push(format!(
                    "spec.loadBalancer.l7Listeners[{li}].port: {} is not a port",
                    l.port
                ));
                continue;
            };
            for (di, d) in l.domains.iter().enumerate() {
                for (ri, r) in d.rules.iter().enumerate() {
                    match settings_of_tke_rule(r) {
                        Ok(s) => rules.push((
                            (proto, port),
                            Some(d.domain.clone()).filter(|d| !d.is_empty()),
                            r.url.clone(),
                            s,
                        )),
                        Err(e) => errors.push(format!(
                            "spec.loadBalancer.l7Listeners[{li}].domains[{di}].rules[{ri}]: {e}"
                        )),
                    }
                }
            }
        }
        if !errors.is_empty() {
            self.settings_problem(
                &m.key,
                field,
                format!(
                    "TkeServiceConfig {ns}/{name}: these parts are not applied: {}",
                    errors.join("; ")
                ),
            );
        }
        vec![(name.to_string(), rules)]
    }

    /// The `defaultServer` hosts the Ingress's TkeServiceConfig gives per listener (malformed
    /// listeners are left out; `tke_rules` reports them).
    pub(super) fn tke_default_servers(&self, m: &Managed<'a>) -> Vec<((Protocol, u16), String)> {
        let Some(name) = annotation(m.ing, ANN_TKE_SERVICE_CONFIG) else {
            return Vec::new();
        };
        let ns = m.key.namespace.as_deref().unwrap_or_default();
        let Some(cfg) = self
            .index
            .tke_configs
            .as_ref()
            .and_then(|c| c.get(&(ns, name)))
        else {
            return Vec::new();
        };
        cfg.spec
            .load_balancer
            .iter()
            .flat_map(|l| &l.l7_listeners)
            .filter_map(|l| {
                let proto = match l.protocol.to_ascii_uppercase().as_str() {
                    "HTTP" => Protocol::Http,
                    "HTTPS" => Protocol::Https,
                    _ => return None,
                };
                let port = u16::try_from(l.port).ok().filter(|p| *p != 0)?;
                let host = l.default_server.as_deref().filter(|h| !h.is_empty())?;
                Some(((proto, port), host.to_ascii_lowercase()))
            })
            .collect()
    }

    /// Warnings for a malformed `clb-ingress.io/path-backend-configs`, and for entries that
    /// name no path of the Ingress.
    pub(super) fn check_path_backend_configs(&mut self, m: &Managed<'a>) {
        let Some(v) = annotation(m.ing, ANN_PATH_BACKEND_CONFIGS) else {
            return;
        };
        let field = format!("metadata.annotations[{ANN_PATH_BACKEND_CONFIGS}]");
        match parse_path_backend_configs(v) {
            Err(e) => self.settings_problem(&m.key, field, e),
            Ok(entries) => {
                let paths: Vec<(Option<&str>, &str)> = m
                    .ing
                    .spec
                    .iter()
                    .flat_map(|s| s.rules.iter().flatten())
                    .flat_map(|r| {
                        let h = r.host.as_deref().filter(|h| !h.is_empty());
                        r.http
                            .iter()
                            .flat_map(|x| &x.paths)
                            .map(move |p| (h, p.path.as_deref().unwrap_or("/")))
                    })
                    .collect();
                for (i, (h, p, _)) in entries.iter().enumerate() {
                    if !paths.contains(&(h.as_deref(), p.as_str())) {
                        self.settings_problem(
                            &m.key,
                            field.clone(),
                            format!(
                                "[{i}] names host {:?} path {p:?}, which is not a path of this Ingress; it has no effect",
                                h.as_deref().unwrap_or("")
                            ),
                        );
                    }
                }
            }
        }
    }
}
