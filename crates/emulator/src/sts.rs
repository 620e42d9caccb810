//! Temporary credentials the emulator issues, as strictly as the real services: STS
//! `AssumeRoleWithWebIdentity` (version 2018-08-13; api.json marks it `skip_sign`, so it is the
//! one action accepted with `Authorization: SKIP` and no `X-TC-Token`) for the roles in
//! `settings.sts.roles`, and the CVM metadata service's instance role
//! (`/latest/meta-data/cam/security-credentials/[<role>]`). Every issued key becomes a temporary
//! credential of `settings.credentials` (its token required, refused once expired).

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actions::common::decode;
use crate::config::{Credential, DEFAULT_INSTANCE_ROLE_LIFETIME_SECS};
use crate::core::Core;
use crate::error::{ApiFailure, codes};

pub use clb_api::providers::{
    MAX_ROLE_DURATION_SECS, METADATA_ROLE_PATH, SKIP_SIGN_AUTHORIZATION, STS_ACTION, STS_VERSION,
};

/// SecretId prefix of keys issued by `AssumeRoleWithWebIdentity`.
pub const STS_KEY_PREFIX: &str = "AKIDSTS";
/// SecretId prefix of instance role keys.
pub const INSTANCE_KEY_PREFIX: &str = "AKIDCVM";
/// Issued keys expired longer than this are forgotten (they would answer SecretIdNotFound
/// instead of TokenFailure from then on).
pub const FORGET_EXPIRED_AFTER_SECS: i64 = 3600;
/// `DurationSeconds` when the request has none (STS default).
pub const DEFAULT_DURATION_SECS: i64 = 7200;

/// Error codes of `AssumeRoleWithWebIdentity` (official SDK error list).
pub mod sts_codes {
    pub const WEB_IDENTITY_TOKEN_ERROR: &str = "InvalidParameter.WebIdentityTokenError";
    pub const PARAM_ERROR: &str = "InvalidParameter.ParamError";
    pub const OVER_LIMIT: &str = "InvalidParameter.OverLimit";
    pub const ROLE_NOT_FOUND: &str = "ResourceNotFound.RoleNotFound";
}

/// The request carries `Authorization: SKIP` (an unsigned `skip_sign` action).
pub fn is_skip_sign(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == SKIP_SIGN_AUTHORIZATION)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The checks an unsigned request must pass before its body is read: only STS
/// `AssumeRoleWithWebIdentity`, version 2018-08-13, a fresh timestamp, a region, a JSON body,
/// and no session token.
pub fn check_unsigned(headers: &HeaderMap, now_s: i64) -> Result<(), ApiFailure> {
    let action = header(headers, "x-tc-action")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiFailure::missing("X-TC-Action"))?;
    if action != STS_ACTION {
        return Err(ApiFailure::new(
            codes::AUTH_INVALID_AUTHORIZATION,
            format!(
                "Authorization: SKIP is accepted only for {STS_ACTION}; `{action}` needs a TC3-HMAC-SHA256 signature."
            ),
        ));
    }
    let version =
        header(headers, "x-tc-version").ok_or_else(|| ApiFailure::missing("X-TC-Version"))?;
    if version != STS_VERSION {
        return Err(ApiFailure::new(
            codes::NO_SUCH_VERSION,
            format!("The API version `{version}` does not exist for sts (expected {STS_VERSION})."),
        ));
    }
    crate::server::fresh_timestamp(headers, now_s)?;
    if header(headers, "x-tc-region").is_none_or(|r| r.trim().is_empty()) {
        return Err(ApiFailure::missing("X-TC-Region"));
    }
    let json = header(headers, "content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiFailure::invalid(
            "Content-Type must be application/json.",
        ));
    }
    if headers.contains_key("x-tc-token") {
        return Err(ApiFailure::new(
            codes::AUTH_INVALID_AUTHORIZATION,
            format!("{STS_ACTION} is called without X-TC-Token."),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AssumeRequest {
    provider_id: String,
    web_identity_token: String,
    role_arn: String,
    role_session_name: String,
    #[serde(default)]
    duration_seconds: Option<Value>,
}

fn param_error(message: impl Into<String>) -> ApiFailure {
    ApiFailure::new(sts_codes::PARAM_ERROR, message)
}

/// `AssumeRoleWithWebIdentity` (headers already checked by [`check_unsigned`]).
pub fn assume_role_with_web_identity(
    core: &mut Core,
    now_s: i64,
    body: &[u8],
) -> Result<Value, ApiFailure> {
    let req: AssumeRequest = decode(body)?;
    for (name, value) in [
        ("ProviderId", &req.provider_id),
        ("WebIdentityToken", &req.web_identity_token),
        ("RoleArn", &req.role_arn),
    ] {
        if value.trim().is_empty() {
            return Err(param_error(format!("{name} must not be empty.")));
        }
    }
    if !clb_api::providers::valid_session_name(&req.role_session_name) {
        return Err(param_error(
            "RoleSessionName must be 2-128 characters of A-Za-z0-9 and =,.@_-.",
        ));
    }
    let duration = match &req.duration_seconds {
        None => DEFAULT_DURATION_SECS,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| param_error("DurationSeconds must be an integer."))?,
    };
    if duration < 1 {
        return Err(param_error(format!(
            "DurationSeconds {duration} must be at least 1."
        )));
    }
    if duration > i64::from(MAX_ROLE_DURATION_SECS) {
        return Err(ApiFailure::new(
            sts_codes::OVER_LIMIT,
            format!("DurationSeconds {duration} is over the limit of {MAX_ROLE_DURATION_SECS}."),
        ));
    }
    let role = core
        .settings
        .sts
        .roles
        .iter()
        .find(|r| r.role_arn == req.role_arn)
        .ok_or_else(|| {
            ApiFailure::new(
                sts_codes::ROLE_NOT_FOUND,
                format!("The role `{}` does not exist.", req.role_arn),
            )
        })?;
    if role.provider_id != req.provider_id {
        return Err(param_error(format!(
            "The identity provider `{}` is not trusted by role `{}`.",
            req.provider_id, req.role_arn
        )));
    }
    if role.web_identity_token != req.web_identity_token {
        return Err(ApiFailure::new(
            sts_codes::WEB_IDENTITY_TOKEN_ERROR,
            "The web identity token is invalid.",
        ));
    }
    let lifetime = core
        .settings
        .sts
        .lifetime_secs
        .map_or(duration, |s| i64::try_from(s).unwrap_or(i64::MAX));
    let issued = issue(core, STS_KEY_PREFIX, now_s, lifetime);
    Ok(json!({
        "Credentials": {
            "Token": issued.token,
            "TmpSecretId": issued.secret_id,
            "TmpSecretKey": issued.secret_key,
        },
        "ExpiredTime": issued.expires_at,
        "Expiration": expiration(issued.expires_at),
    }))
}

/// The metadata service's answer for `path` (below `/latest/meta-data/cam/`): the role name
/// list, or the role's current credentials (new ones once half their lifetime has passed);
/// `None` (404) without an instance role or for another role name.
pub fn metadata(core: &mut Core, now_s: i64, role: Option<&str>) -> Option<String> {
    let bound = core.settings.sts.instance_role.clone()?;
    let Some(role) = role else {
        return Some(bound);
    };
    if role != bound {
        return None;
    }
    let lifetime = core
        .settings
        .sts
        .lifetime_secs
        .map_or(DEFAULT_INSTANCE_ROLE_LIFETIME_SECS as i64, |s| {
            i64::try_from(s).unwrap_or(i64::MAX)
        });
    let current = core
        .settings
        .credentials
        .iter()
        .filter(|c| c.secret_id.starts_with(INSTANCE_KEY_PREFIX))
        .filter_map(|c| Some((c, c.expires_at?)))
        .filter(|(_, exp)| now_s < exp - lifetime / 2)
        .max_by_key(|(_, exp)| *exp)
        .map(|(c, exp)| Issued {
            secret_id: c.secret_id.clone(),
            secret_key: c.secret_key.clone(),
            token: c.token.clone().unwrap_or_default(),
            expires_at: exp,
        });
    let issued = match current {
        Some(issued) => issued,
        None => issue(core, INSTANCE_KEY_PREFIX, now_s, lifetime),
    };
    Some(
        json!({
            "TmpSecretId": issued.secret_id,
            "TmpSecretKey": issued.secret_key,
            "ExpiredTime": issued.expires_at,
            "Expiration": expiration(issued.expires_at),
            "Token": issued.token,
            "Code": "Success",
        })
        .to_string(),
    )
}

struct Issued {
    secret_id: String,
    secret_key: String,
    token: String,
    expires_at: i64,
}

/// A new temporary key valid for `lifetime` seconds, added to the accepted credentials (and
/// issued keys expired long ago forgotten).
fn issue(core: &mut Core, prefix: &str, now_s: i64, lifetime: i64) -> Issued {
    let issued = Issued {
        secret_id: format!("{prefix}{}", core.random_alphanumeric(29)),
        secret_key: core.random_alphanumeric(32),
        token: core.random_alphanumeric(96),
        expires_at: now_s.saturating_add(lifetime),
    };
    core.settings.credentials.retain(|c| {
        let issued_here =
            c.secret_id.starts_with(STS_KEY_PREFIX) || c.secret_id.starts_with(INSTANCE_KEY_PREFIX);
        !(issued_here
            && c.expires_at
                .is_some_and(|t| t + FORGET_EXPIRED_AFTER_SECS < now_s))
    });
    core.settings.credentials.push(Credential::temporary(
        issued.secret_id.clone(),
        issued.secret_key.clone(),
        issued.token.clone(),
        Some(issued.expires_at),
    ));
    issued
}

/// `2018-12-04T09:06:16Z`.
fn expiration(unix_s: i64) -> String {
    jiff::Timestamp::from_second(unix_s)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
