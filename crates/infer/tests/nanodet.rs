//! The real model on real frames: objects found where they are, batches equal to single frames,
//! the engine's queue and provider fallback, and agreement with Python onnxruntime.
//!
//! Needs the ONNX Runtime library (ORT_DYLIB_PATH or the project venv; `source scripts/lib.sh &&
//! install_python_tools`) and ffmpeg.

mod support;

use std::process::Command;

use kordon_infer::{Detection, Detector, Engine, InferError, Provider};
use support::{config, frame, workspace};

const TIMES: [f32; 8] = [0.5, 1.2, 2.5, 3.0, 4.5, 5.0, 7.5, 9.0];

fn assert_same(a: &[Detection], b: &[Detection], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:#?}\nvs\n{b:#?}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.class_id, y.class_id, "{what}");
        assert!((x.score - y.score).abs() <= tol, "{what}: {x:?} vs {y:?}");
        for k in 0..4 {
            assert!(
                (x.bbox[k] - y.bbox[k]).abs() <= tol,
                "{what}: {x:?} vs {y:?}"
            );
        }
    }
}

/// The frames of bikes.mp4 used here: at 1.2 s a man in a suit walks in front of a queue of cars;
/// at 4.5 s a cyclist rides past a van with a parked motorbike behind him.
const SUIT: f32 = 1.2;
const CYCLIST: f32 = 4.5;

#[test]
fn finds_people_and_vehicles_on_street_frames() {
    let mut det = Detector::new(&config()).expect("detector loads");
    assert_eq!(det.provider(), "cpu");
    let info = det.info().clone();
    assert_eq!((info.input_width, info.input_height), (416, 416));
    assert_eq!(info.labels.len(), 80);
    assert_eq!(info.max_batch, 8, "the vendored model takes batches");
    let frames = [frame(SUIT), frame(CYCLIST)];
    let views = [frames[0].view(), frames[1].view()];
    let found = det.detect_batch(&views).expect("inference runs");
    for (t, dets) in [SUIT, CYCLIST].iter().zip(&found) {
        for d in dets {
            eprintln!("{t:>4} s {:>12} {:.3} {:?}", d.label, d.score, d.bbox);
            assert!(d.bbox[0] <= d.bbox[2] && d.bbox[1] <= d.bbox[3], "{d:?}");
            assert!(d.bbox.iter().all(|v| (0.0..=1.0).contains(v)), "{d:?}");
        }
    }
    let best = |dets: &[Detection], classes: &[u16]| {
        dets.iter()
            .filter(|d| classes.contains(&d.class_id))
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .copied()
    };
    const VEHICLES: [u16; 5] = [1, 2, 3, 5, 7];
    let suit = best(&found[0], &[0]).expect("the man in the suit");
    assert!(suit.score >= 0.6, "{suit:?}");
    let car = best(&found[0], &VEHICLES).expect("a car in the queue");
    assert!(car.score >= 0.4, "{car:?}");
    let cyclist = best(&found[1], &[0]).expect("the cyclist");
    assert!(cyclist.score >= 0.6, "{cyclist:?}");
    let motorbike = best(&found[1], &VEHICLES).expect("the motorbike");
    assert!(motorbike.score >= 0.4, "{motorbike:?}");
    // Where they are (checked by eye on docs/detection-bikes.jpg): the man fills the middle of
    // the frame top to bottom, the cyclist is right of centre, the motorbike at the right edge.
    let centre_x = |d: Detection| (d.bbox[0] + d.bbox[2]) / 2.0;
    assert!((0.35..0.5).contains(&centre_x(suit)), "{suit:?}");
    assert!(suit.bbox[3] - suit.bbox[1] > 0.8, "{suit:?}");
    assert!((0.55..0.75).contains(&centre_x(cyclist)), "{cyclist:?}");
    assert!(centre_x(motorbike) > 0.8, "{motorbike:?}");
}

#[test]
fn a_batch_gives_what_single_frames_give() {
    let frames: Vec<_> = TIMES.iter().map(|t| frame(*t)).collect();
    let views: Vec<_> = frames.iter().map(|f| f.view()).collect();
    let mut one = Detector::new(&kordon_infer::EngineConfig {
        max_batch: 1,
        ..config()
    })
    .expect("detector loads");
    assert_eq!(one.info().max_batch, 1);
    let singles: Vec<_> = views
        .iter()
        .map(|v| one.detect_batch(&[*v]).expect("batch 1").remove(0))
        .collect();
    let with_objects = singles.iter().filter(|d| !d.is_empty()).count();
    assert!(with_objects >= 5, "{with_objects} of 8 frames have objects");
    assert_ne!(singles[0], singles[7], "the frames differ");
    for batch in [4usize, 8] {
        let mut many = Detector::new(&kordon_infer::EngineConfig {
            max_batch: batch,
            ..config()
        })
        .expect("detector loads");
        let got = many.detect_batch(&views).expect("batched");
        for (i, (g, s)) in got.iter().zip(&singles).enumerate() {
            assert_same(g, s, 1e-4, &format!("batch {batch}, frame {i}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_batches_concurrent_callers() {
    let engine = Engine::start(config()).expect("engine starts");
    let frames: Vec<_> = TIMES.iter().map(|t| frame(*t)).collect();
    let mut single = Detector::new(&kordon_infer::EngineConfig {
        max_batch: 1,
        ..config()
    })
    .expect("detector loads");
    let want: Vec<_> = frames
        .iter()
        .map(|f| single.detect_batch(&[f.view()]).expect("batch 1").remove(0))
        .collect();
    let calls = frames.into_iter().map(|f| {
        let e = engine.clone();
        tokio::spawn(async move { e.detect(f).await })
    });
    let got = futures_join(calls).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let g = g.as_ref().expect("detected");
        assert_same(g, w, 1e-4, &format!("engine frame {i}"));
    }
    // A bad frame is refused before it reaches the queue.
    let bad = kordon_infer::OwnedImage::packed(640, 272, vec![0; 10]);
    assert!(matches!(
        engine.detect(bad).await,
        Err(InferError::BadImage { .. })
    ));
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn a_full_queue_drops_frames_at_once() {
    let engine = Engine::start(kordon_infer::EngineConfig {
        queue: 1,
        max_batch: 1,
        ..config()
    })
    .expect("engine starts");
    let img = frame(CYCLIST);
    // Twenty frames offered within microseconds to a queue of one whose thread needs tens of
    // milliseconds per frame: most are refused, at least one is answered.
    let results = futures::future::join_all((0..20).map(|_| engine.detect(img.clone()))).await;
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(InferError::QueueFull)))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 1 && full >= 10, "ok {ok}, full {full}");
    assert_eq!(ok + full, 20);
}

#[test]
fn an_unavailable_provider_falls_back_to_cpu() {
    // The CPU wheel has no CUDA execution provider.
    let det = Detector::new(&kordon_infer::EngineConfig {
        provider: Provider::Cuda,
        ..config()
    })
    .expect("detector loads on CPU");
    assert_eq!(det.provider(), "cpu");
}

/// Kordon and Python onnxruntime (crates/infer/bench/reference.py, same pre- and
/// post-processing) give the same boxes and scores on the same frame.
#[test]
fn agrees_with_python_onnxruntime() {
    let python = std::env::var_os("KORDON_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/kordon/venv"))
        })
        .expect("KORDON_VENV or HOME")
        .join("bin/python");
    let out = Command::new(&python)
        .arg(workspace().join("crates/infer/bench/reference.py"))
        .arg("--model")
        .arg(config().model)
        .arg("--footage")
        .arg(support::footage())
        .args(["--at", "4.5", "--print"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} (install_python_tools in scripts/lib.sh): {e}",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "reference.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One line per detection: class_id score x1 y1 x2 y2.
    let theirs: Vec<Detection> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Vec<f32> = l
                .split_whitespace()
                .map(|x| x.parse().expect("number"))
                .collect();
            Detection {
                class_id: v[0] as u16,
                label: kordon_infer::COCO_LABELS[v[0] as usize],
                score: v[1],
                bbox: [v[2], v[3], v[4], v[5]],
            }
        })
        .collect();
    let mut det = Detector::new(&config()).expect("detector loads");
    let ours = det
        .detect_batch(&[frame(CYCLIST).view()])
        .expect("inference")
        .remove(0);
    assert!(!ours.is_empty());
    assert_same(&ours, &theirs, 1e-3, "kordon vs python");
}
