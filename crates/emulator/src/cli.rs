//! `clb-ingress emulator`: flags, settings precedence (defaults < `--config` < flags), and the
//! run loop that serves the API and the data plane until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ConfigError, Credential, Settings};
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
    /// Serve the API only, without the data plane.
    #[arg(long)]
    pub no_data_plane: bool,
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
        s.validate()?;
        Ok(s)
    }
}

/// Run the emulator until Ctrl-C.
pub async fn run(args: EmulatorArgs) -> Result<(), StartError> {
    let settings = args.settings()?;
    let plane: Arc<dyn server::PlaneSink> = if args.no_data_plane {
        Arc::new(server::NoPlane)
    } else {
        Arc::new(DataPlane::new(DataPlaneSettings {
            port_offset: settings.port_offset,
            rng_seed: settings.seed,
            ..DataPlaneSettings::default()
        }))
    };
    let region = settings.region.clone();
    let vip_base = settings.vip_base;
    let offset = settings.port_offset;
    let running = server::start(settings, Arc::new(SystemClock), plane).await?;
    // One machine-readable line so scripts can find the API address.
    println!(
        "clb-ingress emulator listening on http://{} (region {region}, VIPs from {vip_base}, data plane port = CLB port + {offset})",
        running.addr
    );
    tracing::info!(addr = %running.addr, "emulator started");
    let _ = tokio::signal::ctrl_c().await;
    running.stop().await;
    Ok(())
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
}
