//! The `clb-ingress` command line: wiring only.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use clb_ingress::cli;

#[derive(Parser)]
#[command(
    name = "clb-ingress",
    version,
    about = "Kubernetes ingress controller for Tencent CLB"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Preview the CLB state and the changes that Ingress manifests produce.
    Plan(cli::plan::PlanArgs),
    /// Run the local CLB emulator (API 3.0 server and loopback data plane).
    Emulator(clb_ingress::emulator::cli::EmulatorArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Plan(args) => cli::plan::run(&args),
        Command::Emulator(args) => run_emulator(args),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Run the emulator on a Tokio runtime until Ctrl-C.
fn run_emulator(args: clb_ingress::emulator::cli::EmulatorArgs) -> anyhow::Result<i32> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(clb_ingress::emulator::cli::run(args))?;
    Ok(0)
}
