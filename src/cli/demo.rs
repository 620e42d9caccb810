//! `clb-ingress demo`: everything on this machine, no cloud, no cluster. Starts the local CLB
//! emulator (API + data plane on loopback), applies the manifests (by default `examples/`),
//! sends one request per host through the emulated CLB, and prints what to curl.

use super::apply::apply_snapshot;
use crate::clb::credentials::SecretString;
use crate::clb::{ClbClient, ClientConfig, Credentials, Endpoint};
use crate::deploy::Deployer;
use crate::emulator::config::Settings;
use crate::emulator::core::SystemClock;
use crate::emulator::dataplane::{DataPlane, DataPlaneSettings};
use crate::emulator::server;
use crate::model::{self, Protocol, Snapshot};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Manifests to apply.
    #[arg(short = 'f', long = "filename", default_value = "examples/")]
    pub files: Vec<PathBuf>,
    /// Emulator API address (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// First loopback VIP handed to a CLB.
    #[arg(long, default_value = "127.1.0.1")]
    pub vip_base: std::net::Ipv4Addr,
    /// Data-plane port = CLB listener port + this offset.
    #[arg(long, default_value_t = crate::emulator::config::DEFAULT_PORT_OFFSET)]
    pub port_offset: u16,
    /// Exit after applying and checking instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> anyhow::Result<i32> {
    let settings = Settings {
        listen: args.listen,
        vip_base: args.vip_base,
        port_offset: args.port_offset,
        task_delay_ms: 0,
        ..Settings::default()
    };
    let id = settings.credentials[0].secret_id.clone();
    let key = settings.credentials[0].secret_key.clone();
    let plane = Arc::new(DataPlane::new(DataPlaneSettings {
        port_offset: args.port_offset,
        ..DataPlaneSettings::default()
    }));
    let emu = server::start(settings, Arc::new(SystemClock), plane).await?;
    println!(
        "CLB emulator API: http://{}  (admin: http://{}/_emulator/state)",
        emu.addr, emu.addr
    );

    let mut snap = Snapshot::new("demo");
    crate::manifests::load(&args.files, &mut snap)?;
    let out = model::build(&snap);
    for p in &out.problems {
        eprintln!("problem: {p}");
    }
    let client = ClbClient::new(
        ClientConfig::new(
            "ap-guangzhou",
            Endpoint::parse(&format!("http://{}", emu.addr))?,
        ),
        Credentials::new(id, SecretString::new(key), None)?,
    )?;
    let results = apply_snapshot(&Deployer::new(client, "demo"), &out, false, 4).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()?;
    let mut failed = false;
    for r in &results {
        let Some(o) = &r.outcome else {
            println!("{}: FAILED: {}", r.stack, r.error.as_deref().unwrap_or(""));
            failed = true;
            continue;
        };
        let vip = o.vips.first().cloned().unwrap_or_default();
        println!(
            "\n{}: CLB {} at {vip} ({} writes)",
            r.stack,
            o.lb_id.as_deref().unwrap_or("?"),
            o.write_calls
        );
        let Some(desired) = out.stacks.values().find(|d| d.stack.0 == r.stack) else {
            continue;
        };
        for l in &desired.listeners {
            let port = l.port + args.port_offset;
            for d in l
                .domains
                .iter()
                .filter(|d| d.default_server || d.host.contains('.'))
            {
                let host = match d.host.strip_prefix("*.") {
                    Some(suffix) => format!("demo.{suffix}"),
                    None if d.default_server => "unknown-host.example".to_string(),
                    None => d.host.clone(),
                };
                let path = d
                    .rules
                    .iter()
                    .map(|r| r.url.trim_start_matches('='))
                    .filter(|u| u.starts_with('/') && !u.contains(".clb-ingress"))
                    .max_by_key(|u| u.len())
                    .unwrap_or("/");
                let (scheme, curl) = match l.protocol {
                    Protocol::Http => (
                        "http",
                        format!("curl -si -H 'Host: {host}' http://{vip}:{port}{path}"),
                    ),
                    Protocol::Https => (
                        "https",
                        format!(
                            "curl -sik --resolve {host}:{port}:{vip} https://{host}:{port}{path}"
                        ),
                    ),
                };
                let url = format!("{scheme}://{vip}:{port}{path}");
                let req = http.get(&url).header("Host", &host);
                let got = match req.send().await {
                    Ok(resp) => format!(
                        "{} -> {}",
                        resp.status().as_u16(),
                        resp.headers()
                            .get("x-clb-target")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("(no target)")
                    ),
                    Err(e) => {
                        failed = true;
                        format!("error: {e}")
                    }
                };
                println!("  {curl}\n      # {got}");
            }
        }
    }
    println!(
        "\nMetrics of the emulator's API calls: curl http://{}/_emulator/counters",
        emu.addr
    );
    if args.once {
        emu.stop().await;
    } else {
        println!("Serving until Ctrl-C.");
        let _ = tokio::signal::ctrl_c().await;
        emu.stop().await;
    }
    Ok(if failed { 1 } else { 0 })
}
