//! The `clb-ingress` command line: wiring only.
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "clb-ingress",
    version,
    about = "Kubernetes ingress controller for Tencent CLB"
)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
