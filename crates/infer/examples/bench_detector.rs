//! Frames per second of Kordon's detector — pre-processing, one session call per batch,
//! post-processing — over the first frames of bikes.mp4, as `bench/reference.py` measures
//! Python onnxruntime. A benchmark, not a test; `bench/compare.sh` runs both side by side.
//!
//! `cargo run --release -p kordon-infer --example bench_detector -- [--frames 16] [--threads 2]
//! [--batch 1] [--seconds 10]`

mod common;

use std::time::Instant;

use kordon_infer::{Detector, EngineConfig};

fn main() -> anyhow::Result<()> {
    let (mut frames, mut threads, mut batch, mut seconds) = (16usize, 2usize, 1usize, 10f64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--frames" => frames = value.parse()?,
            "--threads" => threads = value.parse()?,
            "--batch" => batch = value.parse()?,
            "--seconds" => seconds = value.parse()?,
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    let images = common::first_frames(frames)?;
    let views: Vec<_> = images.iter().map(|i| i.view()).collect();
    let mut det = Detector::new(&EngineConfig {
        threads,
        max_batch: batch,
        ..EngineConfig::new(common::model())
    })?;
    det.detect_batch(&views[..batch.min(views.len())])?; // warm-up
    let (mut done, start) = (0usize, Instant::now());
    // Stop at the first batch boundary past `seconds`.
    for chunk in views.chunks(batch).cycle() {
        det.detect_batch(chunk)?;
        done += chunk.len();
        if start.elapsed().as_secs_f64() >= seconds {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "kordon ({}) batch {batch} threads {threads}: {:.1} frames/s ({done} frames in {elapsed:.1} s)",
        det.provider(),
        done as f64 / elapsed
    );
    Ok(())
}
