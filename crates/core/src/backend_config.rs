//! Backend settings of CLB rules: the `ClbBackendConfig` custom resource (ours), and TKE's
//! `TkeServiceConfig` (not ours: read only, when the controller is told to).
//!
//! A `ClbBackendConfig` is named by a Service (annotation `clb-ingress.io/backend-config`, per
//! Service port) or by an Ingress for one path (annotation `clb-ingress.io/path-backend-configs`).
//! Field names and ranges follow CLB's `HealthCheck`, `RuleInput` and `ModifyRule` (API
//! 2018-03-17); the model checks them again and names the offending field.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kind of the backend-settings object.
pub const BACKEND_CONFIG_KIND: &str = "ClbBackendConfig";

/// Health check, scheduler, session persistence, backend protocol and per-domain HTTP/2 and
/// QUIC for the CLB rules of a Service port or of one Ingress path.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "clb-ingress.io",
    version = "v1alpha1",
    kind = "ClbBackendConfig",
    plural = "clbbackendconfigs",
    shortname = "clbbackend",
    namespaced,
    doc = "Backend settings of the CLB rules that route to a Service port (Service annotation \
           clb-ingress.io/backend-config) or to one Ingress path (Ingress annotation \
           clb-ingress.io/path-backend-configs): health check, scheduler, session persistence, \
           backend protocol, HTTP/2 and QUIC.",
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.backendProtocol"}"#,
    printcolumn = r#"{"name":"Scheduler","type":"string","jsonPath":".spec.scheduler"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClbBackendConfigSpec {
    /// The rule's health check (CLB `HealthCheck`). Fields left out are not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// How requests are spread over targets: `WRR` (weighted round robin, CLB's default),
    /// `LEAST_CONN` or `IP_HASH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerName>,
    /// Session persistence in seconds (CLB `SessionExpireTime`): 0 turns it off, else 30-86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub session_expire_seconds: Option<u32>,
    /// Protocol from CLB to the targets (CLB `ForwardType`): `HTTP` (default), `HTTPS`, `GRPC`,
    /// `GRPCS`. Only rules of HTTPS listeners can use another protocol than HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<BackendProtocol>,
    /// HTTP/2 between clients and CLB for the rule's domain (HTTPS listeners only; CLB
    /// `Http2`, set with `ModifyDomainAttributes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    /// QUIC for the rule's domain (HTTPS listeners only; CLB `Quic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<bool>,
}

/// CLB's layer-7 health check of a rule.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckConfig {
    /// Health checks on (CLB's default) or off (`HealthSwitch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Path probed (`HttpCheckPath`), starting with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub path: Option<String>,
    /// Host header of the probe (`HttpCheckDomain`); default: the rule's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 80))]
    pub domain: Option<String>,
    /// `HEAD` (CLB's default) or `GET` (`HttpCheckMethod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HealthCheckMethod>,
    /// Seconds between probes, 2-300 (`IntervalTime`, default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 300))]
    pub interval_seconds: Option<u32>,
    /// Seconds a probe may take, 2-60 and less than the interval (`TimeOut`, default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 60))]
    pub timeout_seconds: Option<u32>,
    /// Successful probes in a row that make a target healthy, 2-10 (`HealthNum`, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 10))]
    pub healthy_threshold: Option<u32>,
    /// Failed probes in a row that make a target unhealthy, 2-10 (`UnHealthNum`, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 10))]
    pub unhealthy_threshold: Option<u32>,
    /// Status classes that count as healthy, from `1xx` `2xx` `3xx` `4xx` `5xx` (`HttpCode`,
    /// default all five).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5))]
    pub http_codes: Option<Vec<HttpCodeClass>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SchedulerName {
    #[serde(rename = "WRR")]
    Wrr,
    #[serde(rename = "LEAST_CONN")]
    LeastConn,
    #[serde(rename = "IP_HASH")]
    IpHash,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum BackendProtocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
    #[serde(rename = "GRPC")]
    Grpc,
    #[serde(rename = "GRPCS")]
    Grpcs,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum HealthCheckMethod {
    #[serde(rename = "HEAD")]
    Head,
    #[serde(rename = "GET")]
    Get,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum HttpCodeClass {
    #[serde(rename = "1xx")]
    C1xx,
    #[serde(rename = "2xx")]
    C2xx,
    #[serde(rename = "3xx")]
    C3xx,
    #[serde(rename = "4xx")]
    C4xx,
    #[serde(rename = "5xx")]
    C5xx,
}

impl HttpCodeClass {
    /// The bit of this class in CLB's `HttpCode` (1 = 1xx, 2 = 2xx, 4 = 3xx, 8 = 4xx, 16 = 5xx).
    pub fn bit(self) -> u8 {
        match self {
            HttpCodeClass::C1xx => 1,
            HttpCodeClass::C2xx => 2,
            HttpCodeClass::C3xx => 4,
            HttpCodeClass::C4xx => 8,
            HttpCodeClass::C5xx => 16,
        }
    }
}

impl SchedulerName {
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerName::Wrr => "WRR",
            SchedulerName::LeastConn => "LEAST_CONN",
            SchedulerName::IpHash => "IP_HASH",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Wrr, Self::LeastConn, Self::IpHash]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl BackendProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendProtocol::Http => "HTTP",
            BackendProtocol::Https => "HTTPS",
            BackendProtocol::Grpc => "GRPC",
            BackendProtocol::Grpcs => "GRPCS",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Http, Self::Https, Self::Grpc, Self::Grpcs]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl HealthCheckMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCheckMethod::Head => "HEAD",
            HealthCheckMethod::Get => "GET",
        }
    }
}

/// API group and version of TKE's `TkeServiceConfig`.
pub const TKE_SERVICE_CONFIG_GROUP: &str = "cloud.tencent.com";
pub const TKE_SERVICE_CONFIG_VERSION: &str = "v1alpha1";

/// TKE's `TkeServiceConfig` (group `cloud.tencent.com`, version `v1alpha1`), as far as layer-7
/// rule settings go. clb-ingress does not own or install this CRD: it reads these objects only
/// with `--tke-service-configs`. Fields it does not use are ignored.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cloud.tencent.com",
    version = "v1alpha1",
    kind = "TkeServiceConfig",
    plural = "tkeserviceconfigs",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct TkeServiceConfigSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<TkeLoadBalancer>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TkeLoadBalancer {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub l7_listeners: Vec<TkeL7Listener>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TkeL7Listener {
    /// `HTTP` or `HTTPS`.
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub port: i64,
    /// The listener's default domain (TKE: it answers requests whose Host matches no rule).
    /// Used when the class's `unmatchedHosts` is `ListenerDefaultDomain` and the Ingress serves
    /// this host on the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_server: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<TkeDomain>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TkeDomain {
    /// The Ingress rule's host; empty: the rules without host.
    #[serde(default)]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<TkeRule>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TkeRule {
    /// The Ingress path the settings are for.
    #[serde(default)]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<TkeSession>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<TkeHealthCheck>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TkeSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expire_time: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TkeHealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_num: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub un_health_num: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_check_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_check_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_check_method: Option<String>,
}
