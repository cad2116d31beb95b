//! Frames from concurrent callers share one session call, and the metrics say so. (A process of
//! its own, so the process-wide metrics hold only this engine's numbers.)

mod support;

use kordon_infer::{Engine, EngineConfig};

/// The value of the sample `name{provider="cpu"}` in the process's metrics.
fn sample(text: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{provider=\"cpu\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .parse()
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_frames_are_inferred_as_one_batch() {
    // A long max_wait: eight frames offered within milliseconds must all land in the first batch.
    let engine = Engine::start(EngineConfig {
        max_batch: 8,
        max_wait: std::time::Duration::from_secs(1),
        ..support::config()
    })
    .expect("engine starts");
    assert_eq!(engine.provider(), "cpu");
    let frame = support::frame(4.5);
    let results = futures::future::join_all((0..8).map(|_| engine.detect(frame.clone()))).await;
    let first = results[0].as_ref().expect("detected").clone();
    assert!(!first.is_empty());
    for r in &results {
        assert_eq!(
            r.as_ref().expect("detected"),
            &first,
            "same frame, same answer"
        );
    }
    let text = kordon_runtime::metrics::render();
    assert_eq!(sample(&text, "kordon_detection_batch_size_count"), 1.0);
    assert_eq!(sample(&text, "kordon_detection_batch_size_sum"), 8.0);
    assert_eq!(sample(&text, "kordon_detection_frames_inferred_total"), 8.0);
    assert_eq!(
        sample(&text, "kordon_detection_inference_seconds_count"),
        1.0
    );
}
