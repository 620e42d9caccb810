//! The `clb-ingress` command line: wiring only.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// jemalloc with a background thread that returns freed pages after 1 s (.cargo/config.toml):
/// the quiet controller's RSS with 1,000 Ingresses and 10,000 endpoints measured 48 MiB with it,
/// 106 MiB with mimalloc and 110 MiB with glibc's malloc, which keep the peak of a sync burst
/// (docs/operations.md, "Memory").
/// The `system-allocator` feature leaves it out, for heap profilers that hook malloc.
#[cfg(not(any(target_env = "msvc", feature = "system-allocator")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use clb_ingress::cli;

#[derive(Parser)]
#[command(
    name = "clb-ingress",
    version,
    about = "Kubernetes ingress controller for Tencent CLB"
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info`, `clb_ingress=debug`, `trace`);
    /// `RUST_LOG` is used when this is not given.
    #[arg(long, global = true, env = "CLB_INGRESS_LOG")]
    log: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Structured logs on stderr (stdout carries command output).
fn init_logging(filter: Option<&str>, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let text = match filter {
        Some(f) => f.to_string(),
        None => std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| "warn".into()),
    };
    // kube's HTTP layer logs every failed request at ERROR; the watchers already report
    // those failures, rate-limited, with the kind that failed. Keep it quiet unless asked for.
    let text = if text.contains("kube_client") {
        text
    } else {
        format!("{text},kube_client::client::builder=off")
    };
    let filter = EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller: watch Kubernetes and keep CLBs in sync (the default in the image).
    Run(Box<cli::run::RunArgs>),
    /// Run everything locally: the CLB emulator, the examples applied, requests through it.
    #[cfg(feature = "local-dev")]
    Demo(cli::demo::DemoArgs),
    /// Preview the CLB state and the changes that Ingress manifests produce.
    Plan(cli::plan::PlanArgs),
    /// Reconcile Ingress manifests into CLBs once (against Tencent Cloud or the emulator).
    Apply(cli::apply::ApplyArgs),
    /// Preview switching Ingresses from TKE's controller (`--from-tke`): what carries over,
    /// what differs and why, and the CLB plan; writes nothing.
    Migrate(Box<cli::migrate::MigrateArgs>),
    /// Check, on one temporary CLB, every assumption about CLB the translation relies on
    /// (run it first on a new account); deletes everything it made.
    Preflight(Box<cli::preflight::PreflightArgs>),
    /// Run the local CLB emulator (API 3.0 server and loopback data plane).
    #[cfg(feature = "local-dev")]
    Emulator(clb_ingress::emulator::cli::EmulatorArgs),
    /// Run the in-repo TEST Kubernetes API server (test support only).
    #[cfg(feature = "local-dev")]
    #[command(hide = true)]
    TestApiserver(clb_ingress::testapi::cli::TestApiArgs),
    /// Print the CustomResourceDefinition YAML of the project's custom resources.
    Crd(cli::crd::CrdArgs),
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log.as_deref(), cli.log_format);
    let code = match cli.command {
        Command::Run(args) => cli::run::run(*args),
        #[cfg(feature = "local-dev")]
        Command::Demo(args) => cli::demo::run(&args),
        Command::Plan(args) => cli::plan::run(&args),
        Command::Apply(args) => cli::apply::run(&args),
        Command::Migrate(args) => cli::migrate::run(&args),
        Command::Preflight(args) => cli::preflight::run(*args),
        #[cfg(feature = "local-dev")]
        Command::Emulator(args) => run_emulator(args),
        #[cfg(feature = "local-dev")]
        Command::TestApiserver(args) => clb_ingress::testapi::cli::run_blocking(args),
        Command::Crd(args) => cli::crd::run(&args),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Each cause once, in words (no repeated prefixes, no Debug dumps).
            let cause: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!("error: {}", clb_ingress::controller::error::describe(cause));
            std::process::exit(2);
        }
    }
}

/// Run the emulator on a Tokio runtime until Ctrl-C.
#[cfg(feature = "local-dev")]
fn run_emulator(args: clb_ingress::emulator::cli::EmulatorArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(clb_ingress::emulator::cli::run(args))?;
    Ok(0)
}
