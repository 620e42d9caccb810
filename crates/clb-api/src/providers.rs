//! Role credentials that expire and must be fetched again: OIDC web identity (TKE pod identity:
//! a projected service account token exchanged at STS `AssumeRoleWithWebIdentity`) and the CVM
//! instance role (the metadata service). Every answer is size-bounded and checked (fields
//! present, header-safe, not yet expired, not absurdly long-lived) before it replaces anything;
//! no error, log line or `Debug` output carries a key, a session token or the OIDC token.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::client::{
    Endpoint, JSON_CONTENT_TYPE, REQUEST_CLIENT, X_TC_ACTION, X_TC_REGION, X_TC_REQUEST_CLIENT,
    X_TC_TIMESTAMP, X_TC_VERSION, is_loopback_host,
};
use super::credentials::{Credentials, CredentialsError, SecretString};
use super::types::{self, DecodeError};

/// Environment variable TKE pod identity sets to the CAM role ARN.
pub const ENV_ROLE_ARN: &str = "TKE_ROLE_ARN";
/// Environment variable TKE pod identity sets to the projected OIDC token file.
pub const ENV_WEB_IDENTITY_TOKEN_FILE: &str = "TKE_WEB_IDENTITY_TOKEN_FILE";
/// Environment variable TKE pod identity sets to the CAM OIDC identity provider id.
pub const ENV_PROVIDER_ID: &str = "TKE_PROVIDER_ID";
/// Environment variable TKE pod identity sets to the cluster's region (sent to STS).
pub const ENV_TKE_REGION: &str = "TKE_REGION";

/// STS API version of `AssumeRoleWithWebIdentity`.
pub const STS_VERSION: &str = "2018-08-13";
/// The STS action exchanging an OIDC token for temporary credentials (api.json: `skip_sign`).
pub const STS_ACTION: &str = "AssumeRoleWithWebIdentity";
/// The `Authorization` value of an unsigned (`skip_sign`) action.
pub const SKIP_SIGN_AUTHORIZATION: &str = "SKIP";
/// Where STS is reached by default.
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.tencentcloudapi.com";
/// The CVM metadata service host (plain http is expected there, and only there).
pub const METADATA_HOST: &str = "metadata.tencentyun.com";
/// Where the CVM metadata service is reached by default.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://metadata.tencentyun.com";
/// The metadata path listing the instance's role (first line) and, below it, its credentials.
pub const METADATA_ROLE_PATH: &str = "/latest/meta-data/cam/security-credentials/";
/// `DurationSeconds` asked of STS unless configured (STS's own default).
pub const DEFAULT_ROLE_DURATION_SECS: u32 = 7200;
/// The longest `DurationSeconds` STS accepts.
pub const MAX_ROLE_DURATION_SECS: u32 = 43_200;
/// `RoleSessionName` sent unless configured (CAM shows it in the audit trail).
pub const DEFAULT_ROLE_SESSION_NAME: &str = "clb-ingress";
/// Longest STS or metadata answer read (real ones are about 2 KiB).
pub const MAX_PROVIDER_RESPONSE_BYTES: usize = 64 * 1024;
/// Largest OIDC token file read (projected service account tokens are about 1 KiB).
pub const MAX_WEB_IDENTITY_TOKEN_BYTES: u64 = 16 * 1024;
/// Longest temporary credential fields accepted (api.json: token at most 4096 bytes, id and
/// key at most 1024).
const MAX_TOKEN_LEN: usize = 4096;
const MAX_KEY_LEN: usize = 1024;
/// Credentials claiming to live longer than this are refused (STS issues at most 12 hours).
pub const MAX_CREDENTIAL_LIFETIME_SECS: i64 = 24 * 3600;
/// Whole-exchange timeout of one STS or metadata request.
pub const PROVIDER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout of one STS or metadata request.
pub const PROVIDER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Credentials are refreshed when a third of their lifetime, or this much, remains, whichever
/// is sooner.
pub const REFRESH_LEAD_MAX_SECS: i64 = 300;
/// First wait after a failed refresh; doubled per failure up to [`REFRESH_RETRY_CAP`].
pub const REFRESH_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait between refresh attempts after failures.
pub const REFRESH_RETRY_CAP: Duration = Duration::from_secs(30);

/// Why role credentials could not be fetched. Never carries a key, a session token, the OIDC
/// token or a response body.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot read the web identity token file {path}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the web identity token file {path} is empty")]
    TokenFileEmpty { path: PathBuf },
    #[error("the web identity token file {path} is larger than {limit} bytes")]
    TokenFileTooLarge { path: PathBuf, limit: u64 },
    #[error("{provider}: request to {url} failed")]
    Request {
        provider: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{provider}: {url} answered HTTP {status}")]
    HttpStatus {
        provider: &'static str,
        url: String,
        status: u16,
    },
    #[error("{provider}: the answer is larger than {limit} bytes")]
    TooLarge {
        provider: &'static str,
        limit: usize,
    },
    #[error("STS {STS_ACTION} failed: {code}: {message} (RequestId {request_id})")]
    Sts {
        code: String,
        message: String,
        request_id: String,
    },
    #[error("{provider}: the answer has Code {code:?}, not \"Success\"")]
    NotSuccess {
        provider: &'static str,
        code: String,
    },
    #[error("{provider}: malformed answer: {detail}")]
    Malformed {
        provider: &'static str,
        detail: String,
    },
    #[error("{provider}: the credentials expire at {expired_time}, not after now ({now})")]
    Expired {
        provider: &'static str,
        expired_time: i64,
        now: i64,
    },
    #[error(
        "{provider}: the credentials claim to live {lifetime} s, more than the {MAX_CREDENTIAL_LIFETIME_SECS} s accepted"
    )]
    TooLongLived {
        provider: &'static str,
        lifetime: i64,
    },
    #[error("{provider}: the answered credentials are unusable")]
    Invalid {
        provider: &'static str,
        #[source]
        source: CredentialsError,
    },
    #[error("{provider}: {url} names no role (is a CAM role bound to this CVM instance?)")]
    NoRole { provider: &'static str, url: String },
    #[error("{0}")]
    Config(String),
}

/// Temporary credentials and when they stop working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub credentials: Credentials,
    /// Unix seconds (the issuer's `ExpiredTime`).
    pub expires_at: i64,
    /// Unix seconds (local clock) when they were received.
    pub issued_at: i64,
}

impl Issued {
    /// When to fetch new ones: once a third of the lifetime, or [`REFRESH_LEAD_MAX_SECS`],
    /// remains, whichever is sooner.
    pub fn refresh_at(&self) -> i64 {
        let lifetime = (self.expires_at - self.issued_at).max(0);
        self.expires_at - (lifetime / 3).min(REFRESH_LEAD_MAX_SECS)
    }
}

/// The STS `AssumeRoleWithWebIdentity` exchange of TKE pod identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentityConfig {
    /// `RoleArn`, e.g. `qcs::cam::uin/100000000001:roleName/clb-ingress`.
    pub role_arn: String,
    /// The projected service account token, re-read on every exchange (the kubelet rotates it).
    pub token_file: PathBuf,
    /// `ProviderId`: the CAM OIDC identity provider.
    pub provider_id: String,
    /// `X-TC-Region` of the STS call.
    pub region: String,
    /// STS base URL (`https://sts.tencentcloudapi.com`, or the emulator on loopback).
    pub endpoint: reqwest::Url,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `DurationSeconds` (1..=43200).
    pub duration_secs: u32,
}

/// The CVM instance role from the metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRoleConfig {
    /// Metadata service base URL (`http://metadata.tencentyun.com`, or loopback in tests).
    pub endpoint: reqwest::Url,
}

/// Which role provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSource {
    WebIdentity(WebIdentityConfig),
    InstanceRole(InstanceRoleConfig),
}

impl RoleSource {
    /// Bounded name, for logs and errors.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::WebIdentity(_) => "web identity",
            Self::InstanceRole(_) => "instance role",
        }
    }
}

/// Parse an STS endpoint: a URL or a bare host (then https). Plain http only for loopback.
pub fn parse_sts_endpoint(text: &str) -> Result<reqwest::Url, ProviderError> {
    match Endpoint::parse(text) {
        Ok(Endpoint::Url(url)) => Ok(url),
        Ok(_) => Err(ProviderError::Config(format!(
            "STS endpoint {text:?}: not a URL"
        ))),
        Err(e) => Err(ProviderError::Config(format!("STS endpoint: {e}"))),
    }
}

/// Parse a metadata service base URL: plain http is allowed for `metadata.tencentyun.com` and
/// loopback hosts only (anything else needs https); the path must be `/`.
pub fn parse_metadata_endpoint(text: &str) -> Result<reqwest::Url, ProviderError> {
    let text = text.trim();
    let url = reqwest::Url::parse(text)
        .map_err(|e| ProviderError::Config(format!("metadata endpoint {text:?}: {e}")))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let refuse = |why: &str| {
        Err(ProviderError::Config(format!(
            "metadata endpoint {text:?}: {why}"
        )))
    };
    if !matches!(url.scheme(), "http" | "https") || host.is_empty() {
        return refuse("needs http:// or https:// and a host");
    }
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return refuse("only scheme, host and port are allowed");
    }
    if url.scheme() == "http"
        && !host.eq_ignore_ascii_case(METADATA_HOST)
        && !is_loopback_host(&host)
    {
        return refuse(&format!(
            "plain http:// is only allowed for {METADATA_HOST} or a loopback host"
        ));
    }
    Ok(url)
}

/// `RoleSessionName` rules: 2 to 128 of `A-Za-z0-9` and `=,.@_-`.
pub fn valid_session_name(name: &str) -> bool {
    (2..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=,.@_-".contains(&b))
}

/// Fetches role credentials over its own HTTP client (no redirects, bounded timeouts, no
/// proxy for the metadata service or loopback).
#[derive(Debug, Clone)]
pub struct RoleProvider {
    source: Arc<RoleSource>,
    http: reqwest::Client,
}

impl RoleProvider {
    pub fn new(source: RoleSource) -> Result<Self, ProviderError> {
        let url = match &source {
            RoleSource::WebIdentity(c) => {
                if c.duration_secs == 0 || c.duration_secs > MAX_ROLE_DURATION_SECS {
                    return Err(ProviderError::Config(format!(
                        "role duration {} s is outside 1..={MAX_ROLE_DURATION_SECS}",
                        c.duration_secs
                    )));
                }
                if !valid_session_name(&c.session_name) {
                    return Err(ProviderError::Config(format!(
                        "role session name {:?} must be 2-128 characters of A-Za-z0-9=,.@_-",
                        c.session_name
                    )));
                }
                for (what, value) in [
                    ("role ARN", &c.role_arn),
                    ("OIDC provider id", &c.provider_id),
                ] {
                    if value.trim().is_empty() {
                        return Err(ProviderError::Config(format!("the {what} is empty")));
                    }
                }
                if HeaderValue::from_str(&c.region).is_err() {
                    return Err(ProviderError::Config(
                        "the STS region is not a valid header value".into(),
                    ));
                }
                &c.endpoint
            }
            RoleSource::InstanceRole(c) => &c.endpoint,
        };
        let host = url.host_str().unwrap_or_default();
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(PROVIDER_REQUEST_TIMEOUT)
            .connect_timeout(PROVIDER_CONNECT_TIMEOUT)
            .user_agent(REQUEST_CLIENT)
            .redirect(reqwest::redirect::Policy::none());
        if is_loopback_host(host) || matches!(source, RoleSource::InstanceRole(_)) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| ProviderError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            source: Arc::new(source),
            http,
        })
    }

    pub fn source(&self) -> &RoleSource {
        &self.source
    }

    pub fn name(&self) -> &'static str {
        self.source.name()
    }

    /// Fetch credentials now (`now`: Unix seconds of the caller's clock).
    pub async fn fetch(&self, now: i64) -> Result<Issued, ProviderError> {
        match &*self.source {
            RoleSource::WebIdentity(c) => self.assume_role_with_web_identity(c, now).await,
            RoleSource::InstanceRole(c) => self.instance_role(c, now).await,
        }
    }

    async fn assume_role_with_web_identity(
        &self,
        c: &WebIdentityConfig,
        now: i64,
    ) -> Result<Issued, ProviderError> {
        let token = read_token_file(&c.token_file)?;
        let body = serde_json::json!({
            "ProviderId": c.provider_id,
            "WebIdentityToken": token.expose(),
            "RoleArn": c.role_arn,
            "RoleSessionName": c.session_name,
            "DurationSeconds": c.duration_secs,
        });
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static(SKIP_SIGN_AUTHORIZATION),
        );
        headers.insert(X_TC_ACTION, HeaderValue::from_static(STS_ACTION));
        headers.insert(X_TC_VERSION, HeaderValue::from_static(STS_VERSION));
        headers.insert(X_TC_TIMESTAMP, HeaderValue::from(now));
        if !c.region.is_empty() {
            let region = HeaderValue::from_str(&c.region).map_err(|_| {
                ProviderError::Config("the STS region is not a valid header value".into())
            })?;
            headers.insert(X_TC_REGION, region);
        }
        headers.insert(
            X_TC_REQUEST_CLIENT,
            HeaderValue::from_static(REQUEST_CLIENT),
        );
        let request = self
            .http
            .post(c.endpoint.clone())
            .headers(headers)
            .body(body.to_string());
        let body = self.exchange(request, &c.endpoint).await?;
        parse_sts_response(&body, now)
    }

    async fn instance_role(
        &self,
        c: &InstanceRoleConfig,
        now: i64,
    ) -> Result<Issued, ProviderError> {
        let provider = self.name();
        let list_url = c
            .endpoint
            .join(METADATA_ROLE_PATH)
            .map_err(|e| ProviderError::Config(format!("metadata URL: {e}")))?;
        let list = self
            .exchange(self.http.get(list_url.clone()), &list_url)
            .await?;
        let role = parse_role_list(&list).ok_or_else(|| ProviderError::NoRole {
            provider,
            url: list_url.to_string(),
        })?;
        let role_url = list_url
            .join(&role)
            .map_err(|e| ProviderError::Config(format!("metadata URL: {e}")))?;
        let body = self
            .exchange(self.http.get(role_url.clone()), &role_url)
            .await?;
        parse_metadata_credentials(&body, now)
    }

    /// Send, require HTTP 200, read at most [`MAX_PROVIDER_RESPONSE_BYTES`].
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        url: &reqwest::Url,
    ) -> Result<Vec<u8>, ProviderError> {
        let provider = self.name();
        let failed = |source| ProviderError::Request {
            provider,
            url: url.to_string(),
            source,
        };
        let mut response = request.send().await.map_err(failed)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(ProviderError::HttpStatus {
                provider,
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let too_large = ProviderError::TooLarge {
            provider,
            limit: MAX_PROVIDER_RESPONSE_BYTES,
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_PROVIDER_RESPONSE_BYTES as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_PROVIDER_RESPONSE_BYTES {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The OIDC token, read fresh (bounded, trimmed, non-empty).
fn read_token_file(path: &Path) -> Result<SecretString, ProviderError> {
    let io = |source| ProviderError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_WEB_IDENTITY_TOKEN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_WEB_IDENTITY_TOKEN_BYTES {
        return Err(ProviderError::TokenFileTooLarge {
            path: path.to_path_buf(),
            limit: MAX_WEB_IDENTITY_TOKEN_BYTES,
        });
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(ProviderError::TokenFileEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(SecretString::new(token))
}

/// `Response` of `AssumeRoleWithWebIdentity`; every field optional so that a missing one is
/// named in the error rather than failing the whole decode.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsAnswer {
    credentials: Option<StsCredentials>,
    expired_time: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    token: Option<String>,
    tmp_secret_id: Option<String>,
    tmp_secret_key: Option<String>,
}

/// The metadata service's credentials document.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetadataAnswer {
    tmp_secret_id: Option<String>,
    tmp_secret_key: Option<String>,
    token: Option<String>,
    expired_time: Option<i64>,
    code: Option<String>,
}

/// An STS answer: the credentials, or the API error, or what is wrong with it.
pub fn parse_sts_response(body: &[u8], now: i64) -> Result<Issued, ProviderError> {
    let provider = "web identity";
    let answer = match types::decode_response::<StsAnswer>(body) {
        Ok((answer, _)) => answer,
        Err(DecodeError::Api(e)) => {
            return Err(ProviderError::Sts {
                code: e.error.code,
                message: bounded(&e.error.message),
                request_id: e.request_id,
            });
        }
        Err(DecodeError::Malformed(e)) => {
            return Err(ProviderError::Malformed {
                provider,
                detail: format!("not the STS JSON envelope ({e})"),
            });
        }
    };
    let creds = answer.credentials.ok_or(ProviderError::Malformed {
        provider,
        detail: "Response.Credentials is missing".into(),
    })?;
    issued(
        provider,
        [
            ("Credentials.TmpSecretId", creds.tmp_secret_id),
            ("Credentials.TmpSecretKey", creds.tmp_secret_key),
            ("Credentials.Token", creds.token),
        ],
        answer.expired_time,
        now,
    )
}

/// The metadata service's credentials document.
pub fn parse_metadata_credentials(body: &[u8], now: i64) -> Result<Issued, ProviderError> {
    let provider = "instance role";
    let answer: MetadataAnswer =
        serde_json::from_slice(body).map_err(|e| ProviderError::Malformed {
            provider,
            detail: format!("not a JSON credentials document ({e})"),
        })?;
    if let Some(code) = answer.code.filter(|c| c != "Success") {
        return Err(ProviderError::NotSuccess {
            provider,
            code: bounded(&code),
        });
    }
    issued(
        provider,
        [
            ("TmpSecretId", answer.tmp_secret_id),
            ("TmpSecretKey", answer.tmp_secret_key),
            ("Token", answer.token),
        ],
        answer.expired_time,
        now,
    )
}

/// The role name the metadata service lists: its first non-empty line, if it looks like a CAM
/// role name (1-128 of `A-Za-z0-9+=,.@_-`).
pub fn parse_role_list(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let role = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let ok = (1..=128).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    ok.then(|| role.to_string())
}

/// Check the three fields and the expiry, and build the credentials.
fn issued(
    provider: &'static str,
    [(id_name, id), (key_name, key), (token_name, token)]: [(&'static str, Option<String>); 3],
    expired_time: Option<i64>,
    now: i64,
) -> Result<Issued, ProviderError> {
    let field = |name: &'static str, value: Option<String>, max: usize| match value
        .filter(|v| !v.trim().is_empty())
    {
        None => Err(ProviderError::Malformed {
            provider,
            detail: format!("{name} is missing or empty"),
        }),
        Some(v) if v.len() > max => Err(ProviderError::Malformed {
            provider,
            detail: format!("{name} is longer than {max} bytes"),
        }),
        Some(v) => Ok(v),
    };
    let id = field(id_name, id, MAX_KEY_LEN)?;
    let key = field(key_name, key, MAX_KEY_LEN)?;
    let token = field(token_name, token, MAX_TOKEN_LEN)?;
    let expires_at = expired_time.ok_or(ProviderError::Malformed {
        provider,
        detail: "ExpiredTime is missing".into(),
    })?;
    if expires_at <= now {
        return Err(ProviderError::Expired {
            provider,
            expired_time: expires_at,
            now,
        });
    }
    if expires_at - now > MAX_CREDENTIAL_LIFETIME_SECS {
        return Err(ProviderError::TooLongLived {
            provider,
            lifetime: expires_at - now,
        });
    }
    let credentials = Credentials::new(id, SecretString::new(key), Some(SecretString::new(token)))
        .map_err(|source| ProviderError::Invalid { provider, source })?;
    Ok(Issued {
        credentials,
        expires_at,
        issued_at: now,
    })
}

/// A server-chosen text kept in an error: at most 200 bytes, on a char boundary.
fn bounded(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// An error and its causes in one line (`a: b: c`), each text once.
pub fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// The wait before the next attempt after `failures` failed refreshes in a row.
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    REFRESH_RETRY_INITIAL
        .saturating_mul(factor)
        .min(REFRESH_RETRY_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const KEY: &str = "TMPsecretKEYvalue0123456789";
    const TOKEN: &str = "TMPsessionTOKENvalue0123456789";

    fn sts_body(expired: i64) -> String {
        format!(
            r#"{{"Response":{{"Credentials":{{"Token":"{TOKEN}","TmpSecretId":"AKIDtmp","TmpSecretKey":"{KEY}"}},"ExpiredTime":{expired},"Expiration":"2027-01-15T08:00:00Z","RequestId":"r-1"}}}}"#
        )
    }

    fn no_secret_in(e: &ProviderError) {
        let text = format!("{e} {e:?}");
        assert!(!text.contains(KEY) && !text.contains(TOKEN), "{text}");
    }

    #[test]
    fn an_sts_answer_gives_temporary_credentials_with_their_expiry() {
        let issued = parse_sts_response(sts_body(NOW + 7200).as_bytes(), NOW).unwrap();
        assert_eq!(issued.credentials.secret_id(), "AKIDtmp");
        assert_eq!(issued.credentials.secret_key().expose(), KEY);
        assert_eq!(issued.credentials.session_token().unwrap().expose(), TOKEN);
        assert_eq!(issued.expires_at, NOW + 7200);
        assert!(!format!("{issued:?}").contains(KEY));
        assert!(!format!("{issued:?}").contains(TOKEN));
    }

    #[test]
    fn refresh_happens_when_a_third_or_five_minutes_remain_whichever_is_sooner() {
        let at = |life: i64| {
            Issued {
                credentials: Credentials::new("AKID", SecretString::new("k"), None).unwrap(),
                expires_at: NOW + life,
                issued_at: NOW,
            }
            .refresh_at()
                - NOW
        };
        assert_eq!(at(7200), 7200 - 300, "two hours: five minutes before");
        assert_eq!(at(9), 6, "nine seconds: three before");
        assert_eq!(at(600), 400, "ten minutes: a third");
    }

    #[test]
    fn an_sts_error_envelope_keeps_its_code_message_and_request_id() {
        let body = br#"{"Response":{"Error":{"Code":"InvalidParameter.WebIdentityTokenError","Message":"bad token"},"RequestId":"r-9"}}"#;
        let e = parse_sts_response(body, NOW).unwrap_err();
        assert!(
            matches!(&e, ProviderError::Sts { code, request_id, .. }
                if code == "InvalidParameter.WebIdentityTokenError" && request_id == "r-9"),
            "{e:?}"
        );
        assert!(e.to_string().contains("bad token"));
    }

    #[test]
    fn hostile_sts_answers_are_refused_with_a_clear_error() {
        let cases: Vec<(String, &str)> = vec![
            ("<html>oops</html>".into(), "envelope"),
            ("[]".into(), "envelope"),
            (
                r#"{"Response":{"RequestId":"r"}}"#.into(),
                "Credentials is missing",
            ),
            (
                sts_body(NOW + 60).replace(r#""TmpSecretKey":"#, r#""Other":"#),
                "TmpSecretKey is missing",
            ),
            (sts_body(NOW + 60).replace(TOKEN, ""), "Token is missing"),
            (
                sts_body(NOW + 60).replace(",\"ExpiredTime\"", ",\"X\""),
                "ExpiredTime is missing",
            ),
            (sts_body(NOW - 1), "not after now"),
            (sts_body(NOW), "not after now"),
            (sts_body(NOW + 10 * 86_400), "claim to live"),
            (
                sts_body(NOW + 60).replace(TOKEN, &"t".repeat(5000)),
                "longer than 4096",
            ),
            (sts_body(NOW + 60).replace(TOKEN, "bad token"), "unusable"),
            (
                sts_body(NOW + 60).replace(&(NOW + 60).to_string(), "\"soon\""),
                "envelope",
            ),
        ];
        for (body, want) in cases {
            let e = parse_sts_response(body.as_bytes(), NOW).unwrap_err();
            assert!(e.to_string().contains(want), "{body}: {e}");
            no_secret_in(&e);
        }
    }

    #[test]
    fn a_metadata_document_gives_credentials_and_a_failed_code_is_refused() {
        let doc = format!(
            r#"{{"TmpSecretId":"AKIDcvm","TmpSecretKey":"{KEY}","ExpiredTime":{},"Expiration":"x","Token":"{TOKEN}","Code":"Success"}}"#,
            NOW + 3600
        );
        let issued = parse_metadata_credentials(doc.as_bytes(), NOW).unwrap();
        assert_eq!(issued.credentials.secret_id(), "AKIDcvm");
        let failed = doc.replace("\"Success\"", "\"Failed\"");
        let e = parse_metadata_credentials(failed.as_bytes(), NOW).unwrap_err();
        assert!(matches!(e, ProviderError::NotSuccess { .. }), "{e:?}");
        for bad in ["not json", "{}", "null"] {
            let e = parse_metadata_credentials(bad.as_bytes(), NOW).unwrap_err();
            assert!(matches!(e, ProviderError::Malformed { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn the_role_list_gives_its_first_line_when_it_is_a_role_name() {
        assert_eq!(
            parse_role_list(b"CVM_QcsRole\n").as_deref(),
            Some("CVM_QcsRole")
        );
        assert_eq!(
            parse_role_list(b"\n  role-a\nrole-b\n").as_deref(),
            Some("role-a")
        );
        for bad in [
            &b""[..],
            b"\n\n",
            b"../../etc",
            b"a b",
            b"<html>",
            &[0xff, 0xfe],
        ] {
            assert_eq!(parse_role_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn metadata_endpoints_allow_plain_http_only_for_the_metadata_host_and_loopback() {
        for ok in [
            DEFAULT_METADATA_ENDPOINT,
            "http://127.0.0.1:8181",
            "http://localhost:1/",
            "https://meta.example.com",
        ] {
            assert!(parse_metadata_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://169.254.0.23",
            "http://metadata.example.com",
            "ftp://127.0.0.1",
            "http://127.0.0.1/latest",
            "metadata.tencentyun.com",
        ] {
            assert!(parse_metadata_endpoint(bad).is_err(), "{bad}");
        }
        assert!(parse_sts_endpoint("http://10.0.0.1").is_err());
        assert!(parse_sts_endpoint("sts.tencentcloudapi.com").is_ok());
    }

    #[test]
    fn role_session_names_follow_the_cam_rules() {
        assert!(valid_session_name("clb-ingress"));
        assert!(valid_session_name("a.b@c=d,e_f"));
        for bad in ["x", "has space", "slash/y", &"n".repeat(129)] {
            assert!(!valid_session_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_token_file_is_bounded_trimmed_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "eyJhbGciOi.payload.sig\n").unwrap();
        assert_eq!(
            read_token_file(&path).unwrap().expose(),
            "eyJhbGciOi.payload.sig"
        );
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(
            read_token_file(&path),
            Err(ProviderError::TokenFileEmpty { .. })
        ));
        std::fs::write(&path, "x".repeat(MAX_WEB_IDENTITY_TOKEN_BYTES as usize + 1)).unwrap();
        assert!(matches!(
            read_token_file(&path),
            Err(ProviderError::TokenFileTooLarge { .. })
        ));
        assert!(matches!(
            read_token_file(&dir.path().join("missing")),
            Err(ProviderError::TokenFile { .. })
        ));
    }

    #[test]
    fn retries_back_off_from_one_second_to_the_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(5), Duration::from_secs(16));
        assert_eq!(retry_delay(6), REFRESH_RETRY_CAP);
        assert_eq!(retry_delay(60), REFRESH_RETRY_CAP);
    }
}
