//! API errors the emulator answers with (clb-api.md §1.8, §5): a code and a message, rendered
//! into the `Response.Error` envelope by the server.

/// Error codes used by the emulator (the real Tencent Cloud spellings).
pub mod codes {
    pub const AUTH_SIGNATURE_EXPIRE: &str = "AuthFailure.SignatureExpire";
    pub const AUTH_SIGNATURE_FAILURE: &str = "AuthFailure.SignatureFailure";
    pub const AUTH_SECRET_ID_NOT_FOUND: &str = "AuthFailure.SecretIdNotFound";
    pub const AUTH_INVALID_AUTHORIZATION: &str = "AuthFailure.InvalidAuthorization";
    pub const AUTH_TOKEN_FAILURE: &str = "AuthFailure.TokenFailure";
    pub const INVALID_ACTION: &str = "InvalidAction";
    pub const NO_SUCH_VERSION: &str = "NoSuchVersion";
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    pub const INVALID_PARAMETER_VALUE: &str = "InvalidParameterValue";
    pub const INVALID_PARAMETER_VALUE_LENGTH: &str = "InvalidParameterValue.Length";
    pub const INVALID_PARAMETER_VALUE_RANGE: &str = "InvalidParameterValue.Range";
    pub const INVALID_PARAMETER_VALUE_DUPLICATE: &str = "InvalidParameterValue.Duplicate";
    pub const INVALID_PARAMETER_VALUE_INVALID_FILTER: &str = "InvalidParameterValue.InvalidFilter";
    pub const INVALID_PARAMETER_COMBINATION: &str = "InvalidParameterCombination";
    pub const LB_ID_NOT_FOUND: &str = "InvalidParameter.LBIdNotFound";
    pub const LISTENER_ID_NOT_FOUND: &str = "InvalidParameter.ListenerIdNotFound";
    pub const LOCATION_NOT_FOUND: &str = "InvalidParameter.LocationNotFound";
    pub const PORT_CHECK_FAILED: &str = "InvalidParameter.PortCheckFailed";
    pub const PROTOCOL_CHECK_FAILED: &str = "InvalidParameter.ProtocolCheckFailed";
    pub const REWRITE_ALREADY_EXIST: &str = "InvalidParameter.RewriteAlreadyExist";
    pub const SOME_REWRITE_NOT_FOUND: &str = "InvalidParameter.SomeRewriteNotFound";
    pub const REGION_NOT_FOUND: &str = "InvalidParameter.RegionNotFound";
    pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
    pub const REQUEST_LIMIT_EXCEEDED: &str = "RequestLimitExceeded";
    pub const RESOURCE_IN_OPERATING: &str = "FailedOperation.ResourceInOperating";
    pub const FAILED_OPERATION: &str = "FailedOperation";
    pub const TARGET_NUM_CHECK_RISK: &str = "FailedOperation.TargetNumCheckRisk";
    pub const CERTIFICATE_NOT_FOUND: &str = "FailedOperation.CertificateNotFound";
    pub const RESOURCE_INSUFFICIENT: &str = "ResourceInsufficient";
    pub const INTERNAL_ERROR: &str = "InternalError";
    pub const UNSUPPORTED_OPERATION: &str = "UnsupportedOperation";
}

/// One API error: `Response.Error.Code` and `Response.Error.Message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiFailure {
    pub code: String,
    pub message: String,
}

impl ApiFailure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn lb_not_found(id: &str) -> Self {
        Self::new(
            codes::LB_ID_NOT_FOUND,
            format!("LoadBalancer not exist: [{id}]"),
        )
    }

    pub fn listener_not_found(id: &str) -> Self {
        Self::new(
            codes::LISTENER_ID_NOT_FOUND,
            format!("some ListenerId [{id}] not found"),
        )
    }

    pub fn location_not_found(what: &str) -> Self {
        Self::new(codes::LOCATION_NOT_FOUND, format!("no rule matches {what}"))
    }

    /// The §4 message of a write on a CLB that has a running task.
    pub fn in_operating(lb: &str) -> Self {
        Self::new(
            codes::RESOURCE_IN_OPERATING,
            format!(
                "Loadbalancer({lb}) is not in normal desState, maybe some tasks are being processed, please try later."
            ),
        )
    }

    pub fn missing(field: &str) -> Self {
        Self::new(
            codes::MISSING_PARAMETER,
            format!("The request is missing a required parameter `{field}`."),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMETER, message)
    }

    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMETER_VALUE, message)
    }

    pub fn combination(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMETER_COMBINATION, message)
    }

    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(codes::LIMIT_EXCEEDED, message)
    }
}
