//! `clb-ingress emulator`: flags, settings precedence (defaults < `--config` < flags), and the
//! run loop that serves the API and the data plane until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{AdminToken, ConfigError, Credential, Settings};
use crate::core::SystemClock;
use crate::dataplane::{DataPlane, DataPlaneSettings};
use crate::server::{self, StartError};

/// Flags of `clb-ingress emulator`. Every flag overrides the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EmulatorArgs {
    /// API address (loopback only), e.g. 127.0.0.1:9000; port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Accepted SecretId (default: the documented test pair, see docs/emulator.md).
    #[arg(long, env = "CLB_EMULATOR_SECRET_ID", requires = "secret_key")]
    pub secret_id: Option<String>,
    /// Accepted SecretKey for --secret-id.
    #[arg(
        long,
        env = "CLB_EMULATOR_SECRET_KEY",
        requires = "secret_id",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// Region the emulator serves (X-TC-Region must match).
    #[arg(long)]
    pub region: Option<String>,
    /// First loopback VIP handed to a CLB (127.x.y.z).
    #[arg(long)]
    pub vip_base: Option<Ipv4Addr>,
    /// Data plane socket port = CLB listener port + offset.
    #[arg(long)]
    pub port_offset: Option<u16>,
    /// How long async tasks stay in status 2 (running), in milliseconds.
    #[arg(long)]
    pub task_delay_ms: Option<u64>,
    /// Requests per second per action (0 = unlimited).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// YAML or JSON settings file (see docs/emulator.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Persist CLBs and certificates to this JSON file and reload them at start.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Seed of the RNG (ids, RequestIds, fault rolls, target choice) for reproducible runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Health-check probe interval of the data plane in milliseconds, overriding every rule's
    /// IntervalTime (fast demos and tests; thresholds still apply).
    #[arg(long)]
    pub health_check_interval_ms: Option<u64>,
    /// Serve the API only, without the data plane.
    #[arg(long)]
    pub no_data_plane: bool,
    /// Token every admin write (/_emulator/*) needs, as `Authorization: Bearer <token>` or
    /// `X-Emulator-Admin-Token: <token>`. Without it a random token is made and printed at start.
    /// Prefer the environment variable: a flag is visible in the process list.
    #[arg(long, env = "CLB_EMULATOR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Show SecretKeys and private keys in /_emulator/settings and /_emulator/state (redacted
    /// otherwise); every admin call but healthz then needs the admin token, reads included.
    #[arg(long)]
    pub admin_show_secrets: bool,
}

impl EmulatorArgs {
    /// Defaults, then the config file, then flags.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = match &self.config {
            Some(p) => Settings::from_file(p)?,
            None => Settings::default(),
        };
        if let Some(v) = self.listen {
            s.listen = v;
        }
        if let (Some(id), Some(key)) = (&self.secret_id, &self.secret_key) {
            s.credentials.retain(|c| &c.secret_id != id);
            s.credentials
                .insert(0, Credential::permanent(id.clone(), key.clone()));
        }
        if let Some(v) = &self.region {
            s.region = v.clone();
        }
        if let Some(v) = self.vip_base {
            s.vip_base = v;
        }
        if let Some(v) = self.port_offset {
            s.port_offset = v;
        }
        if let Some(v) = self.task_delay_ms {
            s.task_delay_ms = v;
        }
        if let Some(v) = self.rate_limit {
            s.rate_limit = v;
        }
        if let Some(v) = &self.state_file {
            s.state_file = Some(v.clone());
        }
        if let Some(v) = self.seed {
            s.seed = Some(v);
        }
        if let Some(v) = self.health_check_interval_ms {
            s.health_check.interval_ms = Some(v);
        }
        if let Some(v) = &self.admin_token {
            s.admin_token = Some(AdminToken::new(v.clone()));
        }
        if self.admin_show_secrets {
            s.admin_show_secrets = true;
        }
        s.validate()?;
        Ok(s)
    }
}

/// Run the emulator until Ctrl-C or SIGTERM.
pub async fn run(args: EmulatorArgs) -> Result<(), StartError> {
    let settings = args.settings()?;
    let plane: Arc<dyn server::PlaneSink> = if args.no_data_plane {
        Arc::new(server::NoPlane)
    } else {
        Arc::new(DataPlane::new(DataPlaneSettings {
            port_offset: settings.port_offset,
            rng_seed: settings.seed,
            health_timing: settings.health_check.timing(),
            ..DataPlaneSettings::default()
        }))
    };
    let region = settings.region.clone();
    let vip_base = settings.vip_base;
    let offset = settings.port_offset;
    let token_configured = settings.admin_token.is_some();
    // Handlers first: a SIGTERM sent as soon as the address is read stops it cleanly.
    let stop = clb_http_limits::shutdown_signal();
    let running = server::start(settings, Arc::new(SystemClock), plane).await?;
    // One machine-readable line so scripts can find the API address.
    println!(
        "clb-ingress emulator listening on http://{} (region {region}, VIPs from {vip_base}, data plane port = CLB port + {offset})",
        running.addr
    );
    println!(
        "{}",
        admin_token_line(token_configured, running.admin_token())
    );
    tracing::info!(addr = %running.addr, "emulator started");
    stop.await;
    running.stop().await;
    Ok(())
}

/// The second start line: the generated admin token, or where the configured one came from.
pub fn admin_token_line(configured: bool, token: &str) -> String {
    if configured {
        "admin token: as configured (--admin-token / CLB_EMULATOR_ADMIN_TOKEN)".to_string()
    } else {
        format!(
            "admin token: {token} (send `Authorization: Bearer <token>` or `X-Emulator-Admin-Token: <token>` with every /_emulator write)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_file_and_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("emu.yaml");
        std::fs::write(&cfg, "task_delay_ms: 5\nrate_limit: 7\n").expect("write");
        let args = EmulatorArgs {
            config: Some(cfg),
            rate_limit: Some(9),
            secret_id: Some("AKIDx".into()),
            secret_key: Some("k".into()),
            ..EmulatorArgs::default()
        };
        let s = args.settings().expect("settings");
        assert_eq!(s.task_delay_ms, 5);
        assert_eq!(s.rate_limit, 9);
        assert_eq!(s.secret_key("AKIDx"), Some("k"));
    }

    #[test]
    fn a_non_loopback_listen_flag_is_refused() {
        let args = EmulatorArgs {
            listen: Some("0.0.0.0:9000".parse().expect("addr")),
            ..EmulatorArgs::default()
        };
        assert!(matches!(
            args.settings(),
            Err(ConfigError::NotLoopback { .. })
        ));
    }

    #[test]
    fn admin_flags_set_the_token_and_the_show_secrets_switch() {
        let args = EmulatorArgs {
            admin_token: Some("tok-123".into()),
            admin_show_secrets: true,
            ..EmulatorArgs::default()
        };
        let s = args.settings().expect("settings");
        assert_eq!(
            s.admin_token.as_ref().map(AdminToken::expose),
            Some("tok-123")
        );
        assert!(s.admin_show_secrets);
        let defaults = EmulatorArgs::default().settings().expect("settings");
        assert!(defaults.admin_token.is_none() && !defaults.admin_show_secrets);
    }

    #[test]
    fn the_start_line_prints_a_generated_token_but_never_a_configured_one() {
        assert!(admin_token_line(false, "generated-1").contains("generated-1"));
        assert!(!admin_token_line(true, "configured-1").contains("configured-1"));
    }
}
