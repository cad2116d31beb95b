//! Real frames of the vendored clip, decoded by ffmpeg (installed by scripts/lib.sh).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use kordon_infer::{EngineConfig, OwnedImage};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn footage() -> PathBuf {
    workspace().join("assets/footage/bikes.mp4")
}

pub fn config() -> EngineConfig {
    EngineConfig::new(workspace().join(kordon_infer::MODEL_PATH))
}

/// The clip's frame at `seconds`, packed BGR8 (bikes.mp4 is 640x272).
pub fn frame(seconds: f32) -> OwnedImage {
    let (w, h) = (640u32, 272u32);
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &seconds.to_string(), "-i"])
        .arg(footage())
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"])
        .output()
        .expect("ffmpeg runs (scripts/lib.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout.len(),
        (w * h * 3) as usize,
        "bikes.mp4 is 640x272"
    );
    OwnedImage::packed(w, h, out.stdout)
}
