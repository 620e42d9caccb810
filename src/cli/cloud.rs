//! Flags that connect a subcommand to a CLB API: real Tencent Cloud or the local emulator.

use crate::clb::credentials::CredentialArgs;
use crate::clb::{ClbClient, ClientConfig, Credentials, Endpoint};
use crate::deploy::Deployer;
use anyhow::Context;

/// Region used when none is given (the emulator accepts any).
pub const DEFAULT_REGION: &str = "ap-guangzhou";

#[derive(Debug, Clone, clap::Args)]
pub struct CloudArgs {
    /// CLB API endpoint: a URL such as the emulator's `http://127.0.0.1:9000`, or `nearest` /
    /// `region` for Tencent Cloud's `clb.tencentcloudapi.com` / `clb.<region>.tencentcloudapi.com`.
    #[arg(long = "clb-endpoint", env = "CLB_INGRESS_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Tencent Cloud region.
    #[arg(long, env = "TENCENTCLOUD_REGION", default_value = DEFAULT_REGION)]
    pub region: String,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

impl CloudArgs {
    pub fn is_set(&self) -> bool {
        self.endpoint.is_some()
    }

    /// Build a client. Without credentials, a loopback endpoint (the local emulator) gets the
    /// emulator's documented test credentials; anything else is an error.
    pub fn client(&self) -> anyhow::Result<ClbClient> {
        self.client_with(None, None)
    }

    /// Like `client`, reporting every call to `observer` (metrics).
    /// The client, reporting to `observer`, with every write first checked by `gate`.
    pub fn client_with(
        &self,
        observer: Option<std::sync::Arc<dyn crate::clb::observe::ClbObserver>>,
        gate: Option<std::sync::Arc<dyn crate::clb::client::WriteGate>>,
    ) -> anyhow::Result<ClbClient> {
        let raw = self.endpoint.as_deref().unwrap_or("region");
        let endpoint = match raw {
            "nearest" => Endpoint::Nearest {
                root_domain: "tencentcloudapi.com".into(),
            },
            "region" => Endpoint::RegionPinned {
                root_domain: "tencentcloudapi.com".into(),
            },
            url => Endpoint::parse(url).with_context(|| format!("--clb-endpoint {url:?}"))?,
        };
        let none_given = self.credentials.secret_id.is_none()
            && self.credentials.secret_key.is_none()
            && self.credentials.credentials_file.is_none();
        let loopback = ["http://127.", "https://127.", "http://localhost", "127."]
            .iter()
            .any(|p| raw.starts_with(p));
        let creds = if none_given && loopback {
            Credentials::new(
                crate::clb::credentials::EMULATOR_SECRET_ID.to_string(),
                crate::clb::credentials::SecretString::new(
                    crate::clb::credentials::EMULATOR_SECRET_KEY,
                ),
                None,
            )?
        } else {
            self.credentials
                .load()
                .context("loading Tencent Cloud credentials")?
        };
        let config = ClientConfig::new(&self.region, endpoint);
        let mut b = ClbClient::builder(config.clone(), creds);
        if !(none_given && loopback)
            && let Some(file) = self.credentials.reloadable_file()
        {
            // Re-read on credential errors (expired STS token) and by `watch_credentials`.
            b = b.credentials_file(file);
        }
        if loopback {
            // Never let a proxy variable send emulator traffic off this machine.
            b = b.http_client(
                crate::clb::client::http_builder(&config)
                    .no_proxy()
                    .build()?,
            );
        }
        if let Some(o) = observer {
            b = b.observer(o);
        }
        if let Some(g) = gate {
            b = b.write_gate(g);
        }
        Ok(b.build()?)
    }

    pub fn deployer(&self, cluster_id: &str) -> anyhow::Result<Deployer> {
        Ok(Deployer::new(self.client()?, cluster_id))
    }
}
