//! Draws the detector's boxes on frames of bikes.mp4 and writes them, stacked, as one JPEG
//! (the picture in the docs).
//!
//! `cargo run -p kordon-infer --example annotate -- [OUT.jpg] [SECONDS...]`
//! (defaults: docs/detection-bikes.jpg, frames at 1.2 s and 4.5 s). Boxes with a score of at
//! least 0.4: people green, two-wheelers orange, cars, buses and trucks blue, anything else grey;
//! the thicker the line, the higher the score.

mod common;

use jpeg_encoder::{ColorType, Encoder};
use kordon_infer::{Detector, EngineConfig};

const MIN_SCORE: f32 = 0.4;

/// BGR colour per class.
fn colour(class_id: u16) -> [u8; 3] {
    match class_id {
        0 => [60, 220, 60],
        1 | 3 => [0, 160, 255],
        2 | 5 | 7 => [255, 120, 30],
        _ => [170, 170, 170],
    }
}

fn rect(bgr: &mut [u8], w: usize, h: usize, [x1, y1, x2, y2]: [usize; 4], t: usize, c: [u8; 3]) {
    let mut put = |x: usize, y: usize| {
        if x < w && y < h {
            bgr[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
        }
    };
    for k in 0..t {
        for x in x1..=x2 {
            put(x, y1 + k);
            put(x, y2.saturating_sub(k));
        }
        for y in y1..=y2 {
            put(x1 + k, y);
            put(x2.saturating_sub(k), y);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::workspace().join("docs/detection-bikes.jpg"));
    let mut times: Vec<f32> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if times.is_empty() {
        times = vec![1.2, 4.5];
    }
    let mut det = Detector::new(&EngineConfig::new(common::model()))?;
    let frames = times
        .iter()
        .map(|t| common::frame_at(*t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let views: Vec<_> = frames.iter().map(|f| f.view()).collect();
    let found = det.detect_batch(&views)?;
    let (w, h) = (frames[0].width as usize, frames[0].height as usize);
    let mut canvas = Vec::with_capacity(w * h * 3 * frames.len());
    for ((frame, dets), t) in frames.iter().zip(&found).zip(&times) {
        let mut px = frame.bgr.clone();
        // Draw low scores first so the confident boxes end on top.
        let mut dets: Vec<_> = dets.iter().filter(|d| d.score >= MIN_SCORE).collect();
        dets.sort_by(|a, b| a.score.total_cmp(&b.score));
        for d in dets {
            let x = |v: f32| ((v * w as f32) as usize).min(w - 1);
            let y = |v: f32| ((v * h as f32) as usize).min(h - 1);
            let thickness = if d.score >= 0.6 { 3 } else { 2 };
            let b = [x(d.bbox[0]), y(d.bbox[1]), x(d.bbox[2]), y(d.bbox[3])];
            rect(&mut px, w, h, b, thickness, colour(d.class_id));
            println!("{t:>5} s {:<12} {:.2} {:?}", d.label, d.score, d.bbox);
        }
        canvas.extend_from_slice(&px);
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let height = u16::try_from(h * frames.len())?;
    Encoder::new_file(&out, 88)?.encode(&canvas, u16::try_from(w)?, height, ColorType::Bgr)?;
    println!("wrote {}", out.display());
    Ok(())
}
