//! Serde wire types of the CLB (2018-03-17) and SSL (2019-12-05) API 3.0 actions used by the
//! controller and served by the emulator (clb-api.md §1.6, §3, §8). Shared by both sides.
//!
//! Conventions: field names are exactly the spec's PascalCase; optional fields are `Option` and
//! omitted when `None`; arrays default to empty and are omitted when empty on the wire only where
//! the spec makes them optional; unknown fields are ignored on decode (the API grows often);
//! every defaulted non-`Option` field also decodes an explicit `null` as its default
//! ([`null_as_default`]), since the real API answers `null` where api.json says "may return null".
//! Integers are `i64` so that out-of-range input decodes and can be refused with a proper code.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Decode an explicit `null` as the type's default (`[]`, `""`, `0`, `false`). The API answers
/// `null` for many fields api.json marks "may return null" (and the official samples show
/// `"Rules": null`, `"Targets": null`); `#[serde(default)]` alone covers only a missing field.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Envelope (§1.6)
// ---------------------------------------------------------------------------------------------

/// `Response.Error` of a failed call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiError {
    pub code: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
}

/// The inner object of a successful response: the action's fields plus `RequestId`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SuccessBody<T> {
    #[serde(flatten)]
    pub data: T,
    #[serde(rename = "RequestId")]
    pub request_id: String,
}

/// `{"Response": {..., "RequestId": "..."}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SuccessEnvelope<T> {
    #[serde(rename = "Response")]
    pub response: SuccessBody<T>,
}

/// The inner object of an error response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "Error")]
    pub error: ApiError,
    #[serde(rename = "RequestId")]
    pub request_id: String,
}

/// `{"Response": {"Error": {"Code": "...", "Message": "..."}, "RequestId": "..."}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(rename = "Response")]
    pub response: ErrorBody,
}

/// Only what every response has: used to tell errors from successes before decoding the body.
#[derive(Debug, Clone, Default, Deserialize)]
struct ProbeEnvelope {
    #[serde(rename = "Response")]
    response: ProbeBody,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ProbeBody {
    #[serde(rename = "Error", default)]
    error: Option<ApiError>,
    #[serde(rename = "RequestId", default)]
    request_id: String,
}

/// Why a response body could not be turned into a result.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not a well-formed envelope, or the action's fields do not decode.
    #[error("malformed API response: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The server answered with `Response.Error`.
    #[error("{}: {} (RequestId {})", .0.error.code, .0.error.message, .0.request_id)]
    Api(ErrorBody),
}

/// Decode a response body: `Ok((data, request_id))` or the API error (non-empty `Error.Code`).
pub fn decode_response<T: DeserializeOwned>(body: &[u8]) -> Result<(T, String), DecodeError> {
    // Serde also reads a struct from a JSON array (`[{"RequestId": ""}]`): not an envelope.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(DecodeError::Malformed(
            <serde_json::Error as serde::de::Error>::custom("the response is not a JSON object"),
        ));
    }
    let probe: ProbeEnvelope = serde_json::from_slice(body)?;
    if let Some(error) = probe.response.error.filter(|e| !e.code.is_empty()) {
        return Err(DecodeError::Api(ErrorBody {
            error,
            request_id: probe.response.request_id,
        }));
    }
    let env: SuccessEnvelope<T> =
        serde_json::from_slice(body).map_err(|e| name_the_field::<T>(body, e))?;
    Ok((env.response.data, env.response.request_id))
}

/// The error of a body whose action fields do not decode, with the path of the field that
/// failed (`Response.Status: invalid type ...`): serde_json's own error does not name it when
/// the fields sit in the flattened envelope.
fn name_the_field<T: DeserializeOwned>(body: &[u8], error: serde_json::Error) -> serde_json::Error {
    let Some(response) = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|mut v| v.get_mut("Response").map(serde_json::Value::take))
    else {
        return error;
    };
    match serde_path_to_error::deserialize::<_, T>(response) {
        Err(e) if e.path().iter().next().is_some() => {
            <serde_json::Error as serde::de::Error>::custom(format!(
                "Response.{}: {}",
                e.path(),
                e.inner()
            ))
        }
        _ => error,
    }
}

/// A response with no action fields (most async writes): only `RequestId` in the envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

// ---------------------------------------------------------------------------------------------
// Shared structures (§3.8, §8)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInfo {
    pub tag_key: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag_value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InternetAccessible {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_charge_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_max_bandwidth_out: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidthpkg_sub_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetRegionInfo {
    #[serde(default, deserialize_with = "null_as_default")]
    pub region: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub vpc_id: String,
}

/// L7 health check (on rules) or L4 health check (on listeners).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_switch: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_out: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_time: Option<i64>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recv_context: Option<String>,
    /// gRPC health-check status codes (`12`, `20,25`, `0-99`); GRPC rules only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_code: Option<String>,
}

/// `CertificateInput` (§8): by CertId, or inline PEM (CertName + CertKey + CertContent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateInput {
    #[serde(rename = "SSLMode", default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<String>,
    #[serde(
        rename = "SSLVerifyClient",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ssl_verify_client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ca_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ca_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ca_content: Option<String>,
}

/// One certificate of `MultiCertInfo.CertList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MultiCertInfo {
    #[serde(rename = "SSLMode", default, deserialize_with = "null_as_default")]
    pub ssl_mode: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cert_list: Vec<CertInfo>,
    #[serde(
        rename = "SSLVerifyClient",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ssl_verify_client: Option<String>,
}

/// `CertificateOutput` (§8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateOutput {
    #[serde(rename = "SSLMode", default, deserialize_with = "null_as_default")]
    pub ssl_mode: String,
    #[serde(
        rename = "SSLVerifyClient",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ssl_verify_client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ca_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ext_cert_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RewriteTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_listener_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_location_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_url: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_type: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Load balancers (§3.1)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoadBalancer {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub forward: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_domain: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer_vips: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_time: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub project_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<TagInfo>,
    #[serde(
        rename = "AddressIPVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub address_ip_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_zone: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_pass_to_target: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_region_info: Option<TargetRegionInfo>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attribute_flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_count: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateLoadBalancerRequest {
    pub load_balancer_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    #[serde(
        rename = "AddressIPVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub address_ip_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_zone_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_accessible: Option<InternetAccessible>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip_isp: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<TagInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_pass_to_target: Option<bool>,
    #[serde(
        rename = "LBChargeType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub lb_charge_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateLoadBalancerResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeLoadBalancersRequest {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub load_balancer_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub load_balancer_vips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_rs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub filters: Vec<Filter>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_fields: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeLoadBalancersResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer_set: Vec<LoadBalancer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteLoadBalancerRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_delete: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyLoadBalancerAttributesRequest {
    pub load_balancer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_region_info: Option<TargetRegionInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_pass_to_target: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat_pro: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_protect: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyLoadBalancerAttributesResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal_name: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Listeners (§3.2)
// ---------------------------------------------------------------------------------------------

/// `RuleOutput` (DescribeListeners `Rules`, DescribeRewrite `RewriteSet`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleOutput {
    pub location_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub domain: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub domains: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expire_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub listener_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_target: Option<RewriteTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub be_auto_created: Option<bool>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub default_server: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub http2: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Listener {
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub listener_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocol: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expire_time: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sni_switch: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<RuleOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_enable: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateListenerRequest {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<i64>,
    pub protocol: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub listener_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_cert_info: Option<MultiCertInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni_switch: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expire_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_enable: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateListenerResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub listener_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeListenersRequest {
    pub load_balancer_id: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub listener_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeListenersResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub listeners: Vec<Listener>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyListenerRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expire_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni_switch: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_enable: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_cert_info: Option<MultiCertInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteListenerRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteLoadBalancerListenersRequest {
    pub load_balancer_id: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub listener_ids: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Rules and domains (§3.3)
// ---------------------------------------------------------------------------------------------

/// `RuleInput` of CreateRule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleInput {
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expire_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_cert_info: Option<MultiCertInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_server: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRuleRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<RuleInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRuleResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub location_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteRuleRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub location_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_default_server_domain: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyRuleRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    pub location_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expire_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyDomainRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    pub domain: String,
    pub new_domain: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyDomainAttributesRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_domain: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub new_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_cert_info: Option<MultiCertInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_server: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_default_server_domain: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Targets (§3.4)
// ---------------------------------------------------------------------------------------------

/// `Target` of RegisterTargets / DeregisterTargets / ModifyTargetWeight / RsWeightRule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    #[serde(default, deserialize_with = "null_as_default")]
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eni_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterTargetsRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Vec<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// DeregisterTargets has the same shape as RegisterTargets.
pub type DeregisterTargetsRequest = RegisterTargetsRequest;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyTargetWeightRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Vec<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

/// `BatchTarget` of Batch(De)RegisterTargets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchTarget {
    #[serde(default, deserialize_with = "null_as_default")]
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eni_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchTargetsRequest {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Vec<BatchTarget>,
}

pub type BatchRegisterTargetsRequest = BatchTargetsRequest;
pub type BatchDeregisterTargetsRequest = BatchTargetsRequest;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchTargetsResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub fail_listener_id_set: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub type BatchRegisterTargetsResponse = BatchTargetsResponse;
pub type BatchDeregisterTargetsResponse = BatchTargetsResponse;

/// `RsWeightRule` of BatchModifyTargetWeight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RsWeightRule {
    #[serde(default, deserialize_with = "null_as_default")]
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Vec<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchModifyTargetWeightRequest {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub modify_list: Vec<RsWeightRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTargetsRequest {
    pub load_balancer_id: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub listener_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub filters: Vec<Filter>,
}

/// `Backend` of DescribeTargets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Backend {
    #[serde(rename = "Type", default, deserialize_with = "null_as_default")]
    pub backend_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub port: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub weight: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub public_ip_addresses: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub private_ip_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eni_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `RuleTargets` of DescribeTargets (L7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleTargets {
    pub location_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub domain: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Vec<Backend>,
}

/// `ListenerBackend` of DescribeTargets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListenerBackend {
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocol: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub port: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<RuleTargets>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Vec<Backend>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTargetsResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub listeners: Vec<ListenerBackend>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTargetHealthRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer_ids: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub listener_ids: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub location_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetHealth {
    #[serde(rename = "IP", default, deserialize_with = "null_as_default")]
    pub ip: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub port: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub health_status: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub target_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status_detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status_detial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleHealth {
    #[serde(default, deserialize_with = "null_as_default")]
    pub location_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Vec<TargetHealth>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListenerHealth {
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub listener_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocol: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub port: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<RuleHealth>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoadBalancerHealth {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub listeners: Vec<ListenerHealth>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTargetHealthResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancers: Vec<LoadBalancerHealth>,
}

// ---------------------------------------------------------------------------------------------
// Tasks and quota (§3.5)
// ---------------------------------------------------------------------------------------------

/// DescribeTaskStatus `Status`: 0 success.
pub const TASK_SUCCEEDED: i64 = 0;
/// DescribeTaskStatus `Status`: 1 failed.
pub const TASK_FAILED: i64 = 1;
/// DescribeTaskStatus `Status`: 2 in progress.
pub const TASK_RUNNING: i64 = 2;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTaskStatusRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTaskStatusResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Quota {
    pub quota_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_current: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub quota_limit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeQuotaResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub quota_set: Vec<Quota>,
}

/// Tag ModifyResourceTags (2018-08-13): add or change (`replace_tags`) and remove
/// (`delete_tags`) tags of one resource. At least one of the two, neither an empty array.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyResourceTagsRequest {
    /// Six-segment resource description, e.g. `qcs::clb:ap-guangzhou:uin/:clb/lb-1`.
    pub resource: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_tags: Vec<TagInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_tags: Vec<TagKeyObject>,
}

/// A tag key (ModifyResourceTags `DeleteTags`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagKeyObject {
    pub tag_key: String,
}

/// VPC DescribeSubnets (2017-03-12) by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSubnetsRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnet_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSubnetsResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub subnet_set: Vec<Subnet>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: u64,
}

/// One subnet of DescribeSubnets (the fields clb-ingress reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Subnet {
    #[serde(default, deserialize_with = "null_as_default")]
    pub vpc_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subnet_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subnet_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cidr_block: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub zone: String,
}

// ---------------------------------------------------------------------------------------------
// Rewrites (§3.6)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AutoRewriteRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub domains: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rewrite_codes: Vec<i64>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub take_urls: Vec<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RewriteLocationMap {
    pub source_location_id: String,
    pub target_location_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_url: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_domain: Option<String>,
}

/// ManualRewrite and DeleteRewrite share this shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManualRewriteRequest {
    pub load_balancer_id: String,
    pub source_listener_id: String,
    pub target_listener_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rewrite_infos: Vec<RewriteLocationMap>,
}

pub type DeleteRewriteRequest = ManualRewriteRequest;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRewriteRequest {
    pub load_balancer_id: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub source_listener_ids: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub source_location_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRewriteResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub rewrite_set: Vec<RuleOutput>,
}

// ---------------------------------------------------------------------------------------------
// SSL certificate service (service `ssl`, version 2019-12-05), the subset the emulator serves
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadCertificateRequest {
    pub certificate_public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_private_key: Option<String>,
    /// `SVR` (server, default) or `CA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadCertificateResponse {
    pub certificate_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeCertificateRequest {
    pub certificate_id: String,
}

/// One certificate as DescribeCertificate / DescribeCertificates report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateDetail {
    pub certificate_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub alias: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub certificate_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subject_alt_name: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_time: Option<String>,
}

pub type DescribeCertificateResponse = CertificateDetail;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeCertificatesRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeCertificatesResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_count: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub certificates: Vec<CertificateDetail>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteCertificateRequest {
    pub certificate_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteCertificateResponse {
    pub delete_result: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_envelope_decodes_fields_and_request_id() {
        let body = br#"{"Response": {"ListenerIds": ["lbl-bzfmg9m6"], "RequestId": "6082314c-030c-429d-9eae-2dc6b159b5b9", "NewField": 1}}"#;
        let (resp, id): (CreateListenerResponse, String) = decode_response(body).expect("decodes");
        assert_eq!(resp.listener_ids, vec!["lbl-bzfmg9m6"]);
        assert_eq!(id, "6082314c-030c-429d-9eae-2dc6b159b5b9");
    }

    #[test]
    fn error_envelope_decodes_as_an_api_error_with_code_and_request_id() {
        let body = br#"{"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}, "RequestId": "ed93f3cb"}}"#;
        match decode_response::<CreateListenerResponse>(body) {
            Err(DecodeError::Api(e)) => {
                assert_eq!(e.error.code, "AuthFailure.SignatureFailure");
                assert_eq!(e.request_id, "ed93f3cb");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[test]
    fn optional_fields_are_omitted_and_odd_names_keep_the_spec_spelling() {
        let req = CreateLoadBalancerRequest {
            load_balancer_type: "OPEN".into(),
            address_ip_version: Some("IPV4".into()),
            lb_charge_type: Some("POSTPAID_BY_HOUR".into()),
            ..Default::default()
        };
        let json = serde_json::to_string(&req).expect("serialises");
        assert_eq!(
            json,
            r#"{"LoadBalancerType":"OPEN","AddressIPVersion":"IPV4","LBChargeType":"POSTPAID_BY_HOUR"}"#
        );
        let cert = CertificateInput {
            ssl_mode: Some("UNIDIRECTIONAL".into()),
            cert_id: Some("Fm8Wpag8".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&cert).expect("serialises"),
            r#"{"SSLMode":"UNIDIRECTIONAL","CertId":"Fm8Wpag8"}"#
        );
    }

    #[test]
    fn target_health_uses_the_upper_case_ip_field() {
        let th: TargetHealth =
            serde_json::from_str(r#"{"IP":"10.0.0.1","Port":80,"HealthStatus":true,"TargetId":"x","HealthStatusDetial":"Alive"}"#)
                .expect("decodes");
        assert_eq!(th.ip, "10.0.0.1");
        assert_eq!(th.health_status_detial.as_deref(), Some("Alive"));
    }
}
