//! `kordon`: every Kordon service, the operator, standalone mode, the camera simulator and the
//! client commands, in one binary. Thin by design: each subcommand parses its flags and hands
//! over to a library crate.

mod alerts;
mod audit;
mod client;
mod config;
mod detections;
mod evidence;
mod footage;
mod operator;
mod partners;
mod serve;
mod transcode;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::ClientFlags;
use crate::config::ServerFlags;

/// `kordon transcode`: a job command, or (none given) the service with its server flags.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TranscodeArgs {
    #[command(subcommand)]
    pub command: Option<transcode::TranscodeCommand>,
    #[command(flatten)]
    pub server: ServerFlags,
}

#[derive(Parser)]
#[command(
    name = "kordon",
    version,
    about = "Kordon: evidence-grade video surveillance on Kubernetes",
    long_about = "Kordon records cameras into S3-compatible storage with a tamper-evident index \
                  and access log, detects people and vehicles, and raises alerts shared across \
                  partner sites.\n\nStart with `kordon standalone` (everything in one process, \
                  simulated cameras, local files) or run one service per process."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ingest service: records camera streams into object storage.
    Ingest(ServerFlags),
    /// Transcode jobs (submit, get, list, watch, cancel, status); without a subcommand, run
    /// the transcode service: renditions, thumbnails, viewer copies.
    Transcode(TranscodeArgs),
    /// Run the detection service: motion and object detection.
    Detection(ServerFlags),
    /// Run the storage service: footage index, playback, evidence, access log.
    Storage(ServerFlags),
    /// Run the alerting service: rules, alert lifecycle, delivery.
    Alerting(ServerFlags),
    /// Run the Kubernetes operator for Site and Camera resources.
    Operator(kordon_operator::OperatorFlags),
    /// Print the Site and Camera CustomResourceDefinitions as YAML.
    Crdgen,
    /// Run all five services in one process on embedded defaults.
    Standalone(ServerFlags),
    /// Serve simulated RTSP cameras (real footage or test patterns).
    Camsim(kordon_camsim::CamsimArgs),
    /// Show who the server thinks you are (check credentials).
    Whoami(ClientFlags),
    /// Find recorded footage and gaps (every read states a reason and is logged).
    #[command(subcommand)]
    Footage(footage::FootageCommand),
    /// Export signed evidence bundles and verify them offline.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// Read and verify a site's access log (auditors).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// What the cameras saw: stored detections, a live watch, snapshots.
    #[command(subcommand)]
    Detections(detections::DetectionsCommand),
    /// Alerts: list, watch, read, acknowledge, hold and resolve (each step attributed).
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Partner installations: agreements, whether both sides accepted them, what was shared.
    #[command(subcommand)]
    Partners(partners::PartnersCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    kordon_runtime::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kordon")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kordon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Background tasks (e.g. a blocked GStreamer pipeline) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Configuration errors are usage errors: exit 2, like clap's own.
            let usage = e
                .downcast_ref::<kordon_runtime::RuntimeError>()
                .is_some_and(|r| matches!(r, kordon_runtime::RuntimeError::Config { .. }));
            eprintln!("kordon: error: {e:#}");
            if usage {
                ExitCode::from(2)
            } else if e.downcast_ref::<evidence::UnknownSigner>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    use serve::Service;
    match command {
        Command::Ingest(f) => serve::service(Service::Ingest, &f).await,
        Command::Transcode(TranscodeArgs {
            command: Some(cmd), ..
        }) => transcode::run(cmd).await,
        Command::Transcode(TranscodeArgs { server, .. }) => {
            serve::service(Service::Transcode, &server).await
        }
        Command::Detection(f) => serve::service(Service::Detection, &f).await,
        Command::Storage(f) => serve::service(Service::Storage, &f).await,
        Command::Alerting(f) => serve::service(Service::Alerting, &f).await,
        Command::Standalone(f) => serve::standalone(&f).await,
        Command::Operator(f) => operator::run(&f).await,
        Command::Crdgen => operator::crdgen(),
        Command::Camsim(args) => {
            let _telemetry = kordon_runtime::telemetry::init(
                "camsim",
                &kordon_runtime::config::LogConfig::default(),
            )?;
            let shutdown = kordon_runtime::shutdown::Shutdown::install();
            kordon_camsim::run(args, shutdown).await?;
            Ok(())
        }
        Command::Whoami(f) => client::whoami(&f).await,
        Command::Footage(cmd) => footage::run(cmd).await,
        Command::Evidence(cmd) => evidence::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Detections(cmd) => detections::run(cmd).await,
        Command::Alerts(cmd) => alerts::run(cmd).await,
        Command::Partners(cmd) => partners::run(cmd).await,
    }
}
