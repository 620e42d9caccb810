//! `clb-ingress demo`: the whole product on this machine, no cloud and no cluster needed.
//! Starts the in-repo test Kubernetes API server, the local CLB emulator (API + data plane on
//! loopback) and the controller; applies the CRD and the manifests (by default `examples/`)
//! through the Kubernetes API; waits for the controller to publish each Ingress's address;
//! sends one request per host through the emulated CLB; and prints what to curl and kubectl.

use crate::crd::ClbClassParameters;
use crate::emulator::config::Settings;
use crate::emulator::core::SystemClock;
use crate::emulator::dataplane::{DataPlane, DataPlaneSettings};
use crate::emulator::server;
use crate::model::{self, Protocol, Snapshot};
use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the demo waits for the controller to give every Ingress an address.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Manifests to apply.
    #[arg(short = 'f', long = "filename", default_value = "examples/")]
    pub files: Vec<PathBuf>,
    /// Emulator API address (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Test Kubernetes API server address (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub kube_listen: SocketAddr,
    /// Controller operations endpoint (/metrics /healthz /readyz).
    #[arg(long, default_value = "127.0.0.1:9002")]
    pub metrics_addr: SocketAddr,
    /// First loopback VIP handed to a CLB.
    #[arg(long, default_value = "127.1.0.1")]
    pub vip_base: std::net::Ipv4Addr,
    /// Data-plane port = CLB listener port + this offset.
    #[arg(long, default_value_t = crate::emulator::config::DEFAULT_PORT_OFFSET)]
    pub port_offset: u16,
    /// Where to write the kubeconfig of the test API server.
    #[arg(long, default_value = "target/demo/kubeconfig")]
    pub kubeconfig_out: PathBuf,
    /// Exit after applying and checking instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

#[derive(Parser)]
struct RunWrapper {
    #[command(flatten)]
    run: super::run::RunArgs,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(args))
}

/// Server-side apply every manifest document through the Kubernetes API.
async fn apply_manifests(kube: &kube::Client, files: &[PathBuf]) -> anyhow::Result<usize> {
    let mut n = 0;
    for root in files {
        for file in crate::manifests::files(root)? {
            let name = file.display().to_string();
            let text = crate::manifests::read_manifest(&file)?;
            for doc in crate::manifests::parse_documents(&name, &text)? {
                let obj_name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
                let ar = crate::manifests::api_resource(&doc);
                let kind = ar.kind.clone();
                let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
                    Some(ns) => Api::namespaced_with(kube.clone(), ns, &ar),
                    None if matches!(
                        kind.as_str(),
                        "IngressClass" | "ClbClassParameters" | "Node" | "Namespace"
                    ) =>
                    {
                        Api::all_with(kube.clone(), &ar)
                    }
                    None => Api::namespaced_with(kube.clone(), "default", &ar),
                };
                api.patch(
                    &obj_name,
                    &PatchParams::apply("clb-ingress-demo").force(),
                    &Patch::Apply(&doc),
                )
                .await
                .with_context(|| format!("{name}: {kind} {obj_name}"))?;
                n += 1;
            }
        }
    }
    Ok(n)
}

async fn demo(args: &DemoArgs) -> anyhow::Result<i32> {
    // 1. The Kubernetes API (test server) and its kubeconfig.
    let kube_api = crate::testapi::start(args.kube_listen).await?;
    if let Some(dir) = args.kubeconfig_out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.kubeconfig_out, kube_api.kubeconfig_yaml())?;
    let kubeconfig = std::fs::canonicalize(&args.kubeconfig_out)?;
    let kube = crate::controller::kube_client(Some(&kubeconfig)).await?;

    // 2. The CLB emulator with its data plane.
    let settings = Settings {
        listen: args.listen,
        vip_base: args.vip_base,
        port_offset: args.port_offset,
        task_delay_ms: 0,
        ..Settings::default()
    };
    let plane = Arc::new(DataPlane::new(DataPlaneSettings {
        port_offset: args.port_offset,
        ..DataPlaneSettings::default()
    }));
    let emu = server::start(settings, Arc::new(SystemClock), plane).await?;

    // 3. The controller, pointed at both.
    let kc = kubeconfig.display().to_string();
    let endpoint = format!("http://{}", emu.addr);
    let metrics = args.metrics_addr.to_string();
    let run_args = RunWrapper::try_parse_from([
        "run",
        "--kubeconfig",
        &kc,
        "--clb-endpoint",
        &endpoint,
        "--metrics-addr",
        &metrics,
        "--cluster-id",
        "demo",
        "--no-node-watch",
    ])?
    .run;
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let controller = tokio::spawn(async move {
        super::run::serve(run_args, move |a, _| {
            let _ = addr_tx.send(a);
        })
        .await
    });
    let metrics_addr = addr_rx.await.context("controller did not start")?;

    // 4. The CRD and the manifests, through the Kubernetes API.
    Api::<CustomResourceDefinition>::all(kube.clone())
        .create(&PostParams::default(), &ClbClassParameters::crd())
        .await?;
    let applied = apply_manifests(&kube, &args.files).await?;
    println!(
        "Kubernetes API (test server): {}  — export KUBECONFIG={kc}",
        kube_api.url()
    );
    println!(
        "CLB emulator API: http://{}  (admin: http://{}/_emulator/state; admin token for writes: {})",
        emu.addr,
        emu.addr,
        emu.admin_token()
    );
    println!("Controller metrics: http://{metrics_addr}/metrics");
    println!("Applied {applied} objects from {:?}", args.files);

    // 5. Wait for the controller: every Ingress it handles gets an address.
    let mut snap = Snapshot::new("demo");
    crate::manifests::load(&args.files, &mut snap)?;
    let out = model::build(&snap);
    for p in &out.problems {
        eprintln!("problem: {p}");
    }
    let ingresses: Api<Ingress> = Api::all(kube.clone());
    let started = Instant::now();
    let mut failed = false;
    let http = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()?;
    for desired in out.stacks.values() {
        let mut vip = None;
        while vip.is_none() {
            for m in &desired.members {
                let ns = m.ingress.namespace.as_deref().unwrap_or("default");
                let got = Api::<Ingress>::namespaced(kube.clone(), ns)
                    .get_opt(&m.ingress.name)
                    .await?;
                vip = got
                    .and_then(|i| i.status?.load_balancer?.ingress?.first()?.ip.clone())
                    .or(vip);
            }
            if vip.is_none() {
                anyhow::ensure!(
                    started.elapsed() < CONVERGE_TIMEOUT,
                    "the controller did not publish an address for stack {}",
                    desired.stack
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let vip = vip.unwrap_or_default();
        println!(
            "\n{}: address {vip} (after {:?})",
            desired.stack,
            started.elapsed()
        );
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
                let got = match http.get(&url).header("Host", &host).send().await {
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
    let count = ingresses.list(&Default::default()).await?.items.len();
    println!("\nTry: KUBECONFIG={kc} kubectl get ingress -A   ({count} Ingresses)");
    println!("     KUBECONFIG={kc} kubectl describe ingress shop");
    println!("     curl -s http://{metrics_addr}/metrics | grep clb_ingress_");
    let files: Vec<String> = args
        .files
        .iter()
        .map(|f| format!("-f {}", f.display()))
        .collect();
    println!(
        "     clb-ingress plan {} --clb-endpoint {endpoint} --cluster-id demo   (diff against these CLBs)",
        files.join(" ")
    );
    if !args.once {
        // Handlers first: a SIGTERM sent as soon as this line is read stops the demo cleanly.
        let shutdown = crate::controller::shutdown_signal();
        println!("Serving until Ctrl-C (or SIGTERM).");
        shutdown.await;
    }
    // Exiting drops the runtime, which stops the controller, the emulator and the API server.
    controller.abort();
    Ok(if failed { 1 } else { 0 })
}
