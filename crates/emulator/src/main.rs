//! `clb-emulator`: the local CLB emulator on its own (the same as `clb-ingress emulator`).
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "clb-emulator",
    version,
    about = "Local Tencent CLB emulator: API 3.0 server and loopback data plane"
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` is used when this is not given.
    #[arg(long, env = "CLB_EMULATOR_LOG")]
    log: Option<String>,
    #[command(flatten)]
    args: clb_emulator::cli::EmulatorArgs,
}

fn main() {
    let cli = Cli::parse();
    let filter = match cli.log.as_deref() {
        Some(f) => tracing_subscriber::EnvFilter::new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(clb_emulator::cli::run(cli.args))
                .map_err(anyhow::Error::from)
        });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
