//! Flags that connect a subcommand to a CLB API: real Tencent Cloud or the local emulator.

use crate::clb::credentials::{ChosenCredentials, CredentialArgs};
use crate::clb::providers::RoleProvider;
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
        let none_given = self.credentials.nothing_given();
        let loopback = ["http://127.", "https://127.", "http://localhost", "127."]
            .iter()
            .any(|p| raw.starts_with(p));
        let chosen = if none_given && loopback {
            ChosenCredentials::Static(Credentials::new(
                crate::clb::credentials::EMULATOR_SECRET_ID.to_string(),
                crate::clb::credentials::SecretString::new(
                    crate::clb::credentials::EMULATOR_SECRET_KEY,
                ),
                None,
            )?)
        } else {
            self.credentials
                .resolve(&self.region)
                .context("loading Tencent Cloud credentials")?
        };
        let config = ClientConfig::new(&self.region, endpoint);
        let mut b = match chosen {
            ChosenCredentials::Static(creds) => ClbClient::builder(config.clone(), creds),
            // Re-read on credential errors (expired STS token) and by `watch_credentials`.
            ChosenCredentials::File(file, creds) => {
                ClbClient::builder(config.clone(), creds).credentials_file(file)
            }
            // Fetched on the first call and refreshed before expiry (`watch_credentials`).
            ChosenCredentials::Role(source) => {
                let provider = RoleProvider::new(source)
                    .context("setting up the Tencent Cloud credentials provider")?;
                ClbClient::builder_with_role(config.clone(), provider)
            }
        };
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
