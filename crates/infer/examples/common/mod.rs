//! Frames of the vendored clip for the examples, decoded by ffmpeg.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use kordon_infer::OwnedImage;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn footage() -> PathBuf {
    workspace().join("assets/footage/bikes.mp4")
}

pub fn model() -> PathBuf {
    workspace().join(kordon_infer::MODEL_PATH)
}

fn size() -> anyhow::Result<(u32, u32)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=width,height", "-of", "csv=p=0"])
        .arg(footage())
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let (w, h) = text
        .trim()
        .split_once(',')
        .ok_or_else(|| anyhow::anyhow!("ffprobe: {text}"))?;
    Ok((w.parse()?, h.parse()?))
}

fn split(raw: Vec<u8>, w: u32, h: u32) -> Vec<OwnedImage> {
    raw.chunks_exact((w * h * 3) as usize)
        .map(|c| OwnedImage::packed(w, h, c.to_vec()))
        .collect()
}

/// The frame at `seconds`.
pub fn frame_at(seconds: f32) -> anyhow::Result<OwnedImage> {
    let (w, h) = size()?;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &seconds.to_string(), "-i"])
        .arg(footage())
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"])
        .output()?;
    split(out.stdout, w, h)
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no frame at {seconds} s"))
}

/// The first `count` frames sampled at 2 frames/s, as bench/reference.py takes them.
pub fn first_frames(count: usize) -> anyhow::Result<Vec<OwnedImage>> {
    let (w, h) = size()?;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(footage())
        .args(["-vf", "fps=2", "-frames:v", &count.to_string()])
        .args(["-f", "rawvideo", "-pix_fmt", "bgr24", "-"])
        .output()?;
    Ok(split(out.stdout, w, h))
}
