//! `kordon-fuzz`: runs Kordon's fuzz targets.
//!
//! ```text
//! kordon-fuzz list
//! kordon-fuzz run bundle --runs 1000000          # one target
//! kordon-fuzz run --all --runs 1000000           # every target, a table at the end
//! kordon-fuzz repro bundle crash-0123abcd        # one input, with the panic's message
//! kordon-fuzz seeds                              # (re)write the camera seeds with GStreamer
//! ```
//!
//! Exit status: 0 when nothing failed, 1 when an input failed (written under `--crashes`),
//! 70 on a hang, and an abort on an unbounded allocation (the input is written first).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kordon_fuzz::engine::{self, Options};
use kordon_fuzz::targets::{TARGETS, find};

mod seeds;

#[derive(Parser)]
#[command(
    name = "kordon-fuzz",
    about = "Fuzz every parser that reads bytes from outside Kordon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The targets and what each reads.
    List,
    /// Runs targets for a number of inputs each.
    Run {
        /// Target names (see `list`).
        targets: Vec<String>,
        /// Every target.
        #[arg(long)]
        all: bool,
        /// Inputs per target.
        #[arg(long, default_value_t = 100_000)]
        runs: u64,
        /// The random seed (the same seed gives the same inputs).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The longest mutated input, in bytes.
        #[arg(long, default_value_t = 64 * 1024)]
        max_len: usize,
        /// An input that runs longer is a hang.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// The largest single allocation allowed, in MiB.
        #[arg(long, default_value_t = 256)]
        max_alloc_mib: usize,
        /// Where failing inputs are written.
        #[arg(long, default_value = "fuzz-crashes")]
        crashes: PathBuf,
        /// More corpus directories to start from (the kept corpus is always read).
        #[arg(long)]
        corpus: Vec<PathBuf>,
    },
    /// Runs one input through a target and prints the outcome or the panic.
    Repro { target: String, file: PathBuf },
    /// Writes the camera seeds (RTP of H.264 and H.265 from GStreamer's encoders, SDP, RTSP,
    /// RTCP) into the kept corpus.
    Seeds {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::List => {
            for t in TARGETS {
                println!("{:<12} {}", t.name, t.about);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Repro { target, file } => {
            let t = find(&target).with_context(|| format!("no target `{target}` (see `list`)"))?;
            let input = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
            let mut h = (t.setup)();
            match engine::run_one(h.as_mut(), &input) {
                Ok(outcome) => {
                    println!("{}: {outcome}", t.name);
                    Ok(ExitCode::SUCCESS)
                }
                Err(panic) => {
                    println!("{}: PANIC: {panic}", t.name);
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Seeds { out } => {
            let out = out.unwrap_or_else(|| kordon_fuzz::crate_dir().join("corpus"));
            seeds::write(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            targets,
            all,
            runs,
            seed,
            max_len,
            timeout,
            max_alloc_mib,
            crashes,
            corpus,
        } => {
            let chosen: Vec<_> = if all {
                TARGETS.iter().collect()
            } else {
                if targets.is_empty() {
                    bail!("name a target (see `kordon-fuzz list`) or pass --all");
                }
                targets
                    .iter()
                    .map(|n| find(n).with_context(|| format!("no target `{n}` (see `list`)")))
                    .collect::<anyhow::Result<_>>()?
            };
            kordon_fuzz::guard::set_limit(max_alloc_mib << 20);
            let opts = Options {
                runs,
                seed,
                max_len,
                timeout,
                crash_dir: crashes,
                progress: true,
            };
            println!(
                "{:<12} {:>10} {:>9} {:>8} {:>8} {:>10}  result",
                "target", "inputs", "seconds", "per s", "outcomes", "max alloc"
            );
            let mut failed = false;
            for t in chosen {
                let mut dirs = vec![
                    kordon_fuzz::regressions_dir(t.name),
                    kordon_fuzz::corpus_dir(t.name),
                ];
                dirs.extend(corpus.iter().cloned());
                let r = engine::fuzz(t, &dirs, &opts);
                let secs = r.elapsed.as_secs_f64();
                let result = match &r.crash {
                    None => "no panic, hang or unbounded allocation".to_string(),
                    Some(c) => {
                        failed = true;
                        format!(
                            "PANIC: {} (input: {})",
                            c.message,
                            c.file
                                .as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_else(|| "not written".into())
                        )
                    }
                };
                println!(
                    "{:<12} {:>10} {:>9.1} {:>8.0} {:>8} {:>9}K  {result}",
                    r.target,
                    r.runs,
                    secs,
                    r.runs as f64 / secs.max(1e-9),
                    r.outcomes,
                    r.max_allocation / 1024,
                );
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
