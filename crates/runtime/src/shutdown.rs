//! One shutdown signal for the whole process.
//!
//! [`Shutdown::install`] returns a token cancelled on the first SIGTERM or SIGINT (Ctrl-C).
//! Everything that runs — gRPC servers, the admin port, recorders, controllers — watches a child
//! of it and drains on cancellation (a recorder finishes and uploads its open segment). A second
//! signal while draining exits at once.

use tokio_util::sync::CancellationToken;

pub struct Shutdown;

impl Shutdown {
    /// Spawns the signal listener on the current runtime and returns the process-wide token.
    pub fn install() -> CancellationToken {
        let token = CancellationToken::new();
        let trigger = token.clone();
        tokio::spawn(async move {
            let first = wait_for_signal().await;
            tracing::info!(
                signal = first,
                "shutting down: draining (send again to exit now)"
            );
            trigger.cancel();
            let second = wait_for_signal().await;
            tracing::warn!(signal = second, "second signal: exiting without draining");
            std::process::exit(130);
        });
        token
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            // Without signal handlers we can still honour Ctrl-C through tokio's portable API.
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}
