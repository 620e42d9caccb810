//! The client's error type and the one-time classification of every failure into a bounded
//! [`ErrorCategory`], used alike for retry policy, Event reasons and metric labels.
//!
//! Classification of `InternalError`: the §1.7 table shows Terraform deliberately not retrying
//! it ("retry won't fix anything") while the SDK retryers ignore it. We classify it `Transient`
//! and retry it only a few times (see `retry::RetryPolicy::transient_attempts`): the emulator
//! injects it as a transient fault, and real CLB returns it for short backend hiccups too. A
//! permanent `InternalError` therefore costs at most a few extra calls before surfacing.

use std::time::Duration;

/// A bounded classification of a failed call. `as_str` is PascalCase and stable: it is used as
/// the Kubernetes Event reason suffix and as a metric label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCategory {
    /// `RequestLimitExceeded*`: the per-action rate limit was hit. Retryable.
    Throttled,
    /// `FailedOperation.ResourceInOperating` (another task runs on the LB). Retryable.
    Busy,
    /// The LB / listener / rule / resource does not exist.
    NotFound,
    /// A quota is exhausted (`LimitExceeded*`, `ResourceInsufficient*`).
    Quota,
    /// The request itself is wrong (`InvalidParameter*`, `MissingParameter`, ...).
    InvalidInput,
    /// Credentials or permissions (`AuthFailure*`, `UnauthorizedOperation*`).
    Auth,
    /// Server or network trouble that may go away (`InternalError`, `ServiceUnavailable`,
    /// connection errors, non-200 HTTP, task wait timeouts). Retryable a few times.
    Transient,
    /// An async task finished with status 1 (failed).
    TaskFailed,
    /// Everything else (unclassified cloud codes, undecodable responses, local config).
    Other,
}

impl ErrorCategory {
    /// Every category, for exhaustive metric initialisation and tests.
    pub const ALL: [ErrorCategory; 9] = [
        Self::Throttled,
        Self::Busy,
        Self::NotFound,
        Self::Quota,
        Self::InvalidInput,
        Self::Auth,
        Self::Transient,
        Self::TaskFailed,
        Self::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "Throttled",
            Self::Busy => "Busy",
            Self::NotFound => "NotFound",
            Self::Quota => "Quota",
            Self::InvalidInput => "InvalidInput",
            Self::Auth => "Auth",
            Self::Transient => "Transient",
            Self::TaskFailed => "TaskFailed",
            Self::Other => "Other",
        }
    }

    /// Whether the client retries this category at all (attempt caps live in the policy).
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Busy | Self::Transient)
    }

    /// Classify a cloud error code (`Response.Error.Code`).
    pub fn from_code(code: &str) -> Self {
        classify_code(code)
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cloud codes meaning "the addressed thing does not exist" that do not end in `NotFound`.
const NOT_FOUND_CODES: &[&str] = &["InvalidParameter.LBIdNotFound", "ResourceNotFound"];
/// Codes that end in `NotFound` but mean bad input, not a missing resource.
const NOT_FOUND_EXCEPTIONS: &[&str] = &["InvalidParameter.RegionNotFound"];
/// Codes meaning "the LB is busy; try later".
const BUSY_CODES: &[&str] = &[
    "FailedOperation.ResourceInOperating",
    // The LB is not in a normal state (e.g. still being created); rewrite actions return it.
    "FailedOperation.InvalidLBStatus",
];
/// Server-side codes worth a few retries.
const TRANSIENT_PREFIXES: &[&str] = &["InternalError", "ServiceUnavailable"];
/// Codes (and their sub-codes) that mean the request is malformed or unsupported.
const INVALID_INPUT_PREFIXES: &[&str] = &[
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
    "UnknownParameter",
    "InvalidAction",
    "InvalidFilter",
    "NoSuchVersion",
    "NoSuchProduct",
    "ActionOffline",
    "UnsupportedOperation",
    "UnsupportedRegion",
    "UnsupportedProtocol",
    "RequestSizeLimitExceeded",
    "DryRunOperation",
];
const AUTH_PREFIXES: &[&str] = &[
    "AuthFailure",
    "UnauthorizedOperation",
    "OperationDenied",
    "IpInBlacklist",
    "IpNotInWhitelist",
];
const QUOTA_PREFIXES: &[&str] = &["LimitExceeded", "ResourceInsufficient"];

/// `code == prefix` or `code` starts with `prefix.` (a sub-code).
fn has_prefix(code: &str, prefix: &str) -> bool {
    code == prefix
        || code
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn classify_code(code: &str) -> ErrorCategory {
    let any = |prefixes: &[&str]| prefixes.iter().any(|p| has_prefix(code, p));
    // `LimitExceeded.RateLimitExceeded` is the SSL service's throttling code (ssl api.json), not
    // a quota: it must be retried as throttling.
    if has_prefix(code, "RequestLimitExceeded") || code == "LimitExceeded.RateLimitExceeded" {
        return ErrorCategory::Throttled;
    }
    if BUSY_CODES.contains(&code) {
        return ErrorCategory::Busy;
    }
    if any(AUTH_PREFIXES) {
        return ErrorCategory::Auth;
    }
    if !NOT_FOUND_EXCEPTIONS.contains(&code)
        && (any(NOT_FOUND_CODES) || code.ends_with("NotFound") || code.ends_with("NotExist"))
    {
        return ErrorCategory::NotFound;
    }
    if any(QUOTA_PREFIXES) {
        return ErrorCategory::Quota;
    }
    if any(INVALID_INPUT_PREFIXES) {
        return ErrorCategory::InvalidInput;
    }
    if any(TRANSIENT_PREFIXES) {
        return ErrorCategory::Transient;
    }
    ErrorCategory::Other
}

/// Longest prefix of an unexpected (non-envelope) response body kept in an error.
pub const BODY_SNIPPET_MAX: usize = 256;

/// Every way a CLB / SSL API call can fail. No variant ever holds credentials: requests are
/// signed, the SecretKey never leaves the signer, and bodies are not kept (only a short snippet
/// of an unexpected non-JSON reply).
#[derive(Debug, thiserror::Error)]
pub enum ClbError {
    /// The API answered with `Response.Error`.
    #[error("{action} failed: {code}: {message} (RequestId {request_id})")]
    Api {
        action: &'static str,
        code: String,
        message: String,
        request_id: String,
    },
    /// No usable HTTP response (connect, TLS, timeout, reset).
    #[error("{action}: transport error")]
    Transport {
        action: &'static str,
        /// True when the request certainly never reached the server (connection refused, DNS),
        /// so even a non-idempotent write may be retried.
        not_sent: bool,
        #[source]
        source: reqwest::Error,
    },
    /// A non-200 HTTP status (the SDKs treat these as transport errors, §1.2).
    #[error("{action}: HTTP status {status}: {snippet}")]
    HttpStatus {
        action: &'static str,
        status: u16,
        snippet: String,
    },
    /// A 200 response whose body is not the expected envelope / type.
    #[error("{action}: cannot decode the response (RequestId {request_id:?})")]
    Decode {
        action: &'static str,
        request_id: Option<String>,
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be serialised.
    #[error("{action}: cannot encode the request")]
    Encode {
        action: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A response that decoded but lacks something the caller needs (e.g. no ListenerIds).
    #[error("{action}: response (RequestId {request_id}) lacks {what}")]
    MissingInResponse {
        action: &'static str,
        request_id: String,
        what: &'static str,
    },
    /// A batch call reported listeners it could not change (`FailListenerIdSet`).
    #[error("{action}: failed for listeners {failed:?}: {message} (RequestId {request_id})")]
    BatchPartialFailure {
        action: &'static str,
        failed: Vec<String>,
        message: String,
        request_id: String,
    },
    /// An async task ended with status 1.
    #[error("task {task_id} failed: {message}")]
    TaskFailed { task_id: String, message: String },
    /// DescribeTaskStatus returned a status other than 0, 1, 2.
    #[error("task {task_id}: unexpected status {status}")]
    TaskUnknownStatus { task_id: String, status: i64 },
    /// The task was still running when the wait timed out.
    #[error("task {task_id} still running after {waited:?}")]
    TaskTimeout { task_id: String, waited: Duration },
    /// A request the client refuses to send (e.g. an empty id list that the API would read as
    /// "all listeners").
    #[error("{action}: refusing to send: {reason}")]
    InvalidRequest {
        action: &'static str,
        reason: &'static str,
    },
    /// Bad client configuration (endpoint URL, header values).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A response body larger than the client accepts (the read stops there).
    #[error("{action}: response body over {limit} bytes")]
    ResponseTooLarge { action: &'static str, limit: usize },
    /// The client's write gate refused a write before it was sent (this replica cannot prove
    /// it is the leader). Nothing reached the server.
    #[error("{action}: not sent: {reason}")]
    Fenced {
        action: &'static str,
        reason: String,
    },
    /// The role provider (web identity, instance role) has no valid credentials to sign with.
    /// Nothing was sent.
    #[error("{action}: not sent: no valid {provider} credentials")]
    NoCredentials {
        action: &'static str,
        provider: &'static str,
        #[source]
        source: std::sync::Arc<crate::providers::ProviderError>,
    },
}

impl ClbError {
    /// The bounded category, computed from the variant (and cloud code) alone.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Api { code, .. } => classify_code(code),
            Self::Transport { .. } | Self::HttpStatus { .. } | Self::TaskTimeout { .. } => {
                ErrorCategory::Transient
            }
            Self::TaskFailed { .. } => ErrorCategory::TaskFailed,
            Self::NoCredentials { .. } => ErrorCategory::Auth,
            Self::InvalidRequest { .. } => ErrorCategory::InvalidInput,
            Self::BatchPartialFailure { .. } => ErrorCategory::Other,
            Self::Decode { .. }
            | Self::Encode { .. }
            | Self::MissingInResponse { .. }
            | Self::TaskUnknownStatus { .. }
            | Self::Config(_)
            | Self::ResponseTooLarge { .. }
            | Self::Fenced { .. } => ErrorCategory::Other,
        }
    }

    /// The cloud error code, if the server returned one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The RequestId of the failed call, if the server assigned one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. }
            | Self::MissingInResponse { request_id, .. }
            | Self::BatchPartialFailure { request_id, .. } => Some(request_id),
            Self::Decode { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The action that failed (tasks report the task id instead).
    pub fn action(&self) -> Option<&'static str> {
        match self {
            Self::Api { action, .. }
            | Self::Transport { action, .. }
            | Self::HttpStatus { action, .. }
            | Self::Decode { action, .. }
            | Self::Encode { action, .. }
            | Self::MissingInResponse { action, .. }
            | Self::InvalidRequest { action, .. }
            | Self::BatchPartialFailure { action, .. }
            | Self::Fenced { action, .. }
            | Self::NoCredentials { action, .. } => Some(action),
            _ => None,
        }
    }

    /// Refused by the write gate before sending (see [`ClbError::Fenced`]).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    pub fn is_not_found(&self) -> bool {
        self.category() == ErrorCategory::NotFound
    }

    /// Whether a retry of a *non-idempotent* write is safe: the server certainly did not apply
    /// it (it answered with an error envelope, or the connection was never made).
    pub fn request_was_rejected(&self) -> bool {
        match self {
            Self::Api { .. } | Self::NoCredentials { .. } => true,
            Self::Transport { not_sent, .. } => *not_sent,
            _ => false,
        }
    }
}

/// Keep at most [`BODY_SNIPPET_MAX`] bytes (on a char boundary) of an unexpected body.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(BODY_SNIPPET_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorCategory::*;

    #[test]
    fn cloud_codes_are_classified_once_into_bounded_categories() {
        let cases = [
            ("RequestLimitExceeded", Throttled),
            ("RequestLimitExceeded.UinLimitExceeded", Throttled),
            (
                "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
                Throttled,
            ),
            ("RequestLimitExceeded.IPLimitExceeded", Throttled),
            // The SSL service's throttling code (ssl/v20191205 api.json).
            ("LimitExceeded.RateLimitExceeded", Throttled),
            ("FailedOperation.ResourceInOperating", Busy),
            ("FailedOperation.InvalidLBStatus", Busy),
            ("InvalidParameter.LBIdNotFound", NotFound),
            ("InvalidParameter.ListenerIdNotFound", NotFound),
            ("InvalidParameter.LocationNotFound", NotFound),
            ("InvalidParameter.SomeRewriteNotFound", NotFound),
            ("ResourceNotFound", NotFound),
            ("ResourceNotFound.CertificateNotExist", NotFound),
            ("FailedOperation.CertificateNotFound", NotFound),
            ("InvalidParameter.RegionNotFound", InvalidInput),
            ("LimitExceeded", Quota),
            ("LimitExceeded.ListenerQuota", Quota),
            ("ResourceInsufficient", Quota),
            ("InvalidParameter", InvalidInput),
            ("InvalidParameter.PortCheckFailed", InvalidInput),
            ("InvalidParameterValue.Duplicate", InvalidInput),
            ("InvalidParameterCombination", InvalidInput),
            ("MissingParameter", InvalidInput),
            ("UnknownParameter", InvalidInput),
            ("InvalidAction", InvalidInput),
            ("NoSuchVersion", InvalidInput),
            ("UnsupportedOperation", InvalidInput),
            ("RequestSizeLimitExceeded", InvalidInput),
            ("AuthFailure.SignatureFailure", Auth),
            ("AuthFailure.SignatureExpire", Auth),
            ("AuthFailure.SecretIdNotFound", Auth),
            ("UnauthorizedOperation", Auth),
            ("InternalError", Transient),
            ("InternalError.DbError", Transient),
            ("ServiceUnavailable", Transient),
            ("FailedOperation", Other),
            ("FailedOperation.TargetNumCheckRisk", Other),
            ("ResourceInUse", Other),
            ("SomethingNew", Other),
            ("", Other),
        ];
        for (code, want) in cases {
            assert_eq!(ErrorCategory::from_code(code), want, "{code}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        assert_eq!(ErrorCategory::from_code("LimitExceededButNot"), Other);
        assert_eq!(ErrorCategory::from_code("InternalErrorish"), Other);
    }

    #[test]
    fn category_names_are_pascal_case_and_unique() {
        let names: std::collections::BTreeSet<_> =
            ErrorCategory::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCategory::ALL.len());
        for n in names {
            assert!(n.chars().next().unwrap().is_ascii_uppercase());
            assert!(n.chars().all(|c| c.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn only_throttled_busy_and_transient_are_retryable() {
        let retryable: Vec<_> = ErrorCategory::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(retryable, vec![Throttled, Busy, Transient]);
    }

    #[test]
    fn api_errors_keep_code_message_and_request_id() {
        let e = ClbError::Api {
            action: "CreateRule",
            code: "LimitExceeded".into(),
            message: "too many rules".into(),
            request_id: "r-1".into(),
        };
        assert_eq!(e.category(), Quota);
        assert_eq!(e.code(), Some("LimitExceeded"));
        assert_eq!(e.request_id(), Some("r-1"));
        assert_eq!(e.action(), Some("CreateRule"));
        assert_eq!(
            e.to_string(),
            "CreateRule failed: LimitExceeded: too many rules (RequestId r-1)"
        );
        assert!(e.request_was_rejected());
    }

    #[test]
    fn snippets_are_bounded_and_char_safe() {
        let body = "é".repeat(BODY_SNIPPET_MAX);
        let s = snippet(body.as_bytes());
        assert!(s.len() <= BODY_SNIPPET_MAX);
        assert!(s.chars().all(|c| c == 'é'));
    }
}
