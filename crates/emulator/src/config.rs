//! Emulator settings: defaults, the YAML/JSON config file, fault injection knobs and quotas.
//!
//! The same `Settings` value is built from defaults, then the `--config` file, then CLI flags,
//! and can later be changed at run time through the admin endpoint (`/_emulator/settings`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The documented default test SecretId (fake; only for local use).
pub const DEFAULT_SECRET_ID: &str = clb_api::credentials::EMULATOR_SECRET_ID;
/// The documented default test SecretKey (fake; only for local use).
pub const DEFAULT_SECRET_KEY: &str = clb_api::credentials::EMULATOR_SECRET_KEY;
/// Default region the emulator claims to serve.
pub const DEFAULT_REGION: &str = "ap-guangzhou";
/// Default API listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
/// First VIP handed to a CLB.
pub const DEFAULT_VIP_BASE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);
/// Data plane port = CLB listener port + this offset (80 -> 10080).
pub const DEFAULT_PORT_OFFSET: u16 = 10_000;
/// How long an async task stays "running" (status 2).
pub const DEFAULT_TASK_DELAY_MS: u64 = 200;
/// Requests per second per action (clb-api.md §6); 0 disables the limit.
pub const DEFAULT_RATE_LIMIT: u32 = 20;
/// Default time a client of the API server has to send a request head (and to start the next
/// request on a kept-alive connection).
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default cap on connections open at once to the API server; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default time from a request head to its answer (longer than any latency fault a test sets).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 300_000;
/// Allowed |now - X-TC-Timestamp| in seconds (clb-api.md §1.8).
pub const SIGNATURE_MAX_SKEW_SECS: i64 = 300;

/// Default quotas (clb-api.md §6).
pub const DEFAULT_OPEN_CLB_QUOTA: i64 = 100;
pub const DEFAULT_INTERNAL_CLB_QUOTA: i64 = 100;
pub const DEFAULT_LISTENER_QUOTA: i64 = 50;
pub const DEFAULT_LISTENER_RULE_QUOTA: i64 = 50;
pub const DEFAULT_TARGET_BIND_QUOTA: i64 = 100;

/// Why settings could not be loaded or are refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{what} {addr} is not a loopback address: the emulator only binds 127.0.0.0/8 (or ::1)"
    )]
    NotLoopback { what: &'static str, addr: String },
    #[error("{0}")]
    Invalid(String),
}

/// One SecretId/SecretKey pair the API accepts; with `token`, a temporary (STS) key that is
/// accepted only with that `X-TC-Token` and, with `expires_at`, only until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub secret_id: String,
    pub secret_key: String,
    /// The session token requests signed with this key must carry in `X-TC-Token`; a missing
    /// or different token is refused with `AuthFailure.TokenFailure`. None: a permanent key
    /// (any `X-TC-Token` is then ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Unix time (seconds, emulator clock) from which the token is expired: requests are
    /// refused with `AuthFailure.TokenFailure`. None: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Credential {
    /// A permanent SecretId/SecretKey pair.
    pub fn permanent(secret_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            secret_id: secret_id.into(),
            secret_key: secret_key.into(),
            token: None,
            expires_at: None,
        }
    }

    /// A temporary key that needs `token` and expires at `expires_at` (Unix seconds).
    pub fn temporary(
        secret_id: impl Into<String>,
        secret_key: impl Into<String>,
        token: impl Into<String>,
        expires_at: Option<i64>,
    ) -> Self {
        Self {
            token: Some(token.into()),
            expires_at,
            ..Self::permanent(secret_id, secret_key)
        }
    }
}

/// A role STS `AssumeRoleWithWebIdentity` lets a holder of `web_identity_token` (an OIDC token
/// of the identity provider `provider_id`) assume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebIdentityRole {
    pub role_arn: String,
    pub provider_id: String,
    /// The token a request must carry; shown redacted by the admin endpoint.
    pub web_identity_token: String,
}

/// Temporary credentials the emulator issues: STS `AssumeRoleWithWebIdentity` (unsigned, the
/// only action accepted with `Authorization: SKIP`) and a CVM instance role served on the
/// metadata paths (`GET /latest/meta-data/cam/security-credentials/`). Issued keys are added to
/// `credentials` as temporary keys with their token and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StsSettings {
    /// Roles that web identity tokens may assume.
    pub roles: Vec<WebIdentityRole>,
    /// Lifetime of every issued credential in seconds, overriding `DurationSeconds` (tests
    /// watch a refresh in seconds); None: `DurationSeconds` (STS) or
    /// [`DEFAULT_INSTANCE_ROLE_LIFETIME_SECS`] (instance role).
    pub lifetime_secs: Option<u64>,
    /// The CAM role name bound to the emulated CVM instance; None: the metadata paths answer
    /// 404, as on an instance without a role.
    pub instance_role: Option<String>,
}

/// Lifetime of instance role credentials unless `sts.lifetime_secs` says otherwise.
pub const DEFAULT_INSTANCE_ROLE_LIFETIME_SECS: u64 = 7200;

/// Fault injection: probabilities are in [0, 1] and drawn from the seeded RNG.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability of `RequestLimitExceeded`, per action name or `*` for all actions.
    pub request_limit_exceeded: BTreeMap<String, f64>,
    /// Probability of `FailedOperation.ResourceInOperating` for write actions on a CLB.
    pub resource_in_operating: BTreeMap<String, f64>,
    /// Probability of `InternalError`.
    pub internal_error: BTreeMap<String, f64>,
    /// Probability that an async task ends in status 1 (failed); its change is then not applied.
    pub task_failure: BTreeMap<String, f64>,
    /// Added latency in milliseconds before the action is handled.
    pub latency_ms: BTreeMap<String, u64>,
    /// Hold every task in "running" (status 2) until unpaused.
    pub pause_tasks: bool,
}

impl Faults {
    /// The probability configured for `action` (exact name first, then `*`), 0 if none.
    pub fn probability(map: &BTreeMap<String, f64>, action: &str) -> f64 {
        map.get(action)
            .or_else(|| map.get("*"))
            .copied()
            .unwrap_or(0.0)
    }

    /// The latency configured for `action` (exact name first, then `*`).
    pub fn latency(&self, action: &str) -> u64 {
        self.latency_ms
            .get(action)
            .or_else(|| self.latency_ms.get("*"))
            .copied()
            .unwrap_or(0)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, map) in [
            ("request_limit_exceeded", &self.request_limit_exceeded),
            ("resource_in_operating", &self.resource_in_operating),
            ("internal_error", &self.internal_error),
            ("task_failure", &self.task_failure),
        ] {
            for (action, p) in map {
                if !(0.0..=1.0).contains(p) {
                    return Err(ConfigError::Invalid(format!(
                        "faults.{name}.{action} = {p} is not a probability in [0, 1]"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// DescribeQuota table (clb-api.md §3.5, §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    pub open_clb: i64,
    pub internal_clb: i64,
    pub listeners_per_lb: i64,
    pub rules_per_listener: i64,
    pub targets_per_rule: i64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            open_clb: DEFAULT_OPEN_CLB_QUOTA,
            internal_clb: DEFAULT_INTERNAL_CLB_QUOTA,
            listeners_per_lb: DEFAULT_LISTENER_QUOTA,
            rules_per_listener: DEFAULT_LISTENER_RULE_QUOTA,
            targets_per_rule: DEFAULT_TARGET_BIND_QUOTA,
        }
    }
}

/// Limits of the API + admin server against slow or hostile clients (start-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// A client that has not sent a whole request head this long after connecting (or after
    /// the previous answer, on a kept-alive connection) is disconnected.
    pub header_read_timeout_ms: u64,
    /// Connections open at once; further ones wait in the listen backlog until one ends.
    pub max_connections: usize,
    /// From a request head to its answer (body upload included); answered 408 past it.
    pub request_timeout_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
        }
    }
}

/// The token every admin write needs. Never serialized (so never in an admin answer) and shown
/// as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Probe timing overrides of the data plane's health checks, in milliseconds (`None`: the
/// rule's own seconds, as CLB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckTiming {
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}

impl HealthCheckTiming {
    /// The data plane's view.
    pub fn timing(&self) -> crate::health::HealthTiming {
        crate::health::HealthTiming {
            interval: self.interval_ms.map(std::time::Duration::from_millis),
            timeout: self.timeout_ms.map(std::time::Duration::from_millis),
        }
    }
}

/// All emulator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub credentials: Vec<Credential>,
    pub region: String,
    pub vip_base: Ipv4Addr,
    pub port_offset: u16,
    pub task_delay_ms: u64,
    /// Requests per second per action; 0 disables rate limiting.
    pub rate_limit: u32,
    /// Per-action overrides of `rate_limit`.
    pub rate_limits: BTreeMap<String, u32>,
    pub quotas: Quotas,
    pub faults: Faults,
    /// CVM instance id -> private IP used for `InstanceId` targets.
    pub instances: BTreeMap<String, Ipv4Addr>,
    /// Subnet id -> VPC id, answered by VPC `DescribeSubnets`.
    pub subnets: BTreeMap<String, String>,
    /// STS web identity roles and the instance role.
    pub sts: StsSettings,
    pub state_file: Option<PathBuf>,
    pub seed: Option<u64>,
    /// Limits of the API server (start-only).
    pub server: ServerLimits,
    /// Health-check probe timing of the data plane (start-only): overrides every rule's
    /// `IntervalTime`/`TimeOut` so tests need not wait real seconds; thresholds still apply.
    pub health_check: HealthCheckTiming,
    /// The token admin writes need (start-only); `None` makes a random one at start.
    #[serde(skip_serializing)]
    pub admin_token: Option<AdminToken>,
    /// Show SecretKeys and private keys in admin answers (start-only); every admin call but
    /// `healthz` then needs the token, reads included.
    pub admin_show_secrets: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| {
                SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9000)
            }),
            credentials: vec![Credential::permanent(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)],
            region: DEFAULT_REGION.into(),
            vip_base: DEFAULT_VIP_BASE,
            port_offset: DEFAULT_PORT_OFFSET,
            task_delay_ms: DEFAULT_TASK_DELAY_MS,
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_limits: BTreeMap::new(),
            quotas: Quotas::default(),
            faults: Faults::default(),
            instances: BTreeMap::new(),
            subnets: BTreeMap::new(),
            sts: StsSettings::default(),
            state_file: None,
            seed: None,
            server: ServerLimits::default(),
            health_check: HealthCheckTiming::default(),
            admin_token: None,
            admin_show_secrets: false,
        }
    }
}

impl Settings {
    /// Load a YAML (or JSON, which is YAML) config file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_text(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse YAML or JSON text over the defaults.
    pub fn parse_text(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }

    /// The rate limit for one action (0 = unlimited).
    pub fn rate_limit_for(&self, action: &str) -> u32 {
        self.rate_limits
            .get(action)
            .copied()
            .unwrap_or(self.rate_limit)
    }

    /// Refuse settings the emulator must never run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() {
            return Err(ConfigError::NotLoopback {
                what: "--listen",
                addr: self.listen.to_string(),
            });
        }
        if !self.vip_base.is_loopback() {
            return Err(ConfigError::NotLoopback {
                what: "--vip-base",
                addr: self.vip_base.to_string(),
            });
        }
        if self.credentials.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one SecretId/SecretKey pair is required".into(),
            ));
        }
        if self.region.is_empty() {
            return Err(ConfigError::Invalid("region must not be empty".into()));
        }
        if let Some(token) = &self.admin_token
            && (token.expose().is_empty() || !token.expose().bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ConfigError::Invalid(
                "the admin token must be non-empty printable ASCII without spaces".into(),
            ));
        }
        if self.health_check.interval_ms == Some(0) || self.health_check.timeout_ms == Some(0) {
            return Err(ConfigError::Invalid(
                "health_check.interval_ms and health_check.timeout_ms must be at least 1".into(),
            ));
        }
        if self.sts.lifetime_secs == Some(0) {
            return Err(ConfigError::Invalid(
                "sts.lifetime_secs must be at least 1".into(),
            ));
        }
        if let Some(role) = &self.sts.instance_role
            && (role.is_empty()
                || !role
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)))
        {
            return Err(ConfigError::Invalid(format!(
                "sts.instance_role {role:?} is not a CAM role name (A-Za-z0-9+=,.@_-)"
            )));
        }
        if self.server.max_connections == 0 || self.server.header_read_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "server.max_connections and server.header_read_timeout_ms must be at least 1"
                    .into(),
            ));
        }
        self.faults.validate()
    }

    /// Look up the secret key of a SecretId.
    pub fn secret_key(&self, secret_id: &str) -> Option<&str> {
        self.credential(secret_id).map(|c| c.secret_key.as_str())
    }

    /// Look up the credential of a SecretId.
    pub fn credential(&self, secret_id: &str) -> Option<&Credential> {
        self.credentials.iter().find(|c| c.secret_id == secret_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_config_overrides_only_the_fields_it_names() {
        let s = Settings::parse_text(
            "task_delay_ms: 5\nfaults:\n  internal_error:\n    CreateRule: 0.5\nquotas:\n  listeners_per_lb: 2\n",
        )
        .expect("parses");
        assert_eq!(s.task_delay_ms, 5);
        assert_eq!(s.quotas.listeners_per_lb, 2);
        assert_eq!(s.quotas.rules_per_listener, DEFAULT_LISTENER_RULE_QUOTA);
        assert_eq!(
            Faults::probability(&s.faults.internal_error, "CreateRule"),
            0.5
        );
        assert_eq!(s.rate_limit, DEFAULT_RATE_LIMIT);
    }

    #[test]
    fn json_config_is_accepted_too() {
        let s =
            Settings::parse_text(r#"{"rate_limit": 3, "region": "ap-shanghai"}"#).expect("parses");
        assert_eq!(s.rate_limit, 3);
        assert_eq!(s.region, "ap-shanghai");
    }

    #[test]
    fn temporary_credentials_with_token_and_expiry_are_read_from_the_config() {
        let s = Settings::parse_text(
            "credentials:\n  - secret_id: AKIDsts\n    secret_key: k\n    token: T1\n    expires_at: 1700000000\n",
        )
        .expect("parses");
        assert_eq!(
            s.credential("AKIDsts"),
            Some(&Credential::temporary(
                "AKIDsts",
                "k",
                "T1",
                Some(1_700_000_000)
            ))
        );
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        assert!(Settings::parse_text("task_dealy_ms: 5\n").is_err());
    }

    #[test]
    fn non_loopback_listen_or_vip_base_is_refused() {
        let mut s = Settings {
            listen: "0.0.0.0:9000".parse().expect("addr"),
            ..Settings::default()
        };
        assert!(matches!(s.validate(), Err(ConfigError::NotLoopback { .. })));
        s.listen = "127.0.0.1:9000".parse().expect("addr");
        s.vip_base = Ipv4Addr::new(10, 0, 0, 1);
        assert!(matches!(s.validate(), Err(ConfigError::NotLoopback { .. })));
        s.vip_base = DEFAULT_VIP_BASE;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn the_admin_token_is_read_from_a_config_file_but_never_serialized_or_debug_printed() {
        let s = Settings::parse_text("admin_token: s3cret-t0ken\nadmin_show_secrets: true\n")
            .expect("parses");
        assert_eq!(
            s.admin_token.as_ref().map(AdminToken::expose),
            Some("s3cret-t0ken")
        );
        assert!(s.admin_show_secrets);
        let json = serde_json::to_string(&s).expect("serializes");
        assert!(!json.contains("s3cret-t0ken"), "{json}");
        assert!(!format!("{s:?}").contains("s3cret-t0ken"));
    }

    #[test]
    fn an_empty_admin_token_or_a_zero_connection_cap_is_refused() {
        let mut s = Settings {
            admin_token: Some(AdminToken::new("")),
            ..Settings::default()
        };
        assert!(s.validate().is_err());
        s.admin_token = Some(AdminToken::new("ok-token"));
        assert!(s.validate().is_ok());
        s.server.max_connections = 0;
        assert!(s.validate().is_err());
    }

    #[test]
    fn probabilities_outside_zero_to_one_are_refused() {
        let mut s = Settings::default();
        s.faults.internal_error.insert("*".into(), 1.5);
        assert!(s.validate().is_err());
    }
}
