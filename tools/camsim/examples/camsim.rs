//! Runs the camera simulator as a standalone process (what `kordon camsim` wires), for demos and
//! for measuring its CPU use with external clients (see `bench/cpu.sh`).
//!
//! `cargo run --release -p kordon-camsim --example camsim -- --cameras 50`

use clap::Parser;
use kordon_camsim::CamsimArgs;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(about = "Simulated RTSP cameras")]
struct Cli {
    #[command(flatten)]
    args: CamsimArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    #[cfg(unix)]
    {
        let on_term = shutdown.clone();
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                term.recv().await;
                on_term.cancel();
            });
        }
    }
    match kordon_camsim::run(cli.args, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("camsim: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
