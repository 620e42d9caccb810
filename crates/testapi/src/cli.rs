//! `clb-ingress test-apiserver`: run the test API server until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of the hidden `test-apiserver` subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct TestApiArgs {
    /// Loopback address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Write a kubeconfig pointing at the server here.
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
}

/// Serve until interrupted; prints the URL (and the kubeconfig path) on stdout.
pub async fn run(args: TestApiArgs) -> anyhow::Result<()> {
    // Handlers before the URL is printed: a SIGTERM sent as soon as it is read stops cleanly.
    let stop = clb_http_limits::shutdown_signal();
    let running = crate::start(args.listen).await?;
    if let Some(path) = &args.kubeconfig_out {
        std::fs::write(path, running.kubeconfig_yaml())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        println!("kubeconfig: {}", path.display());
    }
    println!("test API server: {}", running.url());
    stop.await;
    running.stop().await;
    Ok(())
}

/// Run [`run`] on a new Tokio runtime (for `main`); exit code 0 on a clean stop.
pub fn run_blocking(args: TestApiArgs) -> anyhow::Result<i32> {
    tokio::runtime::Runtime::new()?.block_on(run(args))?;
    Ok(0)
}
