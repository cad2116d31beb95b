//! Cost of motion gating and of the scene per analysed frame (a benchmark,
//! not a test). Run with
//! `cargo run --release -p kordon-vision --example motion_bench`.
//!
//! With `-- FILE WIDTH HEIGHT [FPS]` it also runs the motion detector over
//! raw packed BGR8 frames, e.g. real footage decoded by
//! `ffmpeg -i clip.mp4 -vf fps=5 -pix_fmt bgr24 -f rawvideo clip.bgr`,
//! and prints each frame's changed fraction, motion boxes and gate.
//!
//! Times are this thread's CPU time (Linux `/proc/thread-self/schedstat`,
//! so a busy shared machine does not inflate them), wall time elsewhere.
//!
//! Frames are synthetic packed BGR8: a noisy static scene, and the same
//! scene with a bright object walking across it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kordon_vision::motion::MotionDetector;
use kordon_vision::{
    Frame, MotionConfig, MotionResult, Point, RawDetection, Scene, SceneConfig, ZoneConfig,
};

/// Nanoseconds of CPU this thread has used, or of wall time where the
/// kernel does not say.
fn now_ns(wall: Instant) -> u128 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| wall.elapsed().as_nanos())
}

fn noise(len: usize, seed: &mut u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            90 + ((*seed >> 59) as u8)
        })
        .collect()
}

fn with_object(base: &[u8], w: usize, x0: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for y in 150..250 {
        for x in x0..x0 + 40 {
            let i = (y * w + x) * 3;
            v[i..i + 3].fill(230);
        }
    }
    v
}

fn bench_motion(w: u32, h: u32, moving: bool) -> f64 {
    let mut seed = 1;
    let base = noise((w * h * 3) as usize, &mut seed);
    let frames: Vec<Vec<u8>> = if moving {
        (0..64)
            .map(|i| with_object(&base, w as usize, 20 + i * 8))
            .collect()
    } else {
        vec![base]
    };
    let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
    let n = 2000;
    let mut t = Duration::ZERO;
    let mut run = |i: usize, t: Duration| {
        let data = &frames[i % frames.len()];
        let f = Frame {
            width: w,
            height: h,
            stride: (w * 3) as usize,
            data,
        };
        black_box(m.process(t, &f).unwrap())
    };
    for i in 0..50 {
        run(i, t);
        t += Duration::from_millis(200);
    }
    let epoch = Instant::now();
    let start = now_ns(epoch);
    let mut motion = 0;
    for i in 0..n {
        motion += usize::from(run(i, t).motion);
        t += Duration::from_millis(200);
    }
    let ns = (now_ns(epoch) - start) as f64 / n as f64;
    println!(
        "motion {w}x{h} {:<7} {:>9.0} ns/frame  ({motion}/{n} frames with motion)",
        if moving { "moving" } else { "static" },
        ns
    );
    ns
}

fn bench_scene(objects: usize) {
    let mut scene = Scene::new(SceneConfig {
        zones: vec![ZoneConfig {
            name: "yard".into(),
            area: vec![
                Point::new(0.5, 0.0),
                Point::new(1.0, 0.0),
                Point::new(1.0, 1.0),
                Point::new(0.5, 1.0),
            ],
            inertia: 0,
        }],
        ..SceneConfig::default()
    })
    .unwrap();
    let n = 5000u32;
    let dets = |f: u32| -> Vec<RawDetection<'static>> {
        (0..objects)
            .map(|k| {
                let x = 0.05 + 0.9 * k as f32 / objects as f32 + 0.0005 * (f % 200) as f32;
                let y = 0.3 + 0.4 * ((k * 7) % 10) as f32 / 10.0;
                RawDetection {
                    class_id: 0,
                    label: "person",
                    score: 0.8,
                    bbox: [x, y, x + 0.03, y + 0.15],
                }
            })
            .collect()
    };
    let inputs: Vec<_> = (0..n).map(dets).collect();
    let epoch = Instant::now();
    let start = now_ns(epoch);
    let mut events = 0;
    for (f, d) in inputs.iter().enumerate() {
        events += black_box(scene.update(Duration::from_millis(200 * f as u64), d)).len();
    }
    let ns = (now_ns(epoch) - start) as f64 / f64::from(n);
    println!("scene  {objects:>3} objects    {ns:>9.0} ns/frame  ({events} events in {n} frames)");
}

fn replay(path: &str, w: u32, h: u32, fps: u64) {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let size = (w * h * 3) as usize;
    let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
    // The CPU clock advances in scheduler ticks: time the whole run, not
    // each frame.
    let epoch = Instant::now();
    let start = now_ns(epoch);
    let results: Vec<(Duration, MotionResult)> = data
        .chunks_exact(size)
        .enumerate()
        .map(|(i, frame)| {
            let t = Duration::from_millis(i as u64 * 1000 / fps);
            let f = Frame {
                width: w,
                height: h,
                stride: (w * 3) as usize,
                data: frame,
            };
            (t, m.process(t, &f).unwrap())
        })
        .collect();
    let spent = now_ns(epoch) - start;
    for (t, r) in &results {
        println!(
            "{:>6.1}s changed {:.4} boxes {:>2} motion {:<5} calibrating {:<5} active {}",
            t.as_secs_f32(),
            r.changed,
            r.boxes.len(),
            r.motion,
            r.calibrating,
            r.active
        );
    }
    let gated = results.iter().filter(|(_, r)| !r.active).count();
    println!(
        "{path}: {} frames of {w}x{h}, {:.0} ns/frame, gate closed on {gated}",
        results.len(),
        spent as f64 / results.len().max(1) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [path, w, h, rest @ ..] = args.as_slice() {
        let num = |s: &str| {
            s.parse::<u32>()
                .unwrap_or_else(|_| panic!("not a number: {s}"))
        };
        let fps = rest.first().map_or(5, |f| u64::from(num(f)));
        replay(path, num(w), num(h), fps);
        return;
    }
    bench_motion(640, 360, false);
    bench_motion(640, 360, true);
    bench_motion(1280, 720, true);
    for objects in [1, 10, 50] {
        bench_scene(objects);
    }
}
