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
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Plan(args) => cli::plan::run(&args),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
