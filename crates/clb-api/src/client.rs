//! The Tencent Cloud API 3.0 transport: endpoint selection, TC3 signing of the exact body bytes,
//! the JSON envelope, retries of the retryable categories with backoff, per-action token buckets
//! and task polling. Typed per-action methods live in `clb::actions` on top of [`ClbClient::call`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, debug, field, info_span, warn};

use super::clock::{Clock, Jitter, RngJitter, SystemClock};
use super::credentials::{Credentials, SourceStamp};
use super::error::{ClbError, ErrorCategory, snippet};
use super::observe::{CallResult, ClbObserver, NoopObserver, ReloadOutcome, ReloadTrigger};
use super::providers::{Issued, ProviderError, RoleProvider, describe_chain, retry_delay};
use super::ratelimit::{RateLimitConfig, RateLimiter};
use super::retry::{Backoff, RetryPolicy};
use super::sign::{SigningInput, authorization, sign};
use super::types::{self, DecodeError};

/// Root domain of the China site (`<service>.tencentcloudapi.com`).
pub const DEFAULT_ROOT_DOMAIN: &str = "tencentcloudapi.com";
/// Content type sent and signed (the SDKs' value).
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// `X-TC-RequestClient` value.
pub const REQUEST_CLIENT: &str = concat!("clb-ingress/", env!("CARGO_PKG_VERSION"));
/// Whole-request timeout (connect + send + receive) of one attempt.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout of one attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on attempts of one call across all categories (a safety net above the
/// per-category caps of the retry policy).
pub const MAX_ATTEMPTS_PER_CALL: u32 = 16;
/// Largest response body read from the API (a Describe page of 100 CLBs is well under 1 MiB);
/// a larger one is an error, never buffered whole.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// First DescribeTaskStatus poll after a submit (tasks take ~100 ms at best).
pub const DEFAULT_TASK_POLL_INITIAL: Duration = Duration::from_millis(50);
/// Longest interval between task polls.
pub const DEFAULT_TASK_POLL_CAP: Duration = Duration::from_secs(1);
/// Give up waiting for a task after this long (LB creation can take tens of seconds).
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(300);
/// Fraction of a task poll interval that is randomised.
pub const TASK_POLL_JITTER_FRACTION: f64 = 0.2;
/// Cloud error codes after which the credentials file is re-read and, if it now holds other
/// credentials, the call is repeated once with them: an expired or replaced STS token
/// (`TokenFailure`), a temporary or rotated key that no longer exists (`SecretIdNotFound`,
/// `InvalidSecretId`), and a key rotated under the same SecretId (`SignatureFailure`).
/// Not `SignatureExpire` (clock skew: new credentials do not help), `InvalidAuthorization` (a
/// malformed header), `MFAFailure` or `UnauthorizedOperation` (permissions, not credentials).
pub const CREDENTIAL_REFRESH_CODES: &[&str] = &[
    "AuthFailure.TokenFailure",
    "AuthFailure.SecretIdNotFound",
    "AuthFailure.InvalidSecretId",
    "AuthFailure.SignatureFailure",
];
/// At most one credentials re-read per this interval is caused by auth failures (a storm of
/// failing calls costs one file read, not one per call).
pub const AUTH_RELOAD_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// The watcher reads the credentials file at least this often even when its size, mtime and
/// inode look unchanged (a rewrite within one mtime tick that keeps the size).
pub const CREDENTIALS_FULL_RELOAD: Duration = Duration::from_secs(30);

pub(crate) const X_TC_ACTION: HeaderName = HeaderName::from_static("x-tc-action");
pub(crate) const X_TC_VERSION: HeaderName = HeaderName::from_static("x-tc-version");
pub(crate) const X_TC_TIMESTAMP: HeaderName = HeaderName::from_static("x-tc-timestamp");
pub(crate) const X_TC_REGION: HeaderName = HeaderName::from_static("x-tc-region");
const X_TC_TOKEN: HeaderName = HeaderName::from_static("x-tc-token");
const X_TC_LANGUAGE: HeaderName = HeaderName::from_static("x-tc-language");
pub(crate) const X_TC_REQUEST_CLIENT: HeaderName = HeaderName::from_static("x-tc-requestclient");

/// The Tencent Cloud service an action belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Cloud Load Balancer, version 2018-03-17.
    Clb,
    /// SSL certificate service, version 2019-12-05.
    Ssl,
    /// Virtual Private Cloud, version 2017-03-12 (only DescribeSubnets: the VPC of a subnet).
    Vpc,
    /// Tag service, version 2018-08-13 (only ModifyResourceTags: tags of an existing CLB, which
    /// no CLB action can change).
    Tag,
}

impl Service {
    /// Name in the host and in the credential scope.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Clb => "clb",
            Self::Ssl => "ssl",
            Self::Vpc => "vpc",
            Self::Tag => "tag",
        }
    }

    /// `X-TC-Version`.
    pub const fn version(self) -> &'static str {
        match self {
            Self::Clb => "2018-03-17",
            Self::Ssl => "2019-12-05",
            Self::Vpc => "2017-03-12",
            Self::Tag => "2018-08-13",
        }
    }
}

/// One API action: its name, service, and whether repeating it after an ambiguous failure
/// (timeout, 5xx, connection reset) is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Op {
    pub name: &'static str,
    pub service: Service,
    /// Reads are idempotent; writes are retried only when the server provably did not apply
    /// them (it answered with an error envelope, or no connection was made).
    pub idempotent: bool,
}

impl Op {
    pub const fn read(name: &'static str) -> Self {
        Self {
            name,
            service: Service::Clb,
            idempotent: true,
        }
    }

    pub const fn write(name: &'static str) -> Self {
        Self {
            name,
            service: Service::Clb,
            idempotent: false,
        }
    }

    pub const fn ssl(self) -> Self {
        Self {
            service: Service::Ssl,
            ..self
        }
    }

    pub const fn vpc(self) -> Self {
        Self {
            service: Service::Vpc,
            ..self
        }
    }

    pub const fn tag(self) -> Self {
        Self {
            service: Service::Tag,
            ..self
        }
    }
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://<service>.<root_domain>/`: the nearest region (SDK default).
    Nearest { root_domain: String },
    /// `https://clb.<region>.<root_domain>/` for CLB (SSL stays `ssl.<root_domain>`).
    RegionPinned { root_domain: String },
    /// One explicit base URL for every service, e.g. the emulator `http://127.0.0.1:PORT`.
    Url(reqwest::Url),
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::Nearest {
            root_domain: DEFAULT_ROOT_DOMAIN.to_string(),
        }
    }
}

impl Endpoint {
    /// Parse an explicit endpoint: a URL (`http://127.0.0.1:8080`) or a bare host[:port]
    /// (`clb.ap-guangzhou.tencentcloudapi.com`, then HTTPS). Only the root path is allowed, and
    /// plain `http://` only for a loopback host (127.0.0.0/8, ::1, `localhost`): signed requests
    /// and session tokens never cross a network unencrypted.
    pub fn parse(text: &str) -> Result<Self, ClbError> {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("https://{text}")
        };
        let url = reqwest::Url::parse(&with_scheme)
            .map_err(|e| ClbError::Config(format!("endpoint {text:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClbError::Config(format!(
                "endpoint {text:?}: scheme must be http or https"
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ClbError::Config(format!("endpoint {text:?}: no host")));
        }
        if url.path() != "/" || url.query().is_some() {
            return Err(ClbError::Config(format!(
                "endpoint {text:?}: the API path is always /"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ClbError::Config(format!(
                "endpoint {text:?}: credentials do not belong in the URL"
            )));
        }
        require_tls_off_loopback(&url)?;
        Ok(Self::Url(url))
    }

    /// The URL and the `Host` header value (what is signed) for a service.
    fn target(&self, service: Service, region: &str) -> Result<(reqwest::Url, String), ClbError> {
        let host = match self {
            Self::Nearest { root_domain } => format!("{}.{root_domain}", service.name()),
            Self::RegionPinned { root_domain } => match service {
                Service::Clb | Service::Vpc if !region.is_empty() => {
                    format!("{}.{region}.{root_domain}", service.name())
                }
                _ => format!("{}.{root_domain}", service.name()),
            },
            Self::Url(url) => {
                require_tls_off_loopback(url)?;
                let host = url.host_str().unwrap_or_default();
                // `Url::port` is None when the port is the scheme's default, which is exactly
                // when hyper would omit it from the Host header.
                let host = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                };
                return Ok((url.clone(), host));
            }
        };
        let url = reqwest::Url::parse(&format!("https://{host}/"))
            .map_err(|e| ClbError::Config(format!("host {host:?}: {e}")))?;
        Ok((url, host))
    }
}

/// Refuses a plain `http://` URL unless its host is loopback (127.0.0.0/8, `::1` or
/// `localhost`).
fn require_tls_off_loopback(url: &reqwest::Url) -> Result<(), ClbError> {
    if url.scheme() != "http" || is_loopback_host(url.host_str().unwrap_or_default()) {
        return Ok(());
    }
    Err(ClbError::Config(format!(
        "endpoint {url}: plain http:// is only allowed for a loopback host (127.0.0.0/8, ::1, \
         localhost, such as the local emulator); use https:// for {}",
        url.host_str().unwrap_or_default()
    )))
}

/// `host` (as in a URL, IPv6 in brackets) is a loopback address or `localhost`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// How `wait_task` polls DescribeTaskStatus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskWaitConfig {
    pub initial: Duration,
    pub cap: Duration,
    pub timeout: Duration,
}

impl Default for TaskWaitConfig {
    fn default() -> Self {
        Self {
            initial: DEFAULT_TASK_POLL_INITIAL,
            cap: DEFAULT_TASK_POLL_CAP,
            timeout: DEFAULT_TASK_TIMEOUT,
        }
    }
}

/// Everything configurable about the client except credentials and injected dependencies.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `X-TC-Region`, e.g. `ap-guangzhou` (required by CLB actions).
    pub region: String,
    pub endpoint: Endpoint,
    /// `X-TC-Language` (`en-US` / `zh-CN`); `None` sends nothing (server default).
    pub language: Option<String>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimitConfig,
    pub task_wait: TaskWaitConfig,
}

impl ClientConfig {
    pub fn new(region: impl Into<String>, endpoint: Endpoint) -> Self {
        Self {
            region: region.into(),
            endpoint,
            language: Some("en-US".to_string()),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
            rate_limits: RateLimitConfig::default(),
            task_wait: TaskWaitConfig::default(),
        }
    }
}

/// A successful response: the action's data and the RequestId (the TaskId of async writes).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    pub request_id: String,
    pub data: T,
}

/// The CLB/SSL API client. Cheap to clone; clones share the HTTP pool, the token buckets and
/// the credentials.
#[derive(Clone, Debug)]
pub struct ClbClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    /// None only before a role provider's first fetch.
    credentials: RwLock<Option<Current>>,
    /// Where the credentials came from, re-read on change and on credential errors.
    credentials_file: Option<PathBuf>,
    /// Role credentials (web identity, instance role), fetched again before they expire.
    role: Option<RoleProvider>,
    reload: tokio::sync::Mutex<ReloadState>,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    limiter: Arc<RateLimiter>,
    observer: Arc<dyn ClbObserver>,
    write_gate: Option<Arc<dyn WriteGate>>,
    clb_target: (reqwest::Url, String),
    ssl_target: (reqwest::Url, String),
    vpc_target: (reqwest::Url, String),
    tag_target: (reqwest::Url, String),
}

/// Builder for [`ClbClient`]: inject the clock, jitter, shared rate limiter and observer.
#[derive(Debug)]
pub struct ClbClientBuilder {
    config: ClientConfig,
    credentials: Option<Credentials>,
    credentials_file: Option<PathBuf>,
    role: Option<RoleProvider>,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    limiter: Option<Arc<RateLimiter>>,
    observer: Arc<dyn ClbObserver>,
    write_gate: Option<Arc<dyn WriteGate>>,
    http: Option<reqwest::Client>,
}

/// Asked before every attempt of every write: an `Err` stops the write before it is sent
/// (leader fencing: a replica that cannot prove it holds the leader lease never writes).
pub trait WriteGate: Send + Sync + std::fmt::Debug {
    fn check(&self) -> Result<(), String>;
}

impl ClbClientBuilder {
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn jitter(mut self, jitter: Arc<dyn Jitter>) -> Self {
        self.jitter = jitter;
        self
    }

    /// Share token buckets with other clients in the process (default: a new registry built
    /// from `config.rate_limits`).
    pub fn rate_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The credentials were read from this file or Secret directory: re-read it when a call
    /// fails with one of [`CREDENTIAL_REFRESH_CODES`] and in [`ClbClient::watch_credentials`].
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    pub fn observer(mut self, observer: Arc<dyn ClbObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Check `gate` before every write attempt (see [`WriteGate`]).
    pub fn write_gate(mut self, gate: Arc<dyn WriteGate>) -> Self {
        self.write_gate = Some(gate);
        self
    }

    /// Use a pre-built reqwest client (its timeouts then apply instead of the config's). Start
    /// from [`http_builder`] to keep its safety settings (no redirects).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    pub fn build(self) -> Result<ClbClient, ClbError> {
        let http = match self.http {
            Some(http) => http,
            None => http_builder(&self.config)
                .build()
                .map_err(|e| ClbError::Config(format!("HTTP client: {e}")))?,
        };
        let clb_target = self
            .config
            .endpoint
            .target(Service::Clb, &self.config.region)?;
        let ssl_target = self
            .config
            .endpoint
            .target(Service::Ssl, &self.config.region)?;
        let vpc_target = self
            .config
            .endpoint
            .target(Service::Vpc, &self.config.region)?;
        let tag_target = self
            .config
            .endpoint
            .target(Service::Tag, &self.config.region)?;
        if HeaderValue::from_str(&self.config.region).is_err() {
            return Err(ClbError::Config(
                "region is not a valid header value".into(),
            ));
        }
        let limiter = self
            .limiter
            .unwrap_or_else(|| Arc::new(RateLimiter::new(self.config.rate_limits.clone())));
        if self.credentials.is_none() && self.role.is_none() {
            return Err(ClbError::Config(
                "no credentials and no role provider".into(),
            ));
        }
        Ok(ClbClient {
            inner: Arc::new(Inner {
                http,
                config: self.config,
                reload: tokio::sync::Mutex::new(ReloadState {
                    stamp: self.credentials_file.as_deref().map(SourceStamp::of),
                    last_read: Some(tokio::time::Instant::now()),
                    last_auth_reload: None,
                    failures: 0,
                    retry_at: None,
                    last_error: None,
                }),
                credentials: RwLock::new(self.credentials.map(Current::fixed)),
                credentials_file: self.credentials_file,
                role: self.role,
                clock: self.clock,
                jitter: self.jitter,
                limiter,
                observer: self.observer,
                write_gate: self.write_gate,
                clb_target,
                ssl_target,
                vpc_target,
                tag_target,
            }),
        })
    }
}

/// When the credentials file was last looked at, and how role refreshes have been going.
#[derive(Debug)]
struct ReloadState {
    /// The file's fingerprint when it was last read.
    stamp: Option<SourceStamp>,
    last_read: Option<tokio::time::Instant>,
    last_auth_reload: Option<tokio::time::Instant>,
    /// Role refreshes that failed in a row.
    failures: u32,
    /// No role refresh before this (backoff after failures).
    retry_at: Option<tokio::time::Instant>,
    /// Why the last role refresh failed.
    last_error: Option<Arc<ProviderError>>,
}

/// The credentials in use and, for role credentials, when they expire and are refreshed.
#[derive(Debug, Clone)]
struct Current {
    credentials: Arc<Credentials>,
    /// Unix seconds; None: never expires (flags, environment, file).
    expires_at: Option<i64>,
    refresh_at: Option<i64>,
}

impl Current {
    fn fixed(credentials: Credentials) -> Self {
        Self {
            credentials: Arc::new(credentials),
            expires_at: None,
            refresh_at: None,
        }
    }

    fn issued(issued: Issued) -> Self {
        Self {
            refresh_at: Some(issued.refresh_at()),
            expires_at: Some(issued.expires_at),
            credentials: Arc::new(issued.credentials),
        }
    }

    fn valid(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }

    fn due(&self, now: i64) -> bool {
        self.refresh_at.is_some_and(|t| now >= t)
    }
}

/// What one attempt produced.
struct Attempt {
    status: reqwest::StatusCode,
    body: Bytes,
}

impl ClbClient {
    /// A client with the system clock, OS-seeded jitter, its own token buckets and no observer.
    pub fn new(config: ClientConfig, credentials: Credentials) -> Result<Self, ClbError> {
        Self::builder(config, credentials).build()
    }

    pub fn builder(config: ClientConfig, credentials: Credentials) -> ClbClientBuilder {
        let mut b = Self::builder_with_role_inner(config, None);
        b.credentials = Some(credentials);
        b
    }

    /// A client whose credentials come from a role provider: fetched on the first call (or by
    /// [`ClbClient::watch_credentials`]) and again before they expire.
    pub fn builder_with_role(config: ClientConfig, role: RoleProvider) -> ClbClientBuilder {
        Self::builder_with_role_inner(config, Some(role))
    }

    fn builder_with_role_inner(
        config: ClientConfig,
        role: Option<RoleProvider>,
    ) -> ClbClientBuilder {
        ClbClientBuilder {
            config,
            credentials: None,
            credentials_file: None,
            role,
            clock: Arc::new(SystemClock),
            jitter: Arc::new(RngJitter::from_entropy()),
            limiter: None,
            observer: Arc::new(NoopObserver),
            write_gate: None,
            http: None,
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn region(&self) -> &str {
        &self.inner.config.region
    }

    /// The shared token-bucket registry (hand it to other clients of the same account).
    pub fn rate_limiter(&self) -> &Arc<RateLimiter> {
        &self.inner.limiter
    }

    /// Replace the credentials (rotated STS token, re-read credentials file). Calls already in
    /// flight finish with the old ones.
    pub fn set_credentials(&self, credentials: Credentials) {
        let mut guard = self
            .inner
            .credentials
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *guard = Some(Current::fixed(credentials));
    }

    /// When the credentials in use expire (Unix seconds); None for credentials that do not
    /// (flags, environment, file) or before a role provider's first fetch.
    pub fn credentials_expiry(&self) -> Option<i64> {
        self.current().and_then(|c| c.expires_at)
    }

    /// The role provider, if the credentials come from one.
    pub fn role_provider(&self) -> Option<&RoleProvider> {
        self.inner.role.as_ref()
    }

    /// The credentials file given to the builder, if any.
    pub fn credentials_file(&self) -> Option<&Path> {
        self.inner.credentials_file.as_deref()
    }

    /// Keep the credentials fresh in the background.
    ///
    /// With a credentials file: check it every `every` (a few `stat`s) and re-read it when its
    /// size, mtime or inode changed (a rotated Kubernetes Secret, a refreshed STS token), or at
    /// least every [`CREDENTIALS_FULL_RELOAD`]. With a role provider: fetch credentials at once,
    /// then again when a third of their lifetime (at most 5 minutes) remains, retrying with
    /// backoff while the old ones are still valid. Changed credentials are used from the next
    /// call on; a failure keeps the current ones (logged, never printed). `None` when the
    /// credentials never change (flags, environment).
    pub fn watch_credentials(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        if self.inner.role.is_some() {
            let client = self.clone();
            return Some(tokio::spawn(async move { client.watch_role().await }));
        }
        let path = self.inner.credentials_file.clone()?;
        let client = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut state = client.inner.reload.lock().await;
                let due = state
                    .last_read
                    .is_none_or(|t| t.elapsed() >= CREDENTIALS_FULL_RELOAD);
                if due || state.stamp.as_ref() != Some(&SourceStamp::of(&path)) {
                    client.reload_locked(&path, &mut state, ReloadTrigger::Watch);
                }
            }
        }))
    }

    /// The role refresh loop: sleep until the credentials are due (or the backoff after a
    /// failure ends), then fetch. Sleeps are capped so that a clock jump is noticed.
    async fn watch_role(&self) {
        /// Longest single sleep of the loop.
        const MAX_SLEEP: Duration = Duration::from_secs(30);
        let Some(role) = &self.inner.role else { return };
        loop {
            let wait = {
                let state = self.inner.reload.lock().await;
                let now = self.inner.clock.unix_seconds();
                let until_due = match self.current() {
                    Some(c) if !c.due(now) => {
                        Duration::from_secs(c.refresh_at.map_or(0, |t| (t - now).max(0) as u64))
                    }
                    _ => Duration::ZERO,
                };
                let until_retry = state.retry_at.map_or(Duration::ZERO, |t| {
                    t.saturating_duration_since(tokio::time::Instant::now())
                });
                until_due.max(until_retry)
            };
            if !wait.is_zero() {
                // Whole seconds of the Unix clock: wake just after the second turns.
                tokio::time::sleep(wait.min(MAX_SLEEP)).await;
                continue;
            }
            let mut state = self.inner.reload.lock().await;
            let now = self.inner.clock.unix_seconds();
            if self.current().is_none_or(|c| c.due(now)) {
                self.refresh_role_locked(role, &mut state, ReloadTrigger::Expiry)
                    .await;
            }
        }
    }

    /// Re-read the credentials file, or fetch role credentials, now (no rate limit). `None`
    /// when the credentials never change (flags, environment).
    pub async fn reload_credentials(&self, trigger: ReloadTrigger) -> Option<ReloadOutcome> {
        if let Some(role) = &self.inner.role {
            let mut state = self.inner.reload.lock().await;
            return Some(self.refresh_role_locked(role, &mut state, trigger).await);
        }
        let path = self.inner.credentials_file.as_deref()?;
        let mut state = self.inner.reload.lock().await;
        Some(self.reload_locked(path, &mut state, trigger))
    }

    fn reload_locked(
        &self,
        path: &Path,
        state: &mut ReloadState,
        trigger: ReloadTrigger,
    ) -> ReloadOutcome {
        // Stamp first: a rewrite during the read is seen by the next check.
        state.stamp = Some(SourceStamp::of(path));
        state.last_read = Some(tokio::time::Instant::now());
        let outcome = match Credentials::from_path(path) {
            Ok(fresh) if self.current().is_none_or(|c| *c.credentials != fresh) => {
                tracing::info!(
                    path = %path.display(),
                    trigger = trigger.as_str(),
                    secret_id = fresh.secret_id(),
                    "credentials reloaded: using the new credentials from the next call"
                );
                self.set_credentials(fresh);
                ReloadOutcome::Changed
            }
            Ok(_) => {
                if trigger == ReloadTrigger::AuthFailure {
                    warn!(
                        path = %path.display(),
                        "credentials file re-read after a credentials error holds the same credentials"
                    );
                }
                ReloadOutcome::Unchanged
            }
            Err(e) => {
                warn!(
                    path = %path.display(),
                    trigger = trigger.as_str(),
                    error = %e,
                    "cannot re-read the credentials file; keeping the current credentials"
                );
                ReloadOutcome::Failed
            }
        };
        self.inner.observer.credentials_reloaded(trigger, outcome);
        outcome
    }

    /// Fetch role credentials (the reload lock held): on success they replace the current ones
    /// (their expiry always, the keys if they differ); on failure the current ones stay and the
    /// next attempt waits [`retry_delay`].
    async fn refresh_role_locked(
        &self,
        role: &RoleProvider,
        state: &mut ReloadState,
        trigger: ReloadTrigger,
    ) -> ReloadOutcome {
        let now = self.inner.clock.unix_seconds();
        let outcome = match role.fetch(now).await {
            Ok(issued) => {
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
                let changed = self
                    .current()
                    .is_none_or(|c| *c.credentials != issued.credentials);
                if changed {
                    tracing::info!(
                        provider = role.name(),
                        trigger = trigger.as_str(),
                        secret_id = issued.credentials.secret_id(),
                        expires_at = issued.expires_at,
                        refresh_at = issued.refresh_at(),
                        "credentials reloaded: using the new role credentials from the next call"
                    );
                }
                let mut guard = self
                    .inner
                    .credentials
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                *guard = Some(Current::issued(issued));
                if changed {
                    ReloadOutcome::Changed
                } else {
                    ReloadOutcome::Unchanged
                }
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let delay = retry_delay(state.failures);
                state.retry_at = Some(tokio::time::Instant::now() + delay);
                let valid_until = self
                    .current()
                    .filter(|c| c.valid(now))
                    .and_then(|c| c.expires_at);
                warn!(
                    provider = role.name(),
                    trigger = trigger.as_str(),
                    failures = state.failures,
                    retry_in_ms = delay.as_millis() as u64,
                    current_valid_until = valid_until,
                    error = %describe_chain(&e),
                    "cannot fetch role credentials; keeping the current credentials"
                );
                state.last_error = Some(Arc::new(e));
                ReloadOutcome::Failed
            }
        };
        self.inner.observer.credentials_reloaded(trigger, outcome);
        outcome
    }

    /// After a call signed with `used` failed with a credentials error: re-read the file or
    /// fetch role credentials (at most once per [`AUTH_RELOAD_MIN_INTERVAL`]) and say whether
    /// the credentials in use now differ from `used` (then the call is worth repeating).
    async fn refresh_after_auth_failure(&self, used: &Credentials) -> bool {
        if self.inner.role.is_none() && self.inner.credentials_file.is_none() {
            return false;
        }
        let mut state = self.inner.reload.lock().await;
        if self.current().is_some_and(|c| *c.credentials != *used) {
            // Another call (or the watcher) already replaced them.
            return true;
        }
        let now = tokio::time::Instant::now();
        if state
            .last_auth_reload
            .is_some_and(|t| now.duration_since(t) < AUTH_RELOAD_MIN_INTERVAL)
        {
            self.inner
                .observer
                .credentials_reloaded(ReloadTrigger::AuthFailure, ReloadOutcome::Skipped);
            return false;
        }
        state.last_auth_reload = Some(now);
        let outcome = match (&self.inner.role, &self.inner.credentials_file) {
            (Some(role), _) => {
                self.refresh_role_locked(role, &mut state, ReloadTrigger::AuthFailure)
                    .await
            }
            (None, Some(path)) => self.reload_locked(path, &mut state, ReloadTrigger::AuthFailure),
            (None, None) => return false,
        };
        outcome == ReloadOutcome::Changed
    }

    fn current(&self) -> Option<Current> {
        self.inner
            .credentials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The credentials to sign a call of `action` with. Role credentials that are due are
    /// fetched first (one fetch at a time; a call does not wait for a fetch already running
    /// while the current credentials are still valid); without valid credentials the call
    /// fails with [`ClbError::NoCredentials`] before anything is sent.
    async fn credentials_for_call(
        &self,
        action: &'static str,
    ) -> Result<Arc<Credentials>, ClbError> {
        let now = self.inner.clock.unix_seconds();
        let current = self.current();
        if let Some(c) = &current
            && !c.due(now)
            && c.valid(now)
        {
            return Ok(c.credentials.clone());
        }
        let Some(role) = &self.inner.role else {
            return current
                .map(|c| c.credentials)
                .ok_or_else(|| ClbError::Config("no credentials".into()));
        };
        let still_valid = current.filter(|c| c.valid(now)).map(|c| c.credentials);
        let mut state = match (&still_valid, self.inner.reload.try_lock()) {
            (_, Ok(state)) => state,
            (Some(valid), Err(_)) => return Ok(valid.clone()),
            (None, Err(_)) => self.inner.reload.lock().await,
        };
        // Someone else may have refreshed while this call waited for the lock.
        let now = self.inner.clock.unix_seconds();
        if let Some(c) = self.current().filter(|c| !c.due(now) && c.valid(now)) {
            return Ok(c.credentials);
        }
        let backing_off = state
            .retry_at
            .is_some_and(|t| tokio::time::Instant::now() < t);
        if !backing_off {
            self.refresh_role_locked(role, &mut state, ReloadTrigger::Expiry)
                .await;
        }
        let now = self.inner.clock.unix_seconds();
        if let Some(c) = self.current().filter(|c| c.valid(now)) {
            return Ok(c.credentials);
        }
        let source = state.last_error.clone().unwrap_or_else(|| {
            Arc::new(ProviderError::Expired {
                provider: role.name(),
                expired_time: self.credentials_expiry().unwrap_or(now),
                now,
            })
        });
        Err(ClbError::NoCredentials {
            action,
            provider: role.name(),
            source,
        })
    }

    /// Call one action: serialise `request` once, then for each attempt take a token, sign the
    /// same bytes with a fresh timestamp, send them unchanged, and decode the envelope.
    /// Retryable failures (Throttled, Busy, Transient) are retried per the policy.
    pub async fn call<Req, Resp>(&self, op: Op, request: &Req) -> Result<Reply<Resp>, ClbError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = serde_json::to_vec(request)
            .map(Bytes::from)
            .map_err(|source| ClbError::Encode {
                action: op.name,
                source,
            })?;
        let span = info_span!(
            "clb_call",
            action = op.name,
            service = op.service.name(),
            body_bytes = body.len(),
            request_id = field::Empty,
            attempts = field::Empty,
        );
        self.call_with_retries(op, body).instrument(span).await
    }

    async fn call_with_retries<Resp: DeserializeOwned>(
        &self,
        op: Op,
        body: Bytes,
    ) -> Result<Reply<Resp>, ClbError> {
        let inner = &*self.inner;
        let policy = &inner.config.retry;
        let mut failures = [0u32; ErrorCategory::ALL.len()];
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let credentials = match self.credentials_for_call(op.name).await {
                Ok(credentials) => credentials,
                Err(err) => {
                    inner.observer.call_finished(
                        op.name,
                        CallResult::Failed(err.category()),
                        None,
                        Duration::ZERO,
                    );
                    return Err(err);
                }
            };
            // Held until the answer arrived: the slot cools down from then.
            let (slot, waited) = inner.limiter.acquire(op.name).await;
            if !waited.is_zero() {
                inner.observer.rate_limit_wait(op.name, waited);
            }
            // Fencing: asked as late as possible, right before the bytes leave.
            if !op.idempotent
                && let Some(gate) = &inner.write_gate
                && let Err(reason) = gate.check()
            {
                return Err(ClbError::Fenced {
                    action: op.name,
                    reason,
                });
            }
            let started = tokio::time::Instant::now();
            let result = self
                .attempt(op, &body, &credentials)
                .await
                .and_then(|a| decode::<Resp>(op, a));
            drop(slot);
            let elapsed = started.elapsed();
            let span = tracing::Span::current();
            span.record("attempts", attempt);
            let err = match result {
                Ok(reply) => {
                    span.record("request_id", reply.request_id.as_str());
                    inner
                        .observer
                        .call_finished(op.name, CallResult::Success, None, elapsed);
                    debug!(elapsed_ms = elapsed.as_millis() as u64, "call succeeded");
                    return Ok(reply);
                }
                Err(err) => err,
            };
            let category = err.category();
            inner.observer.call_finished(
                op.name,
                CallResult::Failed(category),
                err.code(),
                elapsed,
            );
            if let Some(id) = err.request_id() {
                span.record("request_id", id);
            }
            if !refreshed
                && attempt < MAX_ATTEMPTS_PER_CALL
                && err
                    .code()
                    .is_some_and(|code| CREDENTIAL_REFRESH_CODES.contains(&code))
            {
                // The server refused the credentials, so the call was not applied: repeating
                // it (once) with refreshed credentials is safe for writes too.
                refreshed = true;
                if self.refresh_after_auth_failure(&credentials).await {
                    inner
                        .observer
                        .retry_scheduled(op.name, category, attempt, Duration::ZERO);
                    tracing::info!(
                        attempt,
                        code = err.code().unwrap_or(""),
                        "retrying with the refreshed credentials"
                    );
                    continue;
                }
            }
            if category == ErrorCategory::Throttled {
                inner.limiter.penalize(op.name);
            }
            let index = ErrorCategory::ALL
                .iter()
                .position(|c| *c == category)
                .unwrap_or(0);
            failures[index] += 1;
            let may_repeat = op.idempotent || err.request_was_rejected();
            let delay = if may_repeat && attempt < MAX_ATTEMPTS_PER_CALL {
                policy.next_delay(category, failures[index], inner.jitter.as_ref())
            } else {
                None
            };
            match delay {
                Some(delay) => {
                    inner
                        .observer
                        .retry_scheduled(op.name, category, attempt, delay);
                    debug!(
                        attempt,
                        category = category.as_str(),
                        code = err.code().unwrap_or(""),
                        delay_ms = delay.as_millis() as u64,
                        error = %err,
                        "retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                None => {
                    debug!(
                        attempt,
                        category = category.as_str(),
                        code = err.code().unwrap_or(""),
                        error = %err,
                        "call failed"
                    );
                    return Err(err);
                }
            }
        }
    }

    /// One signed HTTP exchange.
    async fn attempt(
        &self,
        op: Op,
        body: &Bytes,
        credentials: &Credentials,
    ) -> Result<Attempt, ClbError> {
        let inner = &*self.inner;
        let (url, host) = match op.service {
            Service::Clb => &inner.clb_target,
            Service::Ssl => &inner.ssl_target,
            Service::Vpc => &inner.vpc_target,
            Service::Tag => &inner.tag_target,
        };
        let timestamp = inner.clock.unix_seconds();
        let signature = sign(
            &SigningInput {
                method: "POST",
                query: "",
                headers: &[("content-type", JSON_CONTENT_TYPE), ("host", host)],
                payload: body,
                service: op.service.name(),
                timestamp,
            },
            credentials.secret_key().expose(),
        );
        let headers = self.headers(op, host, timestamp, credentials, &signature)?;
        let response = inner
            .http
            .post(url.clone())
            .headers(headers)
            .body(body.clone())
            .send()
            .await
            .map_err(|source| transport(op, source))?;
        let status = response.status();
        let body = read_capped(op, response, MAX_RESPONSE_BYTES).await?;
        Ok(Attempt { status, body })
    }

    fn headers(
        &self,
        op: Op,
        host: &str,
        timestamp: i64,
        credentials: &Credentials,
        signature: &super::sign::Signature,
    ) -> Result<HeaderMap, ClbError> {
        let value = |v: &str, what: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| ClbError::Config(format!("{what} is not a valid header value")))
        };
        let config = &self.inner.config;
        let mut headers = HeaderMap::new();
        headers.insert(HOST, value(host, "host")?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
        let mut auth = value(
            &authorization(credentials.secret_id(), signature),
            "Authorization",
        )?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(X_TC_ACTION, HeaderValue::from_static(op.name));
        headers.insert(X_TC_VERSION, HeaderValue::from_static(op.service.version()));
        headers.insert(X_TC_TIMESTAMP, HeaderValue::from(timestamp));
        if !config.region.is_empty() {
            headers.insert(X_TC_REGION, value(&config.region, "region")?);
        }
        if let Some(token) = credentials.session_token() {
            let mut token = HeaderValue::from_str(token.expose()).map_err(|_| {
                ClbError::Config("session token is not a valid header value".into())
            })?;
            token.set_sensitive(true);
            headers.insert(X_TC_TOKEN, token);
        }
        if let Some(lang) = &config.language {
            headers.insert(X_TC_LANGUAGE, value(lang, "language")?);
        }
        headers.insert(
            X_TC_REQUEST_CLIENT,
            HeaderValue::from_static(REQUEST_CLIENT),
        );
        Ok(headers)
    }

    /// Poll DescribeTaskStatus until the task leaves status 2: `Ok` with the final status
    /// (it carries `LoadBalancerIds` for CreateLoadBalancer) on 0, `TaskFailed` with the task's
    /// Message on 1, `TaskTimeout` after `config.task_wait.timeout`.
    pub async fn wait_task(
        &self,
        task_id: &str,
    ) -> Result<types::DescribeTaskStatusResponse, ClbError> {
        let span = info_span!("clb_wait_task", task_id, polls = field::Empty);
        self.wait_task_inner(task_id).instrument(span).await
    }

    async fn wait_task_inner(
        &self,
        task_id: &str,
    ) -> Result<types::DescribeTaskStatusResponse, ClbError> {
        let wait = self.inner.config.task_wait;
        let backoff = Backoff {
            base: wait.initial,
            cap: wait.cap,
            jitter_fraction: TASK_POLL_JITTER_FRACTION,
        };
        let started = tokio::time::Instant::now();
        let deadline = started + wait.timeout;
        let request = types::DescribeTaskStatusRequest {
            task_id: Some(task_id.to_string()),
            deal_name: None,
        };
        let mut polls = 0u32;
        let finish = |result: CallResult, polls: u32| {
            tracing::Span::current().record("polls", polls);
            self.inner
                .observer
                .task_finished(result, polls, started.elapsed());
        };
        loop {
            let delay = backoff.delay_with(polls + 1, self.inner.jitter.as_ref());
            let now = tokio::time::Instant::now();
            if now >= deadline {
                finish(CallResult::Failed(ErrorCategory::Transient), polls);
                warn!(polls, "task wait timed out");
                return Err(ClbError::TaskTimeout {
                    task_id: task_id.to_string(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            polls += 1;
            let status = match self
                .call::<_, types::DescribeTaskStatusResponse>(
                    super::actions::ops::DESCRIBE_TASK_STATUS,
                    &request,
                )
                .await
            {
                Ok(reply) => reply.data,
                Err(err) => {
                    finish(CallResult::Failed(err.category()), polls);
                    return Err(err);
                }
            };
            match status.status {
                types::TASK_SUCCEEDED => {
                    finish(CallResult::Success, polls);
                    return Ok(status);
                }
                types::TASK_RUNNING => continue,
                types::TASK_FAILED => {
                    finish(CallResult::Failed(ErrorCategory::TaskFailed), polls);
                    return Err(ClbError::TaskFailed {
                        task_id: task_id.to_string(),
                        message: status.message.unwrap_or_default(),
                    });
                }
                other => {
                    finish(CallResult::Failed(ErrorCategory::Other), polls);
                    return Err(ClbError::TaskUnknownStatus {
                        task_id: task_id.to_string(),
                        status: other,
                    });
                }
            }
        }
    }
}

fn transport(op: Op, source: reqwest::Error) -> ClbError {
    ClbError::Transport {
        action: op.name,
        not_sent: source.is_connect(),
        source,
    }
}

fn decode<Resp: DeserializeOwned>(op: Op, attempt: Attempt) -> Result<Reply<Resp>, ClbError> {
    if attempt.status != reqwest::StatusCode::OK {
        return Err(ClbError::HttpStatus {
            action: op.name,
            status: attempt.status.as_u16(),
            snippet: snippet(&attempt.body),
        });
    }
    match types::decode_response::<Resp>(&attempt.body) {
        Ok((data, request_id)) => Ok(Reply { request_id, data }),
        Err(DecodeError::Api(body)) => Err(ClbError::Api {
            action: op.name,
            code: body.error.code,
            message: body.error.message,
            request_id: body.request_id,
        }),
        Err(DecodeError::Malformed(source)) => Err(ClbError::Decode {
            action: op.name,
            request_id: request_id_of(&attempt.body),
            source,
        }),
    }
}

/// Best effort: the RequestId of a body whose action fields did not decode.
fn request_id_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get("Response")?
        .get("RequestId")?
        .as_str()
        .map(str::to_string)
}

/// The response body, read chunk by chunk and refused past `limit` bytes.
async fn read_capped(
    op: Op,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ClbError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ClbError::ResponseTooLarge {
            action: op.name,
            limit,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| transport(op, source))?
    {
        if body.len() + chunk.len() > limit {
            return Err(ClbError::ResponseTooLarge {
                action: op.name,
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// The HTTP client settings every CLB API client needs: rustls, the config's timeouts, our
/// User-Agent, and no redirects (a redirect would carry the signed request and `X-TC-Token`
/// to another host).
pub fn http_builder(config: &ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(config.request_timeout)
        .connect_timeout(config.connect_timeout)
        .user_agent(REQUEST_CLIENT)
        .redirect(reqwest::redirect::Policy::none())
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    fn refused(text: &str) -> Option<String> {
        match Endpoint::parse(text) {
            Err(ClbError::Config(message)) => Some(message),
            _ => None,
        }
    }

    #[test]
    fn plain_http_is_accepted_for_loopback_hosts_only() {
        for ok in [
            "http://127.0.0.1:9000",
            "http://127.42.0.7:80/",
            "http://[::1]:9000",
            "http://localhost:9000",
            "http://LOCALHOST",
        ] {
            assert!(Endpoint::parse(ok).is_ok(), "{ok} is refused");
        }
        for bad in [
            "http://10.0.0.1:9000",
            "http://clb.tencentcloudapi.com",
            "http://clb-emulator:9000",
            "http://[::ffff:10.0.0.1]:9000",
            "http://localhost.example.com",
            "http://128.0.0.1",
        ] {
            let message = refused(bad).unwrap_or_else(|| panic!("{bad} is accepted"));
            assert!(message.contains("https://"), "{message}");
        }
    }

    #[test]
    fn https_is_accepted_for_any_host_and_is_the_default_scheme() {
        assert!(Endpoint::parse("https://10.0.0.1:9000").is_ok());
        let bare = Endpoint::parse("clb.ap-guangzhou.tencentcloudapi.com");
        assert!(
            matches!(&bare, Ok(Endpoint::Url(url)) if url.scheme() == "https"),
            "{bare:?}"
        );
    }

    #[test]
    fn a_client_built_with_a_non_loopback_http_url_is_refused() {
        let url = match reqwest::Url::parse("http://10.1.2.3:9000/") {
            Ok(url) => url,
            Err(err) => panic!("url: {err}"),
        };
        let endpoint = Endpoint::Url(url);
        assert!(matches!(
            endpoint.target(Service::Clb, "ap-guangzhou"),
            Err(ClbError::Config(_))
        ));
    }
}
