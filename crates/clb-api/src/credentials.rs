//! Tencent Cloud API credentials (SecretId, SecretKey, optional session token): loading from
//! flags, the environment or a mounted file, and redaction so that no `Debug`, `Display`, error,
//! log line, metric label or Event can ever contain the SecretKey or the token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use crate::providers::{
    DEFAULT_METADATA_ENDPOINT, DEFAULT_ROLE_DURATION_SECS, DEFAULT_ROLE_SESSION_NAME,
    DEFAULT_STS_ENDPOINT, ENV_PROVIDER_ID, ENV_ROLE_ARN, ENV_TKE_REGION,
    ENV_WEB_IDENTITY_TOKEN_FILE, InstanceRoleConfig, ProviderError, RoleSource, WebIdentityConfig,
    parse_metadata_endpoint, parse_sts_endpoint,
};

/// Environment variable for the SecretId, as the official SDKs and tccli name it.
pub const ENV_SECRET_ID: &str = "TENCENTCLOUD_SECRET_ID";
/// Environment variable for the SecretKey.
pub const ENV_SECRET_KEY: &str = "TENCENTCLOUD_SECRET_KEY";
/// Environment variable for the optional STS session token.
pub const ENV_SESSION_TOKEN: &str = "TENCENTCLOUD_SESSION_TOKEN";
/// Environment variable for the region.
pub const ENV_REGION: &str = "TENCENTCLOUD_REGION";
/// The local CLB emulator's documented test SecretId (fake; accepted only on loopback endpoints).
pub const EMULATOR_SECRET_ID: &str = "AKIDEMULATOR0000000000000000000000000";
/// The local CLB emulator's documented test SecretKey (fake; accepted only on loopback endpoints).
pub const EMULATOR_SECRET_KEY: &str = "EMULATORsecretKEY000000000000000000";
/// What redacted values print as.
pub const REDACTED: &str = "<redacted>";

/// File names looked up in a mounted credentials directory (a Kubernetes Secret volume), in
/// order of preference, for each field.
const DIR_SECRET_ID_FILES: &[&str] = &[ENV_SECRET_ID, "secretId", "secret-id", "secret_id"];
const DIR_SECRET_KEY_FILES: &[&str] = &[ENV_SECRET_KEY, "secretKey", "secret-key", "secret_key"];
const DIR_TOKEN_FILES: &[&str] = &[
    ENV_SESSION_TOKEN,
    "sessionToken",
    "session-token",
    "session_token",
    "token",
];

/// A string that must never be printed: `Debug` and `Display` show [`REDACTED`].
///
/// The value is only reachable through [`SecretString::expose`], which the signer uses.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call sites are grep-able: only signing and the session header use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl FromStr for SecretString {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Why credentials could not be loaded. Never carries a secret value or file contents.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no credentials: set --secret-id/--secret-key ({ENV_SECRET_ID}/{ENV_SECRET_KEY}), --credentials-file, TKE pod identity ({ENV_ROLE_ARN}, {ENV_WEB_IDENTITY_TOKEN_FILE}, {ENV_PROVIDER_ID}), or --credentials-provider instance-role"
    )]
    Missing,
    #[error("--credentials-provider {provider} needs {missing}")]
    ProviderIncomplete {
        provider: &'static str,
        missing: &'static str,
    },
    #[error("cannot set up the {provider} credentials provider")]
    Provider {
        provider: &'static str,
        #[source]
        source: Box<ProviderError>,
    },
    #[error("credentials are incomplete: {missing} is missing or empty")]
    Incomplete { missing: &'static str },
    #[error("cannot read credentials from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot parse credentials file {path} (expected JSON {{\"SecretId\",\"SecretKey\"[,\"Token\"]}} or KEY=VALUE lines)"
    )]
    Parse { path: PathBuf },
    #[error("credential field {field} contains characters not allowed in an HTTP header")]
    InvalidCharacters { field: &'static str },
}

/// SecretId + SecretKey (+ session token for temporary credentials).
///
/// `Debug` and `Display` print the SecretId only; the key and the token are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    secret_id: String,
    secret_key: SecretString,
    token: Option<SecretString>,
}

impl Credentials {
    /// Validates that id and key are non-empty and header-safe (no secret in the error).
    pub fn new(
        secret_id: impl Into<String>,
        secret_key: impl Into<SecretString>,
        token: Option<SecretString>,
    ) -> Result<Self, CredentialsError> {
        let secret_id = secret_id.into().trim().to_string();
        let secret_key = SecretString::new(secret_key.into().expose().trim());
        let token = token
            .map(|t| SecretString::new(t.expose().trim()))
            .filter(|t| !t.is_empty());
        if secret_id.is_empty() {
            return Err(CredentialsError::Incomplete {
                missing: "SecretId",
            });
        }
        if secret_key.is_empty() {
            return Err(CredentialsError::Incomplete {
                missing: "SecretKey",
            });
        }
        if !header_safe(&secret_id) {
            return Err(CredentialsError::InvalidCharacters { field: "SecretId" });
        }
        if token.as_ref().is_some_and(|t| !header_safe(t.expose())) {
            return Err(CredentialsError::InvalidCharacters {
                field: "SessionToken",
            });
        }
        Ok(Self {
            secret_id,
            secret_key,
            token,
        })
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The SecretKey; only the signer should call this.
    pub fn secret_key(&self) -> &SecretString {
        &self.secret_key
    }

    /// The session token sent (unsigned) as `X-TC-Token`.
    pub fn session_token(&self) -> Option<&SecretString> {
        self.token.as_ref()
    }

    /// Credentials from an environment lookup (`std::env::var` in production; a map in tests).
    /// `Ok(None)` when neither id nor key is set.
    pub fn from_env_with(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, CredentialsError> {
        let id = lookup(ENV_SECRET_ID).filter(|v| !v.trim().is_empty());
        let key = lookup(ENV_SECRET_KEY).filter(|v| !v.trim().is_empty());
        let token = lookup(ENV_SESSION_TOKEN).map(SecretString::new);
        match (id, key) {
            (None, None) => Ok(None),
            (Some(id), Some(key)) => Self::new(id, SecretString::new(key), token).map(Some),
            (None, Some(_)) => Err(CredentialsError::Incomplete {
                missing: ENV_SECRET_ID,
            }),
            (Some(_), None) => Err(CredentialsError::Incomplete {
                missing: ENV_SECRET_KEY,
            }),
        }
    }

    /// Credentials from the process environment.
    pub fn from_env() -> Result<Option<Self>, CredentialsError> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Credentials from a mounted file or directory.
    ///
    /// - a directory (a Kubernetes Secret volume): one file per field, named
    ///   `TENCENTCLOUD_SECRET_ID` / `secretId` / `secret-id`, `TENCENTCLOUD_SECRET_KEY` /
    ///   `secretKey` / `secret-key`, and optionally `TENCENTCLOUD_SESSION_TOKEN` / `token`;
    /// - a JSON file `{"SecretId": "...", "SecretKey": "...", "Token": "..."}` (keys
    ///   case-insensitive, `secretId`/`secretKey`/`token` as tccli writes them also work);
    /// - a `KEY=VALUE` file with the `TENCENTCLOUD_*` names (comments with `#`).
    ///
    /// Re-reading the file picks up rotated STS tokens; the caller decides when.
    pub fn from_path(path: &Path) -> Result<Self, CredentialsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CredentialsError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        if path.is_dir() {
            let pick = |names: &[&str]| -> Result<Option<String>, CredentialsError> {
                for name in names {
                    let p = path.join(name);
                    if p.is_file() {
                        return Ok(Some(read(&p)?));
                    }
                }
                Ok(None)
            };
            let id = pick(DIR_SECRET_ID_FILES)?.ok_or(CredentialsError::Incomplete {
                missing: "SecretId",
            })?;
            let key = pick(DIR_SECRET_KEY_FILES)?.ok_or(CredentialsError::Incomplete {
                missing: "SecretKey",
            })?;
            let token = pick(DIR_TOKEN_FILES)?.map(SecretString::new);
            return Self::new(id, SecretString::new(key), token);
        }
        let text = read(path)?;
        parse_file(&text).ok_or_else(|| CredentialsError::Parse {
            path: path.to_path_buf(),
        })?
    }

    /// The usual precedence: explicit values (flags) > mounted file > environment.
    pub fn resolve(
        flags: Option<(String, SecretString, Option<SecretString>)>,
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CredentialsError> {
        if let Some((id, key, token)) = flags {
            return Self::new(id, key, token);
        }
        if let Some(path) = file {
            return Self::from_path(path);
        }
        Self::from_env_with(env)?.ok_or(CredentialsError::Missing)
    }
}

/// A cheap fingerprint of a credentials file or directory: size, modification time and inode
/// of every file [`Credentials::from_path`] could read (symlinks followed, as a Kubernetes
/// Secret volume swaps them), so that an unchanged source costs a few `stat`s and no read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStamp(Vec<Option<(u64, Option<SystemTime>, u64)>>);

impl SourceStamp {
    /// The fingerprint of `path` now. A missing or unreadable file is part of the fingerprint
    /// (it changes when the file appears).
    pub fn of(path: &Path) -> Self {
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok(), inode(&m)))
        };
        if path.is_dir() {
            let names = DIR_SECRET_ID_FILES
                .iter()
                .chain(DIR_SECRET_KEY_FILES)
                .chain(DIR_TOKEN_FILES);
            Self(names.map(|name| stat(&path.join(name))).collect())
        } else {
            Self(vec![stat(path)])
        }
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

fn header_safe(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// A credentials file's text: `Some(result)` if it is recognisably JSON or KEY=VALUE; `None`
/// if neither. Public for the fuzz suite (`crates/fuzz`); use [`Credentials::from_path`].
pub fn parse_file(text: &str) -> Option<Result<Credentials, CredentialsError>> {
    let trimmed = text.trim_start();
    let (mut id, mut key, mut token) = (None, None, None);
    if trimmed.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        let obj = value.as_object()?;
        for (k, v) in obj {
            let Some(v) = v.as_str() else { continue };
            match k.to_ascii_lowercase().as_str() {
                "secretid" | "secret_id" | "tencentcloud_secret_id" => id = Some(v.to_string()),
                "secretkey" | "secret_key" | "tencentcloud_secret_key" => key = Some(v.to_string()),
                "token" | "sessiontoken" | "session_token" | "tencentcloud_session_token" => {
                    token = Some(v.to_string())
                }
                _ => {}
            }
        }
    } else {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line.split_once('=')?;
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                ENV_SECRET_ID => id = Some(v),
                ENV_SECRET_KEY => key = Some(v),
                ENV_SESSION_TOKEN => token = Some(v),
                _ => {}
            }
        }
    }
    Some(match (id, key) {
        (Some(id), Some(key)) => {
            Credentials::new(id, SecretString::new(key), token.map(SecretString::new))
        }
        (None, _) => Err(CredentialsError::Incomplete {
            missing: "SecretId",
        }),
        (_, None) => Err(CredentialsError::Incomplete {
            missing: "SecretKey",
        }),
    })
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &self.secret_key)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretId {} (SecretKey {REDACTED}", self.secret_id)?;
        if self.token.is_some() {
            write!(f, ", session token {REDACTED}")?;
        }
        f.write_str(")")
    }
}

/// Command-line flags for credentials and endpoint, to `#[command(flatten)]` into a subcommand.
///
/// Environment values are hidden from `--help` (`hide_env_values`), and the secret fields are
/// [`SecretString`]s, so neither help output nor `Debug` of the parsed args shows them.
/// Prefer the environment or `--credentials-file` over `--secret-key`: flags are visible in `ps`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CredentialArgs {
    /// Tencent Cloud SecretId.
    #[arg(long, env = ENV_SECRET_ID, hide_env_values = true)]
    pub secret_id: Option<String>,
    /// Tencent Cloud SecretKey (prefer the environment variable or a file).
    #[arg(long, env = ENV_SECRET_KEY, hide_env_values = true)]
    pub secret_key: Option<SecretString>,
    /// STS session token for temporary credentials.
    #[arg(long, env = ENV_SESSION_TOKEN, hide_env_values = true)]
    pub session_token: Option<SecretString>,
    /// A mounted credentials file or Secret directory (used when no --secret-id/--secret-key).
    #[arg(long, env = "TENCENTCLOUD_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Where credentials come from: `auto` takes the first configured of flags/environment,
    /// credentials file, web identity (TKE pod identity); `instance-role` (the CVM's CAM role
    /// from the metadata service) is used only when chosen here.
    #[arg(
        long,
        env = "CLB_INGRESS_CREDENTIALS_PROVIDER",
        value_enum,
        default_value_t = ProviderChoice::Auto
    )]
    pub credentials_provider: ProviderChoice,
    /// CAM role to assume with the OIDC token (TKE pod identity sets TKE_ROLE_ARN).
    #[arg(long, env = ENV_ROLE_ARN)]
    pub role_arn: Option<String>,
    /// The projected service account token exchanged at STS, re-read on every exchange.
    #[arg(long, env = ENV_WEB_IDENTITY_TOKEN_FILE)]
    pub web_identity_token_file: Option<PathBuf>,
    /// CAM OIDC identity provider id (TKE pod identity sets TKE_PROVIDER_ID).
    #[arg(long, env = ENV_PROVIDER_ID)]
    pub oidc_provider_id: Option<String>,
    /// Region sent to STS (default: TKE_REGION, else --region).
    #[arg(long, env = ENV_TKE_REGION)]
    pub sts_region: Option<String>,
    /// STS endpoint (default https://sts.tencentcloudapi.com; plain http only on loopback).
    #[arg(long, env = "CLB_INGRESS_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// RoleSessionName of the web identity exchange (default clb-ingress).
    #[arg(long)]
    pub role_session_name: Option<String>,
    /// Lifetime asked of STS in seconds (1-43200, default 7200).
    #[arg(long)]
    pub role_duration_seconds: Option<u32>,
    /// CVM metadata service (default http://metadata.tencentyun.com).
    #[arg(long, env = "CLB_INGRESS_METADATA_ENDPOINT")]
    pub metadata_endpoint: Option<String>,
}

/// `--credentials-provider`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderChoice {
    /// The chain: flags/environment, credentials file, web identity.
    #[default]
    Auto,
    /// --secret-id/--secret-key or their environment variables.
    Static,
    /// --credentials-file.
    File,
    /// OIDC web identity (TKE pod identity): STS AssumeRoleWithWebIdentity.
    WebIdentity,
    /// The CVM instance role from the metadata service.
    InstanceRole,
}

impl ProviderChoice {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Static => "static",
            Self::File => "file",
            Self::WebIdentity => "web-identity",
            Self::InstanceRole => "instance-role",
        }
    }
}

/// Which credentials [`CredentialArgs::resolve`] chose.
#[derive(Debug, Clone)]
pub enum ChosenCredentials {
    /// Flags or environment: fixed for the life of the process.
    Static(Credentials),
    /// Read from this file, re-read on change and after credential errors.
    File(PathBuf, Credentials),
    /// Fetched from a role provider and refreshed before they expire.
    Role(RoleSource),
}

impl CredentialArgs {
    /// Nothing about credentials was given (then a loopback endpoint gets the emulator's key).
    pub fn nothing_given(&self) -> bool {
        self.credentials_provider == ProviderChoice::Auto
            && self.secret_id.is_none()
            && self.secret_key.is_none()
            && self.credentials_file.is_none()
            && !self.web_identity_given()
    }

    fn web_identity_given(&self) -> bool {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        set(&self.role_arn) || set(&self.oidc_provider_id) || self.web_identity_token_file.is_some()
    }

    /// The provider chain. `auto`: flags/environment keys, else the credentials file, else web
    /// identity when any of its settings is given; an explicit choice uses that provider only.
    /// `region` is the CLB region (the STS region when none is given).
    pub fn resolve(&self, region: &str) -> Result<ChosenCredentials, CredentialsError> {
        let keys_given = self.secret_id.is_some() || self.secret_key.is_some();
        match self.credentials_provider {
            ProviderChoice::Auto if keys_given || self.credentials_file.is_some() => self.keys(),
            ProviderChoice::Auto if self.web_identity_given() => self.web_identity(region),
            ProviderChoice::Auto => Err(CredentialsError::Missing),
            ProviderChoice::Static => match (&self.secret_id, &self.secret_key) {
                (Some(id), Some(key)) => Ok(ChosenCredentials::Static(Credentials::new(
                    id.clone(),
                    key.clone(),
                    self.session_token.clone(),
                )?)),
                _ => Err(CredentialsError::ProviderIncomplete {
                    provider: "static",
                    missing: "--secret-id and --secret-key (or TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY)",
                }),
            },
            ProviderChoice::File => match &self.credentials_file {
                Some(path) => Ok(ChosenCredentials::File(
                    path.clone(),
                    Credentials::from_path(path)?,
                )),
                None => Err(CredentialsError::ProviderIncomplete {
                    provider: "file",
                    missing: "--credentials-file",
                }),
            },
            ProviderChoice::WebIdentity => self.web_identity(region),
            ProviderChoice::InstanceRole => {
                let text = self
                    .metadata_endpoint
                    .as_deref()
                    .unwrap_or(DEFAULT_METADATA_ENDPOINT);
                let endpoint =
                    parse_metadata_endpoint(text).map_err(|source| CredentialsError::Provider {
                        provider: "instance role",
                        source: Box::new(source),
                    })?;
                Ok(ChosenCredentials::Role(RoleSource::InstanceRole(
                    InstanceRoleConfig { endpoint },
                )))
            }
        }
    }

    fn keys(&self) -> Result<ChosenCredentials, CredentialsError> {
        let credentials = self.load()?;
        Ok(match self.reloadable_file() {
            Some(path) => ChosenCredentials::File(path.to_path_buf(), credentials),
            None => ChosenCredentials::Static(credentials),
        })
    }

    fn web_identity(&self, region: &str) -> Result<ChosenCredentials, CredentialsError> {
        let incomplete = |missing| CredentialsError::ProviderIncomplete {
            provider: "web-identity",
            missing,
        };
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let role_arn =
            given(&self.role_arn).ok_or_else(|| incomplete("--role-arn (TKE_ROLE_ARN)"))?;
        let provider_id = given(&self.oidc_provider_id)
            .ok_or_else(|| incomplete("--oidc-provider-id (TKE_PROVIDER_ID)"))?;
        let token_file = self
            .web_identity_token_file
            .clone()
            .ok_or_else(|| incomplete("--web-identity-token-file (TKE_WEB_IDENTITY_TOKEN_FILE)"))?;
        let provider_error = |source| CredentialsError::Provider {
            provider: "web identity",
            source: Box::new(source),
        };
        let endpoint =
            parse_sts_endpoint(self.sts_endpoint.as_deref().unwrap_or(DEFAULT_STS_ENDPOINT))
                .map_err(provider_error)?;
        Ok(ChosenCredentials::Role(RoleSource::WebIdentity(
            WebIdentityConfig {
                role_arn,
                token_file,
                provider_id,
                region: given(&self.sts_region).unwrap_or_else(|| region.to_string()),
                endpoint,
                session_name: self
                    .role_session_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ROLE_SESSION_NAME.to_string()),
                duration_secs: self
                    .role_duration_seconds
                    .unwrap_or(DEFAULT_ROLE_DURATION_SECS),
            },
        )))
    }

    /// The credentials file [`CredentialArgs::load`] reads (none when flags or their
    /// environment variables give both id and key): the file to re-read for rotated credentials.
    pub fn reloadable_file(&self) -> Option<&Path> {
        match (&self.secret_id, &self.secret_key) {
            (Some(_), Some(_)) => None,
            _ => self.credentials_file.as_deref(),
        }
    }

    /// Flags (or their environment variables) first, then the credentials file.
    pub fn load(&self) -> Result<Credentials, CredentialsError> {
        match (&self.secret_id, &self.secret_key) {
            (Some(id), Some(key)) => {
                Credentials::new(id.clone(), key.clone(), self.session_token.clone())
            }
            (Some(_), None) if self.credentials_file.is_none() => {
                Err(CredentialsError::Incomplete {
                    missing: "SecretKey",
                })
            }
            (None, Some(_)) if self.credentials_file.is_none() => {
                Err(CredentialsError::Incomplete {
                    missing: "SecretId",
                })
            }
            _ => match &self.credentials_file {
                Some(path) => Credentials::from_path(path),
                None => Err(CredentialsError::Missing),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "EXAMPLEsecretKEY0123456789abcdef";
    const TOKEN: &str = "EXAMPLETOKENvalue42";

    fn creds() -> Credentials {
        Credentials::new(
            "AKIDexample",
            SecretString::new(KEY),
            Some(SecretString::new(TOKEN)),
        )
        .unwrap()
    }

    #[test]
    fn debug_and_display_of_credentials_never_show_key_or_token() {
        let c = creds();
        for text in [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{c}"),
            format!("{:?}", c.secret_key()),
            format!("{}", c.secret_key()),
            format!("{:?}", c.session_token()),
            format!("{:?}", Some(&c)),
        ] {
            assert!(!text.contains(KEY), "{text}");
            assert!(!text.contains(TOKEN), "{text}");
        }
        assert!(format!("{c}").contains("AKIDexample"));
        assert_eq!(c.secret_key().expose(), KEY);
    }

    #[test]
    fn environment_needs_both_id_and_key() {
        let env: HashMap<&str, &str> = [(ENV_SECRET_ID, "id")].into();
        let err = Credentials::from_env_with(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(
            matches!(err, CredentialsError::Incomplete { missing } if missing == ENV_SECRET_KEY)
        );
        assert!(Credentials::from_env_with(|_| None).unwrap().is_none());
        let env: HashMap<&str, &str> = [
            (ENV_SECRET_ID, "id"),
            (ENV_SECRET_KEY, KEY),
            (ENV_SESSION_TOKEN, ""),
        ]
        .into();
        let c = Credentials::from_env_with(|k| env.get(k).map(|v| v.to_string()))
            .unwrap()
            .unwrap();
        assert_eq!(c.secret_id(), "id");
        assert!(c.session_token().is_none(), "an empty token is no token");
    }

    #[test]
    fn credentials_file_formats_are_all_understood() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("c.json");
        std::fs::write(
            &json,
            format!(r#"{{"secretId": "AKID1", "secretKey": "{KEY}", "token": "{TOKEN}"}}"#),
        )
        .unwrap();
        let c = Credentials::from_path(&json).unwrap();
        assert_eq!(c.secret_id(), "AKID1");
        assert_eq!(c.session_token().unwrap().expose(), TOKEN);

        let env = dir.path().join("c.env");
        std::fs::write(
            &env,
            format!("# creds\nexport {ENV_SECRET_ID}=AKID2\n{ENV_SECRET_KEY}=\"{KEY}\"\n"),
        )
        .unwrap();
        let c = Credentials::from_path(&env).unwrap();
        assert_eq!(c.secret_id(), "AKID2");
        assert_eq!(c.secret_key().expose(), KEY);

        let secret_dir = dir.path().join("secret");
        std::fs::create_dir(&secret_dir).unwrap();
        std::fs::write(secret_dir.join("secretId"), "AKID3\n").unwrap();
        std::fs::write(secret_dir.join("secretKey"), format!("{KEY}\n")).unwrap();
        let c = Credentials::from_path(&secret_dir).unwrap();
        assert_eq!(c.secret_id(), "AKID3");
        assert_eq!(c.secret_key().expose(), KEY, "trailing newline trimmed");

        let bad = dir.path().join("bad");
        std::fs::write(&bad, format!("just the key {KEY}")).unwrap();
        let err = Credentials::from_path(&bad).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(KEY));
    }

    #[test]
    fn the_source_stamp_changes_when_a_credentials_file_or_directory_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(&file, r#"{"SecretId": "AKID1", "SecretKey": "k1"}"#).unwrap();
        let before = SourceStamp::of(&file);
        assert_eq!(
            before,
            SourceStamp::of(&file),
            "an untouched file keeps its stamp"
        );
        // Same length, new content: the new inode (write-and-rename, as the kubelet does)
        // tells them apart even within one mtime tick.
        let tmp = dir.path().join("c.json.tmp");
        std::fs::write(&tmp, r#"{"SecretId": "AKID2", "SecretKey": "k2"}"#).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_ne!(before, SourceStamp::of(&file));

        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("secretId"), "AKID3").unwrap();
        std::fs::write(secret.join("secretKey"), KEY).unwrap();
        let before = SourceStamp::of(&secret);
        std::fs::write(secret.join("sessionToken"), TOKEN).unwrap();
        assert_ne!(
            before,
            SourceStamp::of(&secret),
            "a token file that appears"
        );
    }

    /// The kubelet's Secret volume layout: `KEY -> ..data/KEY`, `..data -> ..<timestamp>`, and
    /// an update swaps `..data` to a new directory atomically.
    #[cfg(unix)]
    #[test]
    fn a_kubelet_style_secret_volume_update_changes_the_stamp_and_the_credentials() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path();
        let version = |name: &str, id: &str, token: &str| {
            let v = volume.join(name);
            std::fs::create_dir(&v).unwrap();
            std::fs::write(v.join("secretId"), id).unwrap();
            std::fs::write(v.join("secretKey"), KEY).unwrap();
            std::fs::write(v.join("sessionToken"), token).unwrap();
        };
        version("..2026_01_01_00_00_00.1", "AKIDold", "TOKENold");
        symlink("..2026_01_01_00_00_00.1", volume.join("..data")).unwrap();
        for key in ["secretId", "secretKey", "sessionToken"] {
            symlink(format!("..data/{key}"), volume.join(key)).unwrap();
        }
        let before = SourceStamp::of(volume);
        assert_eq!(
            Credentials::from_path(volume).unwrap().secret_id(),
            "AKIDold"
        );
        // Same lengths: only the swap tells the versions apart.
        version("..2026_01_01_00_01_00.2", "AKIDnew", "TOKENnew");
        symlink("..2026_01_01_00_01_00.2", volume.join("..data_tmp")).unwrap();
        std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
        assert_ne!(before, SourceStamp::of(volume));
        let c = Credentials::from_path(volume).unwrap();
        assert_eq!(c.secret_id(), "AKIDnew");
        assert_eq!(c.session_token().unwrap().expose(), "TOKENnew");
    }

    #[test]
    fn flags_take_precedence_over_the_file() {
        let args = CredentialArgs {
            secret_id: Some("AKIDflag".into()),
            secret_key: Some(SecretString::new(KEY)),
            session_token: None,
            credentials_file: Some(PathBuf::from("/nonexistent")),
            ..CredentialArgs::default()
        };
        assert_eq!(args.load().unwrap().secret_id(), "AKIDflag");
        assert!(!format!("{args:?}").contains(KEY));
        assert!(matches!(
            CredentialArgs::default().load(),
            Err(CredentialsError::Missing)
        ));
    }

    fn web_identity_args() -> CredentialArgs {
        CredentialArgs {
            role_arn: Some("qcs::cam::uin/100000000001:roleName/clb-ingress".into()),
            oidc_provider_id: Some("cls-abc123".into()),
            web_identity_token_file: Some(PathBuf::from("/var/run/token")),
            ..CredentialArgs::default()
        }
    }

    #[test]
    fn the_chain_takes_keys_then_the_file_then_web_identity() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(
            &file,
            format!(r#"{{"SecretId":"AKIDfile","SecretKey":"{KEY}"}}"#),
        )
        .unwrap();
        let mut args = web_identity_args();
        args.credentials_file = Some(file.clone());
        assert!(
            matches!(args.resolve("ap-guangzhou"), Ok(ChosenCredentials::File(p, c)) if p == file && c.secret_id() == "AKIDfile")
        );
        args.secret_id = Some("AKIDflag".into());
        args.secret_key = Some(SecretString::new(KEY));
        assert!(
            matches!(args.resolve("ap-guangzhou"), Ok(ChosenCredentials::Static(c)) if c.secret_id() == "AKIDflag")
        );
        match web_identity_args().resolve("ap-shanghai") {
            Ok(ChosenCredentials::Role(RoleSource::WebIdentity(c))) => {
                assert_eq!(c.region, "ap-shanghai", "the CLB region without TKE_REGION");
                assert_eq!(c.endpoint.as_str(), "https://sts.tencentcloudapi.com/");
                assert_eq!(c.duration_secs, DEFAULT_ROLE_DURATION_SECS);
                assert_eq!(c.session_name, DEFAULT_ROLE_SESSION_NAME);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            CredentialArgs::default().resolve("ap-guangzhou"),
            Err(CredentialsError::Missing)
        ));
    }

    #[test]
    fn an_incomplete_web_identity_names_what_is_missing() {
        let mut args = web_identity_args();
        args.oidc_provider_id = None;
        let err = args.resolve("ap-guangzhou").unwrap_err();
        assert!(err.to_string().contains("TKE_PROVIDER_ID"), "{err}");
        let mut args = web_identity_args();
        args.sts_endpoint = Some("http://sts.example.com".into());
        let err = args.resolve("ap-guangzhou").unwrap_err();
        assert!(matches!(err, CredentialsError::Provider { .. }), "{err:?}");
    }

    #[test]
    fn the_instance_role_is_used_only_when_chosen() {
        let args = CredentialArgs {
            credentials_provider: ProviderChoice::InstanceRole,
            metadata_endpoint: Some("http://127.0.0.1:18181".into()),
            ..CredentialArgs::default()
        };
        assert!(matches!(
            args.resolve("ap-guangzhou"),
            Ok(ChosenCredentials::Role(RoleSource::InstanceRole(c))) if c.endpoint.as_str() == "http://127.0.0.1:18181/"
        ));
        assert!(!args.nothing_given());
        assert!(CredentialArgs::default().nothing_given());
        let explicit_file = CredentialArgs {
            credentials_provider: ProviderChoice::File,
            ..web_identity_args()
        };
        let err = explicit_file.resolve("ap-guangzhou").unwrap_err();
        assert!(err.to_string().contains("--credentials-file"), "{err}");
    }
}
