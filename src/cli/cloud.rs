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
    /// CLB API requests per second per action, for all of this process's calls (CLB allows 20
    /// per action per account, shared with every other tool using the account: lower it to
    /// leave them room). Up to this many calls go out at once; each call's slot is free again
    /// one second after its answer. `0` removes the limit (only for an emulator without one).
    #[arg(long = "clb-requests-per-second", env = "CLB_INGRESS_REQUESTS_PER_SECOND",
          default_value_t = crate::clb::ratelimit::DEFAULT_RATE_PER_SECOND,
          value_parser = requests_per_second)]
    pub requests_per_second: f64,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// A rate: finite, >= 0 (0: unlimited), at most 1,000 (no CLB action allows more).
fn requests_per_second(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of requests per second"))?;
    if !v.is_finite() || !(0.0..=1000.0).contains(&v) {
        return Err(format!(
            "{s:?}: requests per second must be between 0 (unlimited) and 1000"
        ));
    }
    Ok(v)
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
        let mut config = ClientConfig::new(&self.region, endpoint);
        config.rate_limits.default = if self.requests_per_second == 0.0 {
            crate::clb::ratelimit::RateLimit::unlimited()
        } else {
            crate::clb::ratelimit::RateLimit::new(self.requests_per_second)
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cloud: CloudArgs,
    }

    fn rate_of(args: &[&str]) -> Result<crate::clb::ratelimit::RateLimit, String> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let mut c = cli.cloud;
        c.endpoint = Some("http://127.0.0.1:1".into());
        let client = c.client().map_err(|e| e.to_string())?;
        Ok(client.config().rate_limits.default)
    }

    #[test]
    fn the_request_rate_defaults_to_the_clb_limit_and_can_be_lowered_or_lifted() {
        let d = rate_of(&[]).unwrap();
        assert_eq!(d.per_second, 20.0);
        let low = rate_of(&["--clb-requests-per-second", "5"]).unwrap();
        assert_eq!(low.per_second, 5.0);
        let none = rate_of(&["--clb-requests-per-second", "0"]).unwrap();
        assert!(none.per_second.is_infinite(), "{none:?}");
    }

    #[test]
    fn a_request_rate_that_is_not_a_sane_number_is_refused_naming_the_flag() {
        for bad in ["-1", "NaN", "inf", "1e9", "fast"] {
            let arg = format!("--clb-requests-per-second={bad}");
            let e = rate_of(&[&arg]).unwrap_err();
            assert!(e.contains("--clb-requests-per-second"), "{bad}: {e}");
        }
    }
}
