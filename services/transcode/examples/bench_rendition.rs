//! Benchmark driver (not a test): runs transcode's rendition pipeline over segment files the
//! way a job does — decode with `decodebin`, scale, encode with one `x264enc` thread — and
//! prints one JSON line: frames, footage seconds, this process's CPU seconds and wall seconds.
//! `e2e/bench_transcode.py` runs it beside `ffmpeg` on the same files.
//!
//! ```text
//! cargo run -p kordon-transcode --example bench_rendition -- --height 360 --bitrate 500000 SEG...
//! ```

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use kordon_media::Codec;
use kordon_proto::transcode::v1 as pb;
use kordon_transcode::pipeline::{self, EncodeSettings};

/// User + system CPU seconds of this process (all threads, GStreamer's included).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut height = 360u32;
    let mut bitrate = 500_000u64;
    let mut preset = pb::EncoderPreset::Balanced;
    let mut thumbnails = false;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--height" => {
                height = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--height N")
            }
            "--bitrate" => {
                bitrate = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--bitrate BPS")
            }
            "--preset" => {
                preset = match args.next().as_deref() {
                    Some("speed") => pb::EncoderPreset::Speed,
                    Some("quality") => pb::EncoderPreset::Quality,
                    _ => pb::EncoderPreset::Balanced,
                }
            }
            "--thumbnails" => thumbnails = true,
            _ => files.push(a),
        }
    }
    assert!(
        !files.is_empty(),
        "usage: bench_rendition [--height N] [--bitrate BPS] SEGMENT..."
    );
    kordon_media::init().expect("GStreamer");
    let settings = EncodeSettings {
        element: "x264enc".into(),
        codec: Codec::H264,
        preset,
        bitrate_bps: Some(bitrate),
        threads: 1,
    };
    let data: Vec<bytes::Bytes> = files
        .iter()
        .map(|f| bytes::Bytes::from(std::fs::read(f).expect("readable segment")))
        .collect();
    let cancel = AtomicBool::new(false);
    if thumbnails {
        // What an automatic thumbnail costs: the segment's first picture at 320 wide, as JPEG.
        let (cpu0, wall0) = (cpu_seconds(), Instant::now());
        let mut bytes = 0;
        let n = data.len();
        for d in data {
            pipeline::decode_segment(d, 320, 180, &cancel, |p| {
                bytes += kordon_transcode::service::encode_jpeg(p.width, p.height, &p.bgr)
                    .expect("jpeg")
                    .len();
                Ok(false)
            })
            .expect("decodes");
        }
        println!(
            "{{\"thumbnails\": {n}, \"cpu_seconds\": {:.3}, \"wall_seconds\": {:.3}, \"jpeg_bytes\": {bytes}}}",
            cpu_seconds() - cpu0,
            wall0.elapsed().as_secs_f64()
        );
        return;
    }
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut frames = 0u64;
    let mut out_bytes = 0u64;
    let mut footage = 0.0;
    for d in data {
        // The source size from the first picture's caps is what a job gets from the index;
        // here the files are known to be 1920x1080.
        let (w, h) = pipeline::output_size(1920, 1080, height);
        let e = pipeline::encode_segment(d, w, h, 0.0, &settings, &cancel).expect("encodes");
        frames += e.frames.len() as u64;
        out_bytes += e.frames.iter().map(|f| f.data.len() as u64).sum::<u64>();
        footage += e.frames.len() as f64 / 25.0;
    }
    println!(
        "{{\"frames\": {frames}, \"footage_seconds\": {footage:.2}, \"cpu_seconds\": {:.2}, \
         \"wall_seconds\": {:.2}, \"output_bytes\": {out_bytes}}}",
        cpu_seconds() - cpu0,
        wall0.elapsed().as_secs_f64()
    );
}
